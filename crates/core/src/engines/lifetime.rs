//! How long a container exists in its engine, as a path the daemon can
//! look at: a run ticket lives while the container that claimed it exists,
//! and ends within a sweep of its removal.
//!
//! A bundle is not that signal for every engine. Docker (through
//! containerd) and containerd itself write a fresh bundle for every start
//! and remove it when the container stops, while the container lives on
//! until `docker rm`; a ticket tied to the bundle was dropped by the first
//! `docker stop`, and the next `docker start` failed. So at claim time the
//! daemon reads the bundle's `config.json` and records a path that lives
//! exactly as long as the container does in its engine ([`anchor`]):
//!
//! - docker: the file `<data-root>/containers/<id>/hostname`, which dockerd
//!   bind-mounts as the container's `/etc/hostname`; that directory is the
//!   container's own in Docker and is removed by `docker rm` only;
//! - containerd (`ctr`, and CRI through containerd): the overlayfs
//!   snapshot that is the container's writable layer, kept through
//!   `ctr task rm` and removed by `ctr containers rm`;
//! - podman, CRI-O, runc and crun bundles: the bundle's `config.json`
//!   (podman's bundle is the container's `userdata`, kept until
//!   `podman rm`; a plain runtime deletes the bundle's container on
//!   `delete`, and the bundle is the user's).
//!
//! Nothing in `config.json` is trusted for more than the lifetime of the
//! claimant's own ticket, and the daemon reads it and later looks at the
//! path with the claimant's rights (B10), so the worst a caller can do by
//! writing its own bundle is keep its own ticket alive until its maximum
//! age.

use std::path::{Path, PathBuf};

/// Largest `config.json` read for this.
const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// The path whose existence says that the container `id`, whose bundle is
/// `bundle`, still exists in its engine. Falls back to the bundle's
/// `config.json` when the bundle names no engine this file knows (or
/// cannot be read).
pub fn anchor(bundle: &Path, id: &str) -> PathBuf {
    let fallback = bundle.join("config.json");
    let Ok(spec) = read_config(bundle) else {
        return fallback;
    };
    super::docker::lifetime_file(&spec, id)
        .or_else(|| super::ctr::lifetime_dir(bundle, &spec))
        .unwrap_or(fallback)
}

/// Whether the container whose [`anchor`] is `path` still exists. A
/// symlink counts as itself (never followed).
pub fn exists(path: &Path) -> bool {
    path.symlink_metadata().is_ok()
}

fn read_config(bundle: &Path) -> std::io::Result<serde_json::Value> {
    use std::os::fd::AsRawFd;
    let dir = crate::sys::open_dir_path(bundle)?;
    let (bytes, _) = crate::sys::read_regular_at(dir.as_raw_fd(), "config.json", MAX_CONFIG_BYTES)?;
    serde_json::from_slice(&bytes).map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_docker_bundle_lives_as_long_as_its_containers_directory() {
        let d = tempfile::tempdir().unwrap();
        let id = "a".repeat(64);
        let bundle = d.path().join("bundle");
        std::fs::create_dir(&bundle).unwrap();
        let dir = d.path().join("data/containers").join(&id);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("hostname"), "h").unwrap();
        let spec = serde_json::json!({"mounts": [
            {"destination": "/etc/hostname", "source": dir.join("hostname"), "type": "bind"},
        ]});
        std::fs::write(bundle.join("config.json"), spec.to_string()).unwrap();
        let a = anchor(&bundle, &id);
        assert_eq!(a, dir.join("hostname"));
        // The bundle goes on stop; the container (and its ticket) stays.
        std::fs::remove_dir_all(&bundle).unwrap();
        assert!(exists(&a));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(!exists(&a));
        // Another container's directory, or any other bundle: config.json.
        let other = d.path().join("other");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join("config.json"), spec.to_string()).unwrap();
        assert_eq!(anchor(&other, "b"), other.join("config.json"));
        assert_eq!(
            anchor(&d.path().join("none"), "b"),
            d.path().join("none/config.json")
        );
    }
}
