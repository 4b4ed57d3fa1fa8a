//! Stage six: one structured event per injection (L7). It names the
//! container, the sources, the paths, sizes and keyed fingerprints, and the
//! overrides between sources; it never carries a value. The fingerprint is
//! HMAC-SHA256 under a host key, so equal files can be correlated across
//! events on one host without the digest being a guessable hash of the value.

use crate::check::Checked;
use crate::contract::{AUDIT_TARGET, EVENT_INJECTED, EVENT_OVERRIDE};
use crate::request::Request;
use hmac::{Hmac, Mac};
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
}

/// The audit record for one injection, as JSON (names, sizes, fingerprints).
pub fn record(auditor: &Auditor, req: &Request, checked: &Checked) -> serde_json::Value {
    let files: Vec<serde_json::Value> = checked
        .files
        .iter()
        .map(|f| {
            serde_json::json!({
                "path": f.path.as_str(),
                "source": f.source,
                "size": f.data.len(),
                "mode": format!("{:o}", f.mode),
                "fingerprint": auditor.fingerprint(f.data.expose()),
            })
        })
        .collect();
    let overrides: Vec<serde_json::Value> = checked
        .overrides
        .iter()
        .map(|o| serde_json::json!({"path": o.path, "winner": o.winner, "loser": o.loser}))
        .collect();
    let dropped: Vec<serde_json::Value> = checked
        .dropped
        .iter()
        .map(|d| serde_json::json!({"path": d.path, "source": d.source}))
        .collect();
    serde_json::json!({
        "container": req.container_id,
        "stage": req.stage.as_str(),
        "count": checked.files.len(),
        "bytes": checked.total_bytes(),
        "files": files,
        "overrides": overrides,
        "dropped": dropped,
    })
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

/// Emit the one audit event for this injection.
pub fn emit(auditor: &Auditor, req: &Request, checked: &Checked, target: &str, timing: Timing) {
    for o in &checked.overrides {
        tracing::info!(target: AUDIT_TARGET, container = %req.container_id, path = %o.path, winner = %o.winner, loser = %o.loser, "{}", EVENT_OVERRIDE);
    }
    emit_dropped(req, checked);
    let rec = record(auditor, req, checked);
    tracing::info!(
        target: AUDIT_TARGET,
        container = %req.container_id,
        stage = req.stage.as_str(),
        target = target,
        injection = %rec,
        fetch_us = timing.fetch.as_micros() as u64,
        materialize_us = timing.materialize.as_micros() as u64,
        total_us = timing.total.as_micros() as u64,
        "{}",
        EVENT_INJECTED
    );
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
