//! Streaming decoders for what is nested inside a layer, and the limits
//! that keep hostile input bounded.
//!
//! - [`Input`] is the one buffered reader every nested level reads
//!   through: it peeks a file's head (to detect its format), lets a zip
//!   reader look ahead for a data descriptor, hands a raw copy of every byte
//!   it reads to a scanner (so a file is scanned as it is *and* decoded in
//!   one pass), and tells an error of its source (the enclosing file is
//!   damaged) from an error of the decoder on top (this file is).
//! - [`decoder`] opens gzip, zstd, xz and bzip2 as streams, each with a
//!   fixed memory ceiling: zstd windows up to 128 MiB (zstd's own default
//!   limit), xz dictionaries up to [`XZ_MEMLIMIT`], bzip2 at most 900 kB
//!   blocks by design. No decoder output is ever held whole.
//! - [`Budget`] bounds *expansion*: every byte a decoder produces inside one
//!   layer counts against `max_expansion` times the layer's size (plus
//!   [`EXPANSION_FLOOR`]). A zip, xz or bzip2 bomb stops there, and the scan
//!   reports the file INCOMPLETE instead of decoding for hours.

use super::detect::Codec;
use std::io::{self, BufRead, Read};
use std::sync::atomic::{AtomicU64, Ordering};

/// xz/lzma dictionary memory one decoder may use. `xz -9` needs 65 MiB to
/// decode; a header asking for more is refused (the file is INCOMPLETE).
pub const XZ_MEMLIMIT: u64 = 96 << 20;
/// zstd window: 2^27 = 128 MiB, zstd's default decoder limit (frames that
/// need more were written with `--long` and need the same flag to decode).
pub const ZSTD_WINDOW_LOG_MAX: u32 = 27;
/// Every layer may decode this much on top of its expansion ratio, so small
/// layers with ordinary compressed files never hit the limit.
pub const EXPANSION_FLOOR: u64 = 64 << 20;

/// The decoded-bytes allowance of one layer (or of a directory tree).
#[derive(Debug)]
pub struct Budget {
    limit: u64,
    used: AtomicU64,
    ratio: u64,
}

impl Budget {
    /// `ratio` times `base` bytes, plus [`EXPANSION_FLOOR`].
    pub fn new(ratio: u64, base: u64) -> Budget {
        Budget {
            limit: ratio.saturating_mul(base).saturating_add(EXPANSION_FLOOR),
            used: AtomicU64::new(0),
            ratio,
        }
    }

    fn take(&self, n: u64) -> io::Result<()> {
        let before = self.used.fetch_add(n, Ordering::Relaxed);
        if before.saturating_add(n) > self.limit {
            return Err(io::Error::other(format!(
                "expansion limit: more than {} bytes decoded from this layer \
                 ({}x its size + {} MiB; raise it with --max-expansion)",
                self.limit,
                self.ratio,
                EXPANSION_FLOOR >> 20
            )));
        }
        Ok(())
    }

    /// Whether the allowance is spent.
    pub fn spent(&self) -> bool {
        self.used.load(Ordering::Relaxed) > self.limit
    }
}

/// A decoder's output, counted against a [`Budget`].
pub struct Metered<'b, R> {
    pub r: R,
    pub budget: &'b Budget,
}

impl<R: Read> Read for Metered<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.r.read(buf)?;
        self.budget.take(n as u64)?;
        Ok(n)
    }
}

/// Receives a raw copy of every byte an [`Input`] reads from its source.
pub trait Sink {
    fn push(&mut self, data: &[u8]);
}

/// Buffered input with look-ahead, a raw tap and source-error tracking.
pub struct Input<'a> {
    src: &'a mut dyn Read,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// Bytes read from `src` so far.
    read: u64,
    eof: bool,
    sink: Option<&'a mut dyn Sink>,
    /// An error of the source (the enclosing stream), kept to re-raise it
    /// as the enclosing level's error rather than this file's.
    src_err: Option<(io::ErrorKind, String)>,
}

const INPUT_BUF: usize = 64 << 10;

thread_local! {
    /// Buffers of finished `Input`s, reused: a layer of 50,000 small files
    /// would otherwise allocate and clear 50,000 of them.
    static POOL: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Drop for Input<'_> {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        POOL.with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < 16 {
                p.push(buf);
            }
        });
    }
}

