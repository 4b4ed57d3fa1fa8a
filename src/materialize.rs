//! Stage five: put the checked files into the container (L2, L4).
//!
//! In the container's mount namespace:
//!
//! 1. Resolve the target inside the root one component at a time, as the
//!    kernel would with the root as `/` (symlinks followed, `..` never above
//!    the root), never opening through a symlink, and know the canonical
//!    path it lands on.
//! 2. Refuse, before anything is created or mounted, a target that
//!    resolves to the root or a system path (B9), one whose missing
//!    directories would have to be created on a mount that is not the
//!    container's own (a host volume, B7), one that goes through a dangling
//!    symlink, and one whose mount would propagate out of the container's
//!    mount namespace (B1, see [`crate::sys::mountinfo`]).
//! 3. Create the missing directories; build a fresh, detached tmpfs
//!    (size-capped, `nosuid,nodev,noexec`, `noswap` where allowed, root dir
//!    0700 owned by the container user); write every file into it with
//!    `O_EXCL|O_NOFOLLOW`; seal it read-only; and only then attach it at the
//!    target, so the container never sees a half-written or writable mount.
//!
//! Any failure after step 3 began removes the directories it created
//! (B12), so a failed start leaves no `run/private` in the image.
//!
//! All of that goes through the [`Os`] seam, so unit tests can assert the
//! exact flags, ownership and refusals with [`RecordingOs`] and no root.

use crate::check::CheckedFile;
use crate::shown::shown;
use crate::sys;
use crate::sys::mountinfo::{self, Mount, Namespace};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

/// Attributes every privy mount gets from the start.
pub const MOUNT_ATTRS: u64 =
    sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV | sys::MOUNT_ATTR_NOEXEC;
/// Mode of the tmpfs root and every directory in it.
pub const DIR_MODE: u32 = 0o700;
/// Mode of directories privy creates in the image to mount on.
pub const MOUNTPOINT_MODE: u32 = 0o755;
/// Most symlinks followed while resolving the target (the kernel's own
/// limit, `MAXSYMLINKS`).
pub const MAX_SYMLINKS: usize = 40;

