//! The scan engine: turns a resolved target into jobs and runs them on a
//! pool of threads.
//!
//! - An uncompressed tar (a layer blob, a plain tar) is indexed by walking
//!   its headers, then cut into ~8 MiB ranges read with `pread` by any
//!   worker: one big tar scans on every core. A file in it that is
//!   compressed or an archive is then walked by `nested` as well.
//! - A compressed layer (gzip, zstd; xz and bzip2 for file targets) is one
//!   streaming job: decompressed on one thread, scanned on another, never
//!   held whole; `nested` walks its files.
//! - Config, manifests and history are parsed and each JSON string is
//!   scanned, so escaping in the JSON does not hide a secret.
//! - At the end, findings are sorted and merged, and raw findings inside
//!   a member that was also scanned as a file of its own are dropped.

use super::decode::{decoder, Budget};
use super::detect::{detect, Codec, Format, HEAD};
use super::matcher::{Hit, Matcher};
use super::nested::Walker;
use super::target::{self, Blob, Resolved};
use super::tarstream::{looks_like_tar, BLOCK};
use super::{Finding, Needle, Report, ScanError, ScanOptions, Section, Target};
use crate::shown::escaped_bytes;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Bytes per range job of an uncompressed tar.
const CHUNK: u64 = 8 << 20;

/// One file's data inside a seekable space.
struct Span {
    path: Arc<str>,
    start: u64,
    len: u64,
}

/// A seekable file and the data spans to scan in it.
struct Space {
    file: Arc<File>,
    name: String,
    layer: Arc<str>,
    budget: Arc<Budget>,
    spans: Vec<Span>,
}

enum Job {
    Range { space: usize, from: u64, to: u64 },
    Stream { layer: usize, codec: Codec },
}

/// Shared state of one scan.
pub struct Run<'a> {
    pub m: &'a Matcher,
    needles: &'a [Needle],
    target: Arc<str>,
    pub opts: &'a ScanOptions,
    pub abort: AtomicBool,
    done: AtomicU64,
    pub scanned: AtomicU64,
}

/// A range of a file whose raw findings are reported elsewhere.
pub struct Suppress {
    pub layer: Arc<str>,
    pub path: String,
    pub start: u64,
    pub end: u64,
    /// Only the findings of this secret, if named.
    pub secret: Option<String>,
    /// The raw findings' codec (the file's own bytes were reached through
    /// it); findings in the file's decoded data have another.
    pub via: Option<Codec>,
}

/// What workers collect.
#[derive(Default)]
pub struct Out {
    pub findings: Vec<Finding>,
    pub incomplete: Vec<String>,
    /// Raw findings reported by a member or the decoded data instead.
    pub suppress: Vec<Suppress>,
}

impl Run<'_> {
    pub fn finding(
        &self,
        layer: &str,
        section: Section,
        via: Option<Codec>,
        path: &str,
        h: &Hit,
        out: &mut Out,
    ) {
        out.findings.push(Finding {
            target: self.target.to_string(),
            layer: layer.to_string(),
            section,
            path: path.to_owned(),
            offset: h.pos,
            source: self.needles[self.m.needle(h)].name().to_owned(),
            kind: self.m.kind(h),
            compressed: via.is_some(),
            codec: via,
            length: h.len,
        });
    }
}

