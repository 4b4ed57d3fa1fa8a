//! The matcher: finds every run of at least `min` secret bytes that a
//! scanned stream shares with one of the secrets' forms, at close to memory
//! bandwidth. The forms: the raw bytes; base64 and base64url at the three
//! alignments; hex, HEX, and hex as `od -t x1`/`hexdump -C` and `xxd` dump
//! it; octal as `od -b` dumps it; UTF-16LE; and the text escapings, percent
//! (`%2F`) and string escapes (`\n`, `\/`, `\u0041`, `'\''`).
//!
//! # How
//!
//! Every 8-byte window of every form goes into an index (a blocked Bloom
//! filter in front of a hash directory of `(form, offset)` pairs; the
//! window bytes are not stored again, they are read from the form). The
//! scanned data is *sampled*: only the 8 bytes at stream offsets that are
//! multiples of `step = min - 7` are looked up. Any common run of `min`
//! bytes contains such a sampled window, so nothing is missed, while the
//! data is touched once per `step` bytes (25 for the default 32) instead of
//! once per byte. A sample that hits the index is extended left and right
//! against the form to the maximal common run; it is reported if it is at
//! least the form's minimum, by the first sample inside it (so a run seen
//! by two overlapping regions is reported once).
//!
//! Forms shorter than `min` (whole-only matching of short secrets) live in
//! a second index with its own, smaller step; forms shorter than 8 bytes
//! are searched with `memmem`.
//!
//! Windows that repeat more than [`MAX_REPEAT`] times across the forms
//! (runs of one byte, padding) are not indexed: they carry no secret.
//! Everything derived from a secret is zeroized on drop.
//!
//! # Three ways to extend a hit
//!
//! - *Text* forms (the raw secret and its canonical percent and JSON
//!   escapings) are extended in the secret's own bytes: each step decodes
//!   one unit of the data (a plain byte, `%XX`, `+`, `\n`, `\xHH`,
//!   `\uHHHH`, `'\''`) and compares it with the next secret byte. So a
//!   URL that encodes only some characters, or JSON that escapes `/` as
//!   `\/`, still matches, and the finding says `percent` or `escaped`.
//! - *Flex* forms (base64, hex, dumps) skip whitespace (line wraps), and the
//!   dump forms skip a dump's line noise too (the ASCII column, the
//!   newline and the next line's offset: `xxd`, `hexdump -C`, `od`).
//! - *Exact* forms (UTF-16LE) match byte for byte.

use super::{encode, MatchKind, Needle};
use zeroize::Zeroize;

/// Window length (bytes) of the index.
pub const W: usize = 8;
/// Windows occurring more often than this across all forms are dropped.
pub const MAX_REPEAT: u32 = 32;

/// How a form's hits are extended (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Decoded unit by unit against the secret's bytes.
    Text,
    /// Whitespace skipped; with `dump`, a dump's line noise too.
    Flex { dump: bool },
    /// Byte for byte.
    Exact,
}

/// One searchable form of one secret.
pub struct Form {
    pub needle: u32,
    /// `Substring` for text forms (reported as `Exact`, `Percent` or
    /// `Escaped` by how they matched).
    pub kind: MatchKind,
    pub bytes: Vec<u8>,
    /// Shortest run that counts: form bytes, or for text forms secret
    /// bytes (the whole secret when it is shorter than `min_match`).
    pub min: usize,
    pub mode: Mode,
    /// Text forms other than the raw secret: the secret offset of the
    /// unit each form byte belongs to (empty: the identity).
    pub map: Vec<u32>,
}

impl Drop for Form {
    fn drop(&mut self) {
        self.bytes.zeroize();
        self.map.zeroize();
    }
}

/// A raw match: form, stream offset, length, and how it matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub form: u32,
    pub pos: u64,
    pub len: u64,
    pub kind: MatchKind,
}

