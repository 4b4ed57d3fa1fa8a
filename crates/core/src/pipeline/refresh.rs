//! Rotation without restart: give a running container a new checked file
//! set in the tmpfs it already has, changing only what differs.
//!
//! Processes and trust. The container's mount stays read-only,
//! `nosuid,nodev,noexec`, always; it is never remounted. The writes happen
//! in a short-lived, single-threaded child process ([`apply_via_child`]
//! re-executes privy with [`CHILD_SUBCOMMAND`]; the files travel over a
//! pipe, never a disk) that runs [`apply`]:
//!
//! 1. It opens `/proc/PID/ns/mnt` and `/proc/PID/root`, then checks the
//!    pid's start time against the one recorded at `createRuntime`: a
//!    container that stopped, or a pid the kernel gave to another process,
//!    is never entered. Privy's own mount namespace is refused.
//! 2. `setns(CLONE_NEWNS)` into the container's namespace (the process is
//!    single-threaded, so the whole process moves; the kernel refuses it
//!    otherwise), resolves the target inside the container's root, and
//!    checks it is the root of a read-only `nosuid,nodev,noexec` tmpfs.
//! 3. `open_tree(OPEN_TREE_CLONE)` makes a detached copy of that mount and
//!    `mount_setattr` clears `MOUNT_ATTR_RDONLY` on the copy only. The copy
//!    is attached nowhere: no process can reach it by a path, it vanishes
//!    when the child exits, and the superblock (which materialize left
//!    read-write under a read-only mount) is the container's, so what the
//!    copy writes the container sees.
//! 4. The difference is applied with `*at` calls on the copy.
//!
//! Atomicity. Each changed file is written whole under a hidden temporary
//! name (`.privy-refresh-...`) in its own directory, with its mode and
//! owner, then `renameat` over the old one: a reader opens the old inode
//! or the new one, never a partial or empty file; a process holding the
//! old file keeps its bytes; inotify reports `IN_MOVED_TO`. A new directory
//! is built whole under a temporary name and renamed into place; a
//! directory no source returns any more is renamed away first, then
//! emptied. Unchanged files are not touched (same inode). A refresh is
//! per-file atomic, not one transaction: if it fails midway, every file
//! not yet renamed is exactly as it was, those already renamed are new,
//! and the next refresh completes the set. (A whole-tree swap would need
//! the target itself to be renamed, which is a mount point.)
//!
//! Room. Materialize sized the tmpfs just big enough for the first set. A
//! refresh needs room for the new bytes while the old ones still exist (a
//! reader may hold them), so it grows the superblock with `fspick` +
//! `FSCONFIG_CMD_RECONFIGURE` up to twice what the new set needs; if that
//! is still not enough (processes in the container pin many old
//! versions), the refresh fails with one line and changes nothing. It
//! never shrinks it (shrinking fails while old pages are held).

use crate::pipeline::check::CheckedFile;
use crate::pipeline::materialize::{TmpfsOptions, DIR_MODE, MOUNT_ATTRS};
use crate::secret::{RelPath, Secret};
use crate::sys;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;

/// The hidden subcommand privy re-executes itself with to apply a refresh.
pub const CHILD_SUBCOMMAND: &str = "refresh-apply";
/// Prefix of the temporary names a refresh writes under.
pub const TEMP_PREFIX: &str = ".privy-refresh-";
const TMPFS_MAGIC: i64 = 0x0102_1994;
const PAGE: u64 = 4096;

/// What privy needs to enter a container it served, kept with the hook's
/// state. Never a file's name or bytes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Target {
    /// The container's init pid.
    pub pid: i32,
    /// Its start time (`/proc/PID/stat` field 22), so a reused pid is
    /// never mistaken for it.
    pub start_time: u64,
    /// The target directory inside the container.
    pub target: String,
    /// Host uid and gid that own the files.
    pub owner: (u32, u32),
}