/// Scan a resolved target.
pub fn run(
    target: &Target,
    m: &Matcher,
    needles: &[Needle],
    opts: &ScanOptions,
) -> Result<Report, ScanError> {
    let resolved = target::resolve(target)?;
    let run = Run {
        m,
        needles,
        target: target.to_string().into(),
        opts,
        abort: AtomicBool::new(false),
        done: AtomicU64::new(0),
        scanned: AtomicU64::new(0),
    };
    let mut out = Out::default();
    for d in &resolved.docs {
        scan_doc(&run, d, &mut out);
    }
    let (spaces, jobs, budgets, total) = plan(&resolved, m, opts)?;
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        opts.threads
    };
    let next = AtomicUsize::new(0);
    let finished = AtomicBool::new(false);
    let results: Vec<Result<Out, ScanError>> = std::thread::scope(|s| {
        let progress = opts
            .progress
            .then(|| s.spawn(|| progress_line(&run.done, total, &finished)));
        let workers: Vec<_> = (0..threads.min(jobs.len()).max(1))
            .map(|_| s.spawn(|| worker(&run, &resolved, &spaces, &jobs, &budgets, &next)))
            .collect();
        let r = workers
            .into_iter()
            .map(|w| w.join().expect("scan worker panicked"))
            .collect();
        finished.store(true, Ordering::Relaxed);
        if let Some(p) = progress {
            let _ = p.join();
        }
        r
    });
    for r in results {
        let o = r?;
        out.findings.extend(o.findings);
        out.incomplete.extend(o.incomplete);
        out.suppress.extend(o.suppress);
    }
    let mut findings = out.findings;
    suppress(&mut findings, out.suppress);
    tidy(&mut findings);
    out.incomplete.sort();
    out.incomplete.dedup();
    Ok(Report {
        target: target.to_string(),
        findings,
        layers: resolved.layers.len() + resolved.trees.len(),
        bytes: run.scanned.load(Ordering::Relaxed),
        incomplete: out.incomplete,
        ..Default::default()
    })
}

fn progress_line(done: &AtomicU64, total: u64, finished: &AtomicBool) {
    use std::io::Write;
    let mut shown = false;
    while !finished.load(Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let d = done.load(Ordering::Relaxed).min(total);
        let pct = (d * 100).checked_div(total).unwrap_or(100);
        let bar = "#".repeat((pct / 4) as usize);
        eprint!(
            "\rscanning [{bar:<25}] {pct:>3}% {:.1}/{:.1} MiB",
            d as f64 / 1048576.0,
            total as f64 / 1048576.0
        );
        let _ = std::io::stderr().flush();
        shown = true;
    }
    if shown {
        eprint!("\r{:60}\r", "");
    }
}

/// Drop raw findings of an archive that lie inside a member scanned as a
/// file of its own (a tar entry, a stored zip member): that member's
/// finding names the copy by its full path.
fn suppress(f: &mut Vec<Finding>, ranges: Vec<Suppress>) {
    if ranges.is_empty() {
        return;
    }
    let mut by_file: HashMap<(Arc<str>, String), Vec<Suppress>> = HashMap::new();
    for s in ranges {
        by_file
            .entry((s.layer.clone(), s.path.clone()))
            .or_default()
            .push(s);
    }
    f.retain(|x| {
        if x.section != Section::Layer {
            return true;
        }
        let key = (Arc::<str>::from(x.layer.as_str()), x.path.clone());
        !by_file.get(&key).is_some_and(|rs| {
            rs.iter().any(|s| {
                s.start <= x.offset
                    && x.offset.saturating_add(x.length) <= s.end
                    && s.via == x.codec
                    && s.secret.as_ref().is_none_or(|w| *w == x.source)
            })
        })
    });
}

/// Sort, merge adjacent pieces of one match (base64 wrapped in lines) and
/// drop what another finding of the same secret in the same file already
/// covers (base64 runs inside a base64url match of text without `+/`, hex
/// inside HEX of digits only, a part seen through two forms).
fn tidy(f: &mut Vec<Finding>) {
    f.sort_by(|a, b| {
        (
            &a.layer,
            &a.path,
            a.section,
            &a.source,
            a.offset,
            std::cmp::Reverse(a.length),
            a.kind,
        )
            .cmp(&(
                &b.layer,
                &b.path,
                b.section,
                &b.source,
                b.offset,
                std::cmp::Reverse(b.length),
                b.kind,
            ))
    });
    let mut out: Vec<Finding> = Vec::with_capacity(f.len());
    for x in f.drain(..) {
        if let Some(p) = out.last_mut() {
            let same_place = p.layer == x.layer
                && p.path == x.path
                && p.section == x.section
                && p.source == x.source;
            let p_end = p.offset + p.length;
            if same_place && x.offset + x.length <= p_end {
                continue; // covered
            }
            if same_place && p.kind == x.kind && p.codec == x.codec && x.offset <= p_end + 2 {
                p.length = x.offset + x.length - p.offset;
                continue;
            }
        }
        out.push(x);
    }
    *f = out;
}

