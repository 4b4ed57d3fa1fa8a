//! Stage five: put the checked files into the container (L2, L4).
//!
//! In the container's mount namespace: resolve the target inside the root
//! without leaving it (openat2 `RESOLVE_IN_ROOT`), creating missing
//! directories one component at a time; build a fresh, detached tmpfs
//! (size-capped, `nosuid,nodev,noexec`, `noswap` where allowed, root dir
//! 0700 owned by the container user); write every file into it with
//! `O_EXCL|O_NOFOLLOW`; seal it read-only; and only then attach it at the
//! target, so the container never sees a half-written or writable mount.
//!
//! All of that goes through the [`Os`] seam, so unit tests can assert the
//! exact flags and ownership with [`RecordingOs`] and no root.

use crate::check::CheckedFile;
use crate::sys;
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
    #[error("container root {root}: {error}")]
    Root { root: String, error: io::Error },
    #[error("target {path}: {error}")]
    Target { path: String, error: io::Error },
    #[error("mounting tmpfs: {0}")]
    Mount(io::Error),
    #[error("writing {path}: {error}")]
    Write { path: String, error: io::Error },
    #[error("sealing the mount read-only: {0}")]
    Seal(io::Error),
    #[error("attaching the mount at {path}: {error}")]
    Attach { path: String, error: io::Error },
}

/// The operating-system calls materialize makes.
pub trait Os {
    /// A handle on a directory.
    type Dir;
    /// Open the container's root directory.
    fn open_root(&mut self, root: &Path) -> io::Result<Self::Dir>;
    /// Resolve `rel` as if `root` were `/` (no escape through symlinks or
    /// `..`); `None` when it does not exist. It must be a directory.
    fn resolve_in_root(&mut self, root: &Self::Dir, rel: &str) -> io::Result<Option<Self::Dir>>;
    /// Create directory `name` in `parent` (never through a symlink) and open it.
    fn mkdir_child(&mut self, parent: &Self::Dir, name: &str, mode: u32) -> io::Result<Self::Dir>;
    /// Remove the empty directory `name` from `parent`.
    fn rmdir_child(&mut self, parent: &Self::Dir, name: &str) -> io::Result<()>;
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

/// Inject `files` at `target` under `root`. Returns the mountpoint
/// directories privy had to create (relative to the root, shallowest
/// first) so `poststop` can remove them again.
pub fn materialize<O: Os>(
    os: &mut O,
    root: &Path,
    target: &str,
    files: &[CheckedFile],
    owner: (u32, u32),
) -> Result<Vec<String>, MaterializeError> {
    let (uid, gid) = owner;
    let rootd = os.open_root(root).map_err(|error| MaterializeError::Root {
        root: root.display().to_string(),
        error,
    })?;
    let (target_dir, created) = ensure_dir(os, &rootd, target)?;
    let opts = TmpfsOptions::for_files(files, uid, gid);
    let mnt = os
        .new_tmpfs(&opts, MOUNT_ATTRS)
        .map_err(MaterializeError::Mount)?;
    let mut dirs: std::collections::BTreeMap<String, O::Dir> = std::collections::BTreeMap::new();
    for f in files {
        let (parents, name) = f.path.split_last();
        let mut key = String::new();
        for p in &parents {
            let parent_key = key.clone();
            if !key.is_empty() {
                key.push('/');
            }
            key.push_str(p);
            if !dirs.contains_key(&key) {
                let parent = if parent_key.is_empty() {
                    &mnt
                } else {
                    &dirs[&parent_key]
                };
                let d = os
                    .mkdir_owned(parent, p, DIR_MODE, uid, gid)
                    .map_err(|error| MaterializeError::Write {
                        path: key.clone(),
                        error,
                    })?;
                dirs.insert(key.clone(), d);
            }
        }
        let parent = if key.is_empty() { &mnt } else { &dirs[&key] };
        os.write_file(parent, name, f.data.expose(), f.mode, uid, gid)
            .map_err(|error| MaterializeError::Write {
                path: f.path.to_string(),
                error,
            })?;
    }
    drop(dirs);
    os.seal(&mnt, sys::MOUNT_ATTR_RDONLY)
        .map_err(MaterializeError::Seal)?;
    os.attach(&mnt, &target_dir)
        .map_err(|error| MaterializeError::Attach {
            path: target.to_owned(),
            error,
        })?;
    Ok(created)
}

/// Resolve `target` in the root, creating what is missing.
fn ensure_dir<O: Os>(
    os: &mut O,
    rootd: &O::Dir,
    target: &str,
) -> Result<(O::Dir, Vec<String>), MaterializeError> {
    let comps: Vec<&str> = target.split('/').filter(|c| !c.is_empty()).collect();
    let terr = |error| MaterializeError::Target {
        path: target.to_owned(),
        error,
    };
    // Longest existing prefix.
    let mut start = None;
    for i in (1..=comps.len()).rev() {
        if let Some(d) = os
            .resolve_in_root(rootd, &comps[..i].join("/"))
            .map_err(terr)?
        {
            start = Some((i, d));
            break;
        }
    }
    let (mut i, mut dir) = match start {
        Some(s) => s,
        None => (
            0,
            os.resolve_in_root(rootd, ".")
                .map_err(terr)?
                .ok_or_else(|| terr(io::ErrorKind::NotFound.into()))?,
        ),
    };
    let mut created = Vec::new();
    while i < comps.len() {
        dir = os
            .mkdir_child(&dir, comps[i], MOUNTPOINT_MODE)
            .map_err(terr)?;
        i += 1;
        created.push(comps[..i].join("/"));
    }
    Ok((dir, created))
}

/// Remove the directories `materialize` created, deepest first, if empty.
pub fn cleanup<O: Os>(os: &mut O, root: &Path, created: &[String]) -> io::Result<()> {
    let rootd = os.open_root(root)?;
    for rel in created.iter().rev() {
        let (parent, name) = match rel.rsplit_once('/') {
            Some((p, n)) => (p, n),
            None => (".", rel.as_str()),
        };
        let Some(pd) = os.resolve_in_root(&rootd, parent)? else {
            continue;
        };
        match os.rmdir_child(&pd, name) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(io::Error::new(e.kind(), format!("{rel}: {e}"))),
        }
    }
    Ok(())
}