/// What one refresh did, by path. Names only.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Changes {
    pub changed: Vec<String>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: usize,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.added.is_empty() && self.removed.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("pid {pid} is gone or is no longer the container's process (start time {found:?}, recorded {recorded}); not entering it")]
    Stopped {
        pid: i32,
        recorded: u64,
        found: Option<u64>,
    },
    #[error("pid {pid} is in privy's own mount namespace, not a container's: refusing")]
    OwnNamespace { pid: i32 },
    #[error("entering the mount namespace of pid {pid}: {error}")]
    Setns { pid: i32, error: io::Error },
    #[error("target {target}: {error}")]
    Target { target: String, error: io::Error },
    #[error("target {target} is not privy's sealed tmpfs ({why}); refusing to write there")]
    NotPrivyMount { target: String, why: String },
    #[error("a writable copy of the mount at {target}: {error}")]
    Clone { target: String, error: io::Error },
    #[error("target {target}: the new files need {need} bytes and {inodes} inodes more than the tmpfs can hold ({why}); nothing changed")]
    NoRoom {
        target: String,
        need: u64,
        inodes: u64,
        why: String,
    },
    #[error("{path}: {error}")]
    Write { path: String, error: io::Error },
    #[error("refresh child: {0}")]
    Child(String),
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

/// Open, never following a symlink, below `dir`.
fn open_beneath(dir: RawFd, rel: &str, flags: i32) -> io::Result<OwnedFd> {
    sys::openat2(
        dir,
        if rel.is_empty() { "." } else { rel },
        flags | libc::O_NOFOLLOW,
        0,
        sys::RESOLVE_BENEATH | sys::RESOLVE_NO_SYMLINKS | sys::RESOLVE_NO_MAGICLINKS,
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Other,
}

/// Every entry below `top` (relative paths), leftovers of an earlier
/// failed refresh removed on the way.
fn list(top: &OwnedFd) -> io::Result<BTreeMap<String, Kind>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![String::new()];
    while let Some(rel) = todo.pop() {
        let fd = open_beneath(top.as_raw_fd(), &rel, libc::O_RDONLY | libc::O_DIRECTORY)?;
        let dir = nix::dir::Dir::from_fd(fd.as_raw_fd()).map_err(io::Error::from)?;
        std::mem::forget(fd); // Dir owns it now.
        let mut leftovers = Vec::new();
        for e in dir {
            let e = e.map_err(io::Error::from)?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "." || name == ".." {
                continue;
            }
            let path = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            if name.starts_with(TEMP_PREFIX) {
                leftovers.push(path);
                continue;
            }
            let kind = match e.file_type() {
                Some(nix::dir::Type::File) => Kind::File,
                Some(nix::dir::Type::Directory) => Kind::Dir,
                _ => Kind::Other,
            };
            if kind == Kind::Dir {
                todo.push(path.clone());
            }
            out.insert(path, kind);
        }
        for l in leftovers {
            remove_tree(top, &l)?;
        }
    }
    Ok(out)
}

fn split(rel: &str) -> (&str, &str) {
    rel.rsplit_once('/').unwrap_or(("", rel))
}

/// Remove `rel` below `top` and everything in it, never following a link.
fn remove_tree(top: &OwnedFd, rel: &str) -> io::Result<()> {
    let (parent, name) = split(rel);
    let pd = open_beneath(top.as_raw_fd(), parent, libc::O_PATH | libc::O_DIRECTORY)?;
    let c = cstring(name)?;
    // SAFETY: valid fd and C string.
    let r = unsafe { libc::unlinkat(pd.as_raw_fd(), c.as_ptr(), 0) };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::EISDIR) {
        return Err(e);
    }
    let fd = open_beneath(top.as_raw_fd(), rel, libc::O_RDONLY | libc::O_DIRECTORY)?;
    let dir = nix::dir::Dir::from_fd(fd.as_raw_fd()).map_err(io::Error::from)?;
    std::mem::forget(fd);
    let names: Vec<String> = dir
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "." && n != "..")
        .collect();
    for n in names {
        remove_tree(top, &format!("{rel}/{n}"))?;
    }
    // SAFETY: valid fd and C string.
    check(unsafe { libc::unlinkat(pd.as_raw_fd(), c.as_ptr(), libc::AT_REMOVEDIR) })
}

