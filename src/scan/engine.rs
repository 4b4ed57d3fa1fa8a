//! The scan engine: turns a resolved target into jobs and runs them on a
//! pool of threads.
//!
//! - An uncompressed tar (a layer blob, an archive member, a plain tar) is
//!   indexed by walking its headers, then cut into ~8 MiB ranges read with
//!   `pread` by any worker: one big tar scans on every core.
//! - A compressed layer (gzip, zstd) is one streaming job: decompressed in
//!   a fixed buffer and scanned as it comes, never held whole.
//! - A gzip/zstd file inside a layer is decompressed and scanned as well
//!   (and a tar inside it, entry by entry), up to `max_nesting` deep.
//! - Config, manifests and history are parsed and each JSON string is
//!   scanned, so escaping in the JSON does not hide a secret.

use super::matcher::{Hit, Matcher, W};
use super::target::{self, compression, Blob, Compression, Resolved};
use super::tarstream::{looks_like_tar, TarInput, TarReader, BLOCK};
use super::{Finding, Needle, Report, ScanError, ScanOptions, Section, Target};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Bytes per range job of an uncompressed tar.
const CHUNK: u64 = 8 << 20;
/// Streaming buffer.
const STREAM_BUF: usize = 4 << 20;

/// Where a finding is, besides its path and offset.
#[derive(Clone)]
struct Ctx {
    layer: Arc<str>,
    section: Section,
    compressed: bool,
}

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
    ctx: Ctx,
    spans: Vec<Span>,
}

enum Job {
    Range { space: usize, from: u64, to: u64 },
    Stream { layer: usize, comp: Compression },
}

/// Shared state of one scan.
struct Run<'a> {
    m: &'a Matcher,
    needles: &'a [Needle],
    target: Arc<str>,
    opts: &'a ScanOptions,
    abort: AtomicBool,
    done: AtomicU64,
    scanned: AtomicU64,
}

#[derive(Default)]
struct Out {
    findings: Vec<Finding>,
    incomplete: Vec<String>,
}

impl Run<'_> {
    fn finding(&self, ctx: &Ctx, path: &str, h: &Hit, out: &mut Out) {
        out.findings.push(Finding {
            target: self.target.to_string(),
            layer: ctx.layer.to_string(),
            section: ctx.section,
            path: path.to_owned(),
            offset: h.pos,
            source: self.needles[self.m.needle(h)].name().to_owned(),
            kind: self.m.kind(h),
            compressed: ctx.compressed,
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
    let (spaces, jobs, total) = plan(&resolved, m)?;
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
            .map(|_| s.spawn(|| worker(&run, &resolved, &spaces, &jobs, &next)))
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
    }
    let mut findings = out.findings;
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
            if same_place
                && p.kind == x.kind
                && p.compressed == x.compressed
                && x.offset <= p_end + 2
            {
                p.length = x.offset + x.length - p.offset;
                continue;
            }
        }
        out.push(x);
    }
    *f = out;
}

fn scan_doc(run: &Run, d: &target::Doc, out: &mut Out) {
    let ctx = Ctx {
        layer: d.label.as_str().into(),
        section: d.section,
        compressed: false,
    };
    let mut hits = Vec::new();
    match serde_json::from_slice::<serde_json::Value>(&d.bytes) {
        Ok(v) => {
            let mut strings = Vec::new();
            json_strings(&v, String::new(), &mut strings);
            for (ptr, s) in strings {
                hits.clear();
                run.m.scan_all(s.as_bytes(), &mut hits);
                let mut c = ctx.clone();
                if d.section == Section::Config && ptr.starts_with("/history") {
                    c.section = Section::History;
                }
                for h in &hits {
                    run.finding(&c, &ptr, h, out);
                }
            }
        }
        Err(_) => {
            run.m.scan_all(&d.bytes, &mut hits);
            for h in &hits {
                run.finding(&ctx, "", h, out);
            }
        }
    }
    run.scanned
        .fetch_add(d.bytes.len() as u64, Ordering::Relaxed);
}