impl<'a> Input<'a> {
    pub fn new(src: &'a mut dyn Read) -> Input<'a> {
        let buf = POOL
            .with(|p| p.borrow_mut().pop())
            .unwrap_or_else(|| vec![0; INPUT_BUF]);
        Input {
            src,
            buf,
            pos: 0,
            end: 0,
            read: 0,
            eof: false,
            sink: None,
            src_err: None,
        }
    }

    /// From now on every byte read (and the bytes already buffered, which
    /// must be all read so far) goes to `sink` too.
    pub fn tap(&mut self, sink: &'a mut dyn Sink) {
        debug_assert_eq!(self.read, self.end as u64);
        sink.push(&self.buf[..self.end]);
        self.sink = Some(sink);
    }

    /// Stream offset of the next unconsumed byte.
    pub fn offset(&self) -> u64 {
        self.read - (self.end - self.pos) as u64
    }

    /// The source's error, if reading failed there.
    pub fn source_error(&mut self) -> Option<io::Error> {
        self.src_err.take().map(|(k, m)| io::Error::new(k, m))
    }

    fn read_src(&mut self, into: std::ops::Range<usize>) -> io::Result<usize> {
        loop {
            match self.src.read(&mut self.buf[into.clone()]) {
                Ok(n) => {
                    if n == 0 {
                        self.eof = true;
                    }
                    self.read += n as u64;
                    if let Some(s) = self.sink.as_mut() {
                        s.push(&self.buf[into.start..into.start + n]);
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let msg = e.to_string();
                    self.src_err = Some((e.kind(), msg.clone()));
                    return Err(io::Error::new(e.kind(), msg));
                }
            }
        }
    }

    /// At least `n` buffered bytes (fewer only at the end of the input);
    /// `n` may not exceed the buffer.
    pub fn fill(&mut self, n: usize) -> io::Result<&[u8]> {
        let n = n.min(self.buf.len());
        if self.end - self.pos < n && !self.eof {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
            while self.end < n && !self.eof {
                let k = self.read_src(self.end..self.buf.len())?;
                self.end += k;
            }
        }
        Ok(&self.buf[self.pos..self.end])
    }

    /// Skip `n` bytes; an error if the input ends first.
    pub fn skip(&mut self, mut n: u64) -> io::Result<()> {
        while n > 0 {
            let avail = self.fill(1)?.len();
            if avail == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let k = (avail as u64).min(n) as usize;
            self.pos += k;
            n -= k as u64;
        }
        Ok(())
    }

    /// Read (and so tap) everything that is left.
    pub fn drain(&mut self) -> io::Result<()> {
        self.pos = self.end;
        while !self.eof {
            self.read_src(0..self.buf.len())?;
            self.pos = 0;
            self.end = 0;
        }
        Ok(())
    }

    /// Exactly `out.len()` bytes, or `UnexpectedEof`.
    pub fn read_exact_buf(&mut self, out: &mut [u8]) -> io::Result<()> {
        Read::read_exact(self, out)
    }
}

impl Read for Input<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.end {
            if self.eof || out.is_empty() {
                return Ok(0);
            }
            self.pos = 0;
            self.end = self.read_src(0..self.buf.len())?;
        }
        let n = out.len().min(self.end - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl BufRead for Input<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos == self.end && !self.eof {
            self.pos = 0;
            self.end = self.read_src(0..self.buf.len())?;
        }
        Ok(&self.buf[self.pos..self.end])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.end);
    }
}

/// A streaming decoder for `codec` reading compressed bytes from `r`.
/// Concatenated streams (gzip members, zstd frames, xz streams, bzip2
/// streams) are all decoded, as their command-line tools do.
pub fn decoder<'r, R: BufRead + 'r>(codec: Codec, r: R) -> io::Result<Box<dyn Read + 'r>> {
    Ok(match codec {
        Codec::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        Codec::Zstd => {
            let mut d = zstd::stream::read::Decoder::with_buffer(r)?;
            d.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
            Box::new(d)
        }
        Codec::Xz => {
            let s = liblzma::stream::Stream::new_stream_decoder(
                XZ_MEMLIMIT,
                liblzma::stream::CONCATENATED,
            )
            .map_err(io::Error::other)?;
            Box::new(liblzma::bufread::XzDecoder::new_stream(r, s))
        }
        Codec::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(r)),
        Codec::Zip => Box::new(flate2::bufread::DeflateDecoder::new(r)),
    })
}

/// One zip member's data decoder: exactly one stream, stopping where it
/// ends (a data descriptor may follow). `None` for methods not decoded.
pub fn zip_member<'r, R: BufRead + 'r>(
    method: u16,
    r: R,
) -> io::Result<Option<Box<dyn Read + 'r>>> {
    Ok(Some(match method {
        8 => Box::new(flate2::bufread::DeflateDecoder::new(r)),
        12 => Box::new(bzip2::bufread::BzDecoder::new(r)),
        93 => {
            let mut d = zstd::stream::read::Decoder::with_buffer(r)?.single_frame();
            d.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
            Box::new(d)
        }
        95 => {
            let s = liblzma::stream::Stream::new_stream_decoder(XZ_MEMLIMIT, 0)
                .map_err(io::Error::other)?;
            Box::new(liblzma::bufread::XzDecoder::new_stream(r, s))
        }
        _ => return Ok(None),
    }))
}

/// Whether [`zip_member`] decodes `method` (0, stored, needs no decoder).
pub fn zip_method_supported(method: u16) -> bool {
    matches!(method, 0 | 8 | 12 | 93 | 95)
}

/// The name of a zip compression method, for INCOMPLETE lines.
pub fn zip_method_name(m: u16) -> String {
    match m {
        1..=6 => format!("method {m} (shrink/reduce/implode)"),
        9 => "method 9 (deflate64)".into(),
        14 => "method 14 (lzma)".into(),
        98 => "method 98 (ppmd)".into(),
        99 => "method 99 (AES encryption)".into(),
        m => format!("method {m}"),
    }
}
