//! Thin, safe wrappers over the Linux syscalls privy needs that `nix` does
//! not cover: `openat2` (confined path resolution), the new mount API
//! (`fsopen`, `fsconfig`, `fsmount`, `mount_setattr`, `move_mount`), a
//! file's mount id (`statx`), and replacing a file atomically in a directory
//! someone else may write to ([`replace_file`]).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Resolve as if the dirfd were `/`: symlinks and `..` cannot leave it.
pub const RESOLVE_IN_ROOT: u64 = 0x10;
/// Fail if resolution would leave the dirfd.
pub const RESOLVE_BENEATH: u64 = 0x08;
/// No `/proc/self/fd`-style magic links.
pub const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
/// No symlinks at all.
pub const RESOLVE_NO_SYMLINKS: u64 = 0x04;

pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;

const FSOPEN_CLOEXEC: u32 = 1;
const FSMOUNT_CLOEXEC: u32 = 1;
const FSCONFIG_SET_FLAG: u32 = 0;
const FSCONFIG_SET_STRING: u32 = 1;
const FSCONFIG_CMD_CREATE: u32 = 6;
const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: u32 = 0x40;

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

fn fd_result(ret: libc::c_long) -> io::Result<OwnedFd> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        // SAFETY: the kernel just returned this new descriptor to us.
        Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
    }
}

fn unit_result(ret: libc::c_long) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
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

/// A filesystem context from `fsopen`, configured then turned into a mount.
pub struct FsContext(OwnedFd);

impl FsContext {
    pub fn open(fstype: &str) -> io::Result<Self> {
        let t = cstr(fstype)?;
        // SAFETY: valid C string.
        fd_result(unsafe { libc::syscall(libc::SYS_fsopen, t.as_ptr(), FSOPEN_CLOEXEC) })
            .map(FsContext)
    }

    pub fn set_string(&self, key: &str, value: &str) -> io::Result<()> {
        let (k, v) = (cstr(key)?, cstr(value)?);
        // SAFETY: valid C strings; aux is unused for SET_STRING.
        unit_result(unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                self.0.as_raw_fd(),
                FSCONFIG_SET_STRING,
                k.as_ptr(),
                v.as_ptr(),
                0,
            )
        })
    }

    pub fn set_flag(&self, key: &str) -> io::Result<()> {
        let k = cstr(key)?;
        // SAFETY: valid C string; value must be NULL for SET_FLAG.
        unit_result(unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                self.0.as_raw_fd(),
                FSCONFIG_SET_FLAG,
                k.as_ptr(),
                std::ptr::null::<libc::c_char>(),
                0,
            )
        })
    }

    /// Create the superblock and return a detached mount with `attrs`.
    pub fn mount(self, attrs: u64) -> io::Result<OwnedFd> {
        // SAFETY: plain integer arguments.
        unit_result(unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                self.0.as_raw_fd(),
                FSCONFIG_CMD_CREATE,
                std::ptr::null::<libc::c_char>(),
                std::ptr::null::<libc::c_char>(),
                0,
            )
        })?;
        // SAFETY: plain integer arguments.
        fd_result(unsafe {
            libc::syscall(
                libc::SYS_fsmount,
                self.0.as_raw_fd(),
                FSMOUNT_CLOEXEC,
                attrs,
            )
        })
    }
}

/// Set `attrs` on the mount `fd` refers to (`mount_setattr`, `AT_EMPTY_PATH`).
pub fn mount_setattr(fd: RawFd, attrs: u64) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let empty = c"";
    // SAFETY: valid empty C string and a correctly sized mount_attr.
    unit_result(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd,
            empty.as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
}

/// Attach the detached mount `from` onto the directory `to`.
pub fn move_mount(from: RawFd, to: RawFd) -> io::Result<()> {
    let empty = c"";
    // SAFETY: valid empty C strings.
    unit_result(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from,
            empty.as_ptr(),
            to,
            empty.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    })
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

/// Read `name` in the directory `dir` whole, refusing anything but a
/// regular file and never following a symlink (so a link planted there
/// cannot make privy read, and later copy, another file).
pub fn read_regular_at(
    dir: RawFd,
    name: &str,
    max: u64,
) -> io::Result<(Vec<u8>, std::fs::Metadata)> {
    use std::io::Read;
    let fd = openat2(
        dir,
        name,
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
        0,
        RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS,
    )
    .map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) => io::Error::new(
            io::ErrorKind::InvalidInput,
            "is a symlink; refusing to follow it",
        ),
        _ => e,
    })?;
    let f = std::fs::File::from(fd);
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "is not a regular file",
        ));
    }
    let mut out = Vec::new();
    f.take(max + 1).read_to_end(&mut out)?;
    if out.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("is larger than {max} bytes"),
        ));
    }
    Ok((out, meta))
}

/// Replace `name` in the directory `dir` with `bytes`, atomically and
/// without following any symlink: the new content goes to a fresh file with
/// a random name created `O_CREAT|O_EXCL|O_NOFOLLOW` through the directory's
/// descriptor, which is then renamed over `name` (`renameat` replaces a
/// symlink there, never its target). Someone who can write to `dir` cannot
/// redirect the write by planting a link under a predictable name (B8).
/// The file gets `like`'s mode, and its owner when privy may set it.
pub fn replace_file(
    dir: &OwnedFd,
    name: &str,
    bytes: &[u8],
    like: Option<&std::fs::Metadata>,
) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;
    let mut rnd = [0u8; 12];
    getrandom::getrandom(&mut rnd).map_err(|e| io::Error::other(e.to_string()))?;
    let tmp = format!(".{name}.privy-{}", hex::encode(rnd));
    let mode = like.map(|m| m.mode() & 0o7777).unwrap_or(0o644);
    let fd = openat2(
        dir.as_raw_fd(),
        &tmp,
        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
        0o600,
        RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS,
    )?;
    let (t, n) = (cstr(&tmp)?, cstr(name)?);
    let unlink = || {
        // SAFETY: valid fd and C string.
        unsafe { libc::unlinkat(dir.as_raw_fd(), t.as_ptr(), 0) };
    };
    let mut f = std::fs::File::from(fd);
    let written = (|| {
        f.write_all(bytes)?;
        if let Some(m) = like {
            // Keep the owner of the file we replace; only root may give a
            // file away, and anyone else writes their own files anyway.
            if m.uid() != nix::unistd::geteuid().as_raw()
                || m.gid() != nix::unistd::getegid().as_raw()
            {
                let _ = std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid()));
            }
        }
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.sync_all()
    })();
    if let Err(e) = written {
        unlink();
        return Err(e);
    }
    // SAFETY: valid fds and C strings.
    let ret = unsafe { libc::renameat(dir.as_raw_fd(), t.as_ptr(), dir.as_raw_fd(), n.as_ptr()) };
    if ret < 0 {
        let e = io::Error::last_os_error();
        unlink();
        return Err(e);
    }
    Ok(())
}
