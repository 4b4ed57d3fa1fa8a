//! What `privy scan` reads: parsing the target syntax, and resolving a
//! target to its blobs (layers as byte ranges of files on disk, config and
//! manifests as small JSON documents, or a directory tree).
//! `containers-storage:` images are exported with skopeo into a private
//! (0700) temporary directory that is removed afterwards.

use super::detect::{detect, Format};
use super::tarstream::{looks_like_tar, Entry, TarInput, TarReader, BLOCK};
use super::ScanError;
use serde_json::Value;
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What to scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An OCI image layout directory (`oci:DIR`, or a directory holding an
    /// `oci-layout` file).
    OciLayout(PathBuf),
    /// A tar of an OCI layout (`oci-archive:FILE`).
    OciArchive(PathBuf),
    /// A `docker save` / `podman save` tar (`docker-archive:FILE`).
    DockerArchive(PathBuf),
    /// An image in local containers-storage (`containers-storage:IMAGE`),
    /// exported with skopeo.
    ContainersStorage(String),
    /// A file: a tar (plain, gzip or zstd, detected by magic bytes). An OCI
    /// or docker archive given this way is recognised and read as an image.
    File(PathBuf),
    /// A directory tree.
    Dir(PathBuf),
}

impl Target {
    /// Parse the CLI syntax. Prefixes: `oci:`, `oci-archive:`,
    /// `docker-archive:`, `containers-storage:`, `dir:`; without one, an
    /// existing directory is an OCI layout if it has `oci-layout`, else a
    /// tree, and anything else is a file.
    pub fn parse(s: &str) -> Result<Target, ScanError> {
        let nonempty = |rest: &str| {
            if rest.is_empty() {
                Err(ScanError::Target {
                    target: s.to_owned(),
                    why: "empty name after the prefix".into(),
                })
            } else {
                Ok(rest.to_owned())
            }
        };
        if let Some(rest) = s.strip_prefix("containers-storage:") {
            return Ok(Target::ContainersStorage(nonempty(rest)?));
        }
        if let Some(rest) = s.strip_prefix("oci-archive:") {
            return Ok(Target::OciArchive(nonempty(rest)?.into()));
        }
        if let Some(rest) = s.strip_prefix("docker-archive:") {
            return Ok(Target::DockerArchive(nonempty(rest)?.into()));
        }
        if let Some(rest) = s.strip_prefix("oci:") {
            return Ok(Target::OciLayout(nonempty(rest)?.into()));
        }
        if let Some(rest) = s.strip_prefix("dir:") {
            return Ok(Target::Dir(nonempty(rest)?.into()));
        }
        let p = PathBuf::from(nonempty(s)?);
        if p.is_dir() {
            if p.join("oci-layout").is_file() {
                return Ok(Target::OciLayout(p));
            }
            return Ok(Target::Dir(p));
        }
        Ok(Target::File(p))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::OciLayout(p) => write!(f, "oci:{}", p.display()),
            Target::OciArchive(p) => write!(f, "oci-archive:{}", p.display()),
            Target::DockerArchive(p) => write!(f, "docker-archive:{}", p.display()),
            Target::ContainersStorage(i) => write!(f, "containers-storage:{i}"),
            Target::File(p) => write!(f, "{}", p.display()),
            Target::Dir(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A byte range of a file.
#[derive(Debug, Clone)]
pub struct Blob {
    pub file: Arc<File>,
    pub name: String,
    pub offset: u64,
    pub len: u64,
}

/// Open `path` for reading only if it is a regular file (after symlinks),
/// through the one non-blocking opener in `sys::fs`: a device (`/dev/zero`
/// never ends), a FIFO (blocks forever) or a socket is refused with one
/// line, and a FIFO with no writer cannot hang the open either.
pub fn open_regular(path: &Path) -> Result<File, ScanError> {
    use crate::sys::fs::ReadError;
    crate::sys::fs::open_regular(path).map_err(|e| match e {
        ReadError::Io(e) => open_err(path, e),
        ReadError::NotRegular(kind) => ScanError::Target {
            target: crate::shown::escaped(&path.display().to_string()).into_owned(),
            why: format!("not a regular file ({kind}); only regular files are read"),
        },
        other => ScanError::io(path.display(), std::io::Error::other(other.to_string())),
    })
}

impl Blob {
    pub fn whole(path: &Path) -> Result<Blob, ScanError> {
        let file = open_regular(path)?;
        let len = file
            .metadata()
            .map_err(|e| ScanError::io(path.display(), e))?
            .len();
        Ok(Blob {
            file: Arc::new(file),
            name: path.display().to_string(),
            offset: 0,
            len,
        })
    }

    /// `len` bytes at `offset` of an open file.
    pub fn sub_of(file: &Arc<File>, name: &str, offset: u64, len: u64) -> Blob {
        Blob {
            file: file.clone(),
            name: name.to_string(),
            offset,
            len,
        }
    }

    fn sub(&self, name: String, offset: u64, len: u64) -> Blob {
        Blob {
            file: self.file.clone(),
            name,
            offset: self.offset + offset,
            len,
        }
    }

    /// Read up to `n` bytes from the start.
    pub fn head(&self, n: usize) -> Result<Vec<u8>, ScanError> {
        let n = (n as u64).min(self.len) as usize;
        let mut buf = vec![0u8; n];
        self.file
            .read_exact_at(&mut buf, self.offset)
            .map_err(|e| ScanError::io(&self.name, e))?;
        Ok(buf)
    }

    /// Read it all (small JSON documents only).
    pub fn read_all(&self, limit: u64) -> Result<Vec<u8>, ScanError> {
        if self.len > limit {
            return Err(ScanError::corrupt(
                &self.name,
                format!("{} bytes is too large for a JSON document", self.len),
            ));
        }
        self.head(self.len as usize)
    }

    pub fn reader(&self) -> RangeReader {
        RangeReader {
            file: self.file.clone(),
            pos: self.offset,
            end: self.offset + self.len,
        }
    }
}

fn open_err(path: &Path, e: io::Error) -> ScanError {
    if e.kind() == io::ErrorKind::NotFound {
        ScanError::NotFound(path.display().to_string())
    } else {
        ScanError::io(path.display(), e)
    }
}

/// `Read` over a byte range with `pread`; skips by seeking.
pub struct RangeReader {
    file: Arc<File>,
    pos: u64,
    end: u64,
}

impl Read for RangeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.end - self.pos) as usize;
        if n == 0 {
            return Ok(0);
        }
        let got = self.file.read_at(&mut buf[..n], self.pos)?;
        self.pos += got as u64;
        Ok(got)
    }
}

