//! The real [`Os`]: `openat2`, `mkdirat`, the new mount API and the mount
//! tables, and [`inject_into`], which runs materialize inside the
//! container's mount namespace.

use super::{materialize, Entry, MaterializeError, Os, TmpfsOptions};
use crate::pipeline::check::CheckedFile;
use crate::sys;
use crate::sys::mountinfo::{self, Mount, Namespace};
use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

/// The real system calls. Holds the host's `/proc`, opened before entering
/// the container's mount namespace: that is where the mount tables of
/// every namespace are read from, whatever `/proc` is in the container.
pub struct RealOs {
    proc: OwnedFd,
    /// SELinux on this host, asked before `setns`.
    selinux: bool,
    /// The container's mount table, read once.
    table: Option<Vec<Mount>>,
}

impl RealOs {
    /// Open the host's `/proc` (call this before `setns`).
    pub fn new() -> io::Result<Self> {
        Ok(RealOs {
            proc: sys::open_dir_path(Path::new("/proc"))?,
            selinux: sys::selinux::enabled(),
            table: None,
        })
    }

    fn read_proc(&self, rel: &str) -> io::Result<String> {
        use std::io::Read;
        let fd = sys::openat2(
            self.proc.as_raw_fd(),
            rel,
            libc::O_RDONLY,
            0,
            sys::RESOLVE_BENEATH | sys::RESOLVE_NO_MAGICLINKS,
        )?;
        let mut s = String::new();
        std::fs::File::from(fd).read_to_string(&mut s)?;
        Ok(s)
    }

    fn table(&self, rel: &str) -> io::Result<Vec<Mount>> {
        mountinfo::parse(&self.read_proc(rel)?)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("/proc/{rel}: {e}")))
    }

    /// The inode of the mount namespace `/proc/{pid}/ns/mnt` names.
    fn ns_id(&self, pid: &str) -> io::Result<u64> {
        let fd = sys::openat2(
            self.proc.as_raw_fd(),
            &format!("{pid}/ns"),
            libc::O_PATH | libc::O_DIRECTORY,
            0,
            sys::RESOLVE_BENEATH | sys::RESOLVE_NO_MAGICLINKS,
        )?;
        let link = nix::fcntl::readlinkat(Some(fd.as_raw_fd()), "mnt").map_err(io::Error::from)?;
        link.to_str()
            .and_then(|l| l.strip_prefix("mnt:["))
            .and_then(|l| l.strip_suffix(']'))
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("/proc/{pid}/ns/mnt: unexpected link {link:?}"),
                )
            })
    }
}

fn cstring(name: &str) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(name).map_err(|_| io::ErrorKind::InvalidInput.into())
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn open_child_dir(parent: &OwnedFd, name: &str) -> io::Result<OwnedFd> {
    sys::openat2(
        parent.as_raw_fd(),
        name,
        libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        0,
        sys::RESOLVE_BENEATH | sys::RESOLVE_NO_SYMLINKS,
    )
}

impl Os for RealOs {
    type Dir = OwnedFd;

    fn open_root(&mut self, root: &Path) -> io::Result<OwnedFd> {
        sys::open_dir_path(root)
    }

