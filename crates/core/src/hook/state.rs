//! Where the hook keeps what poststop needs (the directories createRuntime
//! created in a rootfs), per container.
//!
//! Real root (euid 0 in the initial user namespace) uses the config's
//! `state_dir` (`/run/privy/state`). A hook that is not real root (a
//! rootless engine's: root only inside the user's namespace) may not write
//! there and must never trust a directory it does not own, so it uses, for
//! the host user `U` that owns its namespace, the first of:
//!
//! 1. `/run/user/U/privy/state`, when `/run/user/U` exists and is ours:
//!    the `XDG_RUNTIME_DIR` systemd-logind makes for every user with a
//!    session (a tmpfs, 0700);
//! 2. `/tmp/privy-state-U`.
//!
//! Neither is read from the environment, on purpose: podman 4.3 runs a
//! rootless container's poststop hooks with an empty environment (measured:
//! only `PWD`), so a place derived from `$XDG_RUNTIME_DIR` or `$TMPDIR` at
//! createRuntime would be lost at poststop. Both are derived from the
//! kernel's word (the host uid) and fixed paths, so poststop finds the
//! state createRuntime wrote.
//!
//! Every directory privy creates there is 0700, and every one it uses
//! (created or found) must be a real directory (no symlink) owned by this
//! process's euid and not writable by group or others; anything else is
//! refused with its path, never followed (the temp dir is shared: a name
//! planted there by another user is refused, not used). Neither place has
//! to be a tmpfs: the state names only the container's rootfs and the
//! empty directories made to mount on, never a private file's name or
//! bytes (L1), so it may lie on disk as `/run` and `/tmp` do on some hosts.

use crate::config::Config;
use std::io;
use std::path::{Path, PathBuf};

/// The state directories this process may use, best first, for a hook
/// that is (`real_root`) or is not real root, whose namespace the host
/// user `uid` owns. `run_user` is `/run/user`, `tmp` is `/tmp` (parameters
/// for tests).
pub fn candidates(
    cfg_state_dir: &Path,
    real_root: bool,
    run_user: &Path,
    tmp: &Path,
    uid: u32,
) -> Vec<PathBuf> {
    if real_root {
        return vec![cfg_state_dir.to_path_buf()];
    }
    vec![
        run_user.join(uid.to_string()).join("privy").join("state"),
        tmp.join(format!("privy-state-{uid}")),
    ]
}

/// [`candidates`] for this process.
pub fn candidates_here(cfg: &Config) -> Vec<PathBuf> {
    let euid = nix::unistd::geteuid().as_raw();
    candidates(
        &cfg.state_dir,
        crate::sys::userns::is_real_root(),
        Path::new("/run/user"),
        Path::new("/tmp"),
        crate::sys::userns::host_uid().unwrap_or(euid),
    )
}

/// Whether `dir` is one this process may keep state in: a directory, not a
/// symlink, owned by the euid, not writable by group or others.
pub fn check_owned(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(dir)?;
    let euid = nix::unistd::geteuid().as_raw();
    let why = if !m.file_type().is_dir() {
        Some("is not a directory (or is a symlink)".to_string())
    } else if m.uid() != euid {
        Some(format!(
            "is owned by uid {}, not by this hook ({euid})",
            m.uid()
        ))
    } else if m.mode() & 0o022 != 0 {
        Some(format!(
            "has mode {:04o}: others may write it",
            m.mode() & 0o7777
        ))
    } else {
        None
    };
    match why {
        None => Ok(()),
        Some(w) => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{w}; refusing to keep hook state there"),
        )),
    }
}

/// Create (0700) or find `dir` and every missing directory between `base`
/// (which must exist and pass [`check_owned`]) and it, each checked.
fn ensure_private(base: &Path, dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    check_owned(base)?;
    let rel = dir.strip_prefix(base).map_err(io::Error::other)?;
    let mut at = base.to_path_buf();
    for c in rel.components() {
        at.push(c);
        match std::fs::DirBuilder::new().mode(0o700).create(&at) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        check_owned(&at)?;
    }
    Ok(())
}

/// The directory to write this container's state in, created if missing:
/// the first candidate that works. The error is the first candidate's.
pub fn dir_for_writing(cfg: &Config) -> Result<PathBuf, (PathBuf, io::Error)> {
    let cands = candidates_here(cfg);
    if crate::sys::userns::is_real_root() {
        let d = cands[0].clone();
        return crate::sys::fs::ensure_dir(&d, 0o700)
            .map(|()| d.clone())
            .map_err(|e| (d, e));
    }
    let mut first = None;
    for d in cands {
        // `/run/user/U` (two levels up) must already be the user's; the
        // temp dir's own entry is made or checked by `create_in_tmp`.
        let res = if d.ends_with("privy/state") {
            let base = d.parent().and_then(Path::parent).unwrap_or(&d);
            ensure_private(base, &d)
        } else {
            create_in_tmp(&d)
        };
        match res {
            Ok(()) => return Ok(d),
            Err(e) => {
                first.get_or_insert((d, e));
            }
        }
    }
    Err(first.expect("at least one candidate"))
}

/// `dir` directly in the (sticky, shared) temp dir: made 0700 by us, or
/// found and checked; never a name someone else planted.
fn create_in_tmp(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    check_owned(dir)
}

/// Where poststop finds the state of container `file` (`<id>.json`): the
/// first candidate that has it and is ours.
pub fn find(cfg: &Config, file: &str) -> Option<PathBuf> {
    candidates_here(cfg)
        .into_iter()
        .filter(|d| crate::sys::userns::is_real_root() || check_owned(d).is_ok())
        .map(|d| d.join(file))
        .find(|p| p.exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_root_uses_the_config_others_their_run_user_dir_then_tmp() {
        let cfg = Path::new("/run/privy/state");
        let (ru, tmp) = (Path::new("/run/user"), Path::new("/tmp"));
        assert_eq!(
            candidates(cfg, true, ru, tmp, 0),
            vec![PathBuf::from("/run/privy/state")]
        );
        assert_eq!(
            candidates(cfg, false, ru, tmp, 1001),
            vec![
                PathBuf::from("/run/user/1001/privy/state"),
                PathBuf::from("/tmp/privy-state-1001")
            ]
        );
    }

    #[test]
    fn a_state_dir_someone_else_could_write_or_a_symlink_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let base = d.path().join("xdg");
        std::fs::create_dir(&base).unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700)).unwrap();
        let state = base.join("privy/state");
        ensure_private(&base, &state).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&base.join("privy")), 0o700);
        assert_eq!(mode(&state), 0o700);
        // Again: found and accepted.
        ensure_private(&base, &state).unwrap();
        // Writable by others: refused, named.
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = ensure_private(&base, &state).unwrap_err().to_string();
        assert!(e.contains("others may write"), "{e}");
        // A symlink planted where the dir should be: refused, not followed.
        let other = d.path().join("elsewhere");
        std::fs::create_dir(&other).unwrap();
        let planted = d.path().join("privy-state-7");
        std::os::unix::fs::symlink(&other, &planted).unwrap();
        let e = create_in_tmp(&planted).unwrap_err().to_string();
        assert!(e.contains("symlink"), "{e}");
    }
}