impl TarInput for RangeReader {
    fn skip(&mut self, n: u64) -> io::Result<()> {
        if self.end - self.pos < n {
            self.pos = self.end;
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.pos += n;
        Ok(())
    }
}

/// An uncompressed tar walked without reading its data.
#[derive(Debug)]
pub struct TarIndex {
    pub entries: Vec<Entry>,
}

/// Walk a seekable tar's headers.
pub fn index_tar(blob: &Blob) -> Result<TarIndex, ScanError> {
    let mut tr = TarReader::new(blob.reader());
    let mut entries = Vec::new();
    loop {
        match tr.next_entry() {
            Ok(Some(e)) => entries.push(e),
            Ok(None) => break,
            Err(e) => return Err(ScanError::corrupt(&blob.name, e)),
        }
    }
    Ok(TarIndex { entries })
}

/// A layer (or a plain tar, or one flat file) to scan.
#[derive(Debug)]
pub struct Layer {
    /// Digest or name findings report.
    pub label: String,
    pub blob: Blob,
}

/// A JSON document (config, manifest, index) to scan.
#[derive(Debug)]
pub struct Doc {
    pub label: String,
    pub section: super::Section,
    pub bytes: Vec<u8>,
}

/// A target, resolved.
#[derive(Default, Debug)]
pub struct Resolved {
    pub layers: Vec<Layer>,
    pub docs: Vec<Doc>,
    pub trees: Vec<PathBuf>,
    /// A seekable tar already indexed (plain tar targets): layer index →
    /// its entries, so the walk is not repeated.
    pub indexed: Vec<(usize, TarIndex)>,
    /// Private export directory, removed on drop.
    pub tmp: Option<crate::sys::fs::PrivateDir>,
}

const MAX_JSON: u64 = 64 << 20;

/// Resolve `target` to blobs.
pub fn resolve(target: &Target) -> Result<Resolved, ScanError> {
    match target {
        Target::OciLayout(dir) => oci_layout(dir),
        Target::Dir(dir) => {
            let m = std::fs::symlink_metadata(dir).map_err(|e| open_err(dir, e))?;
            if !m.is_dir() {
                return Err(ScanError::Target {
                    target: dir.display().to_string(),
                    why: "not a directory".into(),
                });
            }
            Ok(Resolved {
                trees: vec![dir.clone()],
                ..Default::default()
            })
        }
        Target::ContainersStorage(image) => containers_storage(image),
        Target::File(p) | Target::OciArchive(p) | Target::DockerArchive(p) => {
            let (p, want_ref) = match target {
                Target::OciArchive(_) => split_ref(p),
                _ => (p.clone(), None),
            };
            let blob = Blob::whole(&p)?;
            let want = match target {
                Target::OciArchive(_) => Some("an OCI archive"),
                Target::DockerArchive(_) => Some("a docker archive"),
                _ => None,
            };
            file_target(blob, want, want_ref)
        }
    }
}

fn file_target(
    blob: Blob,
    want: Option<&str>,
    want_ref: Option<String>,
) -> Result<Resolved, ScanError> {
    let head = blob.head(BLOCK as usize)?;
    let label = Path::new(&blob.name)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| blob.name.clone());
    if !matches!(detect(&head), Format::Compressed(_)) && looks_like_tar(&head) {
        let index = index_tar(&blob)?;
        let find = |name: &str| {
            index
                .entries
                .iter()
                .find(|e| e.path.trim_start_matches("./") == name && e.is_file())
        };
        if find("oci-layout").is_some() && find("index.json").is_some() {
            return oci_archive(&blob, &index, want_ref.as_deref());
        }
        if let Some(m) = find("manifest.json") {
            if let Ok(r) = docker_archive(&blob, &index, m) {
                return Ok(r);
            }
        }
        if let Some(w) = want {
            return Err(ScanError::Target {
                target: blob.name.clone(),
                why: format!("not {w}"),
            });
        }
        return Ok(Resolved {
            layers: vec![Layer { label, blob }],
            indexed: vec![(0, index)],
            ..Default::default()
        });
    }
    if let Some(w) = want {
        return Err(ScanError::Target {
            target: blob.name.clone(),
            why: format!("not {w} (not an uncompressed tar)"),
        });
    }
    Ok(Resolved {
        layers: vec![Layer { label, blob }],
        ..Default::default()
    })
}