    fn open_resolved(&mut self, root: &OwnedFd, rel: &str) -> io::Result<Option<OwnedFd>> {
        match sys::openat2(
            root.as_raw_fd(),
            if rel.is_empty() { "." } else { rel },
            libc::O_PATH | libc::O_DIRECTORY,
            0,
            sys::RESOLVE_IN_ROOT | sys::RESOLVE_NO_SYMLINKS | sys::RESOLVE_NO_MAGICLINKS,
        ) {
            Ok(fd) => Ok(Some(fd)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn lookup(&mut self, parent: &OwnedFd, name: &str) -> io::Result<Entry<OwnedFd>> {
        // O_PATH|O_NOFOLLOW on a symlink opens the link itself; a mount on
        // a directory is crossed, as any lookup does.
        let fd = match sys::openat2(
            parent.as_raw_fd(),
            name,
            libc::O_PATH | libc::O_NOFOLLOW,
            0,
            sys::RESOLVE_BENEATH | sys::RESOLVE_NO_SYMLINKS | sys::RESOLVE_NO_MAGICLINKS,
        ) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(Entry::Missing),
            Err(e) => return Err(e),
        };
        let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(io::Error::from)?;
        Ok(match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => Entry::Dir(fd),
            libc::S_IFLNK => Entry::Symlink(sys::readlink_fd(fd.as_raw_fd())?),
            _ => Entry::NotDir,
        })
    }

    fn mkdir_child(&mut self, parent: &OwnedFd, name: &str, mode: u32) -> io::Result<OwnedFd> {
        let c = cstring(name)?;
        // SAFETY: valid fd and C string; mkdirat never follows a final symlink.
        check(unsafe { libc::mkdirat(parent.as_raw_fd(), c.as_ptr(), mode) })?;
        open_child_dir(parent, name)
    }

    fn rmdir_child(&mut self, parent: &OwnedFd, name: &str) -> io::Result<()> {
        let c = cstring(name)?;
        // SAFETY: valid fd and C string.
        check(unsafe { libc::unlinkat(parent.as_raw_fd(), c.as_ptr(), libc::AT_REMOVEDIR) })
    }

    fn mount_of(&mut self, dir: &OwnedFd) -> io::Result<Mount> {
        let id = sys::mount_id(dir.as_raw_fd())?;
        if self.table.is_none() {
            // thread-self: this thread is the one that entered the
            // container's namespace; the process as a whole has not.
            self.table = Some(self.table("thread-self/mountinfo")?);
        }
        let table = self.table.as_ref().expect("just read");
        table.iter().find(|m| m.id == id).cloned().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("mount {id} is not in the container's mount table"),
            )
        })
    }

    fn mounted_in_own_namespace(&mut self, dev: (u32, u32)) -> io::Result<bool> {
        // /proc/self is the process's main thread, which never left privy's
        // own namespace.
        Ok(self.table("self/mountinfo")?.iter().any(|m| m.dev == dev))
    }

    fn namespaces(&mut self) -> io::Result<(u64, Vec<Namespace>)> {
        let inside = self.ns_id("thread-self")?;
        let mut by_id: BTreeMap<u64, (i32, BTreeMap<u64, Mount>)> = BTreeMap::new();
        let dir = nix::dir::Dir::openat(
            Some(self.proc.as_raw_fd()),
            ".",
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(io::Error::from)?;
        let gone = |e: &io::Error| matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESRCH));
        // A process more privileged than privy (another capability set, an
        // LSM) may refuse to show its namespace even to root: skip it. Such
        // a process is the machine's own supervisor, not a container privy
        // serves, and a mount can only reach another container's namespace
        // through a peer group that its engine copied from the host's, which
        // privy always reads (its own namespace, `/proc/self`).
        let denied = |e: &io::Error| matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM));
        let mut skipped = 0usize;
        for entry in dir {
            let entry = entry.map_err(io::Error::from)?;
            let Some(pid) = entry
                .file_name()
                .to_str()
                .ok()
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            // A process may exit while we look: skip it. Anything else
            // (a namespace privy may not look into) fails closed, since a
            // peer could hide there.
            let id = match self.ns_id(pid) {
                Ok(id) => id,
                Err(e) if gone(&e) => continue,
                Err(e) if denied(&e) => {
                    skipped += 1;
                    continue;
                }
                Err(e) => return Err(io::Error::new(e.kind(), format!("/proc/{pid}/ns/mnt: {e}"))),
            };
            // Every process's table, not one per namespace: a chrooted
            // process sees only the mounts under its root.
            let mounts = match self.table(&format!("{pid}/mountinfo")) {
                Ok(t) => t,
                Err(e) if gone(&e) => continue,
                Err(e) if denied(&e) => {
                    skipped += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let slot = by_id
                .entry(id)
                .or_insert_with(|| (pid.parse().unwrap_or(0), BTreeMap::new()));
            for m in mounts {
                slot.1.entry(m.id).or_insert(m);
            }
        }
        // privy's own namespace must be there, whatever was skipped.
        let own = self.ns_id("self")?;
        if let std::collections::btree_map::Entry::Vacant(slot) = by_id.entry(own) {
            let mounts = self.table("self/mountinfo")?;
            slot.insert((
                std::process::id() as i32,
                mounts.into_iter().map(|m| (m.id, m)).collect(),
            ));
        }
        if skipped > 0 {
            tracing::debug!(
                skipped,
                "processes whose mount namespace privy may not read were skipped"
            );
        }
        let namespaces = by_id
            .into_iter()
            .map(|(id, (pid, mounts))| Namespace {
                id,
                pid,
                own: id == own,
                mounts: mounts.into_values().collect(),
            })
            .collect();
        Ok((inside, namespaces))
    }

    fn selinux_enabled(&self) -> bool {
        self.selinux
    }

    fn new_tmpfs(&mut self, o: &TmpfsOptions, attrs: u64) -> io::Result<OwnedFd> {
        let ctx = sys::FsContext::open("tmpfs")?;
        ctx.set_string("size", &o.size_bytes.to_string())?;
        ctx.set_string("nr_inodes", &o.nr_inodes.to_string())?;
        ctx.set_string("mode", &format!("{:o}", o.mode))?;
        ctx.set_string("uid", &o.uid.to_string())?;
        ctx.set_string("gid", &o.gid.to_string())?;
        // Keep private pages out of swap (Linux 6.4+). A refusal of this
        // option alone is marked, so materialize can try again without it.
        if o.noswap {
            ctx.set_flag("noswap").map_err(super::NoswapRefused::wrap)?;
        }
        if let Some(label) = &o.context {
            // fsconfig takes the label as it is: no quoting of the commas
            // in an MCS range (`s0:c1,c2`), which mount(8)'s option string
            // would need. A label the kernel refuses fails the mount, and
            // so the container (fail closed), rather than leaving files
            // that its processes cannot read.
            ctx.set_string("context", label)?;
        }
        ctx.mount(attrs)
    }

    fn mkdir_owned(
        &mut self,
        parent: &OwnedFd,
        name: &str,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> io::Result<OwnedFd> {
        let c = cstring(name)?;
        // SAFETY: valid fd and C string.
        check(unsafe { libc::mkdirat(parent.as_raw_fd(), c.as_ptr(), mode) })?;
        // SAFETY: valid fd and C string; no symlink following.
        check(unsafe {
            libc::fchownat(
                parent.as_raw_fd(),
                c.as_ptr(),
                uid,
                gid,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })?;
        // SAFETY: valid fd and C string (we just created a directory, not a symlink).
        check(unsafe { libc::fchmodat(parent.as_raw_fd(), c.as_ptr(), mode, 0) })?;
        open_child_dir(parent, name)
    }

    fn write_file(
        &mut self,
        parent: &OwnedFd,
        name: &str,
        data: &[u8],
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::PermissionsExt;
        let fd = sys::openat2(
            parent.as_raw_fd(),
            name,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
            0o600,
            sys::RESOLVE_BENEATH | sys::RESOLVE_NO_SYMLINKS,
        )?;
        let mut f = std::fs::File::from(fd);
        f.write_all(data)?;
        std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))
    }

    fn seal(&mut self, mount: &OwnedFd, attrs: u64) -> io::Result<()> {
        sys::mount_setattr(mount.as_raw_fd(), attrs)
    }

    fn attach(&mut self, mount: &OwnedFd, target: &OwnedFd) -> io::Result<()> {
        sys::move_mount(mount.as_raw_fd(), target.as_raw_fd())
    }
}