/// How the tmpfs is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TmpfsOptions {
    pub size_bytes: u64,
    pub nr_inodes: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl TmpfsOptions {
    /// Just big enough for `files` (whole pages each) plus their directories.
    pub fn for_files(files: &[CheckedFile], uid: u32, gid: u32) -> Self {
        const PAGE: u64 = 4096;
        let data: u64 = files
            .iter()
            .map(|f| (f.data.len() as u64).div_ceil(PAGE) * PAGE)
            .sum();
        let dirs: u64 = files
            .iter()
            .map(|f| f.path.components().count() as u64 - 1)
            .sum();
        TmpfsOptions {
            size_bytes: data + (dirs + 16) * PAGE,
            nr_inodes: files.len() as u64 + dirs + 16,
            mode: DIR_MODE,
            uid,
            gid,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MaterializeError {
    #[error("cannot enter the mount namespace of pid {pid}: {error}")]
    Setns { pid: i32, error: io::Error },
    #[error("pid {pid} is in privy's own mount namespace, not a container's: refusing to mount there (the OCI state must name the container's process)")]
    OwnNamespace { pid: i32 },
    #[error("container root {root}: {error}")]
    Root { root: String, error: io::Error },
    #[error("target {path}: {error}")]
    Target { path: String, error: io::Error },
    #[error("target {path}: {link} in the image is a symlink to {to}, which does not exist in the image; privy does not create directories through a symlink")]
    DanglingSymlink {
        path: String,
        link: String,
        to: String,
    },
    #[error("target {path}: {at} in the image is not a directory")]
    NotADirectory { path: String, at: String },
    #[error("target {path}: more than {MAX_SYMLINKS} symlinks to follow in the image")]
    TooManySymlinks { path: String },
    #[error(
        "target {path} resolves to {resolved} in the image, which {why}; refusing to mount over it"
    )]
    SystemPath {
        path: String,
        resolved: String,
        why: String,
    },
    #[error("target {path}: privy would have to create {missing} on {mount_point} ({fstype}), which is not the container's root filesystem or a tmpfs of its own (a volume from the host?); refusing to write there: create the directory in the image, or choose another target")]
    ForeignMount {
        path: String,
        missing: String,
        mount_point: String,
        fstype: String,
    },
    #[error("target {path}: the mount it lies on ({mount_point}, {propagation}) propagates to {other} in {namespace}, so privy's tmpfs would appear outside the container; refusing: make that volume's propagation private or slave")]
    Propagates {
        path: String,
        mount_point: String,
        propagation: String,
        other: String,
        namespace: String,
    },
    #[error("reading mount tables: {0}")]
    MountTable(io::Error),
    #[error("mounting tmpfs: {0}")]
    Mount(io::Error),
    #[error("writing {path}: {error}")]
    Write { path: String, error: io::Error },
    #[error("sealing the mount read-only: {0}")]
    Seal(io::Error),
    #[error("attaching the mount at {path}: {error}")]
    Attach { path: String, error: io::Error },
}

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

/// Where the target resolved: the deepest directory that exists, its
/// canonical path (components below the root), and the components still
/// to create under it.
struct Place<D> {
    dir: D,
    existing: Vec<String>,
    missing: Vec<String>,
}

fn slash(comps: &[String]) -> String {
    format!("/{}", comps.join("/"))
}

/// Resolve `target` in the root the way the kernel resolves a path for a
/// process whose root is the container's: each component looked at without
/// following it; a symlink's text pushed in front of what is left (an
/// absolute one restarting at the root); `..` never above the root.
/// Doing it here, not in one `openat2(RESOLVE_IN_ROOT)`, gives the
/// canonical path (for the system-path check) and says exactly which link
/// dangles. Nothing is created.
fn resolve<O: Os>(
    os: &mut O,
    rootd: &O::Dir,
    target: &str,
) -> Result<Place<O::Dir>, MaterializeError> {
    let terr = |error| MaterializeError::Target {
        path: target.to_owned(),
        error,
    };
    let open = |os: &mut O, rel: &[String]| -> Result<O::Dir, MaterializeError> {
        os.open_resolved(rootd, &rel.join("/"))
            .map_err(terr)?
            .ok_or_else(|| terr(io::ErrorKind::NotFound.into()))
    };
    // Each pending component, with the symlink it came from (None: from the
    // target itself), shared: a link's text may have thousands of
    // components, and a hostile image may chain 40 such links.
    type Origin = Option<std::rc::Rc<(String, String)>>;
    let mut todo: VecDeque<(String, Origin)> = target
        .split('/')
        .filter(|c| !c.is_empty())
        .map(|c| (c.to_owned(), None))
        .collect();
    let mut path: Vec<String> = Vec::new();
    let mut dir = open(os, &path)?;
    let mut links = 0;
    while let Some((comp, from)) = todo.pop_front() {
        match comp.as_str() {
            "." => continue,
            ".." => {
                path.pop();
                dir = open(os, &path)?;
                continue;
            }
            _ => {}
        }
        match os.lookup(&dir, &comp).map_err(terr)? {
            Entry::Dir(d) => {
                path.push(comp);
                dir = d;
            }
            Entry::Symlink(to) => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(MaterializeError::TooManySymlinks {
                        path: target.to_owned(),
                    });
                }
                let link = slash(&[path.as_slice(), &[comp]].concat());
                if to.starts_with('/') {
                    path.clear();
                    dir = open(os, &path)?;
                }
                let comps: Vec<String> = to
                    .split('/')
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect();
                let origin = std::rc::Rc::new((link, to));
                for c in comps.into_iter().rev() {
                    todo.push_front((c, Some(origin.clone())));
                }
            }
            Entry::Missing => {
                if let Some(origin) = from {
                    let (link, to) = &*origin;
                    return Err(MaterializeError::DanglingSymlink {
                        path: target.to_owned(),
                        link: shown(link),
                        to: shown(to),
                    });
                }
                // What is left came from the target itself (a symlink's
                // components always come first), which config validated.
                let mut missing = vec![comp];
                for (c, _) in todo {
                    if c == "." || c == ".." {
                        return Err(terr(io::ErrorKind::InvalidInput.into()));
                    }
                    missing.push(c);
                }
                return Ok(Place {
                    dir,
                    existing: path,
                    missing,
                });
            }
            Entry::NotDir => {
                return Err(MaterializeError::NotADirectory {
                    path: target.to_owned(),
                    at: shown(&slash(&[path.as_slice(), &[comp]].concat())),
                })
            }
        }
    }
    Ok(Place {
        dir,
        existing: path,
        missing: Vec::new(),
    })
}

