//! The new mount API: a tmpfs is created detached (`fsopen`, `fsconfig`,
//! `fsmount`), sealed (`mount_setattr`) and only then attached
//! (`move_mount`), so no process ever sees it half made (L2).

use super::{cstr, fd_result, unit_result};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

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
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
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
    setattr(fd, attrs, 0)
}

/// `mount_setattr(2)` on the mount `fd` refers to: set `set`, clear `clr`.
fn setattr(fd: RawFd, set: u64, clr: u64) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clr,
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

const OPEN_TREE_CLONE: u32 = 1;
const OPEN_TREE_CLOEXEC: u32 = libc::O_CLOEXEC as u32;
const FSPICK_CLOEXEC: u32 = 1;
const FSPICK_EMPTY_PATH: u32 = 8;
const FSCONFIG_CMD_RECONFIGURE: u32 = 7;

/// A detached copy of the mount whose root `fd` is (`open_tree` with
/// `OPEN_TREE_CLONE`): the same superblock, its own mount flags, attached
/// nowhere. It vanishes when its last descriptor closes. The caller must be
/// in the mount namespace that holds the mount.
pub fn open_tree_clone(fd: RawFd) -> io::Result<OwnedFd> {
    let empty = c"";
    // SAFETY: valid empty C string; plain integer flags.
    fd_result(unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            fd,
            empty.as_ptr(),
            OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | libc::AT_EMPTY_PATH as u32,
        )
    })
}

/// Clear `attrs` on the mount `fd` refers to (`mount_setattr`, `AT_EMPTY_PATH`).
pub fn mount_clearattr(fd: RawFd, attrs: u64) -> io::Result<()> {
    setattr(fd, 0, attrs)
}

/// Change string options of the superblock under the mount `fd` (`fspick`,
/// `fsconfig`, `FSCONFIG_CMD_RECONFIGURE`): only the keys given change.
pub fn reconfigure(fd: RawFd, options: &[(&str, String)]) -> io::Result<()> {
    let empty = c"";
    // SAFETY: valid empty C string; plain integer flags.
    let ctx = fd_result(unsafe {
        libc::syscall(
            libc::SYS_fspick,
            fd,
            empty.as_ptr(),
            FSPICK_EMPTY_PATH | FSPICK_CLOEXEC,
        )
    })
    .map(FsContext)?;
    for (k, v) in options {
        ctx.set_string(k, v)?;
    }
    // SAFETY: plain integer arguments.
    unit_result(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            ctx.0.as_raw_fd(),
            FSCONFIG_CMD_RECONFIGURE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_char>(),
            0,
        )
    })
}
