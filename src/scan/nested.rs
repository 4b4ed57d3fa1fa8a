//! Files inside files: the recursive walk that scans a file as it is and,
//! when its first bytes say it is compressed or an archive, what it holds.
//!
//! One rule for every level: [`Walker::file`] reads a file once, front to
//! back. Its raw bytes go to a stream scanner (so a copy stored as it is is
//! found wherever it sits), and the same bytes feed the decoder for its
//! format: gzip, zstd, xz and bzip2 give one new stream; tar, zip, ar and
//! cpio give members; each of those is a file again, one level deeper.
//! Paths show the chain (`app.jar!/BOOT-INF/classes/app.properties`), and
//! a finding inside decoded data names the innermost codec (`zip:exact`).
//!
//! Anything not fully read is INCOMPLETE, never clean: a format privy does
//! not decode, nesting deeper than `max_nesting`, an expansion limit hit
//! (see [`Budget`]), damaged data, a zip member in an unknown method.
//!
//! Members stored as they are (tar entries, stored zip members) are both
//! part of their archive's raw bytes and files of their own; the archive's
//! raw findings inside them are dropped (`Out::suppress`) so each copy is
//! reported once, under the member's own path.

use super::archives;
use super::decode::{decoder, Budget, Input, Metered};
use super::detect::{detect, Archive, Codec, Format, HEAD};
use super::engine::{Out, Run, Suppress};
use super::matcher::{Hit, Matcher, W};
use super::tarstream::{looks_like_tar, TarInput, TarReader};
use super::zip;
use super::Section;
use std::io::{self, Read};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Bytes the stream scanner holds before it scans (plus its margin).
const STREAM_BUF: usize = 4 << 20;

/// Walks the files of one layer (or tree).
pub struct Walker<'r, 'a> {
    pub run: &'r Run<'a>,
    pub layer: Arc<str>,
    pub section: Section,
    pub budget: &'r Budget,
}

/// A tar entry's data as a reader.
struct EntryReader<'t, R: TarInput> {
    tr: &'t mut TarReader<R>,
}

impl<R: TarInput> Read for EntryReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.tr
            .read_data(buf)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
    }
}

impl TarInput for &mut Input<'_> {
    fn skip(&mut self, n: u64) -> io::Result<()> {
        Input::skip(self, n)
    }
}

fn join(path: &str, inner: &str) -> String {
    if path.is_empty() {
        inner.to_string()
    } else {
        format!("{path}!/{inner}")
    }
}

fn format_name(f: Format) -> &'static str {
    match f {
        Format::Plain => "data",
        Format::Compressed(c) => c.as_str(),
        Format::Archive(a) => a.as_str(),
        Format::Unsupported(n) => n,
    }
}

impl Walker<'_, '_> {
    fn report(&self, path: &str, via: Option<Codec>, hits: &[Hit], out: &mut Out) {
        for h in hits {
            self.run
                .finding(&self.layer, self.section, via, path, h, out);
        }
    }

    fn incomplete(&self, path: &str, why: &str, out: &mut Out) {
        let p = if path.is_empty() {
            "(whole blob)"
        } else {
            path
        };
        out.incomplete.push(format!("{}: {p}: {why}", self.layer));
    }