/// The refusals of step 2, on a resolved place: nothing is created yet.
fn refuse_unsafe_place<O: Os>(
    os: &mut O,
    rootd: &O::Dir,
    target: &str,
    place: &Place<O::Dir>,
) -> Result<(), MaterializeError> {
    let resolved = slash(&[place.existing.as_slice(), &place.missing].concat());
    if let Some(why) = crate::config::target_refusal(&resolved) {
        return Err(MaterializeError::SystemPath {
            path: target.to_owned(),
            resolved: shown(&resolved),
            why,
        });
    }
    let tables = MaterializeError::MountTable;
    let parent = os.mount_of(&place.dir).map_err(tables)?;
    if !place.missing.is_empty() {
        // Directories privy creates stay behind in whatever holds them until
        // poststop: fine in the container's own rootfs (poststop removes
        // them) or in a tmpfs only the container has; on a volume from the
        // host they would land on the host (B7).
        let root = os.mount_of(rootd).map_err(tables)?;
        let own = parent.id == root.id
            || (parent.fstype == "tmpfs"
                && !os.mounted_in_own_namespace(parent.dev).map_err(tables)?);
        if !own {
            return Err(MaterializeError::ForeignMount {
                path: target.to_owned(),
                missing: shown(&slash(
                    &[place.existing.as_slice(), &place.missing[..1]].concat(),
                )),
                mount_point: shown(&parent.mount_point),
                fstype: shown(&parent.fstype),
            });
        }
    }
    // A mount attached under a shared parent is copied to every peer of it,
    // and to their slaves, wherever they are: making privy's tmpfs private
    // first cannot stop that, because the copies are made of the parent's
    // propagation, not the child's. So look where the parent's peer group
    // reaches. Refusing (rather than making the parent private) leaves the
    // container's own propagation exactly as its engine set it: what a
    // shared volume is for, other mounts in it may need. None of runc, crun,
    // podman, docker or buildah RUN steps gives a shared parent by default
    // (their roots are private or slaves), so only a deliberately shared
    // volume (`rshared`, Kubernetes `Bidirectional`) ever gets here, and
    // only when it really reaches out.
    if let Some(group) = parent.shared {
        let (inside, namespaces) = os.namespaces().map_err(tables)?;
        if let Some((ns, m)) = mountinfo::reaches_outside(group, inside, &namespaces) {
            return Err(MaterializeError::Propagates {
                path: target.to_owned(),
                mount_point: shown(&parent.mount_point),
                propagation: parent.propagation(),
                other: shown(&m.mount_point),
                namespace: ns.describe(),
            });
        }
    }
    Ok(())
}

/// Inject `files` at `target` under `root`. Returns the mountpoint
/// directories privy had to create (canonical, relative to the root,
/// shallowest first) so `poststop` can remove them again. On any error,
/// the directories it created are removed before it returns.
pub fn materialize<O: Os>(
    os: &mut O,
    root: &Path,
    target: &str,
    files: &[CheckedFile],
    owner: (u32, u32),
) -> Result<Vec<String>, MaterializeError> {
    let rootd = os.open_root(root).map_err(|error| MaterializeError::Root {
        root: root.display().to_string(),
        error,
    })?;
    let place = resolve(os, &rootd, target)?;
    refuse_unsafe_place(os, &rootd, target, &place)?;
    let mut created = Vec::new();
    match build_and_attach(os, target, place, files, owner, &mut created) {
        Ok(()) => Ok(created),
        Err(e) => {
            // Best effort: the error that stopped us is the one to report.
            if let Err(undo) = remove_created(os, &rootd, &created) {
                tracing::warn!("removing the mountpoint directories privy created: {undo}");
            }
            Err(e)
        }
    }
}

/// Step 3: create what is missing, fill and seal a tmpfs, attach it.
fn build_and_attach<O: Os>(
    os: &mut O,
    target: &str,
    place: Place<O::Dir>,
    files: &[CheckedFile],
    owner: (u32, u32),
    created: &mut Vec<String>,
) -> Result<(), MaterializeError> {
    let (uid, gid) = owner;
    let terr = |error| MaterializeError::Target {
        path: target.to_owned(),
        error,
    };
    let mut target_dir = place.dir;
    let mut rel = place.existing;
    for name in &place.missing {
        target_dir = os
            .mkdir_child(&target_dir, name, MOUNTPOINT_MODE)
            .map_err(terr)?;
        rel.push(name.clone());
        created.push(rel.join("/"));
    }
    let opts = TmpfsOptions::for_files(files, uid, gid);
    let mnt = os
        .new_tmpfs(&opts, MOUNT_ATTRS)
        .map_err(MaterializeError::Mount)?;
    // Only the directories on the way to the current file stay open (files
    // in path order share their prefixes), so open descriptors are bounded
    // by the depth, not by the number of directories (B12).
    let mut order: Vec<&CheckedFile> = files.iter().collect();
    order.sort_by(|a, b| a.path.components().cmp(b.path.components()));
    let mut open: Vec<(String, O::Dir)> = Vec::new();
    for f in order {
        let (parents, name) = f.path.split_last();
        let keep = open
            .iter()
            .zip(&parents)
            .take_while(|((have, _), want)| have == *want)
            .count();
        open.truncate(keep);
        for (depth, p) in parents.iter().enumerate().skip(keep) {
            let parent = open.last().map(|(_, d)| d).unwrap_or(&mnt);
            let d = os
                .mkdir_owned(parent, p, DIR_MODE, uid, gid)
                .map_err(|error| MaterializeError::Write {
                    path: parents[..=depth].join("/"),
                    error,
                })?;
            open.push((p.to_string(), d));
        }
        let parent = open.last().map(|(_, d)| d).unwrap_or(&mnt);
        os.write_file(parent, name, f.data.expose(), f.mode, uid, gid)
            .map_err(|error| MaterializeError::Write {
                path: f.path.to_string(),
                error,
            })?;
    }
    drop(open);
    // The detached mount is private (fsmount makes it so), and it is only
    // attached under a parent whose propagation stays inside the container.
    os.seal(&mnt, sys::MOUNT_ATTR_RDONLY)
        .map_err(MaterializeError::Seal)?;
    os.attach(&mnt, &target_dir)
        .map_err(|error| MaterializeError::Attach {
            path: target.to_owned(),
            error,
        })
}

