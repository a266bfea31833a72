//! Parsing and validation of whole configuration files.

use super::*;

const MINIMAL: &str = r#"
[server]
socket = "/tmp/s.sock"
audit_log = "/tmp/audit.jsonl"
state_dir = "/tmp/sigil-state"

[[backend]]
name = "hsm"
type = "pkcs11"
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "sigil"
pin_file = "/etc/sigil/pins/hsm"

[[policy]]
name = "ci"
users = ["root"]
keys = [{ gun = "example.com/*", role = "targets/releases" }, { key_id = "ab" }]
allow = ["sign", "public", "list"]
"#;

fn parse(text: &str) -> Result<Config, Error> {
    Config::parse(text, Path::new("test.toml"))
}

#[test]
fn parses_the_documented_shape() {
    let c = parse(MINIMAL).expect("parse");
    assert_eq!(c.server.max_message_bytes, 4 * 1024 * 1024);
    assert_eq!(c.server.socket_mode_bits().expect("mode"), 0o660);
    let BackendConfig::Pkcs11(b) = &c.backends[0] else {
        panic!("expected pkcs11")
    };
    assert_eq!(
        b.selector().expect("sel"),
        TokenSelector::Label("sigil".into())
    );
    assert_eq!(c.policies[0].allow, vec![Op::Sign, Op::Public, Op::List]);
}

#[test]
fn unknown_keys_are_refused_by_name_at_every_level() {
    for (needle, text) in [
        (
            "colour",
            MINIMAL.replace("[server]", "[server]\ncolour = 1"),
        ),
        (
            "flavour",
            MINIMAL.replace("type = \"pkcs11\"", "type = \"pkcs11\"\nflavour = 2"),
        ),
        ("pinn", MINIMAL.replace("allow =", "pinn = 1\nallow =")),
        ("extra", format!("extra = true\n{MINIMAL}")),
    ] {
        let err = parse(&text).expect_err(needle).to_string();
        assert!(err.contains(needle), "{err}");
    }
}

#[test]
fn inconsistent_settings_are_refused() {
    let two_selectors = MINIMAL.replace("token_label = \"sigil\"", "token_label = \"a\"\nslot = 1");
    assert!(
        parse(&two_selectors)
            .expect_err("sel")
            .to_string()
            .contains("exactly one")
    );
    let bad_op = MINIMAL.replace("\"list\"]", "\"lsit\"]");
    assert!(parse(&bad_op).expect_err("op").to_string().contains("lsit"));
    let bad_mode = MINIMAL.replace("[server]", "[server]\nsocket_mode = \"rw\"");
    assert!(parse(&bad_mode).is_err());
    let nobody = MINIMAL.replace("users = [\"root\"]", "");
    assert!(
        parse(&nobody)
            .expect_err("nobody")
            .to_string()
            .contains("names no users")
    );
    let dup = format!("{MINIMAL}\n[[backend]]\nname = \"hsm\"\ntype = \"yubikey\"\nserial = 1\n");
    assert!(parse(&dup).expect_err("dup").to_string().contains("twice"));
    let unknown_type = MINIMAL.replace("type = \"pkcs11\"", "type = \"tpm\"");
    assert!(
        parse(&unknown_type)
            .expect_err("type")
            .to_string()
            .contains("tpm")
    );
}

#[test]
fn adopt_slots_name_sigil_slots_only() {
    let yk = "\n[[backend]]\nname = \"yk\"\ntype = \"yubikey\"\nserial = 1\n";
    let c = parse(&format!(
        "{MINIMAL}{yk}adopt_slots = [\"9c\", \"82\", \"95\"]\n"
    ))
    .expect("ok");
    let BackendConfig::Yubikey(b) = &c.backends[1] else {
        panic!("expected yubikey")
    };
    assert_eq!(b.adopt_slots, vec![0x9c, 0x82, 0x95]);
    assert!(!b.allow_default_management_key);
    for bad in ["9a", "96", "f9", "082", "x"] {
        let err = parse(&format!("{MINIMAL}{yk}adopt_slots = [\"{bad}\"]\n"))
            .expect_err(bad)
            .to_string();
        assert!(err.contains("not a sigil slot"), "{err}");
    }
}

