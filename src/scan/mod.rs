//! `privy scan`: an exact-content leak scanner for images, layers, tars and
//! directory trees (leak rule L3: prove that no private byte reached an
//! image).
//!
//! # Library API (stable; `privy build` calls it)
//!
//! ```no_run
//! use privy::scan::{scan, Needle, ScanOptions, Target};
//! let needles = vec![Needle::new("npmrc", b"//registry/:_authToken=...".to_vec())];
//! let target = Target::parse("containers-storage:localhost/app:latest").unwrap();
//! let report = scan(&target, &needles, &ScanOptions::default()).unwrap();
//! for f in &report.findings {
//!     // layer digest, path inside the layer, secret's name, how it matched
//!     println!("{} {} {} {}", f.layer, f.path, f.source, f.kind_label());
//! }
//! std::process::exit(report.exit_code()); // 0 clean, 1 leak, 2 incomplete
//! ```
//!
//! - [`Needle`]: one secret (bytes + a source name). Its `Debug` shows the
//!   name and length only; the bytes and every encoded form derived from
//!   them are zeroized on drop.
//! - [`Target`]: what to scan; [`Target::parse`] accepts the CLI syntax
//!   (`oci:DIR`, `oci-archive:F`, `docker-archive:F`,
//!   `containers-storage:IMAGE`, a plain tar (`.tar`, gzip or zstd, detected
//!   by magic bytes), or a directory).
//! - [`scan`]: scans every layer, the image config and its history, streaming
//!   and in parallel; returns a [`Report`] whose [`Finding`]s carry target,
//!   layer digest, path, offset, source name, [`MatchKind`] and length, never
//!   the matched bytes.
//!
//! # Matching
//!
//! For each secret the matcher builds its *forms*: the raw bytes, base64 at
//! the three byte alignments, base64url likewise, and hex in lower and upper
//! case. A form matches when at least `min_match` secret bytes of it appear
//! (`ceil(4·N/3)` base64 chars, `2·N` hex chars); a secret shorter than
//! `min_match` matches only whole. Data inside gzip or zstd files within a
//! layer (and a tar inside them) is scanned too. See `matcher.rs` for the
//! sampling scheme that keeps this at memory bandwidth.

mod archives;
mod decode;
mod detect;
mod encode;
mod engine;
mod matcher;
mod nested;
pub mod output;
pub mod sources;
mod target;
mod tarstream;
mod zip;

pub use detect::Codec;
pub use target::Target;

use crate::secret::Secret;
use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// Default for [`ScanOptions::min_match`] and `--min-match`.
pub const DEFAULT_MIN_MATCH: usize = 32;
/// Smallest accepted `min_match`: shorter substrings say nothing.
pub const MIN_MIN_MATCH: usize = 8;
/// Largest total size of all secrets: the index holds every 8-byte window
/// of every encoded form (about 300 bytes of memory per secret byte).
pub const MAX_SECRET_BYTES: usize = 2 << 20;

/// One secret to look for: its bytes and the name findings report (a file
/// path, or `source/path` for files a plugin returned). Never printed.
pub struct Needle {
    name: String,
    data: Secret,
}

impl Needle {
    /// A needle from bytes; `name` is what findings call it.
    pub fn new(name: impl Into<String>, bytes: Vec<u8>) -> Self {
        Needle {
            name: name.into(),
            data: Secret::new(bytes),
        }
    }

    /// A needle from a [`Secret`] (e.g. a fetched private file).
    pub fn from_secret(name: impl Into<String>, data: Secret) -> Self {
        Needle {
            name: name.into(),
            data,
        }
    }

    /// Read a secret file; its path (as given) is the name. A missing,
    /// unreadable or empty file is an error: an empty secret would make
    /// every scan "clean".
    pub fn from_file(path: &Path) -> Result<Self, ScanError> {
        // Only a regular file: a FIFO would block, a device never end.
        let why = |e: ScanError| ScanError::SecretFile {
            path: path.to_owned(),
            why: match e {
                ScanError::Target { why, .. } => why,
                ScanError::NotFound(_) => "no such file".into(),
                ScanError::Io { error, .. } => error.to_string(),
                e => e.to_string(),
            },
        };
        let mut f = target::open_regular(path).map_err(why)?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut bytes).map_err(|e| ScanError::SecretFile {
            path: path.to_owned(),
            why: e.to_string(),
        })?;
        if bytes.is_empty() {
            return Err(ScanError::SecretFile {
                path: path.to_owned(),
                why: "file is empty".into(),
            });
        }
        Ok(Needle::new(path.display().to_string(), bytes))
    }

    /// The name findings report.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Length of the secret in bytes.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the secret is empty (such needles are refused by [`scan`]).
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        self.data.expose()
    }
}