/// The real system calls.
pub struct RealOs;

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

    fn resolve_in_root(&mut self, root: &OwnedFd, rel: &str) -> io::Result<Option<OwnedFd>> {
        match sys::openat2(
            root.as_raw_fd(),
            rel,
            libc::O_PATH | libc::O_DIRECTORY,
            0,
            sys::RESOLVE_IN_ROOT | sys::RESOLVE_NO_MAGICLINKS,
        ) {
            Ok(fd) => Ok(Some(fd)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
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
pub fn inject_into(
    pid: i32,
    root: &Path,
    target: &str,
    files: &[CheckedFile],
    owner: (u32, u32),
) -> Result<Vec<String>, MaterializeError> {
    use nix::sched::{setns, unshare, CloneFlags};
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/mnt"))
        .map_err(|error| MaterializeError::Setns { pid, error })?;
    std::thread::scope(|s| {
        s.spawn(|| {
            unshare(CloneFlags::CLONE_FS).map_err(|e| MaterializeError::Setns {
                pid,
                error: e.into(),
            })?;
            setns(&ns, CloneFlags::CLONE_NEWNS).map_err(|e| MaterializeError::Setns {
                pid,
                error: e.into(),
            })?;
            materialize(&mut RealOs, root, target, files, owner)
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

/// A fake [`Os`] over a set of existing directories that records every call.
/// Directories are strings: root-relative paths, or `tmpfs:` paths inside
/// the new mount. Symlinks are not modelled.
#[derive(Debug, Default)]
pub struct RecordingOs {
    pub existing: std::collections::BTreeSet<String>,
    pub ops: Vec<Op>,
    /// Make `new_tmpfs` fail, to test failure paths.
    pub fail_mount: bool,
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() || parent == "." {
        name.to_owned()
    } else {
        format!("{parent}/{name}")
    }
}

impl Os for RecordingOs {
    type Dir = String;
    fn open_root(&mut self, _root: &Path) -> io::Result<String> {
        Ok(String::new())
    }
    fn resolve_in_root(&mut self, _root: &String, rel: &str) -> io::Result<Option<String>> {
        let rel = if rel == "." {
            String::new()
        } else {
            rel.to_owned()
        };
        Ok((rel.is_empty() || self.existing.contains(&rel)).then_some(rel))
    }
    fn mkdir_child(&mut self, parent: &String, name: &str, mode: u32) -> io::Result<String> {
        let path = join(parent, name);
        self.ops.push(Op::MkdirChild {
            path: path.clone(),
            mode,
        });
        self.existing.insert(path.clone());
        Ok(path)
    }
    fn rmdir_child(&mut self, parent: &String, name: &str) -> io::Result<()> {
        let path = join(parent, name);
        self.existing.remove(&path);
        self.ops.push(Op::RmdirChild { path });
        Ok(())
    }
    fn new_tmpfs(&mut self, opts: &TmpfsOptions, attrs: u64) -> io::Result<String> {
        if self.fail_mount {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        self.ops.push(Op::NewTmpfs {
            opts: opts.clone(),
            attrs,
        });
        Ok("tmpfs:".into())
    }
    fn mkdir_owned(
        &mut self,
        parent: &String,
        name: &str,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> io::Result<String> {
        let path = format!(
            "{parent}{}{name}",
            if parent.ends_with(':') { "" } else { "/" }
        );
        self.ops.push(Op::MkdirOwned {
            path: path.clone(),
            mode,
            uid,
            gid,
        });
        Ok(path)
    }
    fn write_file(
        &mut self,
        parent: &String,
        name: &str,
        data: &[u8],
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> io::Result<()> {
        let path = format!(
            "{parent}{}{name}",
            if parent.ends_with(':') { "" } else { "/" }
        );
        self.ops.push(Op::WriteFile {
            path,
            len: data.len(),
            mode,
            uid,
            gid,
        });
        Ok(())
    }
    fn seal(&mut self, _mount: &String, attrs: u64) -> io::Result<()> {
        self.ops.push(Op::Seal { attrs });
        Ok(())
    }
    fn attach(&mut self, _mount: &String, target: &String) -> io::Result<()> {
        self.ops.push(Op::Attach {
            target: target.clone(),
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
                Op::WriteFile {
                    path: "tmpfs:api.key".into(),
                    len: 5000,
                    mode: 0o640,
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
}
