//! Confined path resolution: `openat2` and its `RESOLVE_*` flags, `O_PATH`
//! directory handles, and what a handle is (its mount id, a symlink's
//! text), so nothing privy opens inside a container root can be led out of
//! it by a symlink or `..` (L4).

use super::{cstr, fd_result};
use std::io;
use std::os::fd::{OwnedFd, RawFd};

/// Resolve as if the dirfd were `/`: symlinks and `..` cannot leave it.
pub const RESOLVE_IN_ROOT: u64 = 0x10;
/// Fail if resolution would leave the dirfd.
pub const RESOLVE_BENEATH: u64 = 0x08;
/// No `/proc/self/fd`-style magic links.
pub const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
/// No symlinks at all.
pub const RESOLVE_NO_SYMLINKS: u64 = 0x04;

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// `openat2(dir, path, flags | O_CLOEXEC, mode, resolve)`.
pub fn openat2(dir: RawFd, path: &str, flags: i32, mode: u32, resolve: u64) -> io::Result<OwnedFd> {
    let p = cstr(path)?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: mode as u64,
        resolve,
    };
    loop {
        // SAFETY: valid C string and a correctly sized open_how.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir,
                p.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        match fd_result(ret) {
            Err(e)
                if e.raw_os_error() == Some(libc::EAGAIN)
                    || e.raw_os_error() == Some(libc::EINTR) =>
            {
                continue
            }
            r => return r,
        }
    }
}

/// Open a directory by absolute path as an `O_PATH` handle.
pub fn open_dir_path(path: &std::path::Path) -> io::Result<OwnedFd> {
    let p = cstr(&path.to_string_lossy())?;
    // SAFETY: valid C string.
    let fd = unsafe {
        libc::open(
            p.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    fd_result(fd as libc::c_long)
}

/// The id of the mount `fd` lies on (`statx` `STATX_MNT_ID`), the number
/// that `/proc/PID/mountinfo` lists first.
pub fn mount_id(fd: RawFd) -> io::Result<u64> {
    // SAFETY: an all-zero statx is a valid value to be overwritten.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    let empty = c"";
    // SAFETY: valid fd, empty C string with AT_EMPTY_PATH, a statx to fill.
    let ret = unsafe {
        libc::statx(
            fd,
            empty.as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_MNT_ID,
            &mut stx,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    if stx.stx_mask & libc::STATX_MNT_ID == 0 {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the kernel does not report mount ids (statx STATX_MNT_ID, Linux 5.8+)",
        ));
    }
    Ok(stx.stx_mnt_id)
}

/// The target of the symlink an `O_PATH|O_NOFOLLOW` descriptor refers to.
pub fn readlink_fd(fd: RawFd) -> io::Result<String> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    let empty = c"";
    // SAFETY: valid fd and empty C string (readlinkat on the fd itself), a
    // buffer of the given length.
    let n = unsafe { libc::readlinkat(fd, empty.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    String::from_utf8(buf)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "symlink target is not UTF-8"))
}