fn json(bytes: &[u8], what: &str) -> Result<Value, ScanError> {
    serde_json::from_slice(bytes).map_err(|e| ScanError::corrupt(what, e))
}

fn digest_hex(d: &str) -> Result<&str, ScanError> {
    match d.split_once(':') {
        Some(("sha256" | "sha512", h))
            if !h.is_empty() && h.bytes().all(|c| c.is_ascii_hexdigit()) =>
        {
            Ok(h)
        }
        _ => Err(ScanError::corrupt(
            "image manifest",
            format!("bad digest {d:?}"),
        )),
    }
}

/// Walk an OCI layout given a way to open `blobs/ALG/HEX`.
fn walk_oci(
    index_bytes: Vec<u8>,
    want_ref: Option<&str>,
    open: &dyn Fn(&str) -> Result<Blob, ScanError>,
) -> Result<Resolved, ScanError> {
    let mut r = Resolved::default();
    let mut queue = vec![("index.json".to_string(), index_bytes)];
    let mut seen_layers = std::collections::BTreeSet::new();
    let mut seen_docs = std::collections::BTreeSet::new();
    while let Some((label, bytes)) = queue.pop() {
        let v = json(&bytes, &label)?;
        r.docs.push(Doc {
            label: label.clone(),
            section: super::Section::Manifest,
            bytes,
        });
        let mut children: Vec<&Value> = Vec::new();
        if let Some(ms) = v.get("manifests").and_then(Value::as_array) {
            children.extend(ms);
        }
        if let (Some(want), "index.json") = (want_ref, label.as_str()) {
            let name = |m: &&Value| {
                m.pointer("/annotations/org.opencontainers.image.ref.name")
                    .and_then(Value::as_str)
                    == Some(want)
            };
            children.retain(name);
            if children.is_empty() {
                return Err(ScanError::NotFound(format!("image reference {want:?}")));
            }
        }
        for m in children {
            let d = m.get("digest").and_then(Value::as_str).unwrap_or("");
            if seen_docs.insert(d.to_string()) {
                let b = open(d)?.read_all(MAX_JSON)?;
                queue.push((d.to_string(), b));
            }
        }
        if let Some(c) = v.get("config").and_then(|c| c.get("digest")) {
            let d = c.as_str().unwrap_or("");
            if seen_docs.insert(d.to_string()) {
                let b = open(d)?.read_all(MAX_JSON)?;
                json(&b, d)?;
                r.docs.push(Doc {
                    label: d.to_string(),
                    section: super::Section::Config,
                    bytes: b,
                });
            }
        }
        if let Some(ls) = v.get("layers").and_then(Value::as_array) {
            for l in ls {
                let d = l.get("digest").and_then(Value::as_str).unwrap_or("");
                if seen_layers.insert(d.to_string()) {
                    r.layers.push(Layer {
                        label: d.to_string(),
                        blob: open(d)?,
                    });
                }
            }
        }
    }
    if r.layers.is_empty() && !r.docs.iter().any(|d| d.section == super::Section::Config) {
        return Err(ScanError::corrupt("index.json", "no image manifests"));
    }
    Ok(r)
}

