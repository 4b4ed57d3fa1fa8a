//! Filesystem checks made with a caller's own rights, not the daemon's.
//!
//! The daemon runs as root (with `CAP_DAC_READ_SEARCH` under systemd), and a
//! ticket's owner tells it where the claiming container's bundle is. If the
//! daemon looked that path up as root, the ticket's fate would tell any
//! local user whether a file exists in a directory they cannot read (B10:
//! claim your own ticket with `{"bundle":"/root/x"}`, and two seconds later
//! the ticket is either alive or "removed"). So a path a non-root caller
//! named is looked up with that caller's uid, gid and supplementary groups,
//! and answers only what the caller could have learnt with `stat` itself.
//!
//! How: a short-lived thread switches its *filesystem* ids (`setfsuid`,
//! `setfsgid`, and `setgroups` by raw syscall, which unlike glibc's wrapper
//! changes only the calling thread) and then does the lookups. Changing the
//! fsuid from 0 drops `CAP_DAC_OVERRIDE`, `CAP_DAC_READ_SEARCH` and the other
//! filesystem capabilities from that thread's effective set, so the kernel
//! applies the caller's permissions exactly. The thread ends right after, so
//! no other work ever runs with borrowed credentials, and nothing has to be
//! switched back. Paths root named (the hook) are looked up as they were.
//! The node agent reads a user's container bundle the same way.

use super::store::Caller;
use std::path::PathBuf;

/// Whether each claimant's lifetime path ([`crate::engines::lifetime`])
/// exists as seen by `caller`.
pub fn bundles_exist(caller: &Caller, anchors: &[PathBuf]) -> Vec<bool> {
    let look = || -> Vec<bool> {
        anchors
            .iter()
            .map(|a| crate::engines::lifetime::exists(a))
            .collect()
    };
    as_caller_do(caller, look).unwrap_or_else(|| {
        // Fail closed: a path that cannot be checked with the caller's
        // rights counts as gone (its run ticket is dropped), never as
        // checked with the daemon's.
        tracing::warn!(
            uid = caller.uid,
            "could not take a claimant's filesystem ids to check its container; treating it as removed"
        );
        vec![false; anchors.len()]
    })
}

/// The path that lives as long as container `id` (bundle `bundle`) does in
/// its engine, read from the bundle with `caller`'s rights; the bundle's
/// `config.json` when that cannot be read as the caller.
pub fn lifetime_anchor(caller: &Caller, bundle: &std::path::Path, id: &str) -> PathBuf {
    as_caller_do(caller, || crate::engines::lifetime::anchor(bundle, id))
        .unwrap_or_else(|| bundle.join("config.json"))
}

/// Run `f` with `caller`'s filesystem rights: on a short-lived thread that
/// took them, or here for root (the hook) and for a daemon without
/// privileges (which can only see what its own uid may). `None` when the
/// ids could not be taken.
pub fn as_caller_do<T: Send>(caller: &Caller, f: impl FnOnce() -> T + Send) -> Option<T> {
    // SAFETY: geteuid has no preconditions.
    let daemon_is_root = unsafe { libc::geteuid() } == 0;
    if caller.uid == 0 || !daemon_is_root {
        return Some(f());
    }
    std::thread::scope(|s| {
        // A small stack: the daemon locks all its memory (mlockall), so a
        // default 2 MiB stack would be resident for the thread's life.
        std::thread::Builder::new()
            .name("privy-as-caller".into())
            .stack_size(128 * 1024)
            .spawn_scoped(s, || as_caller(caller).then(f))
            .ok()?
            .join()
            .ok()
            .flatten()
    })
}

/// Take `caller`'s filesystem ids on this thread only. Returns whether the
/// kernel now checks this thread's file access as `caller`.
fn as_caller(caller: &Caller) -> bool {
    let groups: Vec<libc::gid_t> = caller.groups.clone();
    // SAFETY: raw syscalls with valid arguments; each changes only the
    // credentials of the calling thread (glibc's wrappers would change
    // every thread's for setgroups; the raw calls do not).
    unsafe {
        if libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) != 0 {
            return false;
        }
        libc::syscall(libc::SYS_setfsgid, caller.gid);
        libc::syscall(libc::SYS_setfsuid, caller.uid);
        // setfsuid/setfsgid report the previous id and no error: an
        // invalid id (-1) changes nothing and returns the current one.
        let fsgid = libc::syscall(libc::SYS_setfsgid, u32::MAX) as u32;
        let fsuid = libc::syscall(libc::SYS_setfsuid, u32::MAX) as u32;
        fsuid == caller.uid && fsgid == caller.gid
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn b10_a_root_only_path_does_not_exist_for_another_uid() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIP: b10 rights check needs root to take another uid's ids");
            return;
        }
        let top = tempfile::tempdir().unwrap();
        std::fs::set_permissions(top.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let hidden = top.path().join("x");
        std::fs::create_dir(&hidden).unwrap();
        std::fs::write(hidden.join("config.json"), b"{}").unwrap();
        let hidden = hidden.join("config.json");
        let open = tempfile::tempdir().unwrap();
        std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(open.path().join("config.json"), b"{}").unwrap();
        let open_anchor = open.path().join("config.json");
        let user = Caller {
            uid: 4242,
            gid: 4242,
            groups: vec![],
        };
        let got = bundles_exist(
            &user,
            &[hidden.clone(), open_anchor, top.path().join("none")],
        );
        assert_eq!(got, vec![false, true, false]);
        // Root still sees it, and this thread kept its own rights.
        assert_eq!(
            bundles_exist(&Caller::root(), std::slice::from_ref(&hidden)),
            vec![true]
        );
        assert!(hidden.exists());
        // A Docker bundle the caller cannot read tells it nothing either:
        // the claim falls back to the bundle's config.json, which the
        // caller cannot see, so its ticket ends as it did before.
        let id = "c".repeat(64);
        let dir = open.path().join("containers").join(&id);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("hostname"), b"h").unwrap();
        let bundle = top.path().join("docker");
        std::fs::create_dir(&bundle).unwrap();
        let spec = serde_json::json!({"mounts": [{"destination": "/etc/hostname", "source": dir.join("hostname")}]});
        std::fs::write(bundle.join("config.json"), spec.to_string()).unwrap();
        assert_eq!(
            lifetime_anchor(&user, &bundle, &id),
            bundle.join("config.json")
        );
        assert_eq!(
            lifetime_anchor(&Caller::root(), &bundle, &id),
            dir.join("hostname")
        );
    }
}
