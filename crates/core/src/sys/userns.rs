//! Which user namespace privy runs in, and who owns it: whether the hook is
//! real root (the initial user namespace, euid 0) or root only inside a
//! rootless engine's user namespace, and the host uid that namespace maps
//! this process's real uid to. The kernel's word, not the environment's:
//! `/proc/self/ns/user`, its parent (`NS_GET_PARENT`) and
//! `/proc/self/uid_map`.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The inode of the initial user namespace (`PROC_USER_INIT_INO` in
/// `include/linux/proc_ns.h`, fixed since Linux 3.8).
pub const INIT_USER_NS_INO: u64 = 0xEFFF_FFFD;

/// `NS_GET_PARENT`: `_IO(0xb7, 0x2)`.
const NS_GET_PARENT: libc::c_ulong = 0xb702;

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

/// Whether this process's user namespace is a child of the initial one.
fn parent_is_initial() -> bool {
    let Some(ns) = own_userns() else {
        return false;
    };
    // SAFETY: ioctl on a namespace fd we own; the request takes no argument.
    let fd = unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_PARENT) };
    if fd < 0 {
        return false;
    }
    // SAFETY: NS_GET_PARENT returned a new fd that nothing else owns.
    let parent = unsafe { OwnedFd::from_raw_fd(fd) };
    ino(&parent) == Some(INIT_USER_NS_INO)
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
/// namespace; mapped through `/proc/self/uid_map` in a namespace one level
/// below it (a rootless engine's); `None` deeper down. A nested namespace
/// maps its ids to its parent's, not the host's, and its creator chose that
/// map freely (`0 0 1` inside a rootless namespace would read as host
/// root), so privy does not guess: an unknown caller matches no
/// `when.users`.
pub fn host_uid() -> Option<u32> {
    let uid = nix::unistd::getuid().as_raw();
    if in_initial_userns() {
        return Some(uid);
    }
    if !parent_is_initial() {
        return None;
    }
    map_out(uid, &std::fs::read_to_string("/proc/self/uid_map").ok()?)
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
