//! The API socket: bound by sigild in a directory only it (or root) can change, with its mode
//! and group set without following symbolic links; or adopted from systemd.

use std::fs::File;
use std::os::unix::fs::{
    DirBuilderExt as _, FileTypeExt as _, MetadataExt as _, OpenOptionsExt as _,
};
use std::path::{Path, PathBuf};

use nix::fcntl::AtFlags;
use nix::sys::stat::{FchmodatFlags, Mode, SFlag};
use tokio::net::UnixListener;

use super::Error;
use crate::config::ServerConfig;

/// Binds the API socket: refuses a directory that anyone but sigild's user (or root) owns or
/// that its group or others may write to, replaces only a stale socket (never another file,
/// never a live daemon), then sets mode and group on the socket itself, never through a
/// symbolic link planted in its place.
pub fn bind(server: &ServerConfig) -> Result<UnixListener, Error> {
    let mode = server.socket_mode_bits().map_err(|e| Error::Refused {
        path: server.socket.clone(),
        reason: e.to_string(),
    })?;
    bind_socket(&server.socket, mode, server.socket_group.as_deref())
}

/// [`bind`] for any socket sigild owns (the API socket, the metrics socket): the same checks,
/// with `mode` and `group` set on the socket itself.
pub fn bind_socket(path: &Path, mode: u32, group: Option<&str>) -> Result<UnixListener, Error> {
    let io = |what| {
        let path = path.to_owned();
        move |source| Error::Socket { path, what, source }
    };
    let refuse = |reason: String| Error::Refused {
        path: path.to_owned(),
        reason,
    };
    let name = path
        .file_name()
        .ok_or_else(|| refuse("names no file".into()))?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.exists() {
        // Created with its mode (the umask can only narrow it): no window with a wider mode,
        // and no chmod that could follow a link swapped in meanwhile.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
            .map_err(io("creating its directory"))?;
    }
    let dir_fd = open_private_dir(dir).map_err(|e| match e {
        DirProblem::Io(source) => io("opening its directory")(source),
        DirProblem::Unsafe(reason) => refuse(reason),
    })?;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(refuse("another process is serving on it".into()));
            }
            std::fs::remove_file(path).map_err(io("removing the stale socket"))?;
        }
        Ok(_) => {
            return Err(refuse(
                "exists and is not a socket; refusing to remove it".into(),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("checking it")(e)),
    }
    let listener = UnixListener::bind(path).map_err(io("binding"))?;
    let gid = match group {
        Some(group) => Some(
            nix::unistd::Group::from_name(group)
                .ok()
                .flatten()
                .ok_or_else(|| refuse(format!("socket_group {group:?} does not exist")))?
                .gid,
        ),
        None => None,
    };
    restrict(&dir_fd, Path::new(name), mode, gid).map_err(|e| match e {
        DirProblem::Io(source) => io("setting its mode and group")(source),
        DirProblem::Unsafe(reason) => refuse(reason),
    })?;
    Ok(listener)
}

/// Why the socket's directory or the socket itself is not used.
#[derive(Debug)]
enum DirProblem {
    /// A system call failed.
    Io(std::io::Error),
    /// It is not safe to serve there.
    Unsafe(String),
}

impl From<nix::Error> for DirProblem {
    fn from(e: nix::Error) -> Self {
        Self::Io(e.into())
    }
}

/// Opens `dir` and checks, on the opened directory itself, that only sigild's user or root
/// owns it and only the owner may write to it: anyone else who could write there could swap
/// the socket for their own. (A link to the directory is followed, e.g. /var/run -> /run:
/// what matters is who may change the directory the socket lands in.)
fn open_private_dir(dir: &Path) -> Result<File, DirProblem> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_DIRECTORY | nix::libc::O_CLOEXEC)
        .open(dir)
        .map_err(DirProblem::Io)?;
    let meta = file.metadata().map_err(DirProblem::Io)?;
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(DirProblem::Unsafe(format!(
            "directory {} is owned by uid {}, not by sigild's user (uid {me}) or root; use a directory of sigild's own",
            dir.display(),
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(DirProblem::Unsafe(format!(
            "directory {} is writable by its group or others (mode {:04o}); use a private directory",
            dir.display(),
            meta.mode() & 0o7777
        )));
    }
    Ok(file)
}

/// Sets `name`'s mode and group in `dir`, refusing anything but a socket sigild's user owns
/// and never following a symbolic link.
fn restrict(
    dir: &File,
    name: &Path,
    mode: u32,
    gid: Option<nix::unistd::Gid>,
) -> Result<(), DirProblem> {
    let stat = nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    let kind = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
    if kind != SFlag::S_IFSOCK || stat.st_uid != nix::unistd::geteuid().as_raw() {
        return Err(DirProblem::Unsafe(
            "was replaced after binding (not sigild's socket any more); refusing to change it"
                .into(),
        ));
    }
    nix::sys::stat::fchmodat(
        dir,
        name,
        Mode::from_bits_truncate(mode),
        FchmodatFlags::NoFollowSymlink,
    )?;
    if let Some(gid) = gid {
        nix::unistd::fchownat(dir, name, None, Some(gid), AtFlags::AT_SYMLINK_NOFOLLOW)?;
    }
    Ok(())
}

/// Takes over an API socket someone else bound (systemd socket activation: the socket unit
/// sets its path, mode and group).
pub fn adopt(listener: std::os::unix::net::UnixListener) -> Result<UnixListener, Error> {
    let path: PathBuf = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(Path::to_owned))
        .unwrap_or_default();
    let io = |what| {
        let path = path.clone();
        move |source| Error::Socket { path, what, source }
    };
    listener
        .set_nonblocking(true)
        .map_err(io("making the passed socket non-blocking"))?;
    UnixListener::from_std(listener).map_err(io("adopting the passed socket"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn a_link_planted_in_place_of_the_socket_is_not_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("secret");
        std::fs::write(&target, "x").expect("write");
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        std::os::unix::fs::symlink(&target, dir.path().join("s.sock")).expect("symlink");
        let dir_fd = open_private_dir(dir.path()).expect("a private dir");
        let done = restrict(&dir_fd, Path::new("s.sock"), 0o666, None);
        assert!(matches!(done, Err(DirProblem::Unsafe(_))), "{done:?}");
        let mode = std::fs::metadata(&target).expect("stat").mode() & 0o777;
        assert_eq!(mode, 0o600, "the link's target was changed");
    }

    #[test]
    fn a_directory_others_could_write_to_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        for mode in [0o770, 0o757, 0o1777] {
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode))
                .expect("chmod");
            assert!(
                matches!(open_private_dir(dir.path()), Err(DirProblem::Unsafe(_))),
                "mode {mode:o} accepted"
            );
        }
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))
            .expect("chmod");
        open_private_dir(dir.path()).expect("0711 is private");
    }
}