/// Whether the file at `rel` already has `f`'s bytes, mode and owner.
fn same(top: &OwnedFd, rel: &str, f: &CheckedFile, owner: (u32, u32)) -> io::Result<bool> {
    let fd = open_beneath(top.as_raw_fd(), rel, libc::O_RDONLY)?;
    let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(io::Error::from)?;
    if st.st_mode & 0o7777 != f.mode
        || (st.st_uid, st.st_gid) != owner
        || st.st_size as usize != f.data.len()
    {
        return Ok(false);
    }
    let mut buf = Vec::with_capacity(f.data.len());
    std::fs::File::from(fd)
        .take(f.data.len() as u64 + 1)
        .read_to_end(&mut buf)?;
    // Held as a Secret so the old bytes are zeroed when dropped.
    let have = Secret::new(buf);
    Ok(have.expose() == f.data.expose())
}

struct Writer<'a> {
    top: &'a OwnedFd,
    owner: (u32, u32),
    counter: u32,
}

impl Writer<'_> {
    fn temp_name(&mut self) -> String {
        self.counter += 1;
        format!("{TEMP_PREFIX}{}-{}", std::process::id(), self.counter)
    }

    fn dir(&self, rel: &str) -> io::Result<OwnedFd> {
        open_beneath(self.top.as_raw_fd(), rel, libc::O_PATH | libc::O_DIRECTORY)
    }

    /// Write `f` whole as `name` in `dir` (which must not have it).
    fn write_new(&self, dir: &OwnedFd, name: &str, f: &CheckedFile) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let fd = sys::openat2(
            dir.as_raw_fd(),
            name,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
            0o600,
            sys::RESOLVE_BENEATH | sys::RESOLVE_NO_SYMLINKS,
        )?;
        let mut file = std::fs::File::from(fd);
        file.write_all(f.data.expose())?;
        std::os::unix::fs::fchown(&file, Some(self.owner.0), Some(self.owner.1))?;
        file.set_permissions(std::fs::Permissions::from_mode(f.mode))
    }

    fn mkdir(&self, dir: &OwnedFd, name: &str) -> io::Result<OwnedFd> {
        let c = cstring(name)?;
        // SAFETY: valid fd and C string.
        check(unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), DIR_MODE) })?;
        // SAFETY: valid fd and C string; no symlink following.
        check(unsafe {
            libc::fchownat(
                dir.as_raw_fd(),
                c.as_ptr(),
                self.owner.0,
                self.owner.1,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })?;
        // SAFETY: valid fd and C string (a directory we just made).
        check(unsafe { libc::fchmodat(dir.as_raw_fd(), c.as_ptr(), DIR_MODE, 0) })?;
        open_beneath(dir.as_raw_fd(), name, libc::O_PATH | libc::O_DIRECTORY)
    }

    /// Move `temp` over `name` in `dir`: a plain rename when `name` is
    /// missing or a file being replaced by a file; an exchange (then the
    /// old one removed) when a directory and a file trade places.
    fn place(
        &self,
        dir: &OwnedFd,
        parent: &str,
        temp: &str,
        name: &str,
        exchange: bool,
    ) -> io::Result<()> {
        let (t, n) = (cstring(temp)?, cstring(name)?);
        sys::fs::rename_in(dir.as_raw_fd(), &t, &n, exchange)?;
        if exchange {
            let old = if parent.is_empty() {
                temp.to_owned()
            } else {
                format!("{parent}/{temp}")
            };
            remove_tree(self.top, &old)?;
        }
        Ok(())
    }
}

/// Bytes and inodes the files to write take (whole pages), with their
/// new directories.
fn room_for(files: &[&CheckedFile], new_dirs: usize) -> (u64, u64) {
    let bytes: u64 = files
        .iter()
        .map(|f| (f.data.len() as u64).div_ceil(PAGE) * PAGE)
        .sum::<u64>()
        + new_dirs as u64 * PAGE;
    (bytes, (files.len() + new_dirs) as u64)
}

