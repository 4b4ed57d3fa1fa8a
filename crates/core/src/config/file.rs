//! The config file exactly as written: the TOML schema of `privy.toml`.
//!
//! Serde structs with `deny_unknown_fields` and a doc comment on every
//! field: this file is the schema reference. Values are kept as the
//! operator wrote them (strings for stages, hosts and plugins), because
//! serde's own errors cannot name the offending key the way privy's do
//! (``config key `source[0].when.stage`: must be "run" or "build"``);
//! [`super::Config::from_file`] checks each one and builds the typed
//! model the rest of privy uses. [`Limits`] and [`DaemonConfig`] have
//! nothing to check by type and are shared by both.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The whole config file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Absolute path inside the container where the tmpfs is mounted.
    #[serde(default = "default_target")]
    pub target: String,
    /// Size, count and sandbox limits.
    #[serde(default)]
    pub limits: Limits,
    /// Directory for precompiled plugins (root-owned, not writable by others).
    #[serde(default = "default_cache_dir")]
    pub cache_dir: PathBuf,
    /// Directory for per-container hook state (names of directories privy created; never file contents).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// File the audit events and plugin logs are appended to, as JSON lines. Empty: stderr only.
    #[serde(default = "default_log_file")]
    pub log_file: PathBuf,
    /// File holding the key for audit fingerprints (created, mode 0600, if missing).
    #[serde(default = "default_audit_key")]
    pub audit_key: PathBuf,
    /// The daemon that holds per-run uploads, and how the hook reaches it.
    #[serde(default)]
    pub daemon: DaemonConfig,
    /// `privy shim`, and privy called as an OCI runtime (Docker's
    /// `--add-runtime privy=...`, containerd's `privy-shim`).
    #[serde(default)]
    pub shim: ShimConfig,
    /// The sources, in order. Later sources beat earlier ones of the same precedence.
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceFile>,
}

/// What `privy shim` runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ShimConfig {
    /// The real OCI runtime, an absolute path (`--runtime-path` and
    /// `PRIVY_RUNTIME_PATH` override it). Unset: `runc` on `PATH`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<PathBuf>,
}

/// Where `privy daemon` listens and how long it keeps uploads.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// The Unix socket (`PRIVY_SOCKET` overrides it for clients and the daemon).
    pub socket: PathBuf,
    /// Seconds an upload waits for a container to claim it; also how long
    /// a build's ticket lives after its last claim.
    pub ticket_ttl_secs: u64,
    /// Seconds any ticket lives at most, claimed or not.
    pub ticket_max_age_secs: u64,
    /// Bytes one uid may hold in the daemon across all its tickets,
    /// counting request bodies it is still sending (at what they decode to).
    pub max_bytes_per_uid: u64,
    /// Live tickets one uid may hold (also how many ended ones the daemon
    /// remembers for it, to say why a late claim fails).
    pub max_tickets_per_uid: u32,
    /// Seconds between sweeps for expired tickets and removed containers.
    pub sweep_secs: u64,
    /// Connections the daemon keeps open at once, root's included. It
    /// raises its open-file limit to fit, or uses fewer and says so.
    pub max_connections: u32,
    /// Connections one non-root uid may keep open at once.
    pub max_connections_per_uid: u32,
    /// Of `max_connections`, how many only root (the hook) may use, so no
    /// crowd of users can keep a container from getting its ticket.
    pub root_reserved_connections: u32,
    /// Seconds a client has, from connecting, to send its request head;
    /// idle connections are closed after it.
    pub header_timeout_secs: u64,
    /// Seconds a client has, from connecting, to send its whole request
    /// (and again to read the answer); slow senders are cut off after it.
    pub request_timeout_secs: u64,
    /// Seconds `privy run`, `privy upload` and `privy ticket` wait for the
    /// daemon to answer (the hook waits half of `limits.plugin_timeout_ms`).
    pub client_timeout_secs: u64,
    /// Milliseconds the thin hook (`privy-hook`) waits for the node agent's
    /// answer. Past it the hook says so, naming the socket; configured
    /// sources then run in the hook's own process, and a container with an
    /// upload fails closed (a ticket lives only in the agent's memory). An
    /// absent agent (no socket, connection refused) costs no wait at all.
    pub hook_budget_ms: u64,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            socket: crate::contract::DEFAULT_SOCKET.into(),
            ticket_ttl_secs: 600,
            ticket_max_age_secs: 86_400,
            max_bytes_per_uid: 64 << 20,
            max_tickets_per_uid: 1024,
            sweep_secs: 2,
            max_connections: 1024,
            max_connections_per_uid: 64,
            root_reserved_connections: 128,
            header_timeout_secs: 5,
            request_timeout_secs: 30,
            client_timeout_secs: 30,
            hook_budget_ms: 2000,
        }
    }
}