#[inline(always)]
fn mix(k: u64) -> u64 {
    let mut h = (k ^ (k >> 31)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h ^= h >> 29;
    h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^ (h >> 32)
}

#[inline(always)]
fn load(buf: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(buf[i..i + W].try_into().expect("8 bytes"))
}

/// A blocked Bloom filter: three bits of one 64-bit word per key, ~12 bits
/// per key (about 1% false positives), in memory the kernel may back with
/// huge pages (the filter is probed at random; TLB misses would dominate).
struct Bloom {
    ptr: *mut u64,
    words: usize,
    layout: std::alloc::Layout,
}

// SAFETY: Bloom owns its allocation; it is written only while building
// (`&mut self`) and read-only afterwards.
unsafe impl Send for Bloom {}
// SAFETY: as above; shared access is read-only.
unsafe impl Sync for Bloom {}

const HUGE: usize = 2 << 20;

impl Bloom {
    fn new(keys: usize) -> Bloom {
        let words = (keys * 12 / 64).max(64);
        let bytes = words * 8;
        let align = if bytes >= HUGE { HUGE } else { 64 };
        let layout = std::alloc::Layout::from_size_align(bytes.next_multiple_of(align), align)
            .expect("bloom layout");
        // SAFETY: layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) } as *mut u64;
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        if align == HUGE {
            // SAFETY: ptr..ptr+size is our own, 2 MiB-aligned mapping range;
            // MADV_HUGEPAGE is only advice.
            unsafe {
                libc::madvise(ptr.cast(), layout.size(), libc::MADV_HUGEPAGE);
            }
        }
        Bloom { ptr, words, layout }
    }

    #[inline(always)]
    fn slot(&self, h: u64) -> (usize, u64) {
        let i = ((h >> 32) * self.words as u64) >> 32;
        let m = (1u64 << (h & 63)) | (1u64 << ((h >> 6) & 63)) | (1u64 << ((h >> 12) & 63));
        (i as usize, m)
    }

    fn insert(&mut self, h: u64) {
        let (i, m) = self.slot(h);
        // SAFETY: i < words (fastrange), inside the allocation.
        unsafe { *self.ptr.add(i) |= m }
    }

    #[inline(always)]
    fn contains(&self, h: u64) -> bool {
        let (i, m) = self.slot(h);
        // SAFETY: i < words (fastrange), inside the allocation.
        unsafe { *self.ptr.add(i) & m == m }
    }
}

impl Drop for Bloom {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.cast(), self.layout) }
    }
}

/// An index of 8-byte windows, sampled every `step` bytes: `occ` holds
/// `(form, offset)` pairs grouped by hash bucket (`dir`); a window's bytes
/// are read back from its form to check a probe.
struct Table {
    step: u64,
    bloom: Bloom,
    /// `dir[b]..dir[b+1]` indexes `occ` for hash bucket `b`.
    dir: Vec<u32>,
    dir_shift: u32,
    occ: Vec<(u32, u32)>,
}

impl Drop for Table {
    fn drop(&mut self) {
        self.occ.zeroize();
    }
}

/// The largest stride `k` at which a form's windows may be indexed: a run
/// of `min` bytes then still holds `k` consecutive samples (`k * step + W -
/// 1 <= min`), and with `gcd(k, step) = 1` they land on every offset class
/// mod `k`, one of them indexed. Only for forms whose data has no line
/// noise shorter than that: plain hex (`xxd -p` lines are 60 characters),
/// UTF-16 (not wrapped), `od -b` (any 32 bytes hold one full 63-character
/// line).
fn stride(f: &Form, step: usize) -> usize {
    let eligible = match f.kind {
        MatchKind::Hex | MatchKind::HexUpper => !f.bytes.contains(&b' '),
        MatchKind::Utf16le | MatchKind::Octal => true,
        _ => false,
    };
    if eligible && step % 2 == 1 && 2 * step + W - 1 <= f.min.min(60) {
        2
    } else {
        1
    }
}