/// Make room on the tmpfs under `top` for `need` more bytes and `inodes`
/// more inodes: grow it, never beyond twice what the whole new set needs.
fn ensure_room(
    top: &OwnedFd,
    target: &str,
    need: u64,
    inodes: u64,
    whole: &TmpfsOptions,
) -> Result<(), RefreshError> {
    let st = nix::sys::statvfs::fstatvfs(top).map_err(|e| RefreshError::Target {
        target: target.to_owned(),
        error: e.into(),
    })?;
    let bsize = st.fragment_size().max(1) as u64;
    let size = st.blocks() as u64 * bsize;
    let used = size - st.blocks_free() as u64 * bsize;
    let files = st.files() as u64;
    let used_inodes = files - st.files_free() as u64;
    let slack = 4 * PAGE;
    let want = used + need + slack;
    let want_inodes = used_inodes + inodes + 4;
    if want <= size && want_inodes <= files {
        return Ok(());
    }
    let cap = (2 * whole.size_bytes).max(size);
    let cap_inodes = (2 * whole.nr_inodes).max(files);
    if want > cap || want_inodes > cap_inodes {
        return Err(RefreshError::NoRoom {
            target: target.to_owned(),
            need,
            inodes,
            why: format!(
                "{used} bytes and {used_inodes} inodes in use, at most {cap} bytes and {cap_inodes} inodes allowed: does a process in the container hold old versions open?"
            ),
        });
    }
    let opts = [
        ("size", want.max(size).to_string()),
        ("nr_inodes", want_inodes.max(files).to_string()),
    ];
    sys::mount::reconfigure(top.as_raw_fd(), &opts).map_err(|e| RefreshError::NoRoom {
        target: target.to_owned(),
        need,
        inodes,
        why: format!("growing the tmpfs: {e}"),
    })
}