fn scan_doc(run: &Run, d: &target::Doc, out: &mut Out) {
    let mut hits = Vec::new();
    match serde_json::from_slice::<serde_json::Value>(&d.bytes) {
        Ok(v) => {
            let mut strings = Vec::new();
            json_strings(&v, String::new(), &mut strings);
            for (ptr, s) in strings {
                hits.clear();
                run.m.scan_all(s.as_bytes(), &mut hits);
                let section = if d.section == Section::Config && ptr.starts_with("/history") {
                    Section::History
                } else {
                    d.section
                };
                for h in &hits {
                    run.finding(&d.label, section, None, &ptr, h, out);
                }
            }
        }
        Err(_) => {
            run.m.scan_all(&d.bytes, &mut hits);
            for h in &hits {
                run.finding(&d.label, d.section, None, "", h, out);
            }
        }
    }
    run.scanned
        .fetch_add(d.bytes.len() as u64, Ordering::Relaxed);
}

/// Every string (keys too) of a JSON document with its JSON pointer; keys
/// come from the image, so the pointer is escaped for printing.
fn json_strings<'v>(v: &'v serde_json::Value, ptr: String, out: &mut Vec<(String, &'v str)>) {
    use serde_json::Value;
    let esc =
        |k: &str| crate::shown::escaped(&k.replace('~', "~0").replace('/', "~1")).into_owned();
    match v {
        Value::String(s) => out.push((ptr, s)),
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                json_strings(x, format!("{ptr}/{i}"), out);
            }
        }
        Value::Object(o) => {
            for (k, x) in o {
                out.push((format!("{ptr}/{}", esc(k)), k.as_str()));
                json_strings(x, format!("{ptr}/{}", esc(k)), out);
            }
        }
        _ => {}
    }
}

/// Spaces, jobs, each layer's expansion budget, and the bytes to read.
type Plan = (Vec<Space>, Vec<Job>, Vec<Arc<Budget>>, u64);

/// Index seekable layers and trees into spaces and cut them into jobs.
fn plan(r: &Resolved, m: &Matcher, opts: &ScanOptions) -> Result<Plan, ScanError> {
    let mut spaces = Vec::new();
    let mut streams = Vec::new();
    let mut budgets = Vec::new();
    let mut total = 0u64;
    for (i, l) in r.layers.iter().enumerate() {
        total += l.blob.len;
        let budget = Arc::new(Budget::new(opts.max_expansion, l.blob.len));
        budgets.push(budget.clone());
        let head = l.blob.head(BLOCK as usize)?;
        if let Format::Compressed(codec) = detect(&head) {
            streams.push(Job::Stream { layer: i, codec });
            continue;
        }
        let mut spans = Vec::new();
        if looks_like_tar(&head) {
            let owned;
            let index = match r.indexed.iter().find(|(j, _)| *j == i) {
                Some((_, idx)) => idx,
                None => {
                    owned = target::index_tar(&l.blob)?;
                    &owned
                }
            };
            for e in &index.entries {
                if e.size > 0 && (e.is_file() || e.meta.is_some()) {
                    spans.push(Span {
                        path: e.path.as_str().into(),
                        start: l.blob.offset + e.data_offset,
                        len: e.size,
                    });
                }
            }
        } else if l.blob.len > 0 {
            spans.push(Span {
                path: "".into(),
                start: l.blob.offset,
                len: l.blob.len,
            });
        }
        spaces.push(Space {
            file: l.blob.file.clone(),
            name: l.blob.name.clone(),
            layer: l.label.as_str().into(),
            budget,
            spans,
        });
    }
    if !r.trees.is_empty() {
        // One allowance for all the trees' files together.
        let first = spaces.len();
        for root in &r.trees {
            walk_tree(root, root, &mut spaces, &mut total)?;
        }
        let size: u64 = spaces[first..]
            .iter()
            .flat_map(|s| &s.spans)
            .map(|s| s.len)
            .sum();
        let budget = Arc::new(Budget::new(opts.max_expansion, size));
        for s in &mut spaces[first..] {
            s.budget = budget.clone();
        }
    }
    let mut jobs = streams;
    let chunk = CHUNK.max(4 * m.margin as u64);
    for (si, s) in spaces.iter().enumerate() {
        let (Some(first), Some(last)) = (s.spans.first(), s.spans.last()) else {
            continue;
        };
        let (mut from, end) = (first.start, last.start + last.len);
        while from < end {
            let to = (from + chunk).min(end);
            jobs.push(Job::Range {
                space: si,
                from,
                to,
            });
            from = to;
        }
    }
    Ok((spaces, jobs, budgets, total))
}

