//! A streaming zip reader (zip, jar, war, ear, whl, apk, nupkg, ...): reads
//! local headers front to back, so a jar inside a gzip layer is decoded as
//! it streams past, with no seeking and no member held in memory.
//!
//! Streaming a zip has two known traps, and both are handled rather than
//! skipped:
//!
//! - **Data descriptors** (flag bit 3: sizes follow the data). Deflate,
//!   bzip2, zstd and xz data end by themselves, so the decoder finds the
//!   end and the descriptor after it is checked (CRC and both sizes). A
//!   *stored* member with a descriptor has no end marker: its end is found
//!   by searching for a descriptor signature whose CRC and size fields
//!   match the bytes before it (a false match needs a 32-bit CRC collision
//!   at exactly the right length).
//! - **Entries the stream does not show** (a central directory naming
//!   members at offsets no local header was read at: overlapping or hidden
//!   entries). The central directory is read at the end and every entry is
//!   checked against the offsets seen; any other entry makes the archive
//!   INCOMPLETE.
//!
//! Members in methods privy does not decode (deflate64, lzma, ppmd,
//! implode, encrypted entries) are reported INCOMPLETE by name; their
//! bytes are still scanned raw by the caller.

use super::decode::{self, Budget, Input, Metered};
use crate::shown::escaped_bytes;
use std::collections::HashSet;
use std::io::{self, BufRead, Read};

const LOCAL: u32 = 0x0403_4b50;
const CENTRAL: u32 = 0x0201_4b50;
const END: u32 = 0x0605_4b50;
const END64: u32 = 0x0606_4b50;
const LOCATOR64: u32 = 0x0706_4b50;
const DESCRIPTOR: u32 = 0x0807_4b50;
/// A spanned-archive marker some writers put before the first header.
const SPAN_MARKER: u32 = 0x3030_4b50;

/// One member as its local header describes it.
#[derive(Debug)]
pub struct Member {
    /// The member's name, escaped for printing.
    pub name: String,
    /// Stored (method 0): the member's bytes are the archive's bytes.
    pub stored: bool,
}

/// What a walk could not read, and where members' bytes lie.
#[derive(Debug, Default)]
pub struct Summary {
    /// One line per problem (member name and why), for INCOMPLETE.
    pub notes: Vec<String>,
    /// `[start, end)` of each member's data in the archive that was read
    /// in full (its raw bytes hold nothing its decoded bytes do not).
    pub decoded: Vec<(u64, u64)>,
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Read exactly `n` bytes into a new vector (n < 64 KiB + 46).
fn take_vec(input: &mut Input, n: usize) -> io::Result<Vec<u8>> {
    let mut v = vec![0u8; n];
    input
        .read_exact_buf(&mut v)
        .map_err(|e| eof(e, "a zip header"))?;
    Ok(v)
}

fn eof(e: io::Error, what: &str) -> io::Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        bad(format!("zip: input ends inside {what}"))
    } else {
        e
    }
}

/// The zip64 extra field (id 1) values that replace 0xFFFFFFFF fields, in
/// their fixed order.
fn zip64(extra: &[u8], want: &[bool]) -> Vec<Option<u64>> {
    let mut out = vec![None; want.len()];
    let mut i = 0;
    while i + 4 <= extra.len() {
        let (id, len) = (le16(extra, i), le16(extra, i + 2) as usize);
        let body = &extra[i + 4..(i + 4 + len).min(extra.len())];
        if id == 1 {
            let mut at = 0;
            for (k, &w) in want.iter().enumerate() {
                if w && at + 8 <= body.len() {
                    out[k] = Some(le64(body, at));
                    at += 8;
                }
            }
        }
        i += 4 + len;
    }
    out
}

/// Counts and checksums a member's decoded bytes.
struct Checked<R> {
    r: R,
    crc: crc32fast::Hasher,
    n: u64,
}

impl<R: Read> Read for Checked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.r.read(buf)?;
        self.crc.update(&buf[..k]);
        self.n += k as u64;
        Ok(k)
    }
}

/// A stored member with a data descriptor: its bytes up to the descriptor
/// whose CRC and sizes match them.
struct StoredUntilDescriptor<'i, 'a> {
    input: &'i mut Input<'a>,
    crc: crc32fast::Hasher,
    n: u64,
    done: bool,
}

impl StoredUntilDescriptor<'_, '_> {
    /// Is there a descriptor at `p` of `avail` closing `n + p` bytes?
    /// Returns its length.
    fn descriptor_at(&self, avail: &[u8], p: usize) -> Option<usize> {
        let total = self.n + p as u64;
        let crc = || {
            let mut h = self.crc.clone();
            h.update(&avail[..p]);
            h.finalize()
        };
        if avail.len() >= p + 16
            && u64::from(le32(avail, p + 8)) == total
            && u64::from(le32(avail, p + 12)) == total
            && le32(avail, p + 4) == crc()
        {
            return Some(16);
        }
        if avail.len() >= p + 24
            && le64(avail, p + 8) == total
            && le64(avail, p + 16) == total
            && le32(avail, p + 4) == crc()
        {
            return Some(24);
        }
        None
    }
}

