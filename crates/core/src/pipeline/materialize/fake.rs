//! The recording fake [`Os`]: a modelled image in memory, and a log of
//! every call that changes something, for unit tests that assert the exact
//! mount flags, ownership and order without root.

use super::{Entry, Os, TmpfsOptions};
use crate::sys::mountinfo::{Mount, Namespace};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;

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
    /// Refuse `noswap` with this errno, as a kernel before 6.4 or a user
    /// namespace does (the attempt is recorded, then fails).
    pub refuse_noswap: Option<i32>,
    /// What `selinux_enabled` answers (a host with SELinux on).
    pub selinux: bool,
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
    fn selinux_enabled(&self) -> bool {
        self.selinux
    }

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
        if let Some(errno) = self.refuse_noswap.filter(|_| opts.noswap) {
            return Err(super::NoswapRefused::wrap(io::Error::from_raw_os_error(
                errno,
            )));
        }
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