/// Every regular file under `dir` (symlinks, devices and FIFOs are not
/// followed or opened), as one space each.
fn walk_tree(
    root: &Path,
    dir: &Path,
    spaces: &mut Vec<Space>,
    total: &mut u64,
) -> Result<(), ScanError> {
    let rd = std::fs::read_dir(dir).map_err(|e| ScanError::io(dir.display(), e))?;
    let mut names: Vec<_> = rd
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ScanError::io(dir.display(), e))?;
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let p = e.path();
        let ft = e.file_type().map_err(|e| ScanError::io(p.display(), e))?;
        if ft.is_dir() {
            walk_tree(root, &p, spaces, total)?;
        } else if ft.is_file() {
            let f = target::open_regular(&p)?;
            let len = f
                .metadata()
                .map_err(|e| ScanError::io(p.display(), e))?
                .len();
            *total += len;
            let rel = p.strip_prefix(root).unwrap_or(&p);
            spaces.push(Space {
                file: Arc::new(f),
                name: p.display().to_string(),
                layer: "-".into(),
                budget: Arc::new(Budget::new(0, 0)),
                spans: vec![Span {
                    path: escaped_bytes(rel.as_os_str().as_bytes()).into(),
                    start: 0,
                    len,
                }],
            });
        }
    }
    Ok(())
}

fn worker(
    run: &Run,
    r: &Resolved,
    spaces: &[Space],
    jobs: &[Job],
    budgets: &[Arc<Budget>],
    next: &AtomicUsize,
) -> Result<Out, ScanError> {
    let mut out = Out::default();
    let mut buf = Vec::new();
    let mut hits = Vec::new();
    loop {
        if run.abort.load(Ordering::Relaxed) {
            return Ok(out);
        }
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(job) = jobs.get(i) else {
            return Ok(out);
        };
        let res = match job {
            Job::Range { space, from, to } => range_job(
                run,
                &spaces[*space],
                *from,
                *to,
                &mut buf,
                &mut hits,
                &mut out,
            ),
            Job::Stream { layer, codec } => {
                stream_job(run, &r.layers[*layer], *codec, &budgets[*layer], &mut out)
            }
        };
        if let Err(e) = res {
            run.abort.store(true, Ordering::Relaxed);
            return Err(e);
        }
    }
}

