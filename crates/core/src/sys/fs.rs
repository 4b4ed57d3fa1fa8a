//! Files and directories privy reads or writes on the host, each done one
//! way everywhere:
//!
//! - **Reading without blocking.** Opening a FIFO for reading waits until
//!   some writer opens it, a device may wait or never end, and a read of
//!   either can wait forever: inside a plugin call that wait happens on the
//!   thread that runs the call, where no timer can end it (B4). So
//!   everything privy opens for a source (the pinned `.wasm`, a
//!   `grant.files` entry for `read-file`, a CA file for `http`, and every
//!   WASI open inside a granted directory, see `plugin/wasi_open.rs`) and
//!   every file named on its command line is opened with `O_NONBLOCK |
//!   O_NOCTTY`, then checked with `fstat` on the descriptor just opened (so
//!   nothing can be swapped in between the check and the read): a regular
//!   file (or, for WASI, a directory) is used, and anything else is refused
//!   with a line that names what it is ([`open_regular`]). `O_NONBLOCK`
//!   stays set on the descriptor: it changes nothing for a regular file on
//!   a disk, and it turns the few "regular" files that do wait for data
//!   (`/proc/kmsg`, tracefs pipes) into an immediate "would block".
//! - **Reading in a directory someone else may write** ([`read_regular_at`]):
//!   by directory handle, never following a symlink.
//! - **Replacing a file atomically** ([`write_atomic`]): a fresh randomly
//!   named file then a rename, never through a planted symlink (B8). A
//!   reader sees the old bytes or the new, never half.
//! - **A private temporary directory** ([`PrivateDir`]): 0700, random
//!   name, removed on drop.
//! - **A directory and its parents** ([`ensure_dir`]): the leaf with an
//!   exact mode, parents 0755 whatever the umask (B6).

use super::resolve::{openat2, RESOLVE_BENEATH, RESOLVE_NO_SYMLINKS};
use std::fmt;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

/// What a path turned out to be, when it is not what privy reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Directory,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
    Other,
}

impl Kind {
    /// The kind of a `st_mode`, or `None` for a regular file.
    pub fn of_mode(mode: u32) -> Option<Kind> {
        Some(match mode & libc::S_IFMT {
            libc::S_IFREG => return None,
            libc::S_IFDIR => Kind::Directory,
            libc::S_IFIFO => Kind::Fifo,
            libc::S_IFSOCK => Kind::Socket,
            libc::S_IFCHR => Kind::CharDevice,
            libc::S_IFBLK => Kind::BlockDevice,
            _ => Kind::Other,
        })
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Directory => "a directory",
            Kind::Fifo => "a FIFO",
            Kind::Socket => "a socket",
            Kind::CharDevice => "a character device",
            Kind::BlockDevice => "a block device",
            Kind::Other => "not a regular file",
        })
    }
}

/// Why a file was not read. The caller names the path.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("is {0}, not a regular file (privy reads only regular files: a FIFO or a device could block)")]
    NotRegular(Kind),
    #[error("is larger than {0} bytes")]
    TooBig(u64),
    #[error("had no data ready (it waits for a writer, like a pipe; privy reads only files that are there)")]
    WouldBlock,
}

/// Open `path` for reading without blocking, following symlinks as
/// `open(2)` does, and refuse anything but a regular file.
pub fn open_regular(path: &Path) -> Result<std::fs::File, ReadError> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    check_regular(&f)?;
    Ok(f)
}

/// Refuse an open descriptor that is not a regular file.
pub fn check_regular(f: &impl AsRawFd) -> Result<(), ReadError> {
    match Kind::of_mode(fstat_mode(f)?) {
        None => Ok(()),
        Some(k) => Err(ReadError::NotRegular(k)),
    }
}

/// The `st_mode` of an open descriptor.
pub fn fstat_mode(f: &impl AsRawFd) -> io::Result<u32> {
    // SAFETY: fstat fills the zeroed struct it is given and reads nothing else.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(f.as_raw_fd(), &mut st) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(st.st_mode)
    }
}

/// Read all of an already checked file, at most `max` bytes; more is an
/// error, and the partial buffer is zeroized (it may be private).
pub fn read_capped(f: std::fs::File, max: u64) -> Result<Vec<u8>, ReadError> {
    let mut buf = Vec::new();
    let r = f.take(max.saturating_add(1)).read_to_end(&mut buf);
    let fail = |buf: &mut Vec<u8>, e: ReadError| {
        zeroize::Zeroize::zeroize(buf);
        Err(e)
    };
    match r {
        Ok(_) if buf.len() as u64 > max => fail(&mut buf, ReadError::TooBig(max)),
        Ok(_) => Ok(buf),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => fail(&mut buf, ReadError::WouldBlock),
        Err(e) => fail(&mut buf, ReadError::Io(e)),
    }
}

