//! A small, strict tar reader: ustar/GNU/pax headers, long names, base-256
//! sizes. It hands out each entry's path, size and data position; the data
//! itself is streamed (or skipped, on seekable input) by the caller. Damage
//! is an error, never a short listing: a bad header checksum, data cut off
//! by the end of the input, or a missing end-of-archive block.

use crate::shown::escaped_bytes;
use std::io::{self, Read};

pub const BLOCK: u64 = 512;
/// Largest pax or GNU long-name record read into memory.
const MAX_META: u64 = 1 << 20;

/// Input a tar is read from; seekable inputs skip data without reading it.
pub trait TarInput: Read {
    /// Skip `n` bytes; error if the input ends first.
    fn skip(&mut self, n: u64) -> io::Result<()> {
        let got = io::copy(&mut self.take(n), &mut io::sink())?;
        if got < n {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }
}

impl<R: Read + ?Sized> TarInput for Box<R> {}

/// One entry.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The entry's name, escaped for printing (`shown::escaped_bytes`):
    /// control characters, bidi overrides and invalid UTF-8 are spelled
    /// out, so a name cannot forge output lines.
    pub path: String,
    pub typeflag: u8,
    pub size: u64,
    /// Offset of the data from the start of the tar.
    pub data_offset: u64,
    /// For pax and long-name records: their content (already read).
    pub meta: Option<Vec<u8>>,
}

impl Entry {
    /// Regular file (data worth scanning as a file).
    pub fn is_file(&self) -> bool {
        matches!(self.typeflag, b'0' | 0 | b'7' | b'S')
    }
}

/// Does this 512-byte block look like a valid tar header?
pub fn looks_like_tar(block: &[u8]) -> bool {
    block.len() >= BLOCK as usize
        && !block[..BLOCK as usize].iter().all(|&b| b == 0)
        && checksum_ok(&block[..BLOCK as usize])
}

fn checksum_ok(b: &[u8]) -> bool {
    let Some(want) = octal(&b[148..156]) else {
        return false;
    };
    let sum: u64 = b
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            if (148..156).contains(&i) {
                32
            } else {
                x as u64
            }
        })
        .sum();
    sum == want
}

fn octal(f: &[u8]) -> Option<u64> {
    let s: Vec<u8> = f
        .iter()
        .copied()
        .skip_while(|&c| c == b' ')
        .take_while(|&c| c != 0 && c != b' ')
        .collect();
    if s.is_empty() {
        return Some(0);
    }
    let mut v: u64 = 0;
    for c in s {
        if !(b'0'..=b'7').contains(&c) {
            return None;
        }
        v = v.checked_mul(8)?.checked_add((c - b'0') as u64)?;
    }
    Some(v)
}

fn size_field(f: &[u8]) -> Option<u64> {
    if f[0] & 0x80 != 0 {
        // GNU base-256.
        let mut v: u64 = (f[0] & 0x7f) as u64;
        for &c in &f[1..] {
            v = v.checked_mul(256)?.checked_add(c as u64)?;
        }
        return Some(v);
    }
    octal(f)
}

fn cstr(f: &[u8]) -> Vec<u8> {
    let end = f.iter().position(|&c| c == 0).unwrap_or(f.len());
    f[..end].to_vec()
}

fn pad(n: u64) -> u64 {
    (BLOCK - n % BLOCK) % BLOCK
}

/// Streaming tar reader.
pub struct TarReader<R: TarInput> {
    r: R,
    pos: u64,
    remaining: u64,
    padding: u64,
    done: bool,
    long_name: Option<Vec<u8>>,
    pax_path: Option<Vec<u8>>,
    pax_size: Option<u64>,
}

/// Tar damage, as one line.
#[derive(Debug)]
pub enum TarError {
    Io(io::Error),
    Truncated(String),
    Corrupt(String),
}

impl std::fmt::Display for TarError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TarError::Io(e) => write!(f, "{e}"),
            TarError::Truncated(s) => write!(f, "truncated tar: {s}"),
            TarError::Corrupt(s) => write!(f, "corrupt tar: {s}"),
        }
    }
}

impl From<io::Error> for TarError {
    fn from(e: io::Error) -> Self {
        TarError::Io(e)
    }
}

impl<R: TarInput> TarReader<R> {
    pub fn new(r: R) -> Self {
        TarReader {
            r,
            pos: 0,
            remaining: 0,
            padding: 0,
            done: false,
            long_name: None,
            pax_path: None,
            pax_size: None,
        }
    }