/// Apply `files` to the mount under `top` (a writable handle on the
/// container's tmpfs): the diff described in the module docs.
pub fn apply_at(
    top: &OwnedFd,
    target: &str,
    files: &[CheckedFile],
    owner: (u32, u32),
) -> Result<Changes, RefreshError> {
    let terr = |error| RefreshError::Target {
        target: target.to_owned(),
        error,
    };
    let werr = |path: &str| {
        let path = path.to_owned();
        move |error| RefreshError::Write { path, error }
    };
    let have = list(top).map_err(terr)?;
    let want: BTreeMap<String, &CheckedFile> =
        files.iter().map(|f| (f.path.to_string(), f)).collect();
    let needed_dirs: BTreeSet<String> = files
        .iter()
        .flat_map(|f| {
            let p = f.path.split_last().0;
            (1..=p.len()).map(move |i| p[..i].join("/"))
        })
        .collect();
    let mut changes = Changes::default();
    // What to write: replacements in place, and new files whose directory
    // exists; new directories are built whole under their shallowest
    // missing one.
    let mut replace: Vec<(&str, &CheckedFile, bool)> = Vec::new();
    let mut new_trees: BTreeMap<String, Vec<&CheckedFile>> = BTreeMap::new();
    for (path, f) in &want {
        match have.get(path.as_str()) {
            Some(Kind::File) => {
                if same(top, path, f, owner).map_err(werr(path))? {
                    changes.unchanged += 1;
                } else {
                    replace.push((path, f, false));
                    changes.changed.push(path.clone());
                }
            }
            Some(_) => {
                replace.push((path, f, true));
                changes.changed.push(path.clone());
            }
            None => {
                let (parents, _) = f.path.split_last();
                let missing = (1..=parents.len())
                    .map(|i| parents[..i].join("/"))
                    .find(|d| have.get(d.as_str()) != Some(&Kind::Dir));
                match missing {
                    None => replace.push((path, f, false)),
                    Some(d) => new_trees.entry(d).or_default().push(f),
                }
                changes.added.push(path.clone());
            }
        }
    }
    // Room first: nothing changes if it does not fit.
    let writing: Vec<&CheckedFile> = replace
        .iter()
        .map(|(_, f, _)| *f)
        .chain(new_trees.values().flatten().copied())
        .collect();
    let new_dirs = needed_dirs
        .iter()
        .filter(|d| have.get(d.as_str()) != Some(&Kind::Dir))
        .count();
    let (need, inodes) = room_for(&writing, new_dirs);
    if !writing.is_empty() {
        ensure_room(
            top,
            target,
            need,
            inodes,
            &TmpfsOptions::for_files(files, owner.0, owner.1),
        )?;
    }
    let mut w = Writer {
        top,
        owner,
        counter: 0,
    };
    for (path, f, exchange) in replace {
        let (parent, name) = split(path);
        let dir = w.dir(parent).map_err(werr(path))?;
        let temp = w.temp_name();
        w.write_new(&dir, &temp, f).map_err(werr(path))?;
        if let Err(e) = w.place(&dir, parent, &temp, name, exchange) {
            let _ = remove_tree(top, &join(parent, &temp));
            return Err(werr(path)(e));
        }
    }
    for (root, tree) in new_trees {
        let (parent, name) = split(&root);
        let dir = w.dir(parent).map_err(werr(&root))?;
        let temp = w.temp_name();
        let built = (|| -> io::Result<()> {
            let base = w.mkdir(&dir, &temp)?;
            drop(base);
            let temp_root = join(parent, &temp);
            for f in &tree {
                let rel = f.path.to_string();
                let below = &rel[root.len() + 1..];
                let (sub, file) = split(below);
                let mut at = temp_root.clone();
                for c in sub.split('/').filter(|c| !c.is_empty()) {
                    let d = w.dir(&at)?;
                    match w.mkdir(&d, c) {
                        Ok(_) => {}
                        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                        Err(e) => return Err(e),
                    }
                    at = format!("{at}/{c}");
                }
                w.write_new(&w.dir(&at)?, file, f)?;
            }
            let exchange = have.contains_key(root.as_str());
            w.place(&dir, parent, &temp, name, exchange)
        })();
        if let Err(e) = built {
            let _ = remove_tree(top, &join(parent, &temp));
            return Err(werr(&root)(e));
        }
    }
    // Then what no source returns any more: whole directories renamed away
    // first (they vanish at once), then emptied; files unlinked.
    // A directory that is not needed any more (gone, or replaced by a
    // file) takes everything in it along.
    let dir_goes = |p: &str| have.get(p) == Some(&Kind::Dir) && !needed_dirs.contains(p);
    for (path, kind) in &have {
        if want.contains_key(path) || needed_dirs.contains(path) {
            continue;
        }
        let mut up = path.as_str();
        let mut inside_gone = false;
        while let Some((a, _)) = up.rsplit_once('/') {
            if dir_goes(a) {
                inside_gone = true;
                break;
            }
            up = a;
        }
        if inside_gone {
            continue;
        }
        let (parent, name) = split(path);
        if *kind == Kind::Dir {
            let dir = w.dir(parent).map_err(werr(path))?;
            let temp = w.temp_name();
            let name = cstring(name).map_err(werr(path))?;
            let t = cstring(&temp).map_err(werr(path))?;
            // SAFETY: valid fd and C strings.
            check(unsafe {
                libc::renameat2(
                    dir.as_raw_fd(),
                    name.as_ptr(),
                    dir.as_raw_fd(),
                    t.as_ptr(),
                    libc::RENAME_NOREPLACE,
                )
            })
            .map_err(werr(path))?;
            remove_tree(top, &join(parent, &temp)).map_err(werr(path))?;
        } else {
            remove_tree(top, path).map_err(werr(path))?;
        }
        changes.removed.push(path.clone());
    }
    Ok(changes)
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}/{name}")
    }
}