/// Enter the mount namespace of `pid` on a fresh thread (a multi-threaded
/// process cannot `setns` its mount namespace, but a thread that first
/// unshares its filesystem attributes can) and materialize there.
///
/// A `pid` in privy's own mount namespace is refused (B16): "entering" it
/// would change nothing, and the tmpfs would be mounted in the host's
/// namespace, under a root that is only a directory there.
pub fn inject_into(
    pid: i32,
    root: &Path,
    target: &str,
    files: &[CheckedFile],
    owner: (u32, u32),
    mount_label: Option<&str>,
) -> Result<Vec<String>, MaterializeError> {
    use nix::sched::{setns, unshare, CloneFlags};
    use std::os::unix::fs::MetadataExt;
    let setns_err = |error| MaterializeError::Setns { pid, error };
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/mnt")).map_err(setns_err)?;
    let theirs = ns.metadata().map_err(setns_err)?;
    let ours = std::fs::metadata("/proc/self/ns/mnt").map_err(setns_err)?;
    if (theirs.dev(), theirs.ino()) == (ours.dev(), ours.ino()) {
        return Err(MaterializeError::OwnNamespace { pid });
    }
    let mut os = RealOs::new().map_err(MaterializeError::MountTable)?;
    std::thread::scope(|s| {
        s.spawn(|| {
            unshare(CloneFlags::CLONE_FS).map_err(|e| setns_err(e.into()))?;
            setns(&ns, CloneFlags::CLONE_NEWNS).map_err(|e| setns_err(e.into()))?;
            materialize(&mut os, root, target, files, owner, mount_label)
        })
        .join()
        .unwrap_or_else(|_| {
            Err(MaterializeError::Mount(io::Error::other(
                "materialize thread panicked",
            )))
        })
    })
}