#[test]
fn audit_limits_and_notary_caps_have_defaults_and_must_be_positive() {
    let c = parse(MINIMAL).expect("parse");
    assert_eq!(
        (
            c.server.audit_refusals_per_window,
            c.server.audit_refusal_window_secs
        ),
        (100, 60)
    );
    let zero = MINIMAL.replace("[server]", "[server]\naudit_refusals_per_window = 0");
    assert!(
        parse(&zero)
            .expect_err("zero")
            .to_string()
            .contains("audit_refusals_per_window")
    );
    let ns = "\n[notary_signer]\nlisten = \"127.0.0.1:1\"\ntls_cert = \"/c\"\ntls_key = \"/k\"\n\
              client_ca = \"/ca\"\nbackend = \"hsm\"\nallowed_clients = [\"n\"]\n";
    let c = parse(&format!("{MINIMAL}{ns}")).expect("notary");
    let caps = c.notary_signer.expect("section");
    assert_eq!(
        (
            caps.max_keys,
            caps.max_keys_per_gun,
            caps.max_new_keys_per_hour
        ),
        (1024, 16, 60)
    );
    let zero = format!("{MINIMAL}{ns}max_keys_per_gun = 0\n");
    assert!(
        parse(&zero)
            .expect_err("zero cap")
            .to_string()
            .contains("max_keys_per_gun")
    );
}

#[test]
fn a_management_key_is_named_once() {
    let yk = "\n[[backend]]\nname = \"yk\"\ntype = \"yubikey\"\nserial = 1\n";
    let c = parse(&format!(
        "{MINIMAL}{yk}management_key = \"pin-protected\"\n"
    ))
    .expect("ok");
    let BackendConfig::Yubikey(b) = &c.backends[1] else {
        panic!("expected yubikey")
    };
    assert_eq!(b.management_key, Some(ManagementKeySetting::PinProtected));
    let both = format!("{MINIMAL}{yk}management_key = \"default\"\nmanagement_key_file = \"/k\"\n");
    assert!(
        parse(&both)
            .expect_err("both")
            .to_string()
            .contains("not both")
    );
    let bad = format!("{MINIMAL}{yk}management_key = \"0102\"\n");
    assert!(parse(&bad).is_err());
}