    fn eof_err(&self, what: &str, e: io::Error) -> TarError {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            TarError::Truncated(format!("input ends inside {what} at byte {}", self.pos))
        } else {
            TarError::Io(e)
        }
    }

    fn skip(&mut self, n: u64, what: &str) -> Result<(), TarError> {
        if n == 0 {
            return Ok(());
        }
        self.r.skip(n).map_err(|e| self.eof_err(what, e))?;
        self.pos += n;
        Ok(())
    }

    /// Read the current entry's data.
    pub fn read_data(&mut self, buf: &mut [u8]) -> Result<usize, TarError> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = (buf.len() as u64).min(self.remaining) as usize;
        let n = loop {
            match self.r.read(&mut buf[..want]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        };
        if n == 0 {
            return Err(TarError::Truncated(format!(
                "input ends inside file data at byte {}, {} bytes short",
                self.pos, self.remaining
            )));
        }
        self.remaining -= n as u64;
        self.pos += n as u64;
        Ok(n)
    }

    /// The next entry, or `None` at the end-of-archive block.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, TarError> {
        if self.done {
            return Ok(None);
        }
        let rest = self.remaining + self.padding;
        self.remaining = 0;
        self.padding = 0;
        self.skip(rest, "file data")?;
        let mut block = [0u8; BLOCK as usize];
        match self.r.read_exact(&mut block) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(TarError::Truncated(format!(
                    "no end-of-archive block (input ends at byte {})",
                    self.pos
                )))
            }
            Err(e) => return Err(e.into()),
        }
        let header_at = self.pos;
        self.pos += BLOCK;
        if block.iter().all(|&b| b == 0) {
            self.done = true;
            return Ok(None);
        }
        if !checksum_ok(&block) {
            return Err(TarError::Corrupt(format!(
                "bad header checksum at byte {header_at}"
            )));
        }
        let typeflag = block[156];
        let mut size = size_field(&block[124..136]).ok_or_else(|| {
            TarError::Corrupt(format!("bad size field in header at byte {header_at}"))
        })?;
        let mut path = cstr(&block[0..100]);
        if &block[257..262] == b"ustar" {
            let prefix = cstr(&block[345..500]);
            if !prefix.is_empty() && &block[257..263] == b"ustar\0" {
                path = [prefix.as_slice(), b"/", &path].concat();
            }
        }
        if matches!(typeflag, b'x' | b'g' | b'L' | b'K') {
            if size > MAX_META {
                return Err(TarError::Corrupt(format!(
                    "{size}-byte metadata record at byte {header_at}"
                )));
            }
            let mut data = vec![0u8; size as usize];
            self.r
                .read_exact(&mut data)
                .map_err(|e| self.eof_err("a metadata record", e))?;
            self.pos += size;
            let p = pad(size);
            self.skip(p, "padding")?;
            match typeflag {
                b'x' => self.apply_pax(&data),
                b'L' => self.long_name = Some(cstr(&data)),
                _ => {}
            }
            return Ok(Some(Entry {
                path: escaped_bytes(&path).into_owned(),
                typeflag,
                size,
                data_offset: header_at + BLOCK,
                meta: Some(data),
            }));
        }
        if let Some(n) = self.pax_path.take().or(self.long_name.take()) {
            path = n;
        }
        self.long_name = None;
        if let Some(s) = self.pax_size.take() {
            size = s;
        }
        // Links, directories, devices and fifos carry no data.
        if matches!(typeflag, b'1' | b'2' | b'3' | b'4' | b'5' | b'6') {
            size = 0;
        }
        self.remaining = size;
        self.padding = pad(size);
        Ok(Some(Entry {
            path: escaped_bytes(&path).into_owned(),
            typeflag,
            size,
            data_offset: self.pos,
            meta: None,
        }))
    }

    fn apply_pax(&mut self, data: &[u8]) {
        // Records: "LEN key=value\n".
        let mut rest = data;
        while !rest.is_empty() {
            let Some(sp) = rest.iter().position(|&c| c == b' ') else {
                break;
            };
            let Some(len) = std::str::from_utf8(&rest[..sp])
                .ok()
                .and_then(|s| s.parse::<usize>().ok())
            else {
                break;
            };
            if len <= sp || len > rest.len() {
                break;
            }
            let rec = &rest[sp + 1..len];
            let rec = rec.strip_suffix(b"\n").unwrap_or(rec);
            if let Some(eq) = rec.iter().position(|&c| c == b'=') {
                let (k, v) = (&rec[..eq], &rec[eq + 1..]);
                match k {
                    b"path" => self.pax_path = Some(v.to_vec()),
                    b"size" => {
                        self.pax_size = std::str::from_utf8(v).ok().and_then(|s| s.parse().ok())
                    }
                    _ => {}
                }
            }
            rest = &rest[len..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl TarInput for &[u8] {}

    fn build(gnu: bool, files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (p, d) in files {
            let mut h = if gnu {
                tar::Header::new_gnu()
            } else {
                tar::Header::new_ustar()
            };
            h.set_size(d.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, p, *d).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn list(t: &[u8]) -> Result<Vec<(String, Vec<u8>)>, TarError> {
        let mut r = TarReader::new(t);
        let mut out = Vec::new();
        while let Some(e) = r.next_entry()? {
            if e.meta.is_some() {
                continue;
            }
            let mut data = vec![0u8; e.size as usize];
            let mut n = 0;
            while n < data.len() {
                n += r.read_data(&mut data[n..])?;
            }
            out.push((e.path, data));
        }
        Ok(out)
    }

    #[test]
    fn long_names_gnu_and_ustar_prefix() {
        let long = format!("{}/{}", "d".repeat(90), "f".repeat(60));
        for gnu in [true, false] {
            let t = build(gnu, &[("a", b"1"), (&long, b"22")]);
            let got = list(&t).unwrap();
            assert_eq!(got[1], (long.clone(), b"22".to_vec()), "gnu {gnu}");
        }
    }

    #[test]
    fn damage_is_an_error_never_a_short_listing() {
        let t = build(true, &[("a", &[7u8; 3000]), ("b", b"x")]);
        assert_eq!(list(&t).unwrap().len(), 2);
        // Cut inside data, inside a header, and right after the last entry.
        for cut in [1000, 512 * 7 + 100, 512 * 9] {
            let e = list(&t[..cut]).unwrap_err();
            assert!(matches!(e, TarError::Truncated(_)), "cut {cut}: {e}");
        }
        let mut bad = t.clone();
        bad[512 * 7 + 10] ^= 1; // a byte of the second header
        assert!(matches!(list(&bad).unwrap_err(), TarError::Corrupt(_)));
    }
}
