//! `sigild --dev DIR`: the embedded default for demos and tests. It creates (or reuses) a
//! throwaway SoftHSM2 token under DIR with random PINs in 0600 files and writes a config that
//! serves `DIR/sigild.sock` to the user who started it. Never for production.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::session::UserType;
use rand::distr::{Alphanumeric, SampleString as _};
use zeroize::Zeroizing;

use crate::secret::Pin;

/// Label of the dev token.
pub const TOKEN_LABEL: &str = "sigil-dev";
/// Where SoftHSM2's module is found on common distributions.
const SOFTHSM_MODULES: [&str; 4] = [
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
];

/// Why the dev environment could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// SoftHSM2 is not installed.
    #[error("SoftHSM2 not found (looked in {0}): apt-get install -y softhsm2")]
    SoftHsmMissing(String),
    /// A file or directory could not be made.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// DIR (or a file sigild would reuse from it) could have been prepared by someone else.
    #[error("refusing {path}: {why} (sigild --dev only uses a directory of its own)")]
    NotOurs {
        /// The directory or file.
        path: PathBuf,
        /// Owner or mode.
        why: String,
    },
    /// Initialising the token failed.
    #[error("initialising the SoftHSM token: {0}")]
    Token(String),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error + use<> {
    let path = path.to_owned();
    move |source| Error::Io { what, path, source }
}

/// The SoftHSM2 module on this machine.
pub fn softhsm_module() -> Result<PathBuf, Error> {
    SOFTHSM_MODULES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| Error::SoftHsmMissing(SOFTHSM_MODULES.join(", ")))
}

/// Prepares DIR and returns the config path to serve with. SoftHSM reads its configuration
/// from `SOFTHSM2_CONF` at load time, so when that does not point into DIR yet the process
/// re-executes itself with it set (this only returns in the re-executed process).
pub fn prepare(dir: &Path) -> Result<PathBuf, Error> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(dir)
            .map_err(io("creating", dir))?;
    }
    let dir = dir.canonicalize().map_err(io("resolving", dir))?;
    check_ours(&dir)?;
    for reused in ["softhsm2.conf", "sigild.toml", "tokens"] {
        let path = dir.join(reused);
        if path.symlink_metadata().is_ok() {
            check_ours(&path)?;
        }
    }
    let module = softhsm_module()?;
    let tokens = dir.join("tokens");
    if !tokens.exists() {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&tokens)
            .map_err(io("creating", &tokens))?;
    }
    let softhsm_conf = dir.join("softhsm2.conf");
    if !softhsm_conf.exists() {
        let text = format!(
            "# Written by sigild --dev: a throwaway token store.\n\
             directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
            tokens.display()
        );
        std::fs::write(&softhsm_conf, text).map_err(io("writing", &softhsm_conf))?;
    }
    if std::env::var_os("SOFTHSM2_CONF").as_deref() != Some(softhsm_conf.as_os_str()) {
        let exe = std::env::current_exe().map_err(io("locating", Path::new("sigild")))?;
        let err = std::process::Command::new(&exe)
            .args(std::env::args_os().skip(1))
            .env("SOFTHSM2_CONF", &softhsm_conf)
            .exec();
        return Err(io("re-executing", &exe)(err));
    }
    let config = dir.join("sigild.toml");
    if !config.exists() {
        let pin_file = dir.join("user.pin");
        init_token(&module, &dir, &pin_file)?;
        write_config(&config, &dir, &module, &pin_file)?;
    }
    eprintln!(
        "sigild (dev): throwaway SoftHSM token {TOKEN_LABEL:?} under {dir}\n\
         sigild (dev): point the CLI at it with:  export SIGIL_SOCKET={sock}",
        dir = dir.display(),
        sock = dir.join("sigild.sock").display()
    );
    Ok(config)
}