impl DaemonConfig {
    /// The socket, with `PRIVY_SOCKET` taking precedence.
    pub fn socket_path(&self) -> PathBuf {
        match std::env::var_os(crate::contract::ENV_SOCKET) {
            Some(s) if !s.is_empty() => s.into(),
            _ => self.socket.clone(),
        }
    }
}

/// Limits on what a container gets and on what a plugin may use.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest single private file, in bytes.
    pub max_file_bytes: u64,
    /// Largest total of all private files for one container, in bytes.
    pub max_total_bytes: u64,
    /// Most private files for one container.
    pub max_files: u32,
    /// Linear memory one plugin instance may grow to, in bytes.
    pub plugin_memory_bytes: u64,
    /// CPU time one plugin call may spend running Wasm, in milliseconds.
    pub plugin_cpu_ms: u64,
    /// Wall-clock time one plugin call may take, host calls included, in milliseconds.
    pub plugin_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: 1 << 20,
            max_total_bytes: 16 << 20,
            max_files: 1024,
            plugin_memory_bytes: 64 << 20,
            plugin_cpu_ms: 2000,
            plugin_timeout_ms: 10_000,
        }
    }
}

/// One `[[source]]` table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SourceFile {
    /// Unique name, used in logs and errors: lowercase letters, digits and `-`.
    pub name: String,
    /// An embedded plugin's name (`host-dir`), or the absolute path of a `.wasm` component.
    pub plugin: String,
    /// SHA-256 of the `.wasm` file, in hex; required for a path, refused for an embedded name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Whether a failure stops the container (true) or is logged and skipped (false).
    #[serde(default = "yes")]
    pub required: bool,
    /// How often the node agent gives running containers this source's
    /// current files (`30s`, `5m`, `1h30m`; at least `1s`). Absent: only at
    /// start, on `privy refresh` and on SIGHUP to the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<String>,
    /// Run only for containers that match; absent means every container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<WhenFile>,
    /// What the plugin may touch. Empty means nothing.
    #[serde(default)]
    pub grant: GrantFile,
    /// Free-form strings the plugin reads through the `config` host import.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
}

/// A source's match condition. All given fields must match.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct WhenFile {
    /// The container must carry this annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotation: Option<String>,
    /// ... with exactly this value (needs `annotation`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Only at this stage: `run` or `build`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// Only containers of pods in a Kubernetes namespace matching this glob
    /// (from the CRI runtime's annotations; see `engines::cri`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Only containers of pods whose name matches this glob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// Only containers whose name in the pod spec matches this glob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Only containers whose image reference, as the CRI runtime gives it
    /// (registry included: `docker.io/library/busybox:1.36`), matches this
    /// glob (`*` within a path segment, `**` across).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Only containers of pods carrying each of these annotations with a
    /// value matching its glob. containerd passes only the keys its
    /// runtime handler's `pod_annotations` lists; CRI-O passes all.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,
    /// Who may receive this source's files when privy's hook runs without
    /// real root (a rootless engine): user names, uids (`1001` or
    /// `"1001"`) and groups (`"group:developers"`), matched against the
    /// host user that owns the hook's user namespace. Absent: root only,
    /// that is rootful engines. Sources that serve the caller's own uploads
    /// ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<UserFile>>,
}

/// One entry of `when.users` as written: a uid, or a string (a user name,
/// a uid in decimal, or `group:NAME`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum UserFile {
    Id(u32),
    Name(String),
}

/// What a source may touch. Nothing outside it exists for the plugin.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct GrantFile {
    /// Host directories, read-only, seen by the plugin at the same absolute path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dirs: Vec<PathBuf>,
    /// Single host files, read through the `read-file` host import.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<PathBuf>,
    /// `host:port` pairs the plugin may reach through the `http` host import
    /// (a name, an IPv4 address, or an IPv6 address in brackets). None by default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// May claim per-run uploads from `privy daemon` (the `upload` source).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub daemon: bool,
}

pub(super) fn default_target() -> String {
    crate::contract::DEFAULT_TARGET.into()
}
fn default_cache_dir() -> PathBuf {
    "/var/cache/privy".into()
}
fn default_state_dir() -> PathBuf {
    "/run/privy/state".into()
}
fn default_log_file() -> PathBuf {
    "/var/log/privy/privy.log".into()
}
fn default_audit_key() -> PathBuf {
    "/var/lib/privy/audit.key".into()
}
fn yes() -> bool {
    true
}