/// [`open_regular`] then [`read_capped`].
pub fn read_regular(path: &Path, max: u64) -> Result<Vec<u8>, ReadError> {
    read_capped(open_regular(path)?, max)
}

/// Read `name` in the directory `dir` whole, refusing anything but a
/// regular file and never following a symlink (so a link planted there
/// cannot make privy read, and later copy, another file).
pub fn read_regular_at(
    dir: RawFd,
    name: &str,
    max: u64,
) -> io::Result<(Vec<u8>, std::fs::Metadata)> {
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

/// How [`write_atomic`] makes the new file.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteOpts {
    /// The new file's mode. `None`: the mode (and, where privy may set it,
    /// the owner) of the file it replaces, or 0644 for a new one.
    pub mode: Option<u32>,
    /// `fsync` the new file before the rename: for files that must survive
    /// a crash whole (the plugin cache, a bundle's `config.json`). Files on
    /// `/run` (the hook's state) need not pay for it.
    pub sync: bool,
    /// Replace an existing file only: when `path` is gone (removed by
    /// someone else meanwhile), fail with `NotFound` instead of making it
    /// again. The new file is exchanged with the old (`RENAME_EXCHANGE`),
    /// which fails when there is no old one, and the old is then removed.
    pub replace_only: bool,
}

/// Replace `path` with `bytes`, atomically and without following any
/// symlink in its directory ([`write_atomic_at`] on the parent directory).
pub fn write_atomic(path: &Path, bytes: &[u8], opts: WriteOpts) -> io::Result<()> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str()))
    else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a file path",
        ));
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let dir = super::resolve::open_dir_path(parent)?;
    let like = std::fs::symlink_metadata(path).ok().filter(|m| m.is_file());
    write_atomic_at(&dir, name, bytes, like.as_ref(), opts)
}

/// Replace `name` in the directory `dir` with `bytes`, atomically and
/// without following any symlink: the new content goes to a fresh file with
/// a random name created `O_CREAT|O_EXCL|O_NOFOLLOW` through the directory's
/// descriptor, which is then renamed over `name` (`renameat` replaces a
/// symlink there, never its target). Someone who can write to `dir` cannot
/// redirect the write by planting a link under a predictable name (B8).
/// The file gets `opts.mode`; without one, `like`'s mode and its owner when
/// privy may set it (the file being replaced), or 0644.
pub fn write_atomic_at(
    dir: &OwnedFd,
    name: &str,
    bytes: &[u8],
    like: Option<&std::fs::Metadata>,
    opts: WriteOpts,
) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;
    let mut rnd = [0u8; 12];
    getrandom::getrandom(&mut rnd).map_err(|e| io::Error::other(e.to_string()))?;
    let tmp = format!(".{name}.privy-{}", hex::encode(rnd));
    let like = like.filter(|_| opts.mode.is_none());
    let mode = opts
        .mode
        .or(like.map(|m| m.mode() & 0o7777))
        .unwrap_or(0o644);
    let fd = openat2(
        dir.as_raw_fd(),
        &tmp,
        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
        0o600,
        RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS,
    )?;
    let (t, n) = (super::cstr(&tmp)?, super::cstr(name)?);
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
        if opts.sync {
            f.sync_all()?;
        }
        Ok(())
    })();
    if let Err(e) = written {
        unlink();
        return Err(e);
    }
    let e = rename_in(dir.as_raw_fd(), &t, &n, opts.replace_only).err();
    if e.is_some() || opts.replace_only {
        // Not renamed, or exchanged: the temporary name holds the old file.
        unlink();
    }
    e.map_or(Ok(()), Err)
}

