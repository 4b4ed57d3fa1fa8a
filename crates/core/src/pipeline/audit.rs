//! Stage six: one structured event per injection (L7). It names the
//! container, the sources, the paths, sizes and keyed fingerprints, and the
//! overrides between sources; it never carries a value. The fingerprint is
//! HMAC-SHA256 under a host key, so equal files can be correlated across
//! events on one host without the digest being a guessable hash of the value.

use crate::contract::{Stage, AUDIT_TARGET, EVENT_INJECTED, EVENT_OVERRIDE};
use crate::logging::Level;
use crate::pipeline::check::{Checked, CheckedFile};
use crate::pipeline::request::Request;
use hmac::{Hmac, Mac};
use serde::Serialize;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use zeroize::Zeroizing;

/// Computes keyed fingerprints.
pub struct Auditor {
    key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Auditor(<key redacted>)")
    }
}

impl Auditor {
    /// Use the key in `path`, creating it (mode 0600) when missing. If the
    /// key cannot be read or made, fingerprints use a one-off key and so do
    /// not correlate across containers; that is logged.
    pub fn load_or_create(path: &Path) -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        let loaded = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut key[..]));
        if loaded.is_ok() {
            return Auditor { key };
        }
        getrandom::getrandom(&mut key[..]).expect("kernel random source");
        let stored = (|| {
            if let Some(dir) = path.parent() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)?;
            }
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)?;
            f.write_all(&key[..])
        })();
        if let Err(e) = stored {
            tracing::warn!(path = %path.display(), "audit key unavailable, fingerprints will not correlate: {e}");
        }
        Auditor { key }
    }

    /// The host key in `path`, if it can be read; never creates it.
    pub fn load(path: &Path) -> Option<Self> {
        let mut key = Zeroizing::new([0u8; 32]);
        std::fs::File::open(path)
            .and_then(|mut f| f.read_exact(&mut key[..]))
            .ok()?;
        Some(Auditor { key })
    }

    /// A random key for this process only.
    pub fn ephemeral() -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        getrandom::getrandom(&mut key[..]).expect("kernel random source");
        Auditor { key }
    }

    /// A fixed key, for tests.
    pub fn with_key(key: [u8; 32]) -> Self {
        Auditor {
            key: Zeroizing::new(key),
        }
    }

    /// `hmac-sha256:` and the first 16 hex digits of HMAC-SHA256(key, data).
    pub fn fingerprint(&self, data: &[u8]) -> String {
        let mut mac =
            <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.key[..]).expect("any key length");
        mac.update(data);
        let out = mac.finalize().into_bytes();
        format!("hmac-sha256:{}", hex::encode(&out[..8]))
    }

    /// One keyed fingerprint of a whole file set (every path, mode, size
    /// and content, in path order), all 32 bytes: what a refresh compares
    /// to know that a container already has exactly this set.
    pub fn set_fingerprint(&self, files: &[CheckedFile]) -> String {
        let mut mac =
            <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.key[..]).expect("any key length");
        let mut sorted: Vec<&CheckedFile> = files.iter().collect();
        sorted.sort_by(|a, b| a.path.as_str().cmp(b.path.as_str()));
        for f in sorted {
            let data = f.data.expose();
            mac.update(&(f.path.as_str().len() as u64).to_le_bytes());
            mac.update(f.path.as_str().as_bytes());
            mac.update(&f.mode.to_le_bytes());
            mac.update(&(data.len() as u64).to_le_bytes());
            mac.update(data);
        }
        format!("hmac-sha256:{}", hex::encode(mac.finalize().into_bytes()))
    }
}

/// The audit record of one injection: names, sizes, modes and keyed
/// fingerprints, never a value. It is one JSON object in the log line's
/// `injection` field.
#[derive(Debug, Serialize)]
pub struct InjectionEvent<'a> {
    pub container: &'a str,
    pub stage: Stage,
    pub count: usize,
    pub bytes: u64,
    pub files: Vec<FileRecord<'a>>,
    pub overrides: Vec<OverrideRecord<'a>>,
    pub dropped: Vec<DroppedRecord<'a>>,
    /// When the sources said the files expire (unix seconds), if they did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
}