impl Read for StoredUntilDescriptor<'_, '_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.done || out.is_empty() {
            return Ok(0);
        }
        let avail = self.input.fill(32 << 10)?.to_vec();
        if avail.is_empty() {
            return Err(bad(
                "zip: stored member with a data descriptor: no matching descriptor before the end"
                    .into(),
            ));
        }
        let sig = DESCRIPTOR.to_le_bytes();
        let mut emit = avail.len().saturating_sub(23);
        let mut close = None;
        for p in memchr::memmem::find_iter(&avail, &sig) {
            if p + 24 > avail.len() && p > 0 {
                // Not enough bytes after it here: stop before it, and look
                // again once it is at the front of the buffer.
                emit = p;
                break;
            }
            if let Some(len) = self.descriptor_at(&avail, p) {
                emit = p;
                close = Some(len);
                break;
            }
        }
        if close.is_none() && emit == 0 {
            // Fewer than 24 bytes left and no descriptor among them.
            if avail.len() < 24 {
                return Err(bad(
                    "zip: stored member with a data descriptor: no matching descriptor before the end"
                        .into(),
                ));
            }
            emit = 1;
        }
        let k = emit.min(out.len());
        out[..k].copy_from_slice(&avail[..k]);
        self.crc.update(&avail[..k]);
        self.n += k as u64;
        self.input.consume(k);
        if k == emit {
            if let Some(len) = close {
                self.input.consume(len);
                self.done = true;
            }
        }
        Ok(k)
    }
}

/// Walk the zip at the start of `input`; `visit` gets each member and a
/// reader of its decoded bytes (it may stop early; the rest is drained).
/// `Err` means the archive could not be walked past some point (it is
/// INCOMPLETE from there); per-member problems are in the summary.
pub fn walk(
    input: &mut Input,
    budget: &Budget,
    visit: &mut dyn FnMut(&Member, &mut dyn Read) -> io::Result<()>,
) -> io::Result<Summary> {
    let mut sum = Summary::default();
    let mut seen: HashSet<u64> = HashSet::new();
    loop {
        let at = input.offset();
        let head = input.fill(4)?;
        if head.len() < 4 {
            return Err(bad(format!(
                "zip: input ends at byte {at}, before the central directory"
            )));
        }
        match le32(head, 0) {
            LOCAL => {
                seen.insert(at);
                member(input, budget, visit, &mut sum)?;
            }
            SPAN_MARKER if at == 0 => input.consume(4),
            CENTRAL => {
                central(input, &seen, &mut sum)?;
                return Ok(sum);
            }
            END => {
                end(input)?;
                return Ok(sum);
            }
            _ => {
                return Err(bad(format!(
                    "zip: unexpected bytes at offset {at} (no zip record there)"
                )))
            }
        }
    }
}

