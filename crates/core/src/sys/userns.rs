//! Which user namespace privy runs in, and who owns it: whether the hook is
//! real root (the initial user namespace, euid 0) or root only inside a
//! rootless engine's user namespace, and the host uid that namespace maps
//! this process's real uid to. The kernel's word, not the environment's:
//! `/proc/self/ns/user`, `/proc/self/uid_map`, and the owner the kernel
//! shows for a file whose host owner is known.

use std::os::fd::AsRawFd;

/// The inode of the initial user namespace (`PROC_USER_INIT_INO` in
/// `include/linux/proc_ns.h`, fixed since Linux 3.8).
pub const INIT_USER_NS_INO: u64 = 0xEFFF_FFFD;

fn ino(fd: &impl AsRawFd) -> Option<u64> {
    nix::sys::stat::fstat(fd.as_raw_fd())
        .ok()
        .map(|st| st.st_ino)
}

fn own_userns() -> Option<std::fs::File> {
    std::fs::File::open("/proc/self/ns/user").ok()
}

/// Whether this process is in the initial user namespace.
pub fn in_initial_userns() -> bool {
    own_userns().and_then(|f| ino(&f)) == Some(INIT_USER_NS_INO)
}

/// Whether this process is real root: euid 0 in the initial user
/// namespace. Root inside a rootless engine's namespace is not.
pub fn is_real_root() -> bool {
    nix::unistd::geteuid().is_root() && in_initial_userns()
}

/// `id` inside a namespace mapped to its parent through `map` (the text of
/// a `uid_map` or `gid_map`); `None` when no line maps it.
pub fn map_out(id: u32, map: &str) -> Option<u32> {
    map.lines().find_map(|l| {
        let f: Vec<u64> = l
            .split_whitespace()
            .map(|x| x.parse().ok())
            .collect::<Option<_>>()?;
        let [inside, outside, count] = f[..] else {
            return None;
        };
        let off = (id as u64).checked_sub(inside)?;
        (off < count)
            .then(|| u32::try_from(outside + off).ok())
            .flatten()
    })
}

/// The host uid of this process's real uid: itself in the initial user
/// namespace; otherwise what `/proc/self/uid_map` maps it to, confirmed by
/// the kernel; `None` when it cannot be confirmed.
///
/// `uid_map` maps to the parent namespace, which is the host only one level
/// down (a rootless engine's namespace). A namespace nested deeper maps to
/// its parent's ids, and its creator wrote that map freely (`0 0 1` inside
/// a rootless namespace would read as host root). So the claim is checked
/// against a file whose host owner is known: the claimed user's home
/// directory (from the user database) must appear owned by this process's
/// uid. The kernel shows a file's owner translated into this namespace, and
/// the translation is one-to-one, so that holds exactly when this uid is
/// that host user. A user without a home directory of their own is not
/// confirmed: an unknown caller gets no `when.users` source.
pub fn host_uid() -> Option<u32> {
    let uid = nix::unistd::getuid().as_raw();
    if in_initial_userns() {
        return Some(uid);
    }
    let claimed = map_out(uid, &std::fs::read_to_string("/proc/self/uid_map").ok()?)?;
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(claimed)).ok()??;
    confirms(&user.dir, uid).then_some(claimed)
}

/// Whether `path` (not followed) appears owned by `uid` in this namespace.
fn confirms(path: &std::path::Path, uid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    path.is_absolute() && std::fs::symlink_metadata(path).is_ok_and(|m| m.uid() == uid)
}

/// The host uid that owns the user namespace process `pid` is in: the
/// euid of whoever created it (`NS_GET_OWNER_UID` on `/proc/PID/ns/user`,
/// translated into this process's namespace). A rootless engine's
/// containers live in a namespace their user created; only that user (or
/// root) can create one owned by that uid. `None` when the namespace
/// cannot be opened (no such process, or no right to look) or is the
/// initial one, which no user owns.
pub fn owner_of(pid: i32) -> Option<u32> {
    // `_IO(0xb7, 0x4)` in `include/uapi/linux/nsfs.h`.
    const NS_GET_OWNER_UID: libc::c_ulong = 0xb704;
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/user")).ok()?;
    if ino(&ns) == Some(INIT_USER_NS_INO) {
        return None;
    }
    let mut uid: libc::uid_t = 0;
    // SAFETY: NS_GET_OWNER_UID writes one uid_t through the pointer, which
    // points at a live local of that type.
    let r = unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_OWNER_UID as _, &mut uid) };
    (r == 0).then_some(uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_map_out_through_the_lines_that_cover_them() {
        let rootless = "         0       1001          1\n         1     100000      65536\n";
        assert_eq!(map_out(0, rootless), Some(1001));
        assert_eq!(map_out(1, rootless), Some(100000));
        assert_eq!(map_out(65536, rootless), Some(165535));
        assert_eq!(map_out(65537, rootless), None);
        assert_eq!(map_out(0, "0 0 4294967295\n"), Some(0));
        assert_eq!(map_out(5, "garbage\n"), None);
        assert_eq!(map_out(5, ""), None);
    }

    #[test]
    fn a_claim_is_confirmed_only_by_a_file_the_kernel_shows_as_ours() {
        let d = tempfile::tempdir().unwrap();
        let me = nix::unistd::getuid().as_raw();
        assert!(confirms(d.path(), me));
        assert!(!confirms(d.path(), me.wrapping_add(1)));
        assert!(!confirms(std::path::Path::new("relative"), me));
        assert!(!confirms(&d.path().join("missing"), me));
    }

    #[test]
    fn a_namespace_a_user_made_is_owned_by_that_user_and_the_initial_one_by_nobody() {
        assert_eq!(owner_of(std::process::id() as i32), None);
        assert_eq!(owner_of(-1), None);
        if !in_initial_userns() {
            return;
        }
        // `unshare --user` as this uid: its namespace is ours.
        let mut c = match std::process::Command::new("unshare")
            .args(["--user", "sleep", "30"])
            .spawn()
        {
            Ok(c) => c,
            Err(_) => return,
        };
        let pid = c.id() as i32;
        let me = nix::unistd::geteuid().as_raw();
        let mut got = None;
        for _ in 0..200 {
            got = owner_of(pid);
            if got.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let _ = c.kill();
        let _ = c.wait();
        assert_eq!(got, Some(me));
    }

    #[test]
    fn this_test_process_knows_its_namespace() {
        // The tests run on the host (CI as root): the initial namespace.
        let init = in_initial_userns();
        assert_eq!(
            host_uid(),
            init.then(|| nix::unistd::getuid().as_raw()),
            "in the initial namespace the host uid is the uid"
        );
        if init {
            assert_eq!(is_real_root(), nix::unistd::geteuid().is_root());
        }
    }
}