/// Rename `from` to `to`, both in the directory `dir`; with `exchange`,
/// swap them atomically instead (both must exist; `from` then names what
/// `to` was).
pub fn rename_in(
    dir: RawFd,
    from: &std::ffi::CStr,
    to: &std::ffi::CStr,
    exchange: bool,
) -> io::Result<()> {
    let flags = if exchange { libc::RENAME_EXCHANGE } else { 0 };
    // SAFETY: a valid fd and NUL-terminated strings.
    if unsafe { libc::renameat2(dir, from.as_ptr(), dir, to.as_ptr(), flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A fresh 0700 directory under the temp dir, with a random name, removed
/// (with what is in it) on drop. privy's one temporary directory: for
/// `privy build`'s per-build hooks.d entries (which carry the ticket) and
/// iidfile, and the scanner's unpacked images. Never for private bytes
/// (L1): those live in memory only.
#[derive(Debug)]
pub struct PrivateDir(PathBuf);

impl PrivateDir {
    /// `$TMPDIR/PREFIX-` and 24 random hex digits; a name that exists is
    /// retried (16 times), never reused.
    pub fn new(prefix: &str) -> io::Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        let mut last = None;
        for _ in 0..16 {
            let mut r = [0u8; 12];
            getrandom::getrandom(&mut r).map_err(|e| io::Error::other(e.to_string()))?;
            let p = std::env::temp_dir().join(format!("{prefix}-{}", hex::encode(r)));
            match std::fs::DirBuilder::new().mode(0o700).create(&p) {
                Ok(()) => return Ok(PrivateDir(p)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no free temporary name")))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Create `dir` with exactly `mode`, and any missing parents with 0755
/// (chmod after mkdir, so the umask cannot narrow them). Directories that
/// already exist are left as they are. Parents are shared: `/run/privy`
/// holds both the hook's private state dir and the daemon's socket, which
/// every local user must reach (B6: creating them 0700 locked every
/// non-root user out of a daemon started afterwards).
pub fn ensure_dir(dir: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        ensure_dir(parent, 0o755)?;
    }
    match std::fs::DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)),
        // Another process created it meanwhile.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn mkfifo(p: &Path) {
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid C string; mkfifo reads nothing else.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }

    #[test]
    fn b4_a_fifo_is_refused_at_once_not_waited_on() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("fifo");
        mkfifo(&p);
        let t = Instant::now();
        let e = read_regular(&p, 1 << 20).unwrap_err();
        assert!(matches!(e, ReadError::NotRegular(Kind::Fifo)), "{e}");
        assert!(t.elapsed() < Duration::from_secs(1));
        assert!(e.to_string().starts_with("is a FIFO, not a regular file"));
    }

    #[test]
    fn a_replaced_file_keeps_its_mode_or_gets_the_one_asked_for_and_never_follows_a_link() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, b"old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&p, b"new", WriteOpts::default()).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&p), 0o640);
        write_atomic(
            &p,
            b"x",
            WriteOpts {
                mode: Some(0o600),
                sync: true,
                replace_only: false,
            },
        )
        .unwrap();
        assert_eq!(mode(&p), 0o600);
        // A symlink in its place is replaced, its target untouched.
        let victim = d.path().join("victim");
        std::fs::write(&victim, b"victim").unwrap();
        let l = d.path().join("l");
        std::os::unix::fs::symlink(&victim, &l).unwrap();
        write_atomic(&l, b"mine", WriteOpts::default()).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"victim");
        assert_eq!(std::fs::read(&l).unwrap(), b"mine");
        assert_eq!(
            std::fs::read_dir(d.path()).unwrap().count(),
            3,
            "no temp file left"
        );
    }

    #[test]
    fn replace_only_never_makes_again_a_file_that_was_removed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("record");
        let only = WriteOpts {
            replace_only: true,
            ..WriteOpts::default()
        };
        let e = write_atomic(&p, b"new", only).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
        assert!(!p.exists(), "made again");
        std::fs::write(&p, b"old").unwrap();
        write_atomic(&p, b"new", only).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(
            std::fs::read_dir(d.path()).unwrap().count(),
            1,
            "no temp file left, neither the new one nor the old"
        );
    }

    #[test]
    fn private_dirs_are_0700_distinct_and_removed_on_drop() {
        use std::os::unix::fs::PermissionsExt;
        let a = PrivateDir::new("privy-test").unwrap();
        let b = PrivateDir::new("privy-test").unwrap();
        assert_ne!(a.path(), b.path());
        let m = std::fs::metadata(a.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(m, 0o700);
        std::fs::write(a.path().join("x"), b"x").unwrap();
        let p = a.path().to_owned();
        drop(a);
        assert!(!p.exists());
    }

    #[test]
    fn devices_and_directories_are_refused_and_regular_files_read() {
        let e = read_regular(Path::new("/dev/zero"), 16).unwrap_err();
        assert!(matches!(e, ReadError::NotRegular(Kind::CharDevice)), "{e}");
        let e = read_regular(Path::new("/"), 16).unwrap_err();
        assert!(matches!(e, ReadError::NotRegular(Kind::Directory)), "{e}");
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, b"12345").unwrap();
        assert_eq!(read_regular(&p, 5).unwrap(), b"12345");
        let e = read_regular(&p, 4).unwrap_err();
        assert!(matches!(e, ReadError::TooBig(4)), "{e}");
    }
}
