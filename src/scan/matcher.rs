//! The matcher: finds every run of at least `min` bytes that a scanned
//! stream shares with one of the secrets' forms (raw, base64 ×3 alignments,
//! base64url ×3, hex, HEX), at close to memory bandwidth.
//!
//! # How
//!
//! Every 8-byte window of every form, at every offset, goes into an index
//! (a blocked Bloom filter in front of an exact hash directory). The
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

use super::{encode, MatchKind, Needle};
use zeroize::Zeroize;

/// Window length (bytes) of the index.
pub const W: usize = 8;
/// Windows occurring more often than this across all forms are dropped.
pub const MAX_REPEAT: u32 = 32;

/// One searchable form of one secret.
pub struct Form {
    pub needle: u32,
    /// `Substring` for the raw bytes (reported as `Exact` when whole).
    pub kind: MatchKind,
    pub bytes: Vec<u8>,
    /// Shortest run that counts (in form bytes).
    pub min: usize,
    /// Encoded forms: whitespace in the data (line wraps of `base64`,
    /// `xxd -p`, the spaces of `od -A n -t x1`) does not end a match.
    pub flex: bool,
}

impl Drop for Form {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

/// A raw match: form, stream offset, length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub form: u32,
    pub pos: u64,
    pub len: u64,
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

/// An index of 8-byte windows, sampled every `step` bytes.
struct Table {
    step: u64,
    bloom: Bloom,
    /// `dir[b]..dir[b+1]` indexes `keys` for hash bucket `b`.
    dir: Vec<u32>,
    dir_shift: u32,
    /// (key, first occurrence, count), sorted by bucket.
    keys: Vec<(u64, u32, u32)>,
    /// (form, offset in form).
    occ: Vec<(u32, u32)>,
}

/// Overwrite the windows (secret bytes) in index entries; volatile so the
/// stores are not elided before the memory is freed.
fn wipe_keys<T>(v: &mut [(u64, T, T)]) {
    for k in v.iter_mut() {
        // SAFETY: `k.0` is a valid, aligned u64 we hold a unique borrow of.
        unsafe { std::ptr::write_volatile(&mut k.0, 0) };
    }
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

impl Drop for Table {
    fn drop(&mut self) {
        wipe_keys(&mut self.keys);
        self.occ.zeroize();
    }
}

impl Table {
    fn build(forms: &[Form], members: &[u32], step: usize) -> Table {
        // Sized up front: a growing Vec would free copies of secret
        // windows without wiping them.
        let cap: usize = members
            .iter()
            .map(|&f| (forms[f as usize].bytes.len() + 1).saturating_sub(W))
            .sum();
        let mut entries: Vec<(u64, u32, u32)> = Vec::with_capacity(cap);
        for &f in members {
            let b = &forms[f as usize].bytes;
            if b.len() < W {
                continue;
            }
            // Plain hex runs start on even offsets: with an odd step, two
            // consecutive samples inside any run of `min` chars cover both
            // parities, so indexing even offsets only is enough.
            let f_min = forms[f as usize].min;
            let natural = match forms[f as usize].kind {
                MatchKind::Hex | MatchKind::HexUpper if !b.contains(&b' ') => 2,
                _ => 1,
            };
            let stride = if natural > 1
                && !step.is_multiple_of(natural)
                && natural * step + W - 1 <= f_min
            {
                natural
            } else {
                1
            };
            for off in (0..=b.len() - W).step_by(stride) {
                entries.push((load(b, off), f, off as u32));
            }
        }
        entries.sort_unstable();
        entries.dedup();
        let mut keys: Vec<(u64, u32, u32)> = Vec::with_capacity(entries.len());
        let mut occ: Vec<(u32, u32)> = Vec::with_capacity(entries.len());
        let mut i = 0;
        while i < entries.len() {
            let k = entries[i].0;
            let mut j = i;
            while j < entries.len() && entries[j].0 == k {
                j += 1;
            }
            if (j - i) as u32 <= MAX_REPEAT {
                keys.push((k, occ.len() as u32, (j - i) as u32));
                occ.extend(entries[i..j].iter().map(|e| (e.1, e.2)));
            }
            i = j;
        }
        wipe_keys(&mut entries);
        drop(entries);
        let mut bloom = Bloom::new(keys.len());
        let dir_len = (keys.len() / 2).next_power_of_two().max(16);
        let dir_shift = 64 - dir_len.trailing_zeros();
        keys.sort_unstable_by_key(|k| mix(k.0) >> dir_shift);
        let mut dir = vec![0u32; dir_len + 1];
        for k in &keys {
            let h = mix(k.0);
            bloom.insert(h);
            dir[(h >> dir_shift) as usize + 1] += 1;
        }
        for b in 1..dir.len() {
            dir[b] += dir[b - 1];
        }
        Table {
            step: step as u64,
            bloom,
            dir,
            dir_shift,
            keys,
            occ,
        }
    }

    #[inline(always)]
    fn maybe(&self, key: u64) -> bool {
        self.bloom.contains(mix(key))
    }

    fn lookup(&self, key: u64) -> &[(u32, u32)] {
        let b = (mix(key) >> self.dir_shift) as usize;
        for k in &self.keys[self.dir[b] as usize..self.dir[b + 1] as usize] {
            if k.0 == key {
                return &self.occ[k.1 as usize..(k.1 + k.2) as usize];
            }
        }
        &[]
    }
}

/// Matches already found in this region, so later samples inside them are
/// skipped: (form, start, end) in stream offsets.
type Recent = Vec<(u32, u64, u64)>;

fn ws(b: u8) -> bool {
    matches!(b, b'\n' | b'\r' | b' ' | b'\t')
}

/// Extend a window match at `buf[i..i+W]` == `form[off..off+W]` to the
/// maximal run. With `flex`, runs of up to 8 whitespace bytes on either
/// side are skipped when the bytes after them match again. Returns the
/// run as haystack `[hs, he)` and form `[fs, fe)` ranges.
fn extend(
    buf: &[u8],
    i: usize,
    form: &[u8],
    off: usize,
    flex: bool,
) -> (usize, usize, usize, usize) {
    let (mut hi, mut fi) = (i, off);
    loop {
        if hi > 0 && fi > 0 && buf[hi - 1] == form[fi - 1] {
            hi -= 1;
            fi -= 1;
            continue;
        }
        if !flex {
            break;
        }
        let (mut h2, mut f2) = (hi, fi);
        while h2 > 0 && hi - h2 < 8 && ws(buf[h2 - 1]) {
            h2 -= 1;
        }
        while f2 > 0 && fi - f2 < 8 && ws(form[f2 - 1]) {
            f2 -= 1;
        }
        if (h2, f2) != (hi, fi) && h2 > 0 && f2 > 0 && buf[h2 - 1] == form[f2 - 1] {
            (hi, fi) = (h2, f2);
            continue;
        }
        break;
    }
    let (mut he, mut fe) = (i + W, off + W);
    loop {
        if he < buf.len() && fe < form.len() && buf[he] == form[fe] {
            he += 1;
            fe += 1;
            continue;
        }
        if !flex {
            break;
        }
        let (mut h2, mut f2) = (he, fe);
        while h2 < buf.len() && h2 - he < 8 && ws(buf[h2]) {
            h2 += 1;
        }
        while f2 < form.len() && f2 - fe < 8 && ws(form[f2]) {
            f2 += 1;
        }
        if (h2, f2) != (he, fe) && h2 < buf.len() && f2 < form.len() && buf[h2] == form[f2] {
            (he, fe) = (h2, f2);
            continue;
        }
        break;
    }
    (hi, he, fi, fe)
}

/// All secrets' forms and their indexes.
pub struct Matcher {
    pub forms: Vec<Form>,
    tables: Vec<Table>,
    /// Forms shorter than [`W`]: searched with memmem.
    tiny: Vec<u32>,
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
        for (i, n) in needles.iter().enumerate() {
            let s = n.bytes();
            let long = s.len() >= min;
            let mut add = |kind, bytes: Vec<u8>, sub_min: usize| {
                let m = if long {
                    sub_min.min(bytes.len())
                } else {
                    bytes.len()
                };
                let dup = forms
                    .iter()
                    .any(|f| f.needle == i as u32 && f.bytes == bytes);
                if bytes.is_empty() || dup || (kind != MatchKind::Substring && m < W) {
                    let mut b = bytes;
                    b.zeroize();
                    return;
                }
                forms.push(Form {
                    needle: i as u32,
                    kind,
                    bytes,
                    min: m,
                    flex: kind != MatchKind::Substring,
                });
            };
            add(MatchKind::Substring, s.to_vec(), min);
            for o in 0..3.min(s.len()) {
                add(MatchKind::Base64, encode::base64(&s[o..], false), b64_min);
                add(MatchKind::Base64Url, encode::base64(&s[o..], true), b64_min);
            }
            add(MatchKind::Hex, encode::hex(s, false), 2 * min);
            add(MatchKind::HexUpper, encode::hex(s, true), 2 * min);
            // `od -A n -t x1`, `hexdump -C`: hex bytes separated by spaces.
            add(MatchKind::Hex, encode::hex_spaced(s), 3 * min - 1);
        }
        let margin = forms.iter().map(|f| f.bytes.len()).max().unwrap_or(0);
        let (mut long, mut short, mut tiny) = (Vec::new(), Vec::new(), Vec::new());
        for (i, f) in forms.iter().enumerate() {
            if f.min >= min {
                long.push(i as u32);
            } else if f.min >= W {
                short.push(i as u32);
            } else {
                tiny.push(i as u32);
            }
        }
        let mut tables = Vec::new();
        if !long.is_empty() {
            tables.push(Table::build(&forms, &long, min - W + 1));
        }
        if !short.is_empty() {
            let m = short.iter().map(|&f| forms[f as usize].min).min().unwrap();
            tables.push(Table::build(&forms, &short, m - W + 1));
        }
        Matcher {
            forms,
            tables,
            tiny,
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
        for &(f, off) in t.lookup(key) {
            if recent
                .iter()
                .any(|&(rf, rs, re)| rf == f && rs <= p && p < re)
            {
                continue;
            }
            let form = &self.forms[f as usize];
            let (hs, he, fs, fe) = extend(buf, i, &form.bytes, off as usize, form.flex);
            let start = base + hs as u64;
            let len = (he - hs) as u64;
            if recent.len() >= 16 {
                recent.remove(0);
            }
            recent.push((f, start, start + len));
            if fe - fs < form.min {
                continue;
            }
            // Report once: in the region owning the first sample of the run
            // that hits this form (a later region sees the run again
            // through its carried margin, and must leave it).
            if self.first_hit(t, buf, base, start, p, f) < from {
                continue;
            }
            out.push(Hit {
                form: f,
                pos: start,
                len,
            });
        }
    }

    /// The first sample at or after `start` (and at most `p`) whose window
    /// is indexed for form `f`.
    fn first_hit(&self, t: &Table, buf: &[u8], base: u64, start: u64, p: u64, f: u32) -> u64 {
        let mut q = start.next_multiple_of(t.step);
        while q < p {
            let i = (q - base) as usize;
            if i + W <= buf.len() {
                let key = load(buf, i);
                if t.maybe(key) && t.lookup(key).iter().any(|o| o.0 == f) {
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
                    out.push(Hit {
                        form: f,
                        pos,
                        len: fb.len() as u64,
                    });
                }
            }
        }
    }

    /// The match kind to report for `h`: the raw form is `Exact` when the
    /// whole secret matched.
    pub fn kind(&self, h: &Hit) -> MatchKind {
        let f = &self.forms[h.form as usize];
        if f.kind == MatchKind::Substring && h.len as usize == f.bytes.len() {
            MatchKind::Exact
        } else {
            f.kind
        }
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