fn member(
    input: &mut Input,
    budget: &Budget,
    visit: &mut dyn FnMut(&Member, &mut dyn Read) -> io::Result<()>,
    sum: &mut Summary,
) -> io::Result<()> {
    let h = take_vec(input, 30)?;
    let (flags, method) = (le16(&h, 6), le16(&h, 8));
    let (crc, csize32, usize32) = (le32(&h, 14), le32(&h, 18), le32(&h, 22));
    let (nlen, xlen) = (le16(&h, 26) as usize, le16(&h, 28) as usize);
    let name_raw = take_vec(input, nlen)?;
    let extra = take_vec(input, xlen)?;
    let name = escaped_bytes(&name_raw).into_owned();
    let z = zip64(&extra, &[usize32 == u32::MAX, csize32 == u32::MAX]);
    let has64 = z.iter().any(Option::is_some);
    let usize_ = z[0].unwrap_or(u64::from(usize32));
    let csize = z[1].unwrap_or(u64::from(csize32));
    let descriptor = flags & 8 != 0;
    let known = !descriptor;
    let start = input.offset();
    let m = Member {
        name: name.clone(),
        stored: method == 0,
    };
    if flags & 1 != 0 || !decode::zip_method_supported(method) {
        let why = if flags & 1 != 0 {
            "encrypted".to_string()
        } else {
            decode::zip_method_name(method)
        };
        if !known {
            return Err(bad(format!(
                "zip: {name}: {why}, with a data descriptor: cannot find where it ends"
            )));
        }
        sum.notes.push(format!("{name}: not decoded: {why}"));
        return input.skip(csize).map_err(|e| eof(e, "member data"));
    }
    // Decode and visit; then drain what the visitor left.
    let res: io::Result<(u32, u64)> = (|| {
        if method == 0 && !known {
            let mut r = StoredUntilDescriptor {
                input: &mut *input,
                crc: crc32fast::Hasher::new(),
                n: 0,
                done: false,
            };
            visit(&m, &mut r)?;
            io::copy(&mut r, &mut io::sink())?;
            return Ok((r.crc.finalize(), r.n));
        }
        let limited: Box<dyn BufRead + '_> = if known {
            Box::new((&mut *input).take(csize))
        } else {
            Box::new(&mut *input)
        };
        let inner: Box<dyn Read + '_> = if method == 0 {
            Box::new(limited)
        } else {
            let d = decode::zip_member(method, limited)?.expect("method checked above");
            Box::new(Metered { r: d, budget })
        };
        let mut r = Checked {
            r: inner,
            crc: crc32fast::Hasher::new(),
            n: 0,
        };
        visit(&m, &mut r)?;
        io::copy(&mut r, &mut io::sink())?;
        Ok((r.crc.finalize(), r.n))
    })();
    let (got_crc, got_len) = match res {
        Ok(v) => v,
        Err(e) => {
            if let Some(outer) = input.source_error() {
                return Err(outer);
            }
            if !known || budget.spent() {
                return Err(bad(format!("zip: {name}: {e}")));
            }
            // Sizes are known: note it, skip to the next member.
            sum.notes.push(format!("{name}: {e}"));
            let used = input.offset() - start;
            input
                .skip(csize.saturating_sub(used))
                .map_err(|e| eof(e, "member data"))?;
            return Ok(());
        }
    };
    let consumed = input.offset() - start;
    sum.decoded.push((start, start + consumed));
    let (want_crc, want_c, want_u) = if known {
        if consumed < csize {
            // The compressed stream ended before its stated size.
            input
                .skip(csize - consumed)
                .map_err(|e| eof(e, "member data"))?;
        }
        (crc, csize, usize_)
    } else if method == 0 {
        // Found and checked by StoredUntilDescriptor.
        (got_crc, consumed, got_len)
    } else {
        let d = input.fill(24)?;
        let off = if d.len() >= 4 && le32(d, 0) == DESCRIPTOR {
            4
        } else {
            0
        };
        let wide = has64;
        let need = off + if wide { 20 } else { 12 };
        if d.len() < need {
            return Err(bad(format!(
                "zip: {name}: input ends inside its data descriptor"
            )));
        }
        let v = if wide {
            (le32(d, off), le64(d, off + 4), le64(d, off + 12))
        } else {
            (
                le32(d, off),
                u64::from(le32(d, off + 4)),
                u64::from(le32(d, off + 8)),
            )
        };
        input.consume(need);
        v
    };
    if got_crc != want_crc || got_len != want_u || (method != 0 && consumed > want_c) {
        sum.notes.push(format!(
            "{name}: damaged: CRC or size does not match its header"
        ));
    }
    Ok(())
}

fn central(input: &mut Input, seen: &HashSet<u64>, sum: &mut Summary) -> io::Result<()> {
    let (mut missing, mut first_missing) = (0u64, None);
    loop {
        let at = input.offset();
        let head = input.fill(4)?;
        if head.len() < 4 {
            return Err(bad(format!(
                "zip: input ends at byte {at}, inside the central directory"
            )));
        }
        match le32(head, 0) {
            CENTRAL => {
                let h = take_vec(input, 46)?;
                let (csize32, usize32, lho32) = (le32(&h, 20), le32(&h, 24), le32(&h, 42));
                let (nlen, xlen, clen) = (
                    le16(&h, 28) as usize,
                    le16(&h, 30) as usize,
                    le16(&h, 32) as usize,
                );
                let name = take_vec(input, nlen)?;
                let extra = take_vec(input, xlen)?;
                input.skip(clen as u64).map_err(|e| eof(e, "a comment"))?;
                let z = zip64(
                    &extra,
                    &[usize32 == u32::MAX, csize32 == u32::MAX, lho32 == u32::MAX],
                );
                let lho = z[2].unwrap_or(u64::from(lho32));
                if !seen.contains(&lho) {
                    missing += 1;
                    first_missing.get_or_insert_with(|| escaped_bytes(&name).into_owned());
                }
            }
            END64 => {
                let h = take_vec(input, 12)?;
                input
                    .skip(le64(&h, 4))
                    .map_err(|e| eof(e, "a zip64 record"))?;
            }
            LOCATOR64 => input.skip(20).map_err(|e| eof(e, "a zip64 locator"))?,
            END => break,
            _ => {
                return Err(bad(format!(
                    "zip: unexpected bytes at offset {at}, inside the central directory"
                )))
            }
        }
    }
    if let Some(n) = first_missing {
        sum.notes.push(format!(
            "{missing} central directory entr{} not found in the stream (first: {n}): hidden or overlapping members",
            if missing == 1 { "y" } else { "ies" }
        ));
    }
    end(input)
}

fn end(input: &mut Input) -> io::Result<()> {
    let h = take_vec(input, 22)?;
    input
        .skip(u64::from(le16(&h, 20)))
        .map_err(|e| eof(e, "the archive comment"))
}