    /// Scan the file `path`, read from `r` to its end. `raw`: scan its
    /// bytes as they are (false when a range job already did). `depth`:
    /// decoders entered above it. `via`: the innermost codec above it.
    /// An `Err` is an error of `r` (the enclosing file); this file's own
    /// damage is INCOMPLETE.
    pub fn file(
        &self,
        path: &str,
        r: &mut dyn Read,
        depth: u32,
        via: Option<Codec>,
        raw: bool,
        out: &mut Out,
    ) -> io::Result<()> {
        let max = self.run.opts.max_nesting;
        let mut sc: Option<StreamScanner> = None;
        let mut suppress: Vec<(u64, u64)> = Vec::new();
        let mut input = Input::new(r);
        let fmt = detect(input.fill(HEAD)?);
        // Tar, ar and cpio hold nothing but their members' bytes (and
        // headers): their members are scanned instead of the whole.
        let identity = depth < max
            && matches!(
                fmt,
                Format::Archive(Archive::Tar | Archive::Ar | Archive::Cpio)
            );
        if raw && !identity {
            sc = Some(StreamScanner::new(self.run.m));
        }
        let raw_scanned = !raw || sc.is_some();
        if let Some(s) = sc.as_mut() {
            input.tap(s);
        }
        let before = out.findings.len();
        let res = self.decode(fmt, path, &mut input, depth, via, &mut suppress, out);
        let decoded = res.is_ok();
        // An error of the source ends this file too (the caller reports
        // it); what was read of it so far is still reported below.
        let mut outer = None;
        if let Err(e) = res {
            outer = input.source_error();
            if outer.is_none() {
                self.incomplete(path, &e.to_string(), out);
            }
        }
        if outer.is_none() {
            outer = input.drain().err();
        }
        drop(input);
        if let Some(mut s) = sc.take() {
            let hits = s.finish();
            self.run.scanned.fetch_add(s.base_total, Ordering::Relaxed);
            self.report(path, via, &hits, out);
        }
        // Where the raw bytes were scanned (here or by a range job), a
        // member's bytes are reported under the member's path; and a raw
        // match in a compressed file that decoded to its end is a stored
        // block (xz and deflate keep incompressible data as it is), whose
        // secret the decoded data reports already.
        if let Some(e) = outer {
            return Err(e);
        }
        if raw_scanned {
            let mut push = |start, end, secret| {
                out.suppress.push(Suppress {
                    layer: self.layer.clone(),
                    path: path.to_string(),
                    start,
                    end,
                    secret,
                    via,
                })
            };
            for (a, b) in suppress {
                push(a, b, None);
            }
            if decoded && matches!(fmt, Format::Compressed(_)) && depth < self.run.opts.max_nesting
            {
                let found: std::collections::BTreeSet<String> = out.findings[before..]
                    .iter()
                    .map(|f| f.source.clone())
                    .collect();
                for name in found {
                    push(0, u64::MAX, Some(name));
                }
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn decode(
        &self,
        fmt: Format,
        path: &str,
        input: &mut Input,
        depth: u32,
        via: Option<Codec>,
        suppress: &mut Vec<(u64, u64)>,
        out: &mut Out,
    ) -> io::Result<()> {
        let max = self.run.opts.max_nesting;
        match fmt {
            Format::Plain => Ok(()),
            _ if depth >= max => {
                self.incomplete(
                    path,
                    &format!(
                        "not decoded: {} nested deeper than --max-nesting {max}",
                        format_name(fmt)
                    ),
                    out,
                );
                Ok(())
            }
            Format::Unsupported(name) => {
                self.incomplete(
                    path,
                    &format!("not decoded: {name} data (a format privy does not read)"),
                    out,
                );
                Ok(())
            }
            Format::Compressed(c) => {
                let d = decoder(c, &mut *input)?;
                let mut m = Metered {
                    r: d,
                    budget: self.budget,
                };
                self.file(path, &mut m, depth + 1, Some(c), true, out)
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", c.as_str())))
            }
            Format::Archive(Archive::Tar) => {
                let mut tr = TarReader::new(&mut *input);
                loop {
                    let e = match tr.next_entry() {
                        Ok(Some(e)) => e,
                        Ok(None) => return Ok(()),
                        Err(e) => {
                            return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
                        }
                    };
                    let p = join(path, &e.path);
                    if let Some(meta) = &e.meta {
                        let mut hits = Vec::new();
                        self.run.m.scan_all(meta, &mut hits);
                        self.report(&p, via, &hits, out);
                        continue;
                    }
                    if e.size == 0 {
                        continue;
                    }
                    let start = e.data_offset;
                    self.file(
                        &p,
                        &mut EntryReader { tr: &mut tr },
                        depth + 1,
                        via,
                        true,
                        out,
                    )?;
                    suppress.push((start, start + e.size));
                }
            }
            Format::Archive(Archive::Zip) => {
                let sum = zip::walk(input, self.budget, &mut |m, r| {
                    let v = if m.stored { via } else { Some(Codec::Zip) };
                    self.file(&join(path, &m.name), r, depth + 1, v, true, out)
                })?;
                for n in &sum.notes {
                    self.incomplete(path, &format!("zip: {n}"), out);
                }
                suppress.extend(sum.decoded);
                Ok(())
            }
            Format::Archive(a @ (Archive::Ar | Archive::Cpio)) => {
                let mut visit = |name: &str, r: &mut dyn Read| {
                    self.file(&join(path, name), r, depth + 1, via, true, out)
                };
                let ranges = match a {
                    Archive::Ar => archives::walk_ar(input, &mut visit),
                    _ => archives::walk_cpio(input, &mut visit),
                }
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", a.as_str())))?;
                suppress.extend(ranges);
                Ok(())
            }
        }
    }

    /// A decompressed layer (or compressed file target): a tar, entry by
    /// entry, or else one flat file. Every error is the layer's.
    pub fn layer_stream(&self, r: &mut dyn Read, out: &mut Out) -> io::Result<()> {
        let mut input = Input::new(r);
        if !looks_like_tar(input.fill(HEAD)?) {
            return self.file("", &mut input, 0, None, true, out);
        }
        let mut tr = TarReader::new(&mut input);
        loop {
            if self.run.abort.load(Ordering::Relaxed) {
                return Ok(());
            }
            let e = match tr.next_entry() {
                Ok(Some(e)) => e,
                Ok(None) => break,
                Err(e) => return Err(io::Error::other(e.to_string())),
            };
            if let Some(meta) = &e.meta {
                let mut hits = Vec::new();
                self.run.m.scan_all(meta, &mut hits);
                self.report(&e.path, None, &hits, out);
                continue;
            }
            if e.size == 0 {
                continue;
            }
            self.file(
                &e.path,
                &mut EntryReader { tr: &mut tr },
                0,
                None,
                true,
                out,
            )?;
        }
        // Read to the end, so damage after the archive (a bad gzip
        // trailer or CRC) is still an error.
        drop(tr);
        input.drain()
    }
}

/// Scans a stream pushed in pieces, keeping only a margin of the past.
pub struct StreamScanner<'m> {
    m: &'m Matcher,
    buf: Vec<u8>,
    cap: usize,
    base: u64,
    next: u64,
    hits: Vec<Hit>,
    pub base_total: u64,
}

impl<'m> StreamScanner<'m> {
    pub fn new(m: &'m Matcher) -> Self {
        let cap = STREAM_BUF.max(4 * (m.margin + W));
        StreamScanner {
            m,
            buf: Vec::new(),
            cap,
            base: 0,
            next: 0,
            hits: Vec::new(),
            base_total: 0,
        }
    }

    fn process(&mut self, fin: bool) {
        let keep = (self.m.margin + W) as u64;
        let end = self.base + self.buf.len() as u64;
        let to = if fin { end } else { end.saturating_sub(keep) };
        if to > self.next {
            self.m
                .scan(&self.buf, self.base, self.next, to, &mut self.hits);
            self.next = to;
        }
        let drop_to = self.next.saturating_sub(keep).max(self.base);
        self.buf.drain(..(drop_to - self.base) as usize);
        self.base = drop_to;
    }

    pub fn finish(&mut self) -> Vec<Hit> {
        self.process(true);
        std::mem::take(&mut self.hits)
    }
}

impl super::decode::Sink for StreamScanner<'_> {
    fn push(&mut self, mut data: &[u8]) {
        self.base_total += data.len() as u64;
        while !data.is_empty() {
            // Grows with the file up to `cap`: small files stay small.
            let take = (self.cap - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == self.cap {
                self.process(false);
            }
        }
    }
}

impl Drop for StreamScanner<'_> {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.buf.zeroize();
    }
}
