//! Where the daemon listens and who connects: the socket and its
//! directory, systemd's inherited socket, and each connection's caller.
//!
//! The socket is the permission boundary: it is 0666, every local user may
//! upload, and the daemon tells callers apart by the kernel's word for the
//! connection (`SO_PEERCRED`, `SO_PEERGROUPS`), never by anything in a
//! request. So the directory that holds it must be searchable by every
//! user, whatever created it first (B6).

use super::store::Caller;
use super::DaemonError;
use crate::config::Config;
use std::path::{Path, PathBuf};

/// Where the daemon listens.
pub enum Listen {
    /// Bind this path (0666: every uid may upload; tickets are per uid).
    Path(PathBuf),
    /// A socket systemd passed (`LISTEN_FDS`).
    Inherited(std::os::unix::net::UnixListener),
}

impl Listen {
    /// The socket systemd passed, if this process was socket-activated.
    pub fn from_systemd() -> Option<Listen> {
        let pid: u32 = std::env::var("LISTEN_PID").ok()?.parse().ok()?;
        let fds: u32 = std::env::var("LISTEN_FDS").ok()?.parse().ok()?;
        if pid != std::process::id() || fds < 1 {
            return None;
        }
        use std::os::fd::FromRawFd;
        // SAFETY: systemd passes fd 3 as a listening socket for this pid; we
        // take ownership of it once, here.
        let l = unsafe { std::os::unix::net::UnixListener::from_raw_fd(3) };
        Some(Listen::Inherited(l))
    }
}

/// Who is on the other end of `s`: uid and gid from `SO_PEERCRED`,
/// supplementary groups from `SO_PEERGROUPS`.
pub fn caller(s: &tokio::net::UnixStream) -> Option<Caller> {
    use std::os::fd::AsRawFd;
    let cred = s.peer_cred().ok()?;
    let fd = s.as_raw_fd();
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut len = (groups.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `groups`.
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let n = len as usize / std::mem::size_of::<libc::gid_t>();
        if r == 0 {
            groups.truncate(n);
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ERANGE) && n > groups.len() && n <= 65_536 {
            groups.resize(n, 0);
            continue;
        }
        // No supplementary groups known: check with fewer rights, never more.
        groups.clear();
        break;
    }
    Some(Caller {
        uid: cred.uid(),
        gid: cred.gid(),
        groups,
    })
}

/// The directories privy owns: its default socket directory and the parent
/// of its state directory (`/run/privy` by default).
fn privy_owned_dir(cfg: &Config, dir: &Path) -> bool {
    Path::new(crate::contract::DEFAULT_SOCKET).parent() == Some(dir)
        || cfg.state_dir.parent() == Some(dir)
}

/// Make sure every local user can reach the socket in `dir` (B6). The
/// socket is the permission boundary (0666; the daemon tells callers apart
/// by `SO_PEERCRED`), so its directory must be searchable by everyone. A
/// missing directory is created 0755. An existing one of privy's own (see
/// [`privy_owned_dir`]) that others cannot search, as a hook before this fix
/// left `/run/privy` (0700), gets the search bits added (`g+x,o+x`, nothing
/// else): that heals such hosts with no operator action, and lists nothing
/// to anyone. A directory the operator chose is theirs: privy does not
/// change it and warns that users who cannot search it cannot upload.
fn ensure_socket_dir(cfg: &Config, dir: &Path) -> Result<(), DaemonError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let fail = |msg: String| DaemonError::SocketDir {
        path: dir.to_owned(),
        msg,
    };
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| fail(e.to_string()))?;
            return Ok(());
        }
        Err(e) => return Err(fail(e.to_string())),
    };
    if !meta.is_dir() {
        return Err(fail("not a directory".into()));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o011 == 0o011 {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if privy_owned_dir(cfg, dir) && meta.uid() == me {
        let fixed = mode | 0o011;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(fixed)).map_err(|e| {
            fail(format!(
                "mode {mode:04o} keeps other users from the socket, and it could not be changed: {e}"
            ))
        })?;
        tracing::info!(
            dir = %dir.display(),
            "made the socket directory searchable by every user (mode {mode:04o} to {fixed:04o})"
        );
    } else {
        tracing::warn!(
            dir = %dir.display(),
            "the socket directory has mode {mode:04o}: users who cannot search it cannot reach the daemon"
        );
    }
    Ok(())
}

pub fn bind(cfg: &Config, path: &Path) -> Result<std::os::unix::net::UnixListener, DaemonError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |error| DaemonError::Socket {
        path: path.to_owned(),
        error,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        ensure_socket_dir(cfg, dir)?;
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => return Err(DaemonError::AlreadyRunning(path.to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        // A socket file nobody listens on: left by a daemon that died.
        Err(_) => std::fs::remove_file(path).map_err(err)?,
    }
    let l = std::os::unix::net::UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).map_err(err)?;
    Ok(l)
}