#[test]
fn existing_keys_name_hex_ids_once_with_a_role() {
    let p11 = "\n[[backend]]\nname = \"yk\"\ntype = \"pkcs11\"\nmodule = \"/m.so\"\n\
               token_label = \"t\"\npin_file = \"/p\"\n";
    let c = parse(&format!(
        "{MINIMAL}{p11}existing_keys = [{{ id = \"01\", role = \"root\" }}]\n"
    ))
    .expect("ok");
    let BackendConfig::Pkcs11(b) = &c.backends[1] else {
        panic!("expected pkcs11")
    };
    assert_eq!(b.existing_keys[0].id_bytes().ok(), Some(vec![1]));
    assert_eq!(b.existing_keys[0].gun, "");
    for (bad, says) in [
        (r#"[{ id = "zz", role = "root" }]"#, "not hex"),
        (r#"[{ id = "", role = "root" }]"#, "not hex"),
        (
            r#"[{ id = "01", role = "root" }, { id = "01", role = "targets" }]"#,
            "twice",
        ),
        (r#"[{ id = "01", role = "" }]"#, "needs a role"),
        (
            r#"[{ id = "01", role = "root", slot = 1 }]"#,
            "unknown field",
        ),
    ] {
        let err = parse(&format!("{MINIMAL}{p11}existing_keys = {bad}\n"))
            .expect_err(bad)
            .to_string();
        assert!(err.contains(says), "{bad}: {err}");
    }
}

#[test]
fn sessions_default_to_one_and_are_bounded() {
    let p11 = "\n[[backend]]\nname = \"hsm2\"\ntype = \"pkcs11\"\nmodule = \"/m.so\"\n\
               token_label = \"t\"\npin_file = \"/p\"\n";
    let sessions = |c: &Config| match &c.backends[1] {
        BackendConfig::Pkcs11(b) => b.sessions,
        BackendConfig::Yubikey(_) => panic!("expected pkcs11"),
    };
    assert_eq!(sessions(&parse(&format!("{MINIMAL}{p11}")).expect("ok")), 1);
    let eight = parse(&format!("{MINIMAL}{p11}sessions = 8\n")).expect("ok");
    assert_eq!(sessions(&eight), 8);
    for bad in ["0", "65", "-1", "\"2\""] {
        assert!(
            parse(&format!("{MINIMAL}{p11}sessions = {bad}\n")).is_err(),
            "sessions = {bad} was accepted"
        );
    }
    let err = parse(&format!("{MINIMAL}{p11}sessions = 0\n"))
        .expect_err("0")
        .to_string();
    assert!(err.contains("sessions must be 1 to 64"), "{err}");
}

#[test]
fn resource_limits_have_defaults_and_refuse_zero() {
    let c = parse(MINIMAL).expect("minimal");
    assert_eq!(c.server.max_connections, limits::MAX_CONNECTIONS);
    assert_eq!(
        c.server.max_connections_per_uid,
        limits::MAX_CONNECTIONS_PER_UID
    );
    assert_eq!(
        c.server.max_streams_per_connection,
        limits::MAX_STREAMS_PER_CONNECTION
    );
    match &c.backends[0] {
        BackendConfig::Pkcs11(b) => assert_eq!(b.max_queued_jobs, limits::MAX_QUEUED_JOBS),
        BackendConfig::Yubikey(_) => panic!("expected pkcs11"),
    }
    let set = MINIMAL.replace(
        "[server]",
        "[server]\nmax_connections = 8\nmax_connections_per_uid = 2\nmax_streams_per_connection = 4",
    );
    let c = parse(&set).expect("set");
    assert_eq!(
        (
            c.server.max_connections,
            c.server.max_connections_per_uid,
            c.server.max_streams_per_connection
        ),
        (8, 2, 4)
    );
    for key in [
        "max_connections",
        "max_connections_per_uid",
        "max_streams_per_connection",
    ] {
        let zero = MINIMAL.replace("[server]", &format!("[server]\n{key} = 0"));
        let err = parse(&zero).expect_err(key).to_string();
        assert!(err.contains(key), "{err}");
    }
    let zero_queue = MINIMAL.replace(
        "pin_file = \"/etc/sigil/pins/hsm\"",
        "pin_file = \"/etc/sigil/pins/hsm\"\nmax_queued_jobs = 0",
    );
    let err = parse(&zero_queue).expect_err("queue 0").to_string();
    assert!(err.contains("max_queued_jobs"), "{err}");

    let ns = "\n[notary_signer]\nlisten = \"127.0.0.1:7899\"\ntls_cert = \"/c\"\n\
              tls_key = \"/k\"\nclient_ca = \"/ca\"\nbackend = \"hsm\"\nallowed_clients = [\"n\"]\n";
    let c = parse(&format!("{MINIMAL}{ns}")).expect("notary_signer");
    let n = c.notary_signer.expect("section");
    assert_eq!(n.max_connections, limits::NOTARY_MAX_CONNECTIONS);
    assert_eq!(n.handshake_timeout_secs, limits::HANDSHAKE_TIMEOUT_SECS);
    for bad in ["max_connections = 0", "handshake_timeout_secs = 0"] {
        let err = parse(&format!("{MINIMAL}{ns}{bad}\n"))
            .expect_err(bad)
            .to_string();
        assert!(err.contains(&bad[..bad.len() - 4]), "{err}");
    }
}

#[test]
fn requirements_parse_strictly() {
    let text = format!(
        "{MINIMAL}\n[[require]]\nname = \"root\"\nrole = \"root\"\nattested = true\ntouch = \"always\"\n"
    );
    let c = parse(&text).expect("parse");
    assert_eq!(c.requirements[0].touch, Some(TouchSetting::Always));
    assert!(c.requirements[0].attested);
    let unknown = text.replace("attested = true", "attested = true\npin = \"always\"");
    assert!(
        parse(&unknown)
            .expect_err("unknown")
            .to_string()
            .contains("pin")
    );
    let empty = format!("{MINIMAL}\n[[require]]\nname = \"x\"\ntouch = \"never\"\n");
    assert!(
        parse(&empty)
            .expect_err("nothing")
            .to_string()
            .contains("requires nothing")
    );
    let bad = text.replace("touch = \"always\"", "touch = \"sometimes\"");
    assert!(parse(&bad).is_err());
}

#[test]
fn the_shipped_example_config_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/sigild.toml.example");
    let config = Config::load(&path).expect("daemon/dist/sigild.toml.example must parse");
    assert!(!config.backends.is_empty());
    assert!(!config.policies.is_empty());
}

#[test]
fn sign_metadata_and_the_notary_endpoint_need_a_state_dir_and_metadata_rules_parse() {
    let without = MINIMAL.replace("state_dir = \"/tmp/sigil-state\"\n", "");
    let metadata_rule = without.replace(
        "allow = [\"sign\", \"public\", \"list\"]",
        "allow = [\"sign-metadata\", \"public\"]",
    );
    let err = parse(&metadata_rule).expect_err("no state dir").to_string();
    assert!(
        err.contains("allows \"sign-metadata\": set [server] state_dir"),
        "{err}"
    );
    let ns = "\n[notary_signer]\nlisten = \"127.0.0.1:1\"\ntls_cert = \"/c\"\ntls_key = \"/k\"\n\
              client_ca = \"/ca\"\nbackend = \"hsm\"\nallowed_clients = [\"n\"]\n";
    let err = parse(&format!("{without}{ns}"))
        .expect_err("no state dir")
        .to_string();
    assert!(
        err.contains("[notary_signer] needs [server] state_dir"),
        "{err}"
    );

    let rules = "\n[[metadata]]\nrole = \"timestamp\"\nmax_expires = \"1d\"\n\
                 \n[[metadata]]\nrole = \"targets/*\"\ngun = \"example.com/*\"\n\
                 max_expires = \"90d\"\npaths = [\"releases/*\"]\n";
    let c = parse(&format!("{MINIMAL}{rules}")).expect("rules");
    assert_eq!(c.metadata.len(), 2);
    assert_eq!(c.metadata[0].gun, "*");
    assert_eq!(c.metadata[1].max_expires.0.as_secs(), 90 * 86_400);
    assert_eq!(
        c.metadata[1].paths.as_deref(),
        Some(&["releases/*".to_owned()][..])
    );
    for bad in [
        "max_expires = \"1y\"",
        "max_expires = \"0d\"",
        "maxexpires = \"1d\"",
    ] {
        let text = format!("{MINIMAL}\n[[metadata]]\nrole = \"root\"\n{bad}\n");
        assert!(parse(&text).is_err(), "{bad} accepted");
    }
    let text = MINIMAL.replace(
        "allow = [\"sign\", \"public\", \"list\"]",
        "allow = [\"sign-metadata\"]",
    );
    let c = parse(&text).expect("sign-metadata with a state dir");
    assert_eq!(c.policies[0].allow, vec![Op::SignMetadata]);
}

#[test]
fn metrics_are_off_by_default_and_listen_is_an_address_or_an_absolute_socket_path() {
    assert_eq!(parse(MINIMAL).expect("parse").metrics, None);
    let with = |table: &str| parse(&format!("{MINIMAL}\n[metrics]\n{table}\n"));
    let tcp = with("listen = \"127.0.0.1:9464\"").expect("tcp");
    assert_eq!(
        tcp.metrics.expect("metrics").endpoint().expect("endpoint"),
        MetricsListen::Tcp("127.0.0.1:9464".parse().expect("addr"))
    );
    let unix =
        with("listen = \"/run/sigil/metrics.sock\"\nsocket_group = \"prometheus\"").expect("unix");
    assert_eq!(
        unix.metrics.expect("metrics").endpoint().expect("endpoint"),
        MetricsListen::Unix("/run/sigil/metrics.sock".into())
    );
    for (table, needle) in [
        ("listen = \"localhost\"", "metrics.listen \"localhost\""),
        ("listen = \"run/metrics.sock\"", "must be absolute"),
        ("listen = \"/run/sigil/\"", "names a directory"),
        ("listen = \"127.0.0.1:99999\"", "metrics.listen"),
        (
            "listen = \"[::1]:9464\"\nsocket_group = \"x\"",
            "metrics.socket_group",
        ),
        ("listen = \"127.0.0.1:9464\"\nport = 1", "port"),
        ("", "listen"),
    ] {
        let err = with(table).expect_err(table).to_string();
        assert!(err.contains(needle), "{table}: {err}");
    }
}