/// Check that `fd` is the root of privy's sealed tmpfs.
fn check_privy_mount(fd: &OwnedFd, parent: &OwnedFd, target: &str) -> Result<(), RefreshError> {
    let not = |why: String| RefreshError::NotPrivyMount {
        target: target.to_owned(),
        why,
    };
    let terr = |error| RefreshError::Target {
        target: target.to_owned(),
        error,
    };
    // SAFETY: statfs is plain data, filled by the kernel.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and a statfs to fill.
    check(unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) }).map_err(terr)?;
    if st.f_type as i64 != TMPFS_MAGIC {
        return Err(not("not a tmpfs".into()));
    }
    use nix::sys::statvfs::FsFlags;
    let flags = nix::sys::statvfs::fstatvfs(fd)
        .map_err(|e| terr(e.into()))?
        .flags();
    let sealed = FsFlags::ST_RDONLY | FsFlags::ST_NOSUID | FsFlags::ST_NODEV | FsFlags::ST_NOEXEC;
    if !flags.contains(sealed) {
        return Err(not("not mounted ro,nosuid,nodev,noexec".into()));
    }
    if sys::mount_id(fd.as_raw_fd()).map_err(terr)?
        == sys::mount_id(parent.as_raw_fd()).map_err(terr)?
    {
        return Err(not("not a mount point".into()));
    }
    Ok(())
}

/// Enter container `t.pid` and apply `files` at `t.target`. Must run in
/// a single-threaded process (the refresh child): `setns` moves the whole
/// process into the container's mount namespace.
pub fn apply(t: &Target, files: &[CheckedFile]) -> Result<Changes, RefreshError> {
    use std::os::unix::fs::MetadataExt;
    let pid = t.pid;
    let stopped = |found| RefreshError::Stopped {
        pid,
        recorded: t.start_time,
        found,
    };
    let setns_err = |error| RefreshError::Setns { pid, error };
    // Handles first, then the start time: if it still matches, the
    // handles are the recorded process's (a reused pid starts later).
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/mnt")).map_err(|_| stopped(None))?;
    // A user refreshing its own rootless container is not root here: it
    // first joins the container's user namespace, which it owns and where
    // it so has the rights to enter and change that namespace's mounts.
    // Real root needs no such step (and is not made to take one).
    let userns = if crate::sys::userns::is_real_root() {
        None
    } else {
        Some(std::fs::File::open(format!("/proc/{pid}/ns/user")).map_err(|_| stopped(None))?)
    };
    let root =
        sys::open_dir_path(Path::new(&format!("/proc/{pid}/root"))).map_err(|_| stopped(None))?;
    match sys::process::start_time(pid) {
        Ok(s) if s == t.start_time => {}
        Ok(s) => return Err(stopped(Some(s))),
        Err(_) => return Err(stopped(None)),
    }
    let theirs = ns.metadata().map_err(setns_err)?;
    let ours = std::fs::metadata("/proc/self/ns/mnt").map_err(setns_err)?;
    if (theirs.dev(), theirs.ino()) == (ours.dev(), ours.ino()) {
        return Err(RefreshError::OwnNamespace { pid });
    }
    if let Some(userns) = &userns {
        let theirs = userns.metadata().map_err(setns_err)?;
        let ours = std::fs::metadata("/proc/self/ns/user").map_err(setns_err)?;
        if (theirs.dev(), theirs.ino()) != (ours.dev(), ours.ino()) {
            nix::sched::setns(userns, nix::sched::CloneFlags::CLONE_NEWUSER)
                .map_err(|e| setns_err(e.into()))?;
        }
    }
    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNS).map_err(|e| setns_err(e.into()))?;
    let terr = |error| RefreshError::Target {
        target: t.target.clone(),
        error,
    };
    let resolve = |p: &str| {
        sys::openat2(
            root.as_raw_fd(),
            p,
            libc::O_PATH | libc::O_DIRECTORY,
            0,
            sys::RESOLVE_IN_ROOT | sys::RESOLVE_NO_MAGICLINKS,
        )
    };
    let at = resolve(&t.target).map_err(terr)?;
    let parent = resolve(&format!("{}/..", t.target)).map_err(terr)?;
    check_privy_mount(&at, &parent, &t.target)?;
    let cerr = |error| RefreshError::Clone {
        target: t.target.clone(),
        error,
    };
    let clone = sys::mount::open_tree_clone(at.as_raw_fd()).map_err(cerr)?;
    sys::mount::mount_clearattr(clone.as_raw_fd(), sys::MOUNT_ATTR_RDONLY).map_err(cerr)?;
    // The copy keeps nosuid,nodev,noexec; only its own read-only flag went.
    debug_assert_eq!(MOUNT_ATTRS & sys::MOUNT_ATTR_RDONLY, 0);
    apply_at(&clone, &t.target, files, t.owner)
}