impl Table {
    /// Index `members`' windows; `indexed[f]` is set for each form with at
    /// least one window kept. Built in two counting passes (no sort of the
    /// whole set, no copy of the windows): memory is `occ` itself.
    fn build(forms: &[Form], members: &[u32], step: usize, indexed: &mut [bool]) -> Table {
        // A canonical escaped form's windows that hold no escape are the
        // raw secret's windows too, and a raw hit is extended through
        // escapes anyway: only windows touching an escape are kept.
        let escape_at = |form: &Form, x: usize| {
            !form.map.is_empty()
                && ((x > 0 && form.map[x] == form.map[x - 1])
                    || (x + 1 < form.map.len() && form.map[x + 1] == form.map[x]))
        };
        let windows = move |f: u32| {
            let form = &forms[f as usize];
            let n = (form.bytes.len() + 1).saturating_sub(W);
            (0..n)
                .step_by(stride(form, step))
                .filter(move |&off| {
                    form.map.is_empty() || (off..off + W).any(|x| escape_at(form, x))
                })
                .map(move |off| (f, off))
        };
        let total: usize = members.iter().map(|&f| windows(f).count()).sum();
        // About four windows a bucket: the directory costs one byte per
        // window, and a probe that passes the Bloom filter reads a few.
        let dir_len = (total / 4).next_power_of_two().max(16);
        let dir_shift = 64 - dir_len.trailing_zeros();
        let bucket =
            |f: u32, off: usize| (mix(load(&forms[f as usize].bytes, off)) >> dir_shift) as usize;
        let mut dir = vec![0u32; dir_len + 1];
        for &f in members {
            for (f, off) in windows(f) {
                dir[bucket(f, off) + 1] += 1;
            }
        }
        for b in 1..dir.len() {
            dir[b] += dir[b - 1];
        }
        let mut occ = vec![(0u32, 0u32); total];
        {
            let mut cur = dir.clone();
            for &f in members {
                for (f, off) in windows(f) {
                    let b = bucket(f, off);
                    occ[cur[b] as usize] = (f, off as u32);
                    cur[b] += 1;
                }
            }
            cur.zeroize();
        }
        // In each bucket: group equal windows, drop the over-repeated ones
        // and compact in place (`dir` is rewritten as it is read).
        let key = |o: &(u32, u32)| load(&forms[o.0 as usize].bytes, o.1 as usize);
        // Sized for every window (an upper bound on distinct ones), so keys
        // go in while their bytes are at hand.
        let mut bloom = Bloom::new(total);
        let mut w = 0usize;
        let mut lo = 0usize;
        let mut scratch: Vec<(u64, u32, u32)> = Vec::new();
        for b in 0..dir_len {
            let hi = dir[b + 1] as usize;
            scratch.clear();
            scratch.extend(occ[lo..hi].iter().map(|o| (key(o), o.0, o.1)));
            scratch.sort_unstable();
            let mut i = 0;
            while i < scratch.len() {
                let k = scratch[i].0;
                let mut j = i;
                while j < scratch.len() && scratch[j].0 == k {
                    j += 1;
                }
                if (j - i) as u32 <= MAX_REPEAT {
                    bloom.insert(mix(k));
                    for e in &scratch[i..j] {
                        indexed[e.1 as usize] = true;
                        occ[w] = (e.1, e.2);
                        w += 1;
                    }
                }
                i = j;
            }
            dir[b + 1] = w as u32;
            lo = hi;
        }
        scratch.resize(scratch.capacity(), (0, 0, 0));
        wipe_keys(&mut scratch);
        occ.truncate(w);
        occ.shrink_to_fit();
        Table {
            step: step as u64,
            bloom,
            dir,
            dir_shift,
            occ,
        }
    }

    #[inline(always)]
    fn maybe(&self, key: u64) -> bool {
        self.bloom.contains(mix(key))
    }

    /// The `(form, offset)` pairs whose window is `key`.
    fn lookup<'t>(&'t self, forms: &'t [Form], key: u64) -> impl Iterator<Item = (u32, u32)> + 't {
        let b = (mix(key) >> self.dir_shift) as usize;
        self.occ[self.dir[b] as usize..self.dir[b + 1] as usize]
            .iter()
            .copied()
            .filter(move |&(f, off)| load(&forms[f as usize].bytes, off as usize) == key)
    }
}

