//! Files privy opens on a source's behalf, opened so that nothing blocks.
//!
//! Opening a FIFO for reading waits until some writer opens it, a device
//! may wait or never end, and a read of either can wait forever: inside a
//! plugin call that wait happens on the thread that runs the call, where no
//! timer can end it (B4). So everything privy opens for a source (the pinned
//! `.wasm`, a `grant.files` entry for `read-file`, a CA file for `http`, and
//! every WASI open inside a granted directory, see `plugin/wasi_open.rs`) is
//! opened with `O_NONBLOCK | O_NOCTTY`, then checked with `fstat` on the
//! descriptor just opened (so nothing can be swapped in between the check
//! and the read): a regular file (or, for WASI, a directory) is used, and
//! anything else is refused with a line that names what it is.
//!
//! `O_NONBLOCK` stays set on the descriptor. It changes nothing for a
//! regular file on a disk, and it turns the few "regular" files that do wait
//! for data (`/proc/kmsg`, tracefs pipes) into an immediate "would block"
//! instead of a hang.

use std::fmt;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::path::Path;

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