/// One injected file.
#[derive(Debug, Serialize)]
pub struct FileRecord<'a> {
    pub path: &'a str,
    pub source: &'a str,
    pub size: usize,
    /// Octal, as `ls` would show it (`400`).
    pub mode: String,
    pub fingerprint: String,
}

/// One path two sources gave, and which won.
#[derive(Debug, Serialize)]
pub struct OverrideRecord<'a> {
    pub path: &'a str,
    pub winner: &'a str,
    pub loser: &'a str,
}

/// One file left out because the container named others.
#[derive(Debug, Serialize)]
pub struct DroppedRecord<'a> {
    pub path: &'a str,
    pub source: &'a str,
}

impl<'a> InjectionEvent<'a> {
    pub fn new(auditor: &Auditor, req: &'a Request, checked: &'a Checked) -> Self {
        InjectionEvent {
            container: &req.container_id,
            stage: req.stage,
            count: checked.files.len(),
            bytes: checked.total_bytes(),
            files: checked
                .files
                .iter()
                .map(|f| FileRecord {
                    path: f.path.as_str(),
                    source: &f.source,
                    size: f.data.len(),
                    mode: format!("{:o}", f.mode),
                    fingerprint: auditor.fingerprint(f.data.expose()),
                })
                .collect(),
            overrides: checked
                .overrides
                .iter()
                .map(|o| OverrideRecord {
                    path: &o.path,
                    winner: &o.winner,
                    loser: &o.loser,
                })
                .collect(),
            dropped: checked
                .dropped
                .iter()
                .map(|d| DroppedRecord {
                    path: &d.path,
                    source: &d.source,
                })
                .collect(),
            expires: checked.expires,
        }
    }
}

/// The `injected` line's fields, in the order they are written.
#[derive(Serialize)]
struct Injected<'a> {
    container: &'a str,
    stage: Stage,
    target: &'a str,
    injection: &'a InjectionEvent<'a>,
    fetch_us: u64,
    materialize_us: u64,
    total_us: u64,
}

/// One event per file the container's `io.privy.names` left out (names
/// only), so an operator can see why a file a source gave is missing.
pub fn emit_dropped(req: &Request, checked: &Checked) {
    for d in &checked.dropped {
        tracing::info!(target: AUDIT_TARGET, container = %req.container_id, path = %d.path, source = %d.source, "dropped: not in io.privy.names");
    }
}

/// Where the hook's time went, reported with the audit event.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timing {
    /// Parsing, planning, loading and running the plugins.
    pub fetch: std::time::Duration,
    /// Entering the namespace and building the mount.
    pub materialize: std::time::Duration,
    /// Everything up to the audit event.
    pub total: std::time::Duration,
}