impl fmt::Debug for Needle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Needle({:?}, <{} bytes redacted>)",
            self.name,
            self.data.len()
        )
    }
}

/// How to scan.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Shortest substring of a secret (in secret bytes) that counts as a
    /// leak; secrets shorter than this match only whole. At least
    /// [`MIN_MIN_MATCH`].
    pub min_match: usize,
    /// Worker threads; 0 = one per core.
    pub threads: usize,
    /// Draw a progress line on stderr (callers pass "stderr is a terminal").
    pub progress: bool,
    /// How many decoders deep to look into files inside layers: each
    /// compression (gzip, zstd, xz, bzip2) and each archive (tar, zip, ar,
    /// cpio) is one level, so `a.tar.gz!/b.jar!/c` is three. Anything
    /// nested deeper is INCOMPLETE. 0 = decode nothing inside layers.
    pub max_nesting: u32,
    /// Expansion limit: all the bytes decoded inside one layer may be at
    /// most this many times the layer's size, plus 64 MiB. A bomb beyond
    /// it stops there and is INCOMPLETE.
    pub max_expansion: u64,
}

/// Default for [`ScanOptions::max_nesting`] and `--max-nesting`: deeper
/// than any real chain (a layer's `.tar.gz` of a war of jars is four).
pub const DEFAULT_MAX_NESTING: u32 = 8;
/// Default for [`ScanOptions::max_expansion`] and `--max-expansion`.
/// Ordinary compressed files expand 2-20 times; only runs of one byte (a
/// zero-filled disk image) come near 1000, and the 64 MiB floor covers the
/// small ones of those.
pub const DEFAULT_MAX_EXPANSION: u64 = 100;

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            min_match: DEFAULT_MIN_MATCH,
            threads: 0,
            progress: false,
            max_nesting: DEFAULT_MAX_NESTING,
            max_expansion: DEFAULT_MAX_EXPANSION,
        }
    }
}

/// How a finding matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MatchKind {
    /// The whole secret, byte for byte.
    Exact,
    /// A part of the secret of at least `min_match` bytes.
    Substring,
    /// Base64 (standard alphabet) of the secret or a part of it.
    Base64,
    /// Base64url of the secret or a part of it.
    Base64Url,
    /// Lower-case hex.
    Hex,
    /// Upper-case hex.
    HexUpper,
    /// Percent-encoded (a URL, a form body), at least in part.
    Percent,
    /// With string escapes (JSON, YAML, shell, C: `\n`, `\/`, `\u0041`).
    Escaped,
    /// UTF-16LE (Windows configs, .NET resources).
    Utf16le,
    /// Octal bytes as `od -b` prints them.
    Octal,
}

impl MatchKind {
    /// `exact`, `substring`, `base64`, `base64url`, `hex`, `hex-upper`,
    /// `percent`, `escaped`, `utf16le`, `octal`.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchKind::Exact => "exact",
            MatchKind::Substring => "substring",
            MatchKind::Base64 => "base64",
            MatchKind::Base64Url => "base64url",
            MatchKind::Hex => "hex",
            MatchKind::HexUpper => "hex-upper",
            MatchKind::Percent => "percent",
            MatchKind::Escaped => "escaped",
            MatchKind::Utf16le => "utf16le",
            MatchKind::Octal => "octal",
        }
    }
}

impl fmt::Display for MatchKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which part of an image a finding is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Section {
    /// A file in a layer (or in a plain tar / directory target).
    Layer,
    /// The image config (env, labels, ...).
    Config,
    /// The image history (`created_by` of each step) inside the config.
    History,
    /// A manifest or index.
    Manifest,
}

/// One leak. Carries where and how, never the matched bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The target as given.
    pub target: String,
    /// Digest (`sha256:...`) of the layer or config blob; for a plain tar
    /// or directory target, the file name of the tar or `-`.
    pub layer: String,
    /// Which part of the image.
    pub section: Section,
    /// Path inside the layer (`!/` steps into a compressed file, and into a
    /// tar inside it); for config and history a JSON pointer
    /// (`/history/3/created_by`).
    pub path: String,
    /// Byte offset of the match in that file (after decompression).
    pub offset: u64,
    /// Name of the secret (`--secret-file` path, or `source/path`).
    pub source: String,
    /// How it matched.
    pub kind: MatchKind,
    /// Found inside compressed data within the layer.
    pub compressed: bool,
    /// The innermost codec the data was decoded with (`gzip`, `zstd`,
    /// `xz`, `bzip2`, `zip` for a compressed zip member), if any.
    pub codec: Option<Codec>,
    /// Length of the match in the scanned data, in bytes.
    pub length: u64,
}