// ---- the child's pipe ---------------------------------------------------

#[derive(Serialize, Deserialize)]
struct Header {
    target: Target,
    files: Vec<FileHeader>,
}

#[derive(Serialize, Deserialize)]
struct FileHeader {
    path: String,
    mode: u32,
    len: usize,
    source: String,
}

/// The child's input: one JSON line (names, modes, lengths), then the
/// bytes of every file back to back.
fn encode(t: &Target, files: &[CheckedFile], out: &mut impl Write) -> io::Result<()> {
    let header = Header {
        target: t.clone(),
        files: files
            .iter()
            .map(|f| FileHeader {
                path: f.path.to_string(),
                mode: f.mode,
                len: f.data.len(),
                source: f.source.clone(),
            })
            .collect(),
    };
    let mut line = serde_json::to_vec(&header).map_err(io::Error::other)?;
    line.push(b'\n');
    out.write_all(&line)?;
    for f in files {
        out.write_all(f.data.expose())?;
    }
    out.flush()
}

/// Read what [`encode`] wrote.
fn decode(input: &mut impl Read) -> io::Result<(Target, Vec<CheckedFile>)> {
    let mut all = Vec::new();
    input.read_to_end(&mut all)?;
    let all = Secret::new(all);
    let bytes = all.expose();
    let nl = bytes
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no header line"))?;
    let header: Header = serde_json::from_slice(&bytes[..nl])
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("header: {e}")))?;
    let mut at = nl + 1;
    let mut files = Vec::new();
    for h in header.files {
        let end = at
            .checked_add(h.len)
            .filter(|e| *e <= bytes.len())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "short input"))?;
        let path = RelPath::new(&h.path)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        files.push(CheckedFile {
            path,
            data: Secret::new(bytes[at..end].to_vec()),
            mode: h.mode,
            source: h.source,
        });
        at = end;
    }
    if at != bytes.len() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "trailing input"));
    }
    Ok((header.target, files))
}

/// The refresh child's whole life: read the target and files from
/// `input`, apply them, write the [`Changes`] as JSON to `output`.
pub fn child_main(input: &mut impl Read, output: &mut impl Write) -> Result<(), RefreshError> {
    let (t, files) = decode(input).map_err(|e| RefreshError::Child(e.to_string()))?;
    let changes = apply(&t, &files)?;
    let json = serde_json::to_vec(&changes).map_err(|e| RefreshError::Child(e.to_string()))?;
    output
        .write_all(&json)
        .map_err(|e| RefreshError::Child(e.to_string()))
}

/// Run [`apply`] in a fresh single-threaded process: `exe`
/// ([`CHILD_SUBCOMMAND`]), fed over a pipe. The child's error line comes
/// back as [`RefreshError::Child`].
pub fn apply_via_child(
    exe: &Path,
    t: &Target,
    files: &[CheckedFile],
) -> Result<Changes, RefreshError> {
    use std::process::{Command, Stdio};
    let cerr = |e: io::Error| RefreshError::Child(format!("{}: {e}", exe.display()));
    let mut child = Command::new(exe)
        .arg(CHILD_SUBCOMMAND)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(cerr)?;
    let mut stdin = child.stdin.take().expect("piped");
    let fed = encode(t, files, &mut stdin);
    drop(stdin);
    let out = child.wait_with_output().map_err(cerr)?;
    if !out.status.success() {
        let line = String::from_utf8_lossy(&out.stderr)
            .trim()
            .replace('\n', " ");
        let line = line.strip_prefix("privy: ").unwrap_or(&line).to_owned();
        return Err(RefreshError::Child(if line.is_empty() {
            format!("exited with {}", out.status)
        } else {
            line
        }));
    }
    fed.map_err(cerr)?;
    serde_json::from_slice(&out.stdout).map_err(|e| RefreshError::Child(format!("its answer: {e}")))
}