/// Remove `created` (canonical paths below the root), deepest first, if
/// empty; one already gone is fine. Never follows a symlink on the way.
fn remove_created<O: Os>(os: &mut O, rootd: &O::Dir, created: &[String]) -> io::Result<()> {
    for rel in created.iter().rev() {
        let (parent, name) = match rel.rsplit_once('/') {
            Some((p, n)) => (p, n),
            None => ("", rel.as_str()),
        };
        let Some(pd) = os.open_resolved(rootd, parent)? else {
            continue;
        };
        match os.rmdir_child(&pd, name) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", shown(rel)))),
        }
    }
    Ok(())
}

/// Remove the directories `materialize` created, deepest first, if empty.
pub fn cleanup<O: Os>(os: &mut O, root: &Path, created: &[String]) -> io::Result<()> {
    let rootd = os.open_root(root)?;
    remove_created(os, &rootd, created)
}

/// The real system calls. Holds the host's `/proc`, opened before entering
/// the container's mount namespace: that is where the mount tables of
/// every namespace are read from, whatever `/proc` is in the container.
pub struct RealOs {
    proc: OwnedFd,
    /// The container's mount table, read once.
    table: Option<Vec<Mount>>,
}

impl RealOs {
    /// Open the host's `/proc` (call this before `setns`).
    pub fn new() -> io::Result<Self> {
        Ok(RealOs {
            proc: sys::open_dir_path(Path::new("/proc"))?,
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

    fn new_tmpfs(&mut self, o: &TmpfsOptions, attrs: u64) -> io::Result<OwnedFd> {
        let ctx = sys::FsContext::open("tmpfs")?;
        ctx.set_string("size", &o.size_bytes.to_string())?;
        ctx.set_string("nr_inodes", &o.nr_inodes.to_string())?;
        ctx.set_string("mode", &format!("{:o}", o.mode))?;
        ctx.set_string("uid", &o.uid.to_string())?;
        ctx.set_string("gid", &o.gid.to_string())?;
        // Keep private pages out of swap (Linux 6.4+). A kernel without it,
        // or a user namespace that may not set it, falls back silently.
        let _ = ctx.set_flag("noswap");
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
            materialize(&mut os, root, target, files, owner)
        })
        .join()
        .unwrap_or_else(|_| {
            Err(MaterializeError::Mount(io::Error::other(
                "materialize thread panicked",
            )))
        })
    })
}