/// Overwrite window bytes (secret) in build scratch; volatile so the
/// stores are not elided before the memory is freed.
fn wipe_keys(v: &mut [(u64, u32, u32)]) {
    for k in v.iter_mut() {
        // SAFETY: `k.0` is a valid, aligned u64 we hold a unique borrow of.
        unsafe { std::ptr::write_volatile(&mut k.0, 0) };
    }
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

/// Matches already found in this region, so later samples inside them are
/// skipped: (form, start, end) in stream offsets.
type Recent = Vec<(u32, u64, u64)>;

fn ws(b: u8) -> bool {
    matches!(b, b'\n' | b'\r' | b' ' | b'\t')
}

/// After a dump line's data at `h`: its spaces, ASCII column (only after
/// two spaces, as `xxd` and `hexdump -C` print it; a space just matched
/// as part of the form counts), the newline, the next line's offset
/// (`0000020`, `00000010:`) and the spaces after it. Returns where the
/// next line's data starts.
fn noise_fwd(buf: &[u8], h: usize) -> Option<usize> {
    let mut p = h;
    let pre = buf[..p]
        .iter()
        .rev()
        .take(2)
        .take_while(|&&c| c == b' ')
        .count();
    let sp = buf[p..].iter().take(4).take_while(|&&c| c == b' ').count();
    p += sp;
    if *buf.get(p)? != b'\n' {
        if pre + sp < 2 {
            return None;
        }
        let lim = (p + 19).min(buf.len());
        p += memchr::memchr(b'\n', &buf[p..lim])?;
    }
    p += 1;
    let d = buf[p..]
        .iter()
        .take(10)
        .take_while(|c| c.is_ascii_hexdigit())
        .count();
    if d < 4 {
        return None;
    }
    p += d;
    if buf.get(p) == Some(&b':') {
        p += 1;
    }
    let s2 = buf[p..].iter().take(3).take_while(|&&c| c == b' ').count();
    (s2 > 0).then_some(p + s2)
}

/// The same going left from `h`, where a match stopped at or just inside
/// a dump line's offset field: where that line's data starts (`q`, at most
/// a few bytes right of `h`: the offset's last digits may have matched the
/// form by chance) and where the previous line's data may end (no ASCII
/// column, `xxd`'s, `hexdump -C`'s `|...|`).
fn noise_bwd(buf: &[u8], h: usize) -> Option<(usize, [Option<usize>; 3])> {
    let lo = h.saturating_sub(16);
    let nl = lo + memchr::memrchr(b'\n', &buf[lo..h])?;
    let mut q = nl + 1;
    let d = buf[q..]
        .iter()
        .take(10)
        .take_while(|c| c.is_ascii_hexdigit())
        .count();
    if d < 4 {
        return None;
    }
    q += d;
    if buf.get(q) == Some(&b':') {
        q += 1;
    }
    let s = buf[q..].iter().take(3).take_while(|&&c| c == b' ').count();
    if s == 0 {
        return None;
    }
    q += s;
    if q < h || q - h > 12 {
        return None;
    }
    let two = |at: usize| at >= 2 && buf[at - 2] == b' ' && buf[at - 1] == b' ';
    let xxd = (nl >= 18 && two(nl - 16)).then(|| nl - 16);
    let hd =
        (nl >= 20 && buf[nl - 1] == b'|' && buf[nl - 18] == b'|' && two(nl - 18)).then(|| nl - 18);
    Some((q, [Some(nl), xxd, hd]))
}

/// Extend a window match at `buf[i..i+W]` == `form[off..off+W]` to the
/// maximal run. With `flex`, runs of up to 8 whitespace bytes on either
/// side are skipped when the bytes after them match again; with `dump`,
/// a dump's line noise too. Returns the run as haystack `[hs, he)` and
/// form `[fs, fe)` ranges.
fn extend(
    buf: &[u8],
    i: usize,
    form: &[u8],
    off: usize,
    flex: bool,
    dump: bool,
) -> (usize, usize, usize, usize) {
    let (mut hi, mut fi) = (i, off);
    let ws_left = |b: &[u8], from: usize| {
        let mut p = from;
        while p > 0 && from - p < 8 && ws(b[p - 1]) {
            p -= 1;
        }
        p
    };
    let ws_right = |b: &[u8], from: usize| {
        let mut p = from;
        while p < b.len() && p - from < 8 && ws(b[p]) {
            p += 1;
        }
        p
    };
    loop {
        if hi > 0 && fi > 0 && buf[hi - 1] == form[fi - 1] {
            hi -= 1;
            fi -= 1;
            continue;
        }
        if !flex {
            break;
        }
        let f2 = ws_left(form, fi);
        let h2 = ws_left(buf, hi);
        if (h2, f2) != (hi, fi) && h2 > 0 && f2 > 0 && buf[h2 - 1] == form[f2 - 1] {
            (hi, fi) = (h2, f2);
            continue;
        }
        if dump {
            if let Some((q, cands)) = noise_bwd(buf, hi) {
                // Give back what matched inside the offset field.
                let fq = ws_left(form, (fi + (q - hi)).min(form.len()));
                let next = cands
                    .into_iter()
                    .flatten()
                    .map(|c| ws_left(buf, c))
                    .find(|&c| c > 0 && fq > 0 && buf[c - 1] == form[fq - 1]);
                if let Some(c) = next {
                    (hi, fi) = (c, fq);
                    continue;
                }
            }
        }
        break;
    }
    let (mut he, mut fe) = (i + W, off + W);
    // The last few positions, to retry a dump's line noise from: the
    // first bytes of an ASCII column may match the form by chance.
    let mut past = [(he, fe); 4];
    let mut step = 0usize;
    loop {
        if dump {
            past[step % 4] = (he, fe);
            step += 1;
        }
        if he < buf.len() && fe < form.len() && buf[he] == form[fe] {
            he += 1;
            fe += 1;
            continue;
        }
        if !flex {
            break;
        }
        let h2 = ws_right(buf, he);
        let f2 = ws_right(form, fe);
        if (h2, f2) != (he, fe) && h2 < buf.len() && f2 < form.len() && buf[h2] == form[f2] {
            (he, fe) = (h2, f2);
            continue;
        }
        if dump {
            let resume = past.iter().rev().find_map(|&(h, f)| {
                let f2 = ws_right(form, f);
                let h3 = noise_fwd(buf, h)?;
                (h3 > he && h3 < buf.len() && f2 < form.len() && buf[h3] == form[f2])
                    .then_some((h3, f2))
            });
            if let Some(next) = resume {
                (he, fe) = next;
                past = [next; 4];
                continue;
            }
        }
        break;
    }
    (hi, he, fi, fe)
}

/// The byte a one-character backslash escape stands for.
fn unescape(e: u8) -> Option<u8> {
    Some(match e {
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        b'0' => 0,
        b'b' => 8,
        b'f' => 12,
        b'v' => 11,
        b'a' => 7,
        b'e' => 0x1b,
        b'"' | b'\'' | b'\\' | b'/' | b' ' | b'$' | b'`' => e,
        _ => return None,
    })
}

fn hexval(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

fn hex2(a: u8, b: u8) -> Option<u8> {
    Some(hexval(a)? << 4 | hexval(b)?)
}

/// `\uHHHH` at `buf[at..at+6]` as UTF-8 bytes.
fn unicode_escape(buf: &[u8], at: usize) -> Option<([u8; 4], usize)> {
    let d = buf.get(at + 2..at + 6)?;
    let cp = d
        .iter()
        .try_fold(0u32, |v, &c| Some(v << 4 | u32::from(hexval(c)?)))?;
    let c = char::from_u32(cp)?;
    let mut out = [0u8; 4];
    let n = c.encode_utf8(&mut out).len();
    Some((out, n))
}

const PCT: u8 = 1;
const ESC: u8 = 2;

/// One data unit at `buf[h..]` against `secret[s..]`: (data bytes, secret
/// bytes, which escaping it used).
fn unit_fwd(buf: &[u8], h: usize, secret: &[u8], s: usize) -> Option<(usize, usize, u8)> {
    let c = buf[h];
    let want = secret[s];
    if c == want {
        return Some((1, 1, 0));
    }
    match c {
        b'%' if h + 2 < buf.len() && hex2(buf[h + 1], buf[h + 2]) == Some(want) => {
            Some((3, 1, PCT))
        }
        b'+' if want == b' ' => Some((1, 1, PCT)),
        b'\\' if h + 1 < buf.len() => {
            let e = buf[h + 1];
            if unescape(e) == Some(want) {
                return Some((2, 1, ESC));
            }
            if e == b'x' && h + 3 < buf.len() && hex2(buf[h + 2], buf[h + 3]) == Some(want) {
                return Some((4, 1, ESC));
            }
            if e == b'u' {
                let (u, n) = unicode_escape(buf, h)?;
                if secret[s..].starts_with(&u[..n]) {
                    return Some((6, n, ESC));
                }
            }
            None
        }
        b'\'' if want == b'\'' => None,
        b'\'' if buf[h..].starts_with(b"'\\''") && want == b'\'' => Some((4, 1, ESC)),
        _ => None,
    }
}

/// One data unit ending at `buf[..h]` against `secret[..s]`.
fn unit_bwd(buf: &[u8], h: usize, secret: &[u8], s: usize) -> Option<(usize, usize, u8)> {
    let want = secret[s - 1];
    if buf[h - 1] == want {
        return Some((1, 1, 0));
    }
    if h >= 3 && buf[h - 3] == b'%' && hex2(buf[h - 2], buf[h - 1]) == Some(want) {
        return Some((3, 1, PCT));
    }
    if buf[h - 1] == b'+' && want == b' ' {
        return Some((1, 1, PCT));
    }
    if h >= 2 && buf[h - 2] == b'\\' && unescape(buf[h - 1]) == Some(want) {
        return Some((2, 1, ESC));
    }
    if h >= 4 && &buf[h - 4..h - 2] == b"\\x" && hex2(buf[h - 2], buf[h - 1]) == Some(want) {
        return Some((4, 1, ESC));
    }
    if h >= 6 && &buf[h - 6..h - 4] == b"\\u" {
        if let Some((u, n)) = unicode_escape(buf, h - 6) {
            if secret[..s].ends_with(&u[..n]) {
                return Some((6, n, ESC));
            }
        }
    }
    if h >= 4 && &buf[h - 4..h] == b"'\\''" && want == b'\'' {
        return Some((4, 1, ESC));
    }
    None
}

/// Extend a text form's window hit in the secret's bytes. Returns data
/// `[hs, he)`, secret `[ss, se)` and the escapings used; `None` when the
/// window holds no unit boundary (cannot happen for real forms).
fn extend_text(
    buf: &[u8],
    i: usize,
    form: &Form,
    off: usize,
    secret: &[u8],
) -> Option<(usize, usize, usize, usize, u8)> {
    // Anchor at the first unit boundary inside the window: the data from
    // there on is the form's own spelling of whole units.
    let mut u = off;
    let smap = |x: usize| {
        if form.map.is_empty() {
            x
        } else {
            form.map[x] as usize
        }
    };
    while !form.map.is_empty() && u > 0 && u < off + W && form.map[u] == form.map[u - 1] {
        u += 1;
    }
    if u >= off + W || u >= form.bytes.len() {
        return None;
    }
    let (h0, s0) = (i + (u - off), smap(u));
    let mut flags = 0;
    let (mut he, mut se) = (h0, s0);
    while se < secret.len() && he < buf.len() {
        let Some((dh, ds, fl)) = unit_fwd(buf, he, secret, se) else {
            break;
        };
        he += dh;
        se += ds;
        flags |= fl;
    }
    let (mut hs, mut ss) = (h0, s0);
    while ss > 0 && hs > 0 {
        let Some((dh, ds, fl)) = unit_bwd(buf, hs, secret, ss) else {
            break;
        };
        hs -= dh;
        ss -= ds;
        flags |= fl;
    }
    Some((hs, he, ss, se, flags))
}

/// All secrets' forms and their indexes.
pub struct Matcher {
    pub forms: Vec<Form>,
    tables: Vec<Table>,
    /// Forms shorter than [`W`]: searched with memmem.
    tiny: Vec<u32>,
    /// The raw form of each needle (its secret bytes).
    raw: Vec<u32>,
    /// Longest form: how far a match can reach beyond a sample.
    pub margin: usize,
}

impl Matcher {
    /// Build the forms of `needles` for a minimum match of `min` secret
    /// bytes (`min >= W`).
    pub fn new(needles: &[Needle], min: usize) -> Matcher {
        let min = min.max(W);
        let b64_min = (4 * min).div_ceil(3);
        let mut forms: Vec<Form> = Vec::new();
        let mut raw = Vec::with_capacity(needles.len());
        for (i, n) in needles.iter().enumerate() {
            let s = n.bytes();
            let long = s.len() >= min;
            raw.push(forms.len() as u32);
            let mut add = |kind, mode, bytes: Vec<u8>, map: Vec<u32>, sub_min: usize| {
                // Text forms count secret bytes; the others form bytes.
                let whole = if mode == Mode::Text {
                    s.len()
                } else {
                    bytes.len()
                };
                let m = if long { sub_min.min(whole) } else { whole };
                let dup = forms
                    .iter()
                    .any(|f| f.needle == i as u32 && f.bytes == bytes);
                if bytes.is_empty() || dup || (mode != Mode::Text && m < W) {
                    let (mut b, mut mp) = (bytes, map);
                    b.zeroize();
                    mp.zeroize();
                    return;
                }
                forms.push(Form {
                    needle: i as u32,
                    kind,
                    bytes,
                    min: m,
                    mode,
                    map,
                });
            };
            add(
                MatchKind::Substring,
                Mode::Text,
                s.to_vec(),
                Vec::new(),
                min,
            );
            let pct = encode::percent(s);
            add(MatchKind::Percent, Mode::Text, pct.bytes, pct.map, min);
            let esc = encode::json_escaped(s);
            add(MatchKind::Escaped, Mode::Text, esc.bytes, esc.map, min);
            let flex = Mode::Flex { dump: false };
            let dump = Mode::Flex { dump: true };
            for o in 0..3.min(s.len()) {
                add(
                    MatchKind::Base64,
                    flex,
                    encode::base64(&s[o..], false),
                    Vec::new(),
                    b64_min,
                );
                add(
                    MatchKind::Base64Url,
                    flex,
                    encode::base64(&s[o..], true),
                    Vec::new(),
                    b64_min,
                );
            }
            add(
                MatchKind::Hex,
                flex,
                encode::hex(s, false),
                Vec::new(),
                2 * min,
            );
            add(
                MatchKind::HexUpper,
                flex,
                encode::hex(s, true),
                Vec::new(),
                2 * min,
            );
            // `od -A n -t x1`, `hexdump -C`: hex bytes separated by spaces.
            add(
                MatchKind::Hex,
                dump,
                encode::hex_spaced(s),
                Vec::new(),
                3 * min - 1,
            );
            // `xxd`: two-byte groups, the secret starting at either byte.
            let xxd_min = 2 * min + min / 2 - 1;
            add(
                MatchKind::Hex,
                dump,
                encode::hex_grouped(s, false),
                Vec::new(),
                xxd_min,
            );
            add(
                MatchKind::Hex,
                dump,
                encode::hex_grouped(s, true),
                Vec::new(),
                xxd_min,
            );
            // `od -b`, `od -t o1`.
            add(
                MatchKind::Octal,
                dump,
                encode::octal_spaced(s),
                Vec::new(),
                4 * min - 1,
            );
            add(
                MatchKind::Utf16le,
                Mode::Exact,
                encode::utf16le(s),
                Vec::new(),
                2 * min,
            );
        }
        // A match in the data can be longer than its form where whitespace,
        // escapes or dump noise were skipped: allow four times the longest
        // form.
        let margin = 4 * forms.iter().map(|f| f.bytes.len()).max().unwrap_or(0) + 64;
        let (mut long, mut short, mut tiny) = (Vec::new(), Vec::new(), Vec::new());
        for (i, f) in forms.iter().enumerate() {
            // Text forms sample by secret bytes: their data is at least as
            // long as the secret bytes it spells.
            if f.min >= min {
                long.push(i as u32);
            } else if f.min >= W {
                short.push(i as u32);
            } else {
                tiny.push(i as u32);
            }
        }
        let mut tables = Vec::new();
        let mut indexed = vec![false; forms.len()];
        if !long.is_empty() {
            tables.push(Table::build(&forms, &long, min - W + 1, &mut indexed));
        }
        if !short.is_empty() {
            let m = short.iter().map(|&f| forms[f as usize].min).min().unwrap();
            tables.push(Table::build(&forms, &short, m - W + 1, &mut indexed));
        }
        // A secret that is one short pattern repeated (all its windows
        // dropped as repeats) is still searched for whole.
        for (i, f) in forms.iter().enumerate() {
            if !indexed[i] && f.min >= W && f.mode == Mode::Text && f.map.is_empty() {
                tiny.push(i as u32);
            }
        }
        Matcher {
            forms,
            tables,
            tiny,
            raw,
            margin,
        }
    }

    /// Scan `buf` (stream offset of `buf[0]` is `base`) for matches whose
    /// first sampled window lies in `[from, to)`. `buf` must hold
    /// `[from - margin, to + margin)` (clipped to the stream) so matches
    /// are extended to their full length.
    pub fn scan(&self, buf: &[u8], base: u64, from: u64, to: u64, out: &mut Vec<Hit>) {
        if buf.len() < W {
            self.scan_tiny(buf, base, from, to, out);
            return;
        }
        let mut recent: Recent = Vec::new();
        let last = base + (buf.len() - W) as u64; // last position a window fits
        for t in &self.tables {
            recent.clear();
            let mut p = from.next_multiple_of(t.step);
            let end = to.min(last + 1);
            while p < end {
                let i = (p - base) as usize;
                let key = load(buf, i);
                if t.maybe(key) {
                    self.verify(t, key, buf, base, p, from, &mut recent, out);
                }
                p += t.step;
            }
        }
        self.scan_tiny(buf, base, from, to, out);
    }

    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn verify(
        &self,
        t: &Table,
        key: u64,
        buf: &[u8],
        base: u64,
        p: u64,
        from: u64,
        recent: &mut Recent,
        out: &mut Vec<Hit>,
    ) {
        let i = (p - base) as usize;
        for (f, off) in t.lookup(&self.forms, key) {
            // Text forms of one secret all extend in the secret's bytes:
            // they find the same match, reported once, as the raw form.
            let g = self.group(f);
            if recent
                .iter()
                .any(|&(rf, rs, re)| rf == g && rs <= p && p < re)
            {
                continue;
            }
            let form = &self.forms[f as usize];
            let (hs, he, ok, kind) = match form.mode {
                Mode::Text => {
                    let secret = &self.forms[self.raw[form.needle as usize] as usize].bytes;
                    let Some((hs, he, ss, se, flags)) =
                        extend_text(buf, i, form, off as usize, secret)
                    else {
                        continue;
                    };
                    let kind = if flags & PCT != 0 {
                        MatchKind::Percent
                    } else if flags & ESC != 0 {
                        MatchKind::Escaped
                    } else if se - ss == secret.len() {
                        MatchKind::Exact
                    } else {
                        MatchKind::Substring
                    };
                    (hs, he, se - ss >= form.min, kind)
                }
                Mode::Flex { dump } => {
                    let (hs, he, fs, fe) = extend(buf, i, &form.bytes, off as usize, true, dump);
                    (hs, he, fe - fs >= form.min, form.kind)
                }
                Mode::Exact => {
                    let (hs, he, fs, fe) = extend(buf, i, &form.bytes, off as usize, false, false);
                    (hs, he, fe - fs >= form.min, form.kind)
                }
            };
            let start = base + hs as u64;
            let len = (he - hs) as u64;
            if recent.len() >= 16 {
                recent.remove(0);
            }
            recent.push((g, start, start + len));
            if !ok {
                continue;
            }
            // Report once: in the region owning the first sample of the run
            // that hits this form (a later region sees the run again
            // through its carried margin, and must leave it).
            if self.first_hit(t, buf, base, start, p, g) < from {
                continue;
            }
            out.push(Hit {
                form: g,
                pos: start,
                len,
                kind,
            });
        }
    }

    /// The form a hit of `f` is reported as: the raw form for every text
    /// form of a secret, else `f` itself.
    fn group(&self, f: u32) -> u32 {
        let form = &self.forms[f as usize];
        if form.mode == Mode::Text {
            self.raw[form.needle as usize]
        } else {
            f
        }
    }

    /// The first sample at or after `start` (and at most `p`) whose window
    /// is indexed for form group `g`.
    fn first_hit(&self, t: &Table, buf: &[u8], base: u64, start: u64, p: u64, g: u32) -> u64 {
        let mut q = start.next_multiple_of(t.step);
        while q < p {
            let i = (q - base) as usize;
            if i + W <= buf.len() {
                let key = load(buf, i);
                if t.maybe(key) && t.lookup(&self.forms, key).any(|o| self.group(o.0) == g) {
                    return q;
                }
            }
            q += t.step;
        }
        p
    }

    fn scan_tiny(&self, buf: &[u8], base: u64, from: u64, to: u64, out: &mut Vec<Hit>) {
        for &f in &self.tiny {
            let fb = &self.forms[f as usize].bytes;
            let lo = from.saturating_sub(base) as usize;
            if lo >= buf.len() {
                continue;
            }
            let hi = ((to - base) as usize + fb.len()).min(buf.len());
            for m in memchr::memmem::find_iter(&buf[lo..hi], fb.as_slice()) {
                let pos = base + (lo + m) as u64;
                if pos < to {
                    let form = &self.forms[f as usize];
                    let kind = match form.kind {
                        MatchKind::Substring => MatchKind::Exact,
                        k => k,
                    };
                    out.push(Hit {
                        form: f,
                        pos,
                        len: fb.len() as u64,
                        kind,
                    });
                }
            }
        }
    }

    /// The match kind to report for `h`.
    pub fn kind(&self, h: &Hit) -> MatchKind {
        h.kind
    }

    /// Index of the needle behind `h`.
    pub fn needle(&self, h: &Hit) -> usize {
        self.forms[h.form as usize].needle as usize
    }

    /// Scan a whole in-memory buffer (small blobs, JSON strings).
    pub fn scan_all(&self, buf: &[u8], out: &mut Vec<Hit>) {
        self.scan(buf, 0, 0, buf.len() as u64, out);
    }
}
