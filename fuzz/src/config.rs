//! sigild's configuration (`sigil_daemon::config`): strict TOML parse and validation, then
//! compiling the policy from it, as sigild does at start-up and on SIGHUP.
//!
//! Properties: nothing panics; a configuration that is accepted upholds what validation
//! promises to the rest of the daemon (a usable socket mode, a message limit above zero, at
//! least one backend, unique non-empty backend names, a notary-signer endpoint on a
//! configured backend with named clients); parsing is deterministic.

use std::collections::HashSet;
use std::path::Path;

use sigil_daemon::config::Config;
use sigil_daemon::policy::Policy;

/// The harness.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.toml");
    let Ok(config) = Config::parse(text, path) else {
        return;
    };
    let mode = config
        .server
        .socket_mode_bits()
        .expect("an accepted config has a valid socket mode");
    assert!(
        mode <= 0o777,
        "socket mode {mode:o} has more than permission bits"
    );
    assert!(config.server.max_message_bytes > 0);
    assert!(!config.backends.is_empty(), "accepted without a backend");
    let mut names = HashSet::new();
    for backend in &config.backends {
        assert!(!backend.name().is_empty(), "accepted an unnamed backend");
        assert!(
            names.insert(backend.name()),
            "accepted backend name {:?} twice",
            backend.name()
        );
    }
    if let Some(ns) = &config.notary_signer {
        assert!(names.contains(ns.backend.as_str()));
        assert!(!ns.allowed_clients.is_empty());
    }
    for rule in &config.policies {
        assert!(
            !(rule.users.is_empty()
                && rule.uids.is_empty()
                && rule.groups.is_empty()
                && rule.gids.is_empty()),
            "accepted policy {:?} that names nobody",
            rule.name
        );
    }
    // Compiling the policy may refuse (unknown user, bad glob) but must not panic.
    let _ = Policy::load(&config);
    let again = Config::parse(text, path).expect("the same text parses again");
    assert_eq!(
        format!("{again:?}"),
        format!("{config:?}"),
        "parsing is not deterministic"
    );
}
