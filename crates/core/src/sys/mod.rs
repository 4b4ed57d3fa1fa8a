//! The operating system beneath everything else: thin, safe wrappers over
//! the Linux calls privy needs that `nix` does not cover, and the few
//! process- and file-level habits every part of privy shares. Nothing here
//! knows about containers, configs or plugins.
//!
//! - [`resolve`]: `openat2` (confined path resolution), directory handles,
//!   a file's mount id (`statx`), reading a symlink by handle.
//! - [`mount`]: the new mount API (`fsopen`, `fsconfig`, `fsmount`,
//!   `mount_setattr`, `move_mount`).
//! - [`mountinfo`]: the kernel's mount tables, and where a mount would
//!   propagate.
//! - [`process`]: hardening (not dumpable, no core), locked memory, signal
//!   dispositions, the exit-like-a-signal, peak RSS.
//! - [`fs`]: files and directories privy reads or writes on disk: regular
//!   files opened without blocking, one atomic replace, one private temp
//!   directory, one directory-tree creation.
//! - [`userns`]: real root or root in a rootless engine's user namespace,
//!   and the host uid that owns it.

pub mod fs;
pub mod mount;
pub mod mountinfo;
pub mod process;
pub mod resolve;
pub mod selinux;
pub mod userns;

/// The current time in whole unix seconds (0 before 1970).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub use fs::{read_regular_at, write_atomic, write_atomic_at, WriteOpts};
pub use mount::{
    mount_setattr, move_mount, FsContext, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID,
    MOUNT_ATTR_RDONLY,
};
pub use resolve::{
    mount_id, open_dir_path, openat2, readlink_fd, RESOLVE_BENEATH, RESOLVE_IN_ROOT,
    RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS,
};

use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

pub(crate) fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

pub(crate) fn fd_result(ret: libc::c_long) -> io::Result<OwnedFd> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        // SAFETY: the kernel just returned this new descriptor to us.
        Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
    }
}

pub(crate) fn unit_result(ret: libc::c_long) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