/// `DIR` or, when no such path exists, `DIR:REF` (skopeo's syntax).
fn split_ref(p: &Path) -> (PathBuf, Option<String>) {
    if !p.exists() {
        if let Some((d, r)) = p.to_str().and_then(|s| s.rsplit_once(':')) {
            if !r.is_empty() && !r.contains('/') && Path::new(d).exists() {
                return (PathBuf::from(d), Some(r.to_string()));
            }
        }
    }
    (p.to_owned(), None)
}

fn oci_layout(p: &Path) -> Result<Resolved, ScanError> {
    let (dir, want_ref) = split_ref(p);
    let dir = dir.as_path();
    let index = dir.join("index.json");
    let bytes = Blob::whole(&index)?.read_all(MAX_JSON)?;
    let open = |d: &str| {
        let h = digest_hex(d)?;
        let alg = d.split_once(':').map(|x| x.0).unwrap_or("sha256");
        let mut b = Blob::whole(&dir.join("blobs").join(alg).join(h))?;
        b.name = d.to_string();
        Ok(b)
    };
    walk_oci(bytes, want_ref.as_deref(), &open)
}

fn member<'a>(index: &'a TarIndex, name: &str) -> Option<&'a Entry> {
    index
        .entries
        .iter()
        .find(|e| e.is_file() && e.path.trim_start_matches("./") == name)
}

fn oci_archive(
    blob: &Blob,
    index: &TarIndex,
    want_ref: Option<&str>,
) -> Result<Resolved, ScanError> {
    let get = |name: &str| -> Result<Blob, ScanError> {
        let e = member(index, name)
            .ok_or_else(|| ScanError::corrupt(&blob.name, format!("OCI archive has no {name}")))?;
        Ok(blob.sub(name.to_string(), e.data_offset, e.size))
    };
    let bytes = get("index.json")?.read_all(MAX_JSON)?;
    let open = |d: &str| {
        let h = digest_hex(d)?;
        let alg = d.split_once(':').map(|x| x.0).unwrap_or("sha256");
        let mut b = get(&format!("blobs/{alg}/{h}"))?;
        b.name = d.to_string();
        Ok(b)
    };
    walk_oci(bytes, want_ref, &open)
}