impl Finding {
    /// The match kind as shown to people: `base64`, or `gzip:base64` /
    /// `zip:exact` when it was inside decoded data.
    pub fn kind_label(&self) -> String {
        match self.codec {
            Some(c) => format!("{}:{}", c.as_str(), self.kind),
            None => self.kind.to_string(),
        }
    }
}

/// A secret's name and size, as reports list them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NeedleInfo {
    pub name: String,
    pub len: usize,
}

/// The result of one scan.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// The target as given.
    pub target: String,
    /// Every leak, sorted by layer, path, offset.
    pub findings: Vec<Finding>,
    /// Layers (blobs or trees) scanned.
    pub layers: usize,
    /// Bytes scanned, after decompression.
    pub bytes: u64,
    /// Parts that could not be scanned (e.g. a corrupt gzip file inside a
    /// layer). Non-empty means the scan does not prove the image clean.
    pub incomplete: Vec<String>,
    /// The secrets searched for (names and sizes).
    pub secrets: Vec<NeedleInfo>,
    /// `min_match` used.
    pub min_match: usize,
}

impl Report {
    /// No findings and nothing left unscanned.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty() && self.incomplete.is_empty()
    }

    /// 1 if anything leaked, else 2 if part of the target could not be
    /// scanned, else 0.
    pub fn exit_code(&self) -> i32 {
        if !self.findings.is_empty() {
            1
        } else if !self.incomplete.is_empty() {
            2
        } else {
            0
        }
    }
}

/// Why a scan could not run. One line each; never contains secret bytes.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("no secrets to scan for (give --secret-file or --sources)")]
    NoSecrets,
    #[error("secret {name:?} is empty")]
    EmptySecret { name: String },
    #[error("secret file {path}: {why}")]
    SecretFile { path: PathBuf, why: String },
    #[error("--min-match {0} is too small (at least {MIN_MIN_MATCH})")]
    MinMatch(usize),
    #[error("the secrets total {0} bytes; at most {MAX_SECRET_BYTES} can be indexed")]
    TooLarge(usize),
    #[error("{0}: no such file, directory or image")]
    NotFound(String),
    #[error("{what}: {error}")]
    Io { what: String, error: std::io::Error },
    #[error("{what}: {why}")]
    Corrupt { what: String, why: String },
    #[error("{target}: {why}")]
    Target { target: String, why: String },
    #[error("exporting {image}: {why}")]
    Export { image: String, why: String },
}

impl ScanError {
    pub(crate) fn io(what: impl fmt::Display, error: std::io::Error) -> Self {
        ScanError::Io {
            what: what.to_string(),
            error,
        }
    }

    pub(crate) fn corrupt(what: impl fmt::Display, why: impl fmt::Display) -> Self {
        ScanError::Corrupt {
            what: what.to_string(),
            why: why.to_string(),
        }
    }
}

/// Scan `target` for `needles`. Every layer, the config and the history
/// are read (streamed, never held whole), in parallel across
/// `opts.threads`. Errors (missing target, corrupt gzip, truncated tar,
/// export failure) are returned, never reported as clean; damage inside a
/// layer's nested compressed files lands in [`Report::incomplete`].
pub fn scan(target: &Target, needles: &[Needle], opts: &ScanOptions) -> Result<Report, ScanError> {
    if needles.is_empty() {
        return Err(ScanError::NoSecrets);
    }
    if let Some(n) = needles.iter().find(|n| n.is_empty()) {
        return Err(ScanError::EmptySecret {
            name: n.name().to_owned(),
        });
    }
    if opts.min_match < MIN_MIN_MATCH {
        return Err(ScanError::MinMatch(opts.min_match));
    }
    let total: usize = needles.iter().map(Needle::len).sum();
    if total > MAX_SECRET_BYTES {
        return Err(ScanError::TooLarge(total));
    }
    let matcher = matcher::Matcher::new(needles, opts.min_match);
    let mut report = engine::run(target, &matcher, needles, opts)?;
    report.secrets = needles
        .iter()
        .map(|n| NeedleInfo {
            name: n.name().to_owned(),
            len: n.len(),
        })
        .collect();
    report.min_match = opts.min_match;
    Ok(report)
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