fn range_job(
    run: &Run,
    s: &Space,
    from: u64,
    to: u64,
    buf: &mut Vec<u8>,
    hits: &mut Vec<Hit>,
    out: &mut Out,
) -> Result<(), ScanError> {
    let margin = run.m.margin as u64 + super::matcher::W as u64;
    // Spans overlapping [from, to).
    let first = s.spans.partition_point(|sp| sp.start + sp.len <= from);
    let mut last = first;
    while last < s.spans.len() && s.spans[last].start < to {
        last += 1;
    }
    if first == last {
        run.done.fetch_add(to - from, Ordering::Relaxed);
        return Ok(());
    }
    let rstart = from.saturating_sub(margin).max(s.spans[first].start);
    let lspan = &s.spans[last - 1];
    let rend = (to + margin).min(lspan.start + lspan.len);
    buf.resize((rend - rstart) as usize, 0);
    s.file
        .read_exact_at(buf, rstart)
        .map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => {
                ScanError::corrupt(&s.name, "truncated: file ends inside its data")
            }
            _ => ScanError::io(&s.name, e),
        })?;
    for sp in &s.spans[first..last] {
        let (sp_end, a, b) = (
            sp.start + sp.len,
            sp.start.max(rstart),
            (sp.start + sp.len).min(rend),
        );
        if a >= b {
            continue;
        }
        let data = &buf[(a - rstart) as usize..(b - rstart) as usize];
        let (sf, st) = (from.max(sp.start) - sp.start, to.min(sp_end) - sp.start);
        hits.clear();
        run.m.scan(data, a - sp.start, sf, st, hits);
        for h in hits.iter() {
            run.finding(&s.layer, Section::Layer, None, &sp.path, h, out);
        }
        run.scanned.fetch_add(st - sf, Ordering::Relaxed);
        // A compressed file or an archive inside the layer: walk what it
        // holds, too (its raw bytes were just scanned).
        if sp.start >= from && sp.start < to {
            let in_buf = &buf[(sp.start - rstart) as usize..(b - rstart) as usize];
            let head_len = (sp.len as usize).min(HEAD);
            let fmt = if in_buf.len() >= head_len {
                detect(&in_buf[..head_len])
            } else {
                let blob = Blob::sub_of(&s.file, &s.name, sp.start, sp.len);
                detect(&blob.head(HEAD)?)
            };
            if fmt.is_nested() {
                let blob = Blob::sub_of(&s.file, &s.name, sp.start, sp.len);
                let w = Walker {
                    run,
                    layer: s.layer.clone(),
                    section: Section::Layer,
                    budget: &s.budget,
                };
                w.file(&sp.path, &mut blob.reader(), 0, None, false, out)
                    .map_err(|e| ScanError::io(&s.name, e))?;
            }
        }
    }
    run.done.fetch_add(to - from, Ordering::Relaxed);
    Ok(())
}

/// Reader that counts bytes into the progress counter.
struct Counting<'a, R> {
    r: R,
    done: &'a AtomicU64,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.r.read(buf)?;
        self.done.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn stream_job(
    run: &Run,
    l: &target::Layer,
    codec: Codec,
    budget: &Budget,
    out: &mut Out,
) -> Result<(), ScanError> {
    let counting = Counting {
        r: l.blob.reader(),
        done: &run.done,
    };
    let what = codec.as_str();
    // Decompress on a second thread, so one big compressed layer keeps two
    // cores busy: one inflating, one scanning.
    let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<Vec<u8>>>(4);
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut dec = match decoder(codec, io::BufReader::with_capacity(256 << 10, counting)) {
                Ok(d) => d,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            loop {
                let mut v = vec![0u8; 1 << 20];
                match read_full(&mut dec, &mut v) {
                    Ok(0) => break,
                    Ok(n) => {
                        v.truncate(n);
                        if tx.send(Ok(v)).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        break;
                    }
                }
            }
        });
        let mut piped = ChanReader {
            rx,
            cur: Vec::new(),
            pos: 0,
        };
        let w = Walker {
            run,
            layer: l.label.as_str().into(),
            section: Section::Layer,
            budget,
        };
        w.layer_stream(&mut piped, out)
    })
    .map_err(|e| ScanError::corrupt(&l.blob.name, format!("{what}: {e}")))
}

/// `Read` over chunks sent on a channel (the decompressing thread's output).
struct ChanReader {
    rx: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for ChanReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.cur.len() {
            match self.rx.recv() {
                Ok(Ok(v)) => {
                    self.cur = v;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