/// One call the recording fake saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    MkdirChild {
        path: String,
        mode: u32,
    },
    RmdirChild {
        path: String,
    },
    NewTmpfs {
        opts: TmpfsOptions,
        attrs: u64,
    },
    MkdirOwned {
        path: String,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    WriteFile {
        path: String,
        len: usize,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Seal {
        attrs: u64,
    },
    Attach {
        target: String,
    },
}

/// A fake [`Os`] over a modelled image that records every call that
/// changes something. Directories are strings: root-relative paths, or
/// `tmpfs:` paths inside the new mount.
#[derive(Debug, Default)]
pub struct RecordingOs {
    /// Directories in the image.
    pub existing: BTreeSet<String>,
    /// Symlinks in the image: path → what the link says.
    pub symlinks: BTreeMap<String, String>,
    /// Files (anything not a directory) in the image.
    pub files: BTreeSet<String>,
    /// Mounts in the container, by mount point (`""` is the root; without
    /// one, the root is a private ext4 mount with id 1).
    pub mounts: BTreeMap<String, Mount>,
    /// Filesystems mounted in privy's own namespace.
    pub own_devs: BTreeSet<(u32, u32)>,
    /// The container's namespace id and every namespace's table.
    pub namespaces: (u64, Vec<Namespace>),
    pub ops: Vec<Op>,
    /// Make `new_tmpfs` fail, to test failure paths.
    pub fail_mount: bool,
    /// Make writing this tmpfs path fail (`tmpfs:a/b`).
    pub fail_write: Option<String>,
    /// How many tmpfs directory handles are open now, and at most.
    pub open_dirs: std::rc::Rc<std::cell::Cell<(usize, usize)>>,
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() || parent == "." {
        name.to_owned()
    } else {
        format!("{parent}/{name}")
    }
}

fn tmpfs_join(parent: &str, name: &str) -> String {
    format!(
        "{parent}{}{name}",
        if parent.ends_with(':') { "" } else { "/" }
    )
}

/// A [`RecordingOs`] directory: its path, and, inside the tmpfs, a guard
/// that counts open handles.
#[derive(Debug)]
pub struct FakeDir {
    pub path: String,
    count: Option<std::rc::Rc<std::cell::Cell<(usize, usize)>>>,
}

impl Drop for FakeDir {
    fn drop(&mut self) {
        if let Some(c) = &self.count {
            let (now, max) = c.get();
            c.set((now - 1, max));
        }
    }
}

impl RecordingOs {
    fn dir(&self, path: String) -> FakeDir {
        FakeDir { path, count: None }
    }

    fn tmpfs_dir(&self, path: String) -> FakeDir {
        let (now, max) = self.open_dirs.get();
        self.open_dirs.set((now + 1, max.max(now + 1)));
        FakeDir {
            path,
            count: Some(self.open_dirs.clone()),
        }
    }

    fn root_mount() -> Mount {
        Mount {
            id: 1,
            parent: 0,
            dev: (254, 0),
            root: "/".into(),
            mount_point: "/".into(),
            fstype: "ext4".into(),
            shared: None,
            master: None,
        }
    }
}

impl Os for RecordingOs {
    type Dir = FakeDir;
    fn open_root(&mut self, _root: &Path) -> io::Result<FakeDir> {
        Ok(self.dir(String::new()))
    }
    fn open_resolved(&mut self, _root: &FakeDir, rel: &str) -> io::Result<Option<FakeDir>> {
        if rel.split('/').any(|c| c == "." || c == "..") {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        // No symlink anywhere on the way, as RESOLVE_NO_SYMLINKS.
        let mut prefix = String::new();
        for c in rel.split('/').filter(|c| !c.is_empty()) {
            prefix = join(&prefix, c);
            if self.symlinks.contains_key(&prefix) {
                return Err(io::Error::from_raw_os_error(libc::ELOOP));
            }
        }
        Ok((rel.is_empty() || self.existing.contains(rel)).then(|| self.dir(rel.to_owned())))
    }
    fn lookup(&mut self, parent: &FakeDir, name: &str) -> io::Result<Entry<FakeDir>> {
        let path = join(&parent.path, name);
        Ok(if let Some(to) = self.symlinks.get(&path) {
            Entry::Symlink(to.clone())
        } else if self.existing.contains(&path) {
            Entry::Dir(self.dir(path))
        } else if self.files.contains(&path) {
            Entry::NotDir
        } else {
            Entry::Missing
        })
    }
    fn mkdir_child(&mut self, parent: &FakeDir, name: &str, mode: u32) -> io::Result<FakeDir> {
        let path = join(&parent.path, name);
        if self.existing.contains(&path)
            || self.symlinks.contains_key(&path)
            || self.files.contains(&path)
        {
            return Err(io::Error::from_raw_os_error(libc::EEXIST));
        }
        self.ops.push(Op::MkdirChild {
            path: path.clone(),
            mode,
        });
        self.existing.insert(path.clone());
        Ok(self.dir(path))
    }
    fn rmdir_child(&mut self, parent: &FakeDir, name: &str) -> io::Result<()> {
        let path = join(&parent.path, name);
        self.existing.remove(&path);
        self.ops.push(Op::RmdirChild { path });
        Ok(())
    }
    fn mount_of(&mut self, dir: &FakeDir) -> io::Result<Mount> {
        // The mount whose mount point is the longest prefix of `dir`.
        let best = self
            .mounts
            .iter()
            .filter(|(at, _)| {
                at.is_empty() || dir.path == **at || dir.path.starts_with(&format!("{at}/"))
            })
            .max_by_key(|(at, _)| at.len())
            .map(|(_, m)| m.clone());
        Ok(best.unwrap_or_else(Self::root_mount))
    }
    fn mounted_in_own_namespace(&mut self, dev: (u32, u32)) -> io::Result<bool> {
        Ok(self.own_devs.contains(&dev))
    }
    fn namespaces(&mut self) -> io::Result<(u64, Vec<Namespace>)> {
        Ok(self.namespaces.clone())
    }
    fn new_tmpfs(&mut self, opts: &TmpfsOptions, attrs: u64) -> io::Result<FakeDir> {
        if self.fail_mount {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        self.ops.push(Op::NewTmpfs {
            opts: opts.clone(),
            attrs,
        });
        Ok(self.tmpfs_dir("tmpfs:".into()))
    }
    fn mkdir_owned(
        &mut self,
        parent: &FakeDir,
        name: &str,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> io::Result<FakeDir> {
        let path = tmpfs_join(&parent.path, name);
        self.ops.push(Op::MkdirOwned {
            path: path.clone(),
            mode,
            uid,
            gid,
        });
        Ok(self.tmpfs_dir(path))
    }
    fn write_file(
        &mut self,
        parent: &FakeDir,
        name: &str,
        data: &[u8],
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> io::Result<()> {
        let path = tmpfs_join(&parent.path, name);
        if self.fail_write.as_deref() == Some(path.as_str()) {
            return Err(io::Error::from_raw_os_error(libc::EMFILE));
        }
        self.ops.push(Op::WriteFile {
            path,
            len: data.len(),
            mode,
            uid,
            gid,
        });
        Ok(())
    }
    fn seal(&mut self, _mount: &FakeDir, attrs: u64) -> io::Result<()> {
        self.ops.push(Op::Seal { attrs });
        Ok(())
    }
    fn attach(&mut self, _mount: &FakeDir, target: &FakeDir) -> io::Result<()> {
        self.ops.push(Op::Attach {
            target: target.path.clone(),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::{RelPath, Secret};

    fn file(path: &str, len: usize, mode: u32) -> CheckedFile {
        CheckedFile {
            path: RelPath::new(path).unwrap(),
            data: Secret::new(vec![b'x'; len]),
            mode,
            source: "s".into(),
        }
    }

    #[test]
    fn mounts_sealed_tmpfs_with_safe_flags_and_owner() {
        let mut os = RecordingOs {
            existing: ["run".to_string()].into(),
            ..Default::default()
        };
        let files = [
            file("entitlement/cert.pem", 10, 0o400),
            file("api.key", 5000, 0o640),
        ];
        let created = materialize(
            &mut os,
            Path::new("/r"),
            "/run/private",
            &files,
            (1000, 1001),
        )
        .unwrap();
        assert_eq!(created, vec!["run/private"]);
        let opts = TmpfsOptions {
            size_bytes: 4096 + 8192 + 17 * 4096,
            nr_inodes: 2 + 1 + 16,
            mode: 0o700,
            uid: 1000,
            gid: 1001,
        };
        assert_eq!(
            os.ops,
            vec![
                Op::MkdirChild {
                    path: "run/private".into(),
                    mode: 0o755
                },
                Op::NewTmpfs {
                    opts,
                    attrs: sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV | sys::MOUNT_ATTR_NOEXEC
                },
                Op::WriteFile {
                    path: "tmpfs:api.key".into(),
                    len: 5000,
                    mode: 0o640,
                    uid: 1000,
                    gid: 1001
                },
                Op::MkdirOwned {
                    path: "tmpfs:entitlement".into(),
                    mode: 0o700,
                    uid: 1000,
                    gid: 1001
                },
                Op::WriteFile {
                    path: "tmpfs:entitlement/cert.pem".into(),
                    len: 10,
                    mode: 0o400,
                    uid: 1000,
                    gid: 1001
                },
                Op::Seal {
                    attrs: sys::MOUNT_ATTR_RDONLY
                },
                Op::Attach {
                    target: "run/private".into()
                },
            ]
        );
    }

    #[test]
    fn seals_before_attaching_so_the_container_never_sees_it_writable() {
        let mut os = RecordingOs {
            existing: ["run".into(), "run/private".into()].into(),
            ..Default::default()
        };
        let created = materialize(
            &mut os,
            Path::new("/r"),
            "/run/private",
            &[file("a", 1, 0o400)],
            (0, 0),
        )
        .unwrap();
        assert!(
            created.is_empty(),
            "an existing mountpoint is not ours to remove"
        );
        let seal = os
            .ops
            .iter()
            .position(|o| matches!(o, Op::Seal { .. }))
            .unwrap();
        let attach = os
            .ops
            .iter()
            .position(|o| matches!(o, Op::Attach { .. }))
            .unwrap();
        let last_write = os
            .ops
            .iter()
            .rposition(|o| matches!(o, Op::WriteFile { .. }))
            .unwrap();
        assert!(last_write < seal && seal < attach);
    }

    #[test]
    fn creates_every_missing_component_and_cleanup_removes_them_deepest_first() {
        let mut os = RecordingOs::default();
        let created = materialize(
            &mut os,
            Path::new("/r"),
            "/run/private",
            &[file("a", 1, 0o400)],
            (0, 0),
        )
        .unwrap();
        assert_eq!(created, vec!["run", "run/private"]);
        os.ops.clear();
        cleanup(&mut os, Path::new("/r"), &created).unwrap();
        assert_eq!(
            os.ops,
            vec![
                Op::RmdirChild {
                    path: "run/private".into()
                },
                Op::RmdirChild { path: "run".into() }
            ]
        );
    }

    #[test]
    fn mount_failure_is_reported_and_nothing_is_attached() {
        let mut os = RecordingOs {
            existing: ["run".into()].into(),
            fail_mount: true,
            ..Default::default()
        };
        let e = materialize(
            &mut os,
            Path::new("/r"),
            "/run/private",
            &[file("a", 1, 0o400)],
            (0, 0),
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("mounting tmpfs"), "{e}");
        assert!(!os
            .ops
            .iter()
            .any(|o| matches!(o, Op::Attach { .. } | Op::WriteFile { .. })));
    }

    fn run(os: &mut RecordingOs, target: &str) -> Result<Vec<String>, MaterializeError> {
        materialize(os, Path::new("/r"), target, &[file("k", 1, 0o400)], (0, 0))
    }

    fn image(dirs: &[&str], links: &[(&str, &str)]) -> RecordingOs {
        RecordingOs {
            existing: dirs.iter().map(|d| d.to_string()).collect(),
            symlinks: links
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    fn mount(id: u64, at: &str, fstype: &str, dev: (u32, u32), shared: Option<u64>) -> Mount {
        Mount {
            id,
            parent: 1,
            dev,
            root: "/".into(),
            mount_point: format!("/r/{at}"),
            fstype: fstype.into(),
            shared,
            master: None,
        }
    }

    #[test]
    fn b9_image_symlinks_onto_the_root_or_system_dirs_are_refused_before_anything_changes() {
        for (link, to, resolved) in [
            ("run/private", "/", "\"/\""),
            ("run/private", "../../..", "\"/\""),
            ("run/private", ".", "\"/run\""),
            ("run/private", "..", "\"/\""),
            ("run/private", "/proc", "\"/proc\""),
            ("run/private", "/proc/sys/kernel", "\"/proc/sys/kernel\""),
            ("run/private", "/bin", "\"/bin\""),
            ("run/private", "../../usr/./lib", "\"/usr/lib\""),
        ] {
            let mut os = image(
                &[
                    "run",
                    "proc",
                    "proc/sys",
                    "proc/sys/kernel",
                    "bin",
                    "usr",
                    "usr/lib",
                ],
                &[(link, to)],
            );
            let e = run(&mut os, "/run/private").expect_err(to);
            assert!(
                matches!(&e, MaterializeError::SystemPath { resolved: r, .. } if r == resolved),
                "{link} -> {to}: {e}"
            );
            assert!(
                e.to_string().starts_with("target /run/private resolves to"),
                "{e}"
            );
            assert!(os.ops.is_empty(), "{link} -> {to}: {:?}", os.ops);
        }
    }

    #[test]
    fn b9_deep_targets_in_system_dirs_and_links_to_them_still_work() {
        let mut os = image(&["etc", "etc/pki"], &[]);
        assert_eq!(
            run(&mut os, "/etc/pki/entitlement").unwrap(),
            vec!["etc/pki/entitlement"]
        );
        let mut os = image(&["var", "var/run"], &[("run", "var/run")]);
        assert_eq!(
            run(&mut os, "/run/private").unwrap(),
            vec!["var/run/private"]
        );
        assert!(os.ops.contains(&Op::Attach {
            target: "var/run/private".into()
        }));
    }

    #[test]
    fn b7_missing_directories_on_a_host_volume_are_refused() {
        // /run -> /data, and /data is a bind mount of a host directory.
        let mut os = image(&["data"], &[("run", "/data")]);
        os.mounts
            .insert("data".into(), mount(7, "data", "ext4", (254, 0), None));
        os.own_devs.insert((254, 0));
        let e = run(&mut os, "/run/private").unwrap_err();
        assert!(matches!(e, MaterializeError::ForeignMount { .. }), "{e}");
        let line = e.to_string();
        assert!(
            line.contains("create \"/data/private\" on \"/r/data\" (\"ext4\")"),
            "{line}"
        );
        assert!(os.ops.is_empty(), "{:?}", os.ops);
        // The same directory already there: nothing to create, so mounting
        // over it (in the container's namespace only) is fine.
        let mut os = image(&["data", "data/private"], &[("run", "/data")]);
        os.mounts
            .insert("data".into(), mount(7, "data", "ext4", (254, 0), None));
        assert!(run(&mut os, "/run/private").unwrap().is_empty());
    }

    #[test]
    fn b7_a_tmpfs_of_the_container_may_hold_the_mountpoint_a_host_tmpfs_may_not() {
        let mut os = image(&["run"], &[]);
        os.mounts
            .insert("run".into(), mount(8, "run", "tmpfs", (0, 99), None));
        assert_eq!(run(&mut os, "/run/private").unwrap(), vec!["run/private"]);
        let mut os = image(&["run"], &[]);
        os.mounts
            .insert("run".into(), mount(8, "run", "tmpfs", (0, 99), None));
        os.own_devs.insert((0, 99));
        assert!(matches!(
            run(&mut os, "/run/private").unwrap_err(),
            MaterializeError::ForeignMount { .. }
        ));
        assert!(os.ops.is_empty());
    }

    #[test]
    fn b1_a_shared_parent_whose_peers_reach_another_namespace_is_refused() {
        let setup = |host_has_peer: bool| {
            let mut os = image(&["run", "run/private"], &[]);
            os.mounts
                .insert("run".into(), mount(90, "run", "ext4", (254, 0), Some(1)));
            let container = Namespace {
                id: 4026532178,
                pid: 4242,
                own: false,
                mounts: vec![mount(90, "run", "ext4", (254, 0), Some(1))],
            };
            let mut host = Namespace {
                id: 4026531840,
                pid: 1,
                own: true,
                mounts: vec![mount(27, "", "ext4", (254, 0), None)],
            };
            if host_has_peer {
                let mut bait = mount(46, "", "ext4", (254, 0), Some(1));
                bait.mount_point = "/tmp/bait".into();
                host.mounts.push(bait);
            }
            os.namespaces = (container.id, vec![container, host]);
            os
        };
        let mut os = setup(true);
        let e = run(&mut os, "/run/private").unwrap_err();
        let line = e.to_string();
        assert!(matches!(e, MaterializeError::Propagates { .. }), "{line}");
        assert!(
            line.contains("(\"/r/run\", shared:1) propagates to \"/tmp/bait\" in privy's own mount namespace (the host's)"),
            "{line}"
        );
        assert!(os.ops.is_empty(), "{:?}", os.ops);
        // Peers only inside the container: the mount stays inside.
        let mut os = setup(false);
        run(&mut os, "/run/private").unwrap();
        assert!(os.ops.iter().any(|o| matches!(o, Op::Attach { .. })));
    }

    #[test]
    fn a_dangling_symlink_is_named_in_one_line() {
        let mut os = image(&[], &[("run", "/data")]);
        let e = run(&mut os, "/run/private").unwrap_err().to_string();
        assert_eq!(
            e,
            "target /run/private: \"/run\" in the image is a symlink to \"/data\", which does not exist in the image; privy does not create directories through a symlink"
        );
        assert!(os.ops.is_empty());
        let mut os = image(&["run"], &[("run/private", "x\u{1b}[2K")]);
        let e = run(&mut os, "/run/private").unwrap_err().to_string();
        assert!(e.contains("\"x\\u{1b}[2K\""), "{e}");
    }

    #[test]
    fn symlink_loops_and_files_on_the_way_are_refused() {
        let mut os = image(&[], &[("run", "/run")]);
        assert!(matches!(
            run(&mut os, "/run/private").unwrap_err(),
            MaterializeError::TooManySymlinks { .. }
        ));
        let mut os = image(&[], &[]);
        os.files.insert("run".into());
        let e = run(&mut os, "/run/private").unwrap_err().to_string();
        assert_eq!(
            e,
            "target /run/private: \"/run\" in the image is not a directory"
        );
    }

    #[test]
    fn b12_every_failure_after_creating_the_mountpoint_removes_it() {
        let mut os = RecordingOs {
            fail_write: Some("tmpfs:b".into()),
            ..Default::default()
        };
        let e = materialize(
            &mut os,
            Path::new("/r"),
            "/run/private",
            &[file("a", 1, 0o400), file("b", 1, 0o400)],
            (0, 0),
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("writing b"), "{e}");
        let tail: Vec<&Op> = os.ops.iter().rev().take(2).collect();
        assert_eq!(
            tail,
            vec![
                &Op::RmdirChild { path: "run".into() },
                &Op::RmdirChild {
                    path: "run/private".into()
                },
            ]
        );
        assert!(!os.ops.iter().any(|o| matches!(o, Op::Attach { .. })));
        // A failed mount too.
        let mut os = RecordingOs {
            fail_mount: true,
            ..Default::default()
        };
        run(&mut os, "/run/private").unwrap_err();
        assert!(os.existing.is_empty(), "{:?}", os.existing);
    }

    #[test]
    fn b12_open_directory_handles_are_bounded_by_depth_not_by_count() {
        // 300 files, each in its own 20-deep directory chain.
        let files: Vec<CheckedFile> = (0..300)
            .map(|i| file(&format!("{}f", format!("d{i}/").repeat(20)), 1, 0o400))
            .collect();
        let mut os = RecordingOs::default();
        materialize(&mut os, Path::new("/r"), "/run/private", &files, (0, 0)).unwrap();
        let (now, max) = os.open_dirs.get();
        assert_eq!(now, 0);
        assert!(max <= 21, "{max} directory handles open at once");
        assert_eq!(
            os.ops
                .iter()
                .filter(|o| matches!(o, Op::MkdirOwned { .. }))
                .count(),
            300 * 20
        );
    }
}
