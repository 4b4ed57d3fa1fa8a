//! The seam between materialize's algorithm and the operating system:
//! every call that looks at or changes the container's filesystem or
//! mounts, so the order and flags can be tested without root.

use super::TmpfsOptions;
use crate::sys::mountinfo::{Mount, Namespace};
use std::io;
use std::path::Path;

/// What one name in a directory is, looked at without following it.
#[derive(Debug)]
pub enum Entry<D> {
    /// A directory (or a mount point on one), opened.
    Dir(D),
    /// A symlink, and what it says.
    Symlink(String),
    /// Nothing by that name.
    Missing,
    /// Something else: a file, a device, a socket.
    NotDir,
}

/// The operating-system calls materialize makes.
pub trait Os {
    /// A handle on a directory.
    type Dir;
    /// Open the container's root directory.
    fn open_root(&mut self, root: &Path) -> io::Result<Self::Dir>;
    /// Open `rel` below `root` (`""` is the root itself), a path privy
    /// resolved itself, following no symlink at all; `None` when it does
    /// not exist. It must be a directory.
    fn open_resolved(&mut self, root: &Self::Dir, rel: &str) -> io::Result<Option<Self::Dir>>;
    /// What `name` in `parent` is, without following a symlink.
    fn lookup(&mut self, parent: &Self::Dir, name: &str) -> io::Result<Entry<Self::Dir>>;
    /// Create directory `name` in `parent` (never through a symlink) and open it.
    fn mkdir_child(&mut self, parent: &Self::Dir, name: &str, mode: u32) -> io::Result<Self::Dir>;
    /// Remove the empty directory `name` from `parent`.
    fn rmdir_child(&mut self, parent: &Self::Dir, name: &str) -> io::Result<()>;
    /// The mount `dir` lies on, from the container's mount table.
    fn mount_of(&mut self, dir: &Self::Dir) -> io::Result<Mount>;
    /// Whether the filesystem `dev` is mounted anywhere in privy's own
    /// mount namespace (the host's, for a rootful hook).
    fn mounted_in_own_namespace(&mut self, dev: (u32, u32)) -> io::Result<bool>;
    /// The id of the container's mount namespace, and every mount
    /// namespace on the host with its table (the container's included).
    fn namespaces(&mut self) -> io::Result<(u64, Vec<Namespace>)>;
    /// Whether the host has SELinux on (enforcing or permissive), asked
    /// before entering the container's namespace.
    fn selinux_enabled(&self) -> bool;
    /// A new, detached tmpfs mount with `attrs`.
    fn new_tmpfs(&mut self, opts: &TmpfsOptions, attrs: u64) -> io::Result<Self::Dir>;
    /// Create an owned directory inside the tmpfs.
    fn mkdir_owned(
        &mut self,
        parent: &Self::Dir,
        name: &str,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> io::Result<Self::Dir>;
    /// Create a new file (`O_EXCL|O_NOFOLLOW`) with this content, mode and owner.
    fn write_file(
        &mut self,
        parent: &Self::Dir,
        name: &str,
        data: &[u8],
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> io::Result<()>;
    /// Make the mount read-only.
    fn seal(&mut self, mount: &Self::Dir, attrs: u64) -> io::Result<()>;
    /// Attach the detached mount onto `target`.
    fn attach(&mut self, mount: &Self::Dir, target: &Self::Dir) -> io::Result<()>;
}
