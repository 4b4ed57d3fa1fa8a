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
//! All of that goes through the [`Os`] seam (`os.rs`), so unit tests
//! (`tests.rs`) can assert the exact flags, ownership and refusals with
//! [`RecordingOs`] (`fake.rs`) and no root; `linux.rs` makes the real calls
//! (and [`inject_into`] enters the container's namespace first).

mod fake;
mod linux;
mod os;
#[cfg(test)]
mod tests;

pub use fake::{FakeDir, Op, RecordingOs};
pub use linux::{inject_into, RealOs};
pub use os::{Entry, Os};

use crate::pipeline::check::CheckedFile;
use crate::shown::shown;
use crate::sys;
use crate::sys::mountinfo;
use std::collections::VecDeque;
use std::io;

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
    /// Keep the pages out of swap (`noswap`, Linux 6.4+). Asked for always;
    /// dropped only when the kernel refuses that one option (see
    /// [`NoswapRefused`]).
    pub noswap: bool,
    /// SELinux `context=`: the container's `linux.mountLabel`, only when
    /// the host has SELinux on. The whole tmpfs then carries the
    /// container's label, so its processes can read the files and other
    /// confined domains cannot; without it the files would get tmpfs's
    /// default label, which a `container_t` process may not read.
    pub context: Option<String>,
}

/// The marker an [`Os`] puts in the error of `new_tmpfs` when the kernel
/// refused `noswap` itself with `EINVAL` or `EPERM`: a kernel before 6.4
/// does not know it, and a tmpfs made inside a user namespace (a rootless
/// engine's) may not turn swap off (`shmem_parse_one`: "Turning off swap in
/// unprivileged tmpfs mounts unsupported"). Materialize then makes the
/// tmpfs again with every other option as it was, and says so in one
/// debug line. Any other error, on any option, fails the mount.
#[derive(Debug, thiserror::Error)]
#[error("the kernel refused the tmpfs option noswap: {0}")]
pub struct NoswapRefused(pub io::Error);

impl NoswapRefused {
    /// Whether `e` says the kernel refused `noswap` (and nothing else).
    pub fn is(e: &io::Error) -> bool {
        e.get_ref().is_some_and(|inner| inner.is::<NoswapRefused>())
    }

    /// The error an [`Os`] returns for `error`, got setting `noswap`: the
    /// marker for `EINVAL`/`EPERM`, `error` itself otherwise.
    pub fn wrap(error: io::Error) -> io::Error {
        match error.raw_os_error() {
            Some(libc::EINVAL) | Some(libc::EPERM) => {
                io::Error::new(error.kind(), NoswapRefused(error))
            }
            _ => error,
        }
    }
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
            noswap: true,
            context: None,
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
///
/// `mount_label` is the container's `linux.mountLabel`; the tmpfs gets it
/// as its SELinux `context=` when [`Os::selinux_enabled`], and nothing
/// otherwise (a kernel without SELinux refuses the option).
pub fn materialize<O: Os>(
    os: &mut O,
    root: &Path,
    target: &str,
    files: &[CheckedFile],
    owner: (u32, u32),
    mount_label: Option<&str>,
) -> Result<Vec<String>, MaterializeError> {
    let rootd = os.open_root(root).map_err(|error| MaterializeError::Root {
        root: root.display().to_string(),
        error,
    })?;
    let place = resolve(os, &rootd, target)?;
    refuse_unsafe_place(os, &rootd, target, &place)?;
    let mut created = Vec::new();
    let mut opts = TmpfsOptions::for_files(files, owner.0, owner.1);
    if os.selinux_enabled() {
        opts.context = mount_label.map(str::to_owned);
    }
    match build_and_attach(os, target, place, files, &opts, &mut created) {
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
    opts: &TmpfsOptions,
    created: &mut Vec<String>,
) -> Result<(), MaterializeError> {
    let (uid, gid) = (opts.uid, opts.gid);
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
    let mut opts = opts.clone();
    let mnt = match os.new_tmpfs(&opts, MOUNT_ATTRS) {
        Err(e) if NoswapRefused::is(&e) => {
            tracing::debug!(error = %e, "tmpfs without noswap");
            opts.noswap = false;
            os.new_tmpfs(&opts, MOUNT_ATTRS)
        }
        r => r,
    }
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