fn docker_archive(blob: &Blob, index: &TarIndex, manifest: &Entry) -> Result<Resolved, ScanError> {
    let mbytes = blob
        .sub("manifest.json".into(), manifest.data_offset, manifest.size)
        .read_all(MAX_JSON)?;
    let v = json(&mbytes, "manifest.json")?;
    let arr = v
        .as_array()
        .ok_or_else(|| ScanError::corrupt("manifest.json", "not a docker archive manifest"))?;
    let mut r = Resolved::default();
    r.docs.push(Doc {
        label: "manifest.json".into(),
        section: super::Section::Manifest,
        bytes: mbytes.clone(),
    });
    let mut seen = std::collections::BTreeSet::new();
    for img in arr {
        let get = |name: &str| -> Result<Blob, ScanError> {
            let e = member(index, name).ok_or_else(|| {
                ScanError::corrupt(&blob.name, format!("docker archive has no {name}"))
            })?;
            Ok(blob.sub(name.to_string(), e.data_offset, e.size))
        };
        let cfg_name = img
            .get("Config")
            .and_then(Value::as_str)
            .ok_or_else(|| ScanError::corrupt("manifest.json", "no Config"))?;
        let cfg = get(cfg_name)?.read_all(MAX_JSON)?;
        let cv = json(&cfg, cfg_name)?;
        let diff_ids: Vec<String> = cv
            .pointer("/rootfs/diff_ids")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let cfg_label = if cfg_name.len() >= 64 {
            format!(
                "sha256:{}",
                cfg_name
                    .trim_end_matches(".json")
                    .rsplit('/')
                    .next()
                    .unwrap_or(cfg_name)
            )
        } else {
            cfg_name.to_string()
        };
        if seen.insert(cfg_name.to_string()) {
            r.docs.push(Doc {
                label: crate::shown::escaped(&cfg_label).into_owned(),
                section: super::Section::Config,
                bytes: cfg,
            });
        }
        let layers = img
            .get("Layers")
            .and_then(Value::as_array)
            .ok_or_else(|| ScanError::corrupt("manifest.json", "no Layers"))?;
        for (i, l) in layers.iter().enumerate() {
            let name = l
                .as_str()
                .ok_or_else(|| ScanError::corrupt("manifest.json", "bad Layers entry"))?;
            if !seen.insert(name.to_string()) {
                continue;
            }
            let label =
                crate::shown::escaped(diff_ids.get(i).map_or(name, String::as_str)).into_owned();
            let mut b = get(name)?;
            b.name = label.clone();
            r.layers.push(Layer { label, blob: b });
        }
    }
    Ok(r)
}

fn containers_storage(image: &str) -> Result<Resolved, ScanError> {
    let tmp = crate::sys::fs::PrivateDir::new("privy-scan")
        .map_err(|e| ScanError::io(std::env::temp_dir().display(), e))?;
    let dest = tmp.path().join("image");
    let out = std::process::Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-oci-accept-uncompressed-layers"])
        .arg(format!("containers-storage:{image}"))
        .arg(format!("oci:{}", dest.display()))
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| ScanError::Export {
            image: image.to_owned(),
            why: format!("running skopeo: {e}"),
        })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let line = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("skopeo failed")
            .trim();
        let line: String = line.chars().take(300).collect();
        if line.contains("does not exist")
            || line.contains("not known")
            || line.contains("no such image")
            || line.contains("identifier is not an image")
        {
            return Err(ScanError::NotFound(format!("containers-storage:{image}")));
        }
        return Err(ScanError::Export {
            image: image.to_owned(),
            why: line,
        });
    }
    let mut r = oci_layout(&dest)?;
    r.tmp = Some(tmp);
    Ok(r)
}