/// Emit the audit events for this injection: each override, each file
/// left out, then the one `injected` event, whose `injection` is one JSON
/// object ([`InjectionEvent`]) in the log line.
pub fn emit(auditor: &Auditor, req: &Request, checked: &Checked, target: &str, timing: Timing) {
    for o in &checked.overrides {
        tracing::info!(target: AUDIT_TARGET, container = %req.container_id, path = %o.path, winner = %o.winner, loser = %o.loser, "{}", EVENT_OVERRIDE);
    }
    emit_dropped(req, checked);
    let event = InjectionEvent::new(auditor, req, checked);
    let fields = Injected {
        container: &req.container_id,
        stage: req.stage,
        target,
        injection: &event,
        fetch_us: timing.fetch.as_micros() as u64,
        materialize_us: timing.materialize.as_micros() as u64,
        total_us: timing.total.as_micros() as u64,
    };
    if crate::logging::sink().is_some() {
        let enabled = tracing::enabled!(target: AUDIT_TARGET, tracing::Level::INFO);
        crate::logging::event(enabled, Level::Info, AUDIT_TARGET, EVENT_INJECTED, &fields);
        return;
    }
    // No sink installed (a library caller with its own subscriber): the
    // event goes through `tracing`, its injection as JSON text.
    tracing::info!(
        target: AUDIT_TARGET,
        container = %req.container_id,
        stage = req.stage.as_str(),
        target = target,
        injection = %serde_json::to_string(&event).expect("audit event serializes"),
        fetch_us = fields.fetch_us,
        materialize_us = fields.materialize_us,
        total_us = fields.total_us,
        "{}",
        EVENT_INJECTED
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_fingerprint_is_keyed_order_free_and_sees_every_path_mode_and_byte() {
        use crate::secret::{RelPath, Secret};
        let f = |p: &str, d: &[u8], mode: u32| CheckedFile {
            path: RelPath::new(p).unwrap(),
            data: Secret::new(d.to_vec()),
            mode,
            source: "s".into(),
        };
        let a = Auditor::with_key([1; 32]);
        let set = a.set_fingerprint(&[f("x", b"1", 0o400), f("y", b"2", 0o400)]);
        assert_eq!(
            set,
            a.set_fingerprint(&[f("y", b"2", 0o400), f("x", b"1", 0o400)])
        );
        for other in [
            vec![f("x", b"1", 0o400), f("y", b"3", 0o400)],
            vec![f("x", b"1", 0o440), f("y", b"2", 0o400)],
            vec![f("x", b"1", 0o400), f("z", b"2", 0o400)],
            vec![f("x", b"12", 0o400)],
            vec![f("x", b"1", 0o400)],
        ] {
            assert_ne!(set, a.set_fingerprint(&other));
        }
        assert_ne!(
            set,
            Auditor::with_key([2; 32]).set_fingerprint(&[f("x", b"1", 0o400), f("y", b"2", 0o400)])
        );
        assert!(set.starts_with("hmac-sha256:") && set.len() == 12 + 64);
    }

    #[test]
    fn fingerprints_are_keyed_stable_and_not_the_value() {
        let a = Auditor::with_key([1; 32]);
        let b = Auditor::with_key([2; 32]);
        let fa = a.fingerprint(b"secret");
        assert_eq!(fa, a.fingerprint(b"secret"));
        assert_ne!(fa, b.fingerprint(b"secret"));
        assert!(!fa.contains("secret"));
        assert!(!format!("{a:?}").contains("1, 1"));
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/audit.key");
        let f1 = Auditor::load_or_create(&p).fingerprint(b"x");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(Auditor::load_or_create(&p).fingerprint(b"x"), f1);
    }

    #[test]
    fn the_injection_event_is_one_object_of_names_sizes_and_fingerprints() {
        use crate::pipeline::check::{CheckedFile, Override};
        use crate::secret::{RelPath, Secret};
        let req = Request::synthetic("c1", Stage::Run, Default::default());
        let checked = Checked {
            files: vec![CheckedFile {
                path: RelPath::new("ssh/id").unwrap(),
                data: Secret::new(b"s3cr3t-bytes".to_vec()),
                mode: 0o400,
                source: "vault".into(),
            }],
            overrides: vec![Override {
                path: "ssh/id".into(),
                winner: "vault".into(),
                loser: "host-dir".into(),
            }],
            dropped: Vec::new(),
            expires: None,
        };
        let a = Auditor::with_key([7; 32]);
        let v = serde_json::to_value(InjectionEvent::new(&a, &req, &checked)).unwrap();
        assert_eq!(v["container"], "c1");
        assert_eq!(v["stage"], "run");
        assert_eq!(
            (v["count"].as_u64(), v["bytes"].as_u64()),
            (Some(1), Some(12))
        );
        let f = &v["files"][0];
        assert_eq!(
            (f["path"].as_str(), f["size"].as_u64()),
            (Some("ssh/id"), Some(12))
        );
        assert_eq!(f["mode"], "400");
        assert_eq!(f["fingerprint"], a.fingerprint(b"s3cr3t-bytes").as_str());
        assert_eq!(v["overrides"][0]["loser"], "host-dir");
        assert!(!v.to_string().contains("s3cr3t"), "{v}");
    }
}