/// DIR's config, token store and softhsm2.conf are used as found, so DIR and what is reused in
/// it must be the caller's and writable by nobody else: otherwise another local user could have
/// written a config (a policy, a socket, a PKCS#11 module) for sigild to run with.
fn check_ours(path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = path.symlink_metadata().map_err(io("inspecting", path))?;
    let refuse = |why: String| {
        Err(Error::NotOurs {
            path: path.to_owned(),
            why,
        })
    };
    if meta.file_type().is_symlink() {
        return refuse("it is a symlink".into());
    }
    let uid = nix::unistd::geteuid().as_raw();
    if meta.uid() != uid {
        return refuse(format!("owned by uid {}, not by uid {uid}", meta.uid()));
    }
    if meta.mode() & 0o022 != 0 {
        return refuse(format!(
            "writable by group or others (mode {:o})",
            meta.mode() & 0o777
        ));
    }
    Ok(())
}

fn random_pin() -> Zeroizing<String> {
    Zeroizing::new(Alphanumeric.sample_string(&mut rand::rng(), 24))
}

fn write_secret(path: &Path, secret: &str) -> Result<(), Error> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io("creating", path))?;
    file.write_all(secret.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .map_err(io("writing", path))
}

fn init_token(module: &Path, dir: &Path, pin_file: &Path) -> Result<(), Error> {
    let err = |e: cryptoki::error::Error| Error::Token(e.to_string());
    let so_pin = random_pin();
    let user_pin = random_pin();
    write_secret(&dir.join("so.pin"), &so_pin)?;
    write_secret(pin_file, &user_pin)?;
    let so_pin = Pin::new(so_pin);
    let user_pin = Pin::new(user_pin);
    let ctx = Pkcs11::new(module).map_err(err)?;
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .map_err(err)?;
    let free = ctx
        .get_all_slots()
        .map_err(err)?
        .into_iter()
        .find(|s| {
            ctx.get_token_info(*s)
                .map(|i| !i.token_initialized())
                .unwrap_or(false)
        })
        .ok_or_else(|| Error::Token("no free SoftHSM slot".into()))?;
    ctx.init_token(free, so_pin.as_auth_pin(), TOKEN_LABEL)
        .map_err(err)?;
    // SoftHSM moves an initialised token to a new slot id: find it again by label.
    let slot = ctx
        .get_slots_with_initialized_token()
        .map_err(err)?
        .into_iter()
        .find(|s| {
            ctx.get_token_info(*s)
                .map(|i| i.label().trim_end() == TOKEN_LABEL)
                .unwrap_or(false)
        })
        .ok_or_else(|| Error::Token("initialised token not found".into()))?;
    let session = ctx.open_rw_session(slot).map_err(err)?;
    session
        .login(UserType::So, Some(so_pin.as_auth_pin()))
        .map_err(err)?;
    session.init_pin(user_pin.as_auth_pin()).map_err(err)?;
    session.logout().map_err(err)?;
    drop(session);
    ctx.finalize().map_err(err)
}

fn toml_str(s: &Path) -> String {
    toml::Value::String(s.display().to_string()).to_string()
}

fn write_config(config: &Path, dir: &Path, module: &Path, pin_file: &Path) -> Result<(), Error> {
    let uid = nix::unistd::getuid().as_raw();
    let text = format!(
        r#"# Written by `sigild --dev`: a throwaway SoftHSM token for demos and tests.
# Never use this for production keys.

[server]
socket = {socket}
# Dev only: any local user may connect, so the demo can show the policy refusing one.
socket_mode = "0666"
audit_log = {audit}
# Version floors of sign-metadata and the lock that keeps a second sigild out.
state_dir = {state}

[[backend]]
name = "softhsm"
type = "pkcs11"
module = {module}
token_label = "{TOKEN_LABEL}"
pin_file = {pin}

# The user who started `sigild --dev` may do everything; nobody else may do anything.
[[policy]]
name = "dev-owner"
uids = [{uid}]
keys = [{{ gun = "*", role = "*" }}]
allow = ["sign", "public", "list", "generate", "delete"]
"#,
        socket = toml_str(&dir.join("sigild.sock")),
        audit = toml_str(&dir.join("audit.jsonl")),
        state = toml_str(&dir.join("state")),
        module = toml_str(module),
        pin = toml_str(pin_file),
    );
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(config)
        .map_err(io("creating", config))?;
    file.write_all(text.as_bytes())
        .map_err(io("writing", config))
}
