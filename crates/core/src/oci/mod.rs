//! The slices of the OCI runtime spec privy reads and writes: the state a
//! runtime passes to hooks on stdin, the parts of a bundle's `config.json`
//! that say who the container is, and installing privy's hooks (into a
//! bundle, or as a hooks.d entry for podman, buildah and CRI-O).

pub mod install;

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Whether `id` is a container id privy accepts: what the OCI runtimes
/// accept, and nothing that could name a path outside `state_dir` when it
/// becomes `ID.json` (`..`, `/`, a NUL).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b))
}

/// Errors reading OCI inputs.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("OCI state on stdin: {0}")]
    State(String),
    /// The path is printed escaped: it comes from the runtime's state.
    #[error("{}: {msg}", crate::shown::escaped(&path.to_string_lossy()))]
    Bundle { path: PathBuf, msg: String },
}

/// The container state a runtime writes to a hook's stdin.
#[derive(Debug, Deserialize, serde::Serialize)]
pub struct State {
    /// Container id.
    pub id: String,
    /// PID of the container's init process (absent in some poststop states).
    #[serde(default)]
    pub pid: Option<i32>,
    /// Absolute path of the bundle.
    pub bundle: PathBuf,
    /// Annotations, as the runtime saw them.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl State {
    /// Parse the state JSON.
    pub fn parse(bytes: &[u8]) -> Result<Self, OciError> {
        serde_json::from_slice(bytes).map_err(|e| OciError::State(json_error(&e)))
    }
}

/// A JSON error as one printable line: serde quotes most of the input it
/// names, but not all (an unknown variant or field is shown raw).
fn json_error(e: &serde_json::Error) -> String {
    crate::shown::escaped(&e.to_string()).into_owned()
}

/// The parts of `config.json` that privy uses.
#[derive(Debug, Deserialize, Default)]
pub struct Spec {
    #[serde(default)]
    pub root: Option<Root>,
    #[serde(default)]
    pub process: Option<Process>,
    #[serde(default)]
    pub linux: Option<Linux>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
pub struct Root {
    pub path: PathBuf,
}

#[derive(Debug, Deserialize, Default)]
pub struct Process {
    #[serde(default)]
    pub user: User,
    #[serde(default)]
    pub env: Vec<String>,
}

#[derive(Debug, Deserialize, Default, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct User {
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
    #[serde(default)]
    pub additional_gids: Vec<u32>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Linux {
    #[serde(default)]
    pub uid_mappings: Vec<IdMapping>,
    #[serde(default)]
    pub gid_mappings: Vec<IdMapping>,
    /// The SELinux label for the container's mounts (`context=`), which
    /// engines set on SELinux hosts.
    #[serde(default)]
    pub mount_label: Option<String>,
}

/// One line of a uid or gid map.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IdMapping {
    #[serde(rename = "containerID")]
    pub container_id: u32,
    #[serde(rename = "hostID")]
    pub host_id: u32,
    pub size: u32,
}

/// Translate a container id to the host id through `maps`; no maps means
/// no user namespace, so ids are the same. An unmapped id is `None`.
pub fn map_id(maps: &[IdMapping], id: u32) -> Option<u32> {
    if maps.is_empty() {
        return Some(id);
    }
    maps.iter().find_map(|m| {
        let off = id.checked_sub(m.container_id)?;
        (off < m.size).then(|| m.host_id.checked_add(off)).flatten()
    })
}

/// The largest `config.json` privy reads: real ones are a few KiB.
pub const MAX_CONFIG_JSON: u64 = 16 << 20;

impl Spec {
    /// Read `<bundle>/config.json`.
    pub fn load(bundle: &Path) -> Result<Self, OciError> {
        let path = bundle.join("config.json");
        // Never a pipe or a device (a caller of the node agent names the
        // bundle), and never without bound.
        let bytes =
            crate::sys::fs::read_regular(&path, MAX_CONFIG_JSON).map_err(|e| OciError::Bundle {
                path: path.clone(),
                msg: e.to_string(),
            })?;
        Self::parse(&bytes, &path)
    }

    /// Parse a `config.json`'s bytes; `path` names it in errors.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self, OciError> {
        serde_json::from_slice(bytes).map_err(|e| OciError::Bundle {
            path: path.to_owned(),
            msg: json_error(&e),
        })
    }

    /// The root filesystem's absolute path (a relative `root.path` is relative to the bundle).
    pub fn root_path(&self, bundle: &Path) -> Result<PathBuf, OciError> {
        let root = self.root.as_ref().ok_or_else(|| OciError::Bundle {
            path: bundle.join("config.json"),
            msg: "no root.path".into(),
        })?;
        Ok(if root.path.is_absolute() {
            root.path.clone()
        } else {
            bundle.join(&root.path)
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn container_ids_that_could_escape_state_dir_are_refused() {
        for bad in ["", ".", "..", "a/b", "../x", "a\0"] {
            assert!(!super::valid_id(bad), "{bad:?}");
        }
        for ok in ["c1", "abc-DEF_1.2+x", &"f".repeat(64)] {
            assert!(super::valid_id(ok), "{ok}");
        }
    }

    use super::*;

    #[test]
    fn ids_map_through_ranges() {
        let maps = [
            IdMapping {
                container_id: 0,
                host_id: 100000,
                size: 1000,
            },
            IdMapping {
                container_id: 1000,
                host_id: 5000,
                size: 1,
            },
        ];
        assert_eq!(map_id(&maps, 0), Some(100000));
        assert_eq!(map_id(&maps, 999), Some(100999));
        assert_eq!(map_id(&maps, 1000), Some(5000));
        assert_eq!(map_id(&maps, 1001), None);
        assert_eq!(map_id(&[], 42), Some(42));
    }

    #[test]
    fn spec_reads_user_mappings_and_relative_root() {
        let spec: Spec = serde_json::from_str(
            r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},
               "process":{"user":{"uid":1000,"gid":1000,"additionalGids":[10]},"args":["sh"]},
               "linux":{"uidMappings":[{"containerID":0,"hostID":200000,"size":65536}]},
               "annotations":{"a":"b"}}"#,
        )
        .unwrap();
        assert_eq!(
            spec.root_path(Path::new("/b")).unwrap(),
            PathBuf::from("/b/rootfs")
        );
        let u = spec.process.unwrap().user;
        assert_eq!((u.uid, u.gid, u.additional_gids), (1000, 1000, vec![10]));
        assert_eq!(spec.linux.unwrap().uid_mappings[0].host_id, 200000);
    }

    #[test]
    fn state_parses_runc_output() {
        let s = State::parse(br#"{"ociVersion":"1.0.2","id":"c1","status":"creating","pid":42,"bundle":"/b","annotations":{"x":"y"}}"#).unwrap();
        assert_eq!((s.id.as_str(), s.pid), ("c1", Some(42)));
        assert!(State::parse(b"not json").is_err());
    }
}