fn json_strings<'v>(v: &'v serde_json::Value, ptr: String, out: &mut Vec<(String, &'v str)>) {
    use serde_json::Value;
    let esc = |k: &str| k.replace('~', "~0").replace('/', "~1");
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

/// Index seekable layers and trees into spaces and cut them into jobs.
fn plan(r: &Resolved, m: &Matcher) -> Result<(Vec<Space>, Vec<Job>, u64), ScanError> {
    let mut spaces = Vec::new();
    let mut streams = Vec::new();
    let mut total = 0u64;
    for (i, l) in r.layers.iter().enumerate() {
        total += l.blob.len;
        let ctx = Ctx {
            layer: l.label.as_str().into(),
            section: Section::Layer,
            compressed: false,
        };
        let head = l.blob.head(BLOCK as usize)?;
        let comp = compression(&head);
        if comp != Compression::None {
            streams.push(Job::Stream { layer: i, comp });
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
            ctx,
            spans,
        });
    }
    for root in &r.trees {
        walk_tree(root, root, &mut spaces, &mut total)?;
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
    Ok((spaces, jobs, total))
}

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
            let f = File::open(&p).map_err(|e| ScanError::io(p.display(), e))?;
            let len = f
                .metadata()
                .map_err(|e| ScanError::io(p.display(), e))?
                .len();
            *total += len;
            let rel = p.strip_prefix(root).unwrap_or(&p).display().to_string();
            spaces.push(Space {
                file: Arc::new(f),
                name: p.display().to_string(),
                ctx: Ctx {
                    layer: "-".into(),
                    section: Section::Layer,
                    compressed: false,
                },
                spans: vec![Span {
                    path: rel.into(),
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
            Job::Stream { layer, comp } => stream_job(run, &r.layers[*layer], *comp, &mut out),
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
    let margin = run.m.margin as u64 + W as u64;
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
            run.finding(&s.ctx, &sp.path, h, out);
        }
        run.scanned.fetch_add(st - sf, Ordering::Relaxed);
        // A compressed file inside the layer: scan what it holds, too.
        if sp.start >= from && sp.start < to && run.opts.max_nesting > 0 {
            let comp = compression(&buf[(sp.start - rstart) as usize..(b - rstart) as usize]);
            if comp != Compression::None {
                let blob = Blob {
                    file: s.file.clone(),
                    name: sp.path.to_string(),
                    offset: sp.start,
                    len: sp.len,
                };
                let mut ctx = s.ctx.clone();
                ctx.compressed = true;
                nested(run, &ctx, &sp.path, comp, blob.reader(), 1, out);
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

fn decoder<'r, R: Read + Send + 'r>(
    comp: Compression,
    r: R,
) -> io::Result<Box<dyn Read + Send + 'r>> {
    Ok(match comp {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(
            io::BufReader::with_capacity(256 << 10, r),
        )),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(r)?),
        Compression::None => Box::new(r),
    })
}

fn stream_job(
    run: &Run,
    l: &target::Layer,
    comp: Compression,
    out: &mut Out,
) -> Result<(), ScanError> {
    let ctx = Ctx {
        layer: l.label.as_str().into(),
        section: Section::Layer,
        compressed: false,
    };
    let counting = Counting {
        r: l.blob.reader(),
        done: &run.done,
    };
    let what = match comp {
        Compression::Gzip => "gzip",
        Compression::Zstd => "zstd",
        Compression::None => "data",
    };
    let mut dec = decoder(comp, counting)
        .map_err(|e| ScanError::corrupt(&l.blob.name, format!("{what}: {e}")))?;
    // Decompress on a second thread, so one big compressed layer keeps two
    // cores busy: one inflating, one scanning.
    let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<Vec<u8>>>(4);
    std::thread::scope(|s| {
        s.spawn(move || loop {
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
        });
        let piped = ChanReader {
            rx,
            cur: Vec::new(),
            pos: 0,
        };
        scan_stream(run, &ctx, "", Box::new(piped), 0, out)
    })
    .map_err(|e| ScanError::corrupt(&l.blob.name, format!("{what}: {e}")))
}

/// Scan a compressed file inside a layer; damage is recorded as
/// incomplete, not fatal for the whole scan.
fn nested(
    run: &Run,
    ctx: &Ctx,
    path: &str,
    comp: Compression,
    r: impl Read + Send,
    depth: u32,
    out: &mut Out,
) {
    let res = decoder(comp, r).and_then(|d| scan_stream(run, ctx, path, d, depth, out));
    if let Err(e) = res {
        out.incomplete.push(format!(
            "{}: {path}: cannot read compressed file: {e}",
            ctx.layer
        ));
    }
}

/// Peeked bytes, then the rest.
struct Peeked<R> {
    head: Vec<u8>,
    pos: usize,
    r: R,
}

impl<R: Read> Read for Peeked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos < self.head.len() {
            let n = buf.len().min(self.head.len() - self.pos);
            buf[..n].copy_from_slice(&self.head[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        self.r.read(buf)
    }
}

impl<R: Read> TarInput for Peeked<R> {}

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

/// Scan a decompressed stream: a tar entry by entry, or else flat as the
/// file `path`. `depth` counts compressed layers of nesting.
fn scan_stream(
    run: &Run,
    ctx: &Ctx,
    path: &str,
    mut r: Box<dyn Read + Send + '_>,
    depth: u32,
    out: &mut Out,
) -> io::Result<()> {
    let mut head = vec![0u8; BLOCK as usize];
    let n = read_full(&mut r, &mut head)?;
    head.truncate(n);
    let is_tar = looks_like_tar(&head);
    let peeked = Peeked { head, pos: 0, r };
    let join = |inner: &str| {
        if path.is_empty() {
            inner.to_string()
        } else {
            format!("{path}!/{inner}")
        }
    };
    if !is_tar {
        let mut sc = StreamScanner::new(run.m);
        let mut rd = peeked;
        let mut chunk = vec![0u8; 1 << 20];
        loop {
            if run.abort.load(Ordering::Relaxed) {
                return Ok(());
            }
            let k = match rd.read(&mut chunk) {
                Ok(0) => break,
                Ok(k) => k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            sc.push(&chunk[..k]);
        }
        let hits = sc.finish();
        run.scanned.fetch_add(sc.base_total, Ordering::Relaxed);
        for h in &hits {
            run.finding(ctx, path, h, out);
        }
        return Ok(());
    }
    let mut tr = TarReader::new(peeked);
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        if run.abort.load(Ordering::Relaxed) {
            return Ok(());
        }
        let e = match tr.next_entry() {
            Ok(Some(e)) => e,
            Ok(None) => {
                // Read to the end, so damage after the archive (a bad gzip
                // trailer or CRC) is still an error.
                io::copy(&mut tr.into_inner(), &mut io::sink())?;
                return Ok(());
            }
            Err(e) => return Err(io::Error::other(e.to_string())),
        };
        let p = join(&e.path);
        if let Some(meta) = &e.meta {
            let mut hits = Vec::new();
            run.m.scan_all(meta, &mut hits);
            for h in &hits {
                run.finding(ctx, &p, h, out);
            }
            continue;
        }
        if e.size == 0 {
            continue;
        }
        let mut sc = StreamScanner::new(run.m);
        let first = tr
            .read_data(&mut chunk)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let comp = compression(&chunk[..first]);
        let read_rest = |tr: &mut TarReader<_>,
                         sc: &mut StreamScanner,
                         chunk: &mut Vec<u8>,
                         tee: Option<&std::sync::mpsc::SyncSender<io::Result<Vec<u8>>>>|
         -> io::Result<()> {
            loop {
                let k = tr
                    .read_data(chunk)
                    .map_err(|e| io::Error::other(e.to_string()))?;
                if k == 0 {
                    return Ok(());
                }
                sc.push(&chunk[..k]);
                if let Some(t) = tee {
                    let _ = t.send(Ok(chunk[..k].to_vec()));
                }
            }
        };
        sc.push(&chunk[..first]);
        if comp != Compression::None && depth < run.opts.max_nesting {
            let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<Vec<u8>>>(4);
            let _ = tx.send(Ok(chunk[..first].to_vec()));
            let mut sub = Out::default();
            let mut nctx = ctx.clone();
            nctx.compressed = true;
            let res = std::thread::scope(|s| {
                let h = s.spawn(|| {
                    let cr = ChanReader {
                        rx,
                        cur: Vec::new(),
                        pos: 0,
                    };
                    nested(run, &nctx, &p, comp, cr, depth + 1, &mut sub);
                });
                let r = read_rest(&mut tr, &mut sc, &mut chunk, Some(&tx));
                drop(tx);
                h.join().expect("nested scan panicked");
                r
            });
            res?;
            out.findings.extend(sub.findings);
            out.incomplete.extend(sub.incomplete);
        } else {
            read_rest(&mut tr, &mut sc, &mut chunk, None)?;
        }
        let hits = sc.finish();
        run.scanned.fetch_add(sc.base_total, Ordering::Relaxed);
        for h in &hits {
            run.finding(ctx, &p, h, out);
        }
    }
}

/// `Read` over chunks sent on a channel (the tee into a nested scan).
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

/// Scans a stream pushed in pieces, keeping only a margin of the past.
struct StreamScanner<'m> {
    m: &'m Matcher,
    buf: Vec<u8>,
    cap: usize,
    base: u64,
    next: u64,
    hits: Vec<Hit>,
    base_total: u64,
}

impl<'m> StreamScanner<'m> {
    fn new(m: &'m Matcher) -> Self {
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

    fn push(&mut self, mut data: &[u8]) {
        self.base_total += data.len() as u64;
        while !data.is_empty() {
            if self.buf.capacity() < self.cap {
                self.buf.reserve_exact(self.cap - self.buf.len());
            }
            let take = (self.cap - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == self.cap {
                self.process(false);
            }
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

    fn finish(&mut self) -> Vec<Hit> {
        self.process(true);
        std::mem::take(&mut self.hits)
    }
}

impl Drop for StreamScanner<'_> {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.buf.zeroize();
    }
}
