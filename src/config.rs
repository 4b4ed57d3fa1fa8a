//! `privy.toml`: what sources run, with which grants and limits.
//!
//! Serde structs with `deny_unknown_fields`, a doc comment on every field,
//! and a [`Config::validate`] whose errors name the offending key. With no
//! file, [`Config::embedded_default`] applies: `host-dir` over
//! `/etc/privy/private.d`, target `/run/private`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The host directory the default `host-dir` source reads.
pub const DEFAULT_PRIVATE_DIR: &str = "/etc/privy/private.d";

/// Why a config was refused; always names the file or the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("config {path}: {msg}")]
    Parse { path: PathBuf, msg: String },
    #[error("config key `{key}`: {msg}")]
    Invalid { key: String, msg: String },
}

fn invalid(key: impl Into<String>, msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        msg: msg.into(),
    }
}

/// The whole config file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
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
    /// The sources, in order. Later sources beat earlier ones of the same precedence.
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceConfig>,
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
pub struct SourceConfig {
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
    /// Run only for containers that match; absent means every container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<When>,
    /// What the plugin may touch. Empty means nothing.
    #[serde(default)]
    pub grant: Grant,
    /// Free-form strings the plugin reads through the `config` host import.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
}

/// A source's match condition. All given fields must match.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct When {
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
    /// (from the CRI runtime's annotations; see `privy::pod`).
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
}

impl When {
    /// Whether any condition needs the container to be in a pod.
    pub fn has_pod_conditions(&self) -> bool {
        self.namespace.is_some()
            || self.pod.is_some()
            || self.container.is_some()
            || self.image.is_some()
            || !self.pod_annotations.is_empty()
    }
}

/// What a source may touch. Nothing outside it exists for the plugin.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Grant {
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

fn default_target() -> String {
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

/// Names of the plugins shipped inside the binary.
pub fn is_embedded(name: &str) -> bool {
    crate::plugin::embedded(name).is_some()
}

impl Config {
    /// The config used when no file exists: `host-dir` over `/etc/privy/private.d`.
    pub fn embedded_default() -> Self {
        Config {
            target: default_target(),
            limits: Limits::default(),
            cache_dir: default_cache_dir(),
            state_dir: default_state_dir(),
            log_file: default_log_file(),
            audit_key: default_audit_key(),
            daemon: DaemonConfig::default(),
            sources: vec![SourceConfig {
                name: "host-dir".into(),
                plugin: "host-dir".into(),
                sha256: None,
                required: true,
                when: None,
                grant: Grant {
                    dirs: vec![DEFAULT_PRIVATE_DIR.into()],
                    ..Grant::default()
                },
                config: BTreeMap::new(),
            }],
        }
    }

    /// Parse and validate TOML text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            // toml's messages can span lines ("invalid table header\nexpected
            // ..."); an error is one line.
            msg: e.message().split_whitespace().collect::<Vec<_>>().join(" ")
                + &e.span()
                    .map(|s| format!(" (at byte {})", s.start))
                    .unwrap_or_default(),
        })?;
        cfg.fill_defaults();
        cfg.validate()?;
        Ok(cfg)
    }

    /// Load `path`. When `explicit` is false and the file does not exist, the
    /// embedded default applies; an explicit `--config` must exist.
    pub fn load(path: &Path, explicit: bool) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                Ok(Self::embedded_default())
            }
            Err(e) => Err(ConfigError::Read {
                path: path.to_owned(),
                error: e,
            }),
        }
    }

    /// `host-dir` with one granted directory and no `dir` reads that directory.
    fn fill_defaults(&mut self) {
        for s in &mut self.sources {
            if s.plugin == "host-dir" && !s.config.contains_key("dir") && s.grant.dirs.len() == 1 {
                let dir = s.grant.dirs[0].display().to_string();
                s.config.insert("dir".into(), dir);
            }
        }
    }

    /// Check everything that can be checked without touching plugins.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_abs_clean("target", Path::new(&self.target))?;
        // `Path` drops `.` components (`/.` is `/` to it): judge the string.
        let canonical = clean_target(&self.target).ok_or_else(|| {
            invalid(
                "target",
                format!("{:?} must be a clean path without `.` or `..`", self.target),
            )
        })?;
        if let Some(why) = target_refusal(&canonical) {
            return Err(invalid("target", format!("{:?} {why}", self.target)));
        }
        // Every other path privy itself opens must be absolute: the hook runs
        // with the bundle as its working directory, so a relative path would
        // write into the container's bundle (B17).
        for (key, p) in [
            ("cache_dir", &self.cache_dir),
            ("state_dir", &self.state_dir),
            ("audit_key", &self.audit_key),
        ] {
            check_abs_clean(key, p)?;
        }
        if !self.log_file.as_os_str().is_empty() {
            check_abs_clean("log_file", &self.log_file)?;
        }
        let l = &self.limits;
        for (key, v) in [
            ("limits.max_file_bytes", l.max_file_bytes),
            ("limits.max_total_bytes", l.max_total_bytes),
            ("limits.max_files", l.max_files as u64),
            ("limits.plugin_memory_bytes", l.plugin_memory_bytes),
            ("limits.plugin_cpu_ms", l.plugin_cpu_ms),
            ("limits.plugin_timeout_ms", l.plugin_timeout_ms),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        if l.max_file_bytes > l.max_total_bytes {
            return Err(invalid(
                "limits.max_file_bytes",
                "must not exceed limits.max_total_bytes",
            ));
        }
        if l.max_total_bytes > 1 << 30 {
            return Err(invalid("limits.max_total_bytes", "must be at most 1 GiB"));
        }
        if l.plugin_memory_bytes > 4 << 30 {
            return Err(invalid(
                "limits.plugin_memory_bytes",
                "must be at most 4 GiB",
            ));
        }
        let d = &self.daemon;
        check_abs_clean("daemon.socket", &d.socket)?;
        for (key, v) in [
            ("daemon.ticket_ttl_secs", d.ticket_ttl_secs),
            ("daemon.ticket_max_age_secs", d.ticket_max_age_secs),
            ("daemon.max_bytes_per_uid", d.max_bytes_per_uid),
            ("daemon.max_tickets_per_uid", d.max_tickets_per_uid.into()),
            ("daemon.sweep_secs", d.sweep_secs),
            ("daemon.max_connections", d.max_connections.into()),
            (
                "daemon.max_connections_per_uid",
                d.max_connections_per_uid.into(),
            ),
            ("daemon.header_timeout_secs", d.header_timeout_secs),
            ("daemon.request_timeout_secs", d.request_timeout_secs),
            ("daemon.client_timeout_secs", d.client_timeout_secs),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        if d.root_reserved_connections >= d.max_connections {
            return Err(invalid(
                "daemon.root_reserved_connections",
                "must be less than daemon.max_connections",
            ));
        }
        if d.max_connections_per_uid > d.max_connections - d.root_reserved_connections {
            return Err(invalid(
                "daemon.max_connections_per_uid",
                "must not exceed daemon.max_connections less daemon.root_reserved_connections",
            ));
        }
        if d.header_timeout_secs > d.request_timeout_secs {
            return Err(invalid(
                "daemon.header_timeout_secs",
                "must not exceed daemon.request_timeout_secs",
            ));
        }
        if d.max_bytes_per_uid < l.max_total_bytes {
            return Err(invalid(
                "daemon.max_bytes_per_uid",
                "must be at least limits.max_total_bytes",
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, s) in self.sources.iter().enumerate() {
            let key = |k: &str| format!("source[{i}].{k}");
            if s.name.is_empty()
                || s.name.len() > 64
                || !s
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(invalid(key("name"), "must be 1-64 of a-z, 0-9 and `-`"));
            }
            if !names.insert(&s.name) {
                return Err(invalid(
                    key("name"),
                    format!("duplicate source name {:?}", s.name),
                ));
            }
            if is_embedded(&s.plugin) {
                if s.sha256.is_some() {
                    return Err(invalid(
                        key("sha256"),
                        "embedded plugins are pinned by the binary; remove it",
                    ));
                }
            } else if s.plugin.ends_with(".wasm") {
                check_abs_clean(&key("plugin"), Path::new(&s.plugin))?;
                match &s.sha256 {
                    None => return Err(invalid(key("sha256"), "required for a .wasm plugin")),
                    Some(h) if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                        return Err(invalid(key("sha256"), "must be 64 hex digits"))
                    }
                    Some(_) => {}
                }
            } else {
                return Err(invalid(
                    key("plugin"),
                    format!(
                        "{:?} is neither an embedded plugin ({}) nor a .wasm path",
                        s.plugin,
                        crate::plugin::embedded_names().join(", ")
                    ),
                ));
            }
            if let Some(w) = &s.when {
                if w.value.is_some() && w.annotation.is_none() {
                    return Err(invalid(key("when.value"), "needs when.annotation"));
                }
                if let Some(st) = &w.stage {
                    if st != "run" && st != "build" {
                        return Err(invalid(key("when.stage"), "must be \"run\" or \"build\""));
                    }
                }
                check_pod_when(w, &key)?;
            }
            for (j, d) in s.grant.dirs.iter().enumerate() {
                check_abs_clean(&key(&format!("grant.dirs[{j}]")), d)?;
            }
            for (j, f) in s.grant.files.iter().enumerate() {
                check_abs_clean(&key(&format!("grant.files[{j}]")), f)?;
            }
            if s.plugin == "host-dir" {
                // Outside its grant the directory would just look empty.
                if let Some(dir) = s.config.get("dir") {
                    if !s.grant.dirs.iter().any(|g| Path::new(dir).starts_with(g)) {
                        return Err(invalid(
                            key("config.dir"),
                            format!("{dir:?} is not inside any of grant.dirs"),
                        ));
                    }
                }
            }
            if s.plugin == "vault" {
                check_vault(s, &key)?;
            }
            for (j, h) in s.grant.hosts.iter().enumerate() {
                if let Err(e) = crate::plugin::net::parse_grant_host(h) {
                    return Err(invalid(
                        key(&format!("grant.hosts[{j}]")),
                        format!("{e}; must be host:port"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The effective config as TOML, with every `config` value replaced by
    /// `<set>`: operators sometimes put tokens there, and this is printed.
    pub fn effective_toml(&self) -> String {
        let mut shown = self.clone();
        for s in &mut shown.sources {
            for v in s.config.values_mut() {
                *v = "<set>".into();
            }
        }
        toml::to_string_pretty(&shown).expect("config serializes")
    }
}

/// The embedded `vault` source would fail on every start if its address or
/// credential files were outside its grant: say so at `config check`.
fn check_vault(s: &SourceConfig, key: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
    let address = s
        .config
        .get("address")
        .ok_or_else(|| invalid(key("config.address"), "required by the vault plugin"))?;
    let target = crate::plugin::net::parse_url(address.trim())
        .map_err(|e| invalid(key("config.address"), e.to_string()))?;
    let granted = s.grant.hosts.iter().any(|h| {
        crate::plugin::net::parse_grant_host(h)
            .is_ok_and(|(host, port)| host == target.host && port == target.port)
    });
    if !granted {
        return Err(invalid(
            key("config.address"),
            format!("{} is not in grant.hosts", target.address()),
        ));
    }
    for k in ["token_file", "secret_id_file", "ca_file"] {
        if let Some(f) = s.config.get(k) {
            if !s.grant.files.iter().any(|g| g.as_os_str() == f.as_str()) {
                return Err(invalid(
                    key(&format!("config.{k}")),
                    format!("{f:?} is not in grant.files"),
                ));
            }
        }
    }
    Ok(())
}

/// Directories no target may be in, at any depth: a mount there would
/// shadow the kernel's interfaces (`/proc/sys`, `/dev/...`) in the container.
pub const REFUSED_SUBTREES: &[&str] = &["/proc", "/sys", "/dev"];

/// System directories no target may be, though a deeper path under most of
/// them is fine (`/etc/pki/entitlement`, `/var/lib/app/keys`): a mount over
/// one of these would hide the image's programs, libraries, configuration or
/// runtime state, and the container would start broken. The list is the
/// FHS top level plus the program and library directories under `/usr` and
/// `/var`'s shared state.
pub const REFUSED_TARGETS: &[&str] = &[
    "/",
    "/bin",
    "/boot",
    "/etc",
    "/home",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/media",
    "/mnt",
    "/opt",
    "/root",
    "/run",
    "/sbin",
    "/srv",
    "/tmp",
    "/usr",
    "/usr/bin",
    "/usr/lib",
    "/usr/lib32",
    "/usr/lib64",
    "/usr/libexec",
    "/usr/libx32",
    "/usr/local",
    "/usr/local/bin",
    "/usr/local/lib",
    "/usr/local/sbin",
    "/usr/sbin",
    "/usr/share",
    "/var",
    "/var/cache",
    "/var/lib",
    "/var/log",
    "/var/run",
    "/var/spool",
    "/var/tmp",
];

/// `target` as `/` and its components, without empty components; `None`
/// when it is relative or has a `.` or `..` component.
pub fn clean_target(target: &str) -> Option<String> {
    let rest = target.strip_prefix('/')?;
    let comps: Vec<&str> = rest.split('/').filter(|c| !c.is_empty()).collect();
    if comps.iter().any(|c| *c == "." || *c == "..") || target.contains('\0') {
        return None;
    }
    Some(format!("/{}", comps.join("/")))
}

/// Why privy must not mount on `canonical` (an absolute path with no `.`,
/// `..`, empty component or symlink: the config's target as written, or
/// where it resolved inside the image), or `None` when it may.
pub fn target_refusal(canonical: &str) -> Option<String> {
    if canonical == "/" {
        return Some("is the container's root".into());
    }
    let p = Path::new(canonical);
    if let Some(top) = REFUSED_SUBTREES.iter().find(|d| p.starts_with(d)) {
        return Some(if p == Path::new(top) {
            format!("is the system directory {top}")
        } else {
            format!("is under {top}")
        });
    }
    REFUSED_TARGETS
        .contains(&canonical)
        .then(|| format!("is the system directory {canonical}"))
}

/// The pod conditions of a `when`: a value that could never match what a
/// CRI runtime writes is an operator's mistake, and it would silently keep
/// a source from every pod, so it is refused with its key.
fn check_pod_when(w: &When, key: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
    // Kubernetes names are DNS labels (namespaces, containers) or DNS
    // subdomains (pods): lowercase letters, digits, `-` and (pods) `.`.
    for (k, v, dots) in [
        ("namespace", &w.namespace, false),
        ("pod", &w.pod, true),
        ("container", &w.container, false),
    ] {
        let Some(v) = v else { continue };
        let ok = |c: char| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || "-*?".contains(c) || (dots && c == '.')
        };
        if v.is_empty() || v.len() > 253 || !v.chars().all(ok) {
            let what = if dots { ", `.`" } else { "" };
            return Err(invalid(
                key(&format!("when.{k}")),
                format!(
                    "{} can never match a Kubernetes {k} name: use lowercase letters, digits, `-`{what} and the globs `*` `?`",
                    crate::shown::shown(v)
                ),
            ));
        }
    }
    if let Some(img) = &w.image {
        if img.is_empty()
            || img.len() > 512
            || img.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid(
                key("when.image"),
                "must be an image reference glob without spaces (at most 512 bytes)",
            ));
        }
        // Runtimes give the full reference, registry first
        // (`docker.io/library/busybox:1.36`), so `busybox:*` never matches.
        let first = img.split('/').next().unwrap_or_default();
        let registry = img.contains('/')
            && (first.contains(['.', ':']) || first == "localhost" || crate::glob::is_glob(first));
        if !registry && img != "*" && img != "**" {
            return Err(invalid(
                key("when.image"),
                format!(
                    "{} can never match: runtimes give the full reference with its registry (docker.io/library/busybox:1.36), so start with the registry or a glob",
                    crate::shown::shown(img)
                ),
            ));
        }
    }
    for k in w.pod_annotations.keys() {
        if k.is_empty() || k.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid(
                key("when.pod_annotations"),
                format!("{} is not an annotation key", crate::shown::shown(k)),
            ));
        }
    }
    Ok(())
}

fn check_abs_clean(key: &str, p: &Path) -> Result<(), ConfigError> {
    let s = p.to_string_lossy();
    if !p.is_absolute() {
        return Err(invalid(key, format!("{s:?} must be an absolute path")));
    }
    if p.components().any(|c| {
        matches!(
            c,
            std::path::Component::ParentDir | std::path::Component::CurDir
        )
    }) || s.contains("//")
        || s.contains('\0')
    {
        return Err(invalid(
            key,
            format!("{s:?} must be a clean path without `.` or `..`"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_toml_syntax_error_is_one_line() {
        let e = Config::parse("[source\nname = 1\n", Path::new("/x.toml"))
            .unwrap_err()
            .to_string();
        assert!(!e.contains('\n'), "{e}");
        assert!(e.starts_with("config /x.toml: "), "{e}");
    }

    fn parse(s: &str) -> Result<Config, ConfigError> {
        Config::parse(s, Path::new("test.toml"))
    }

    #[test]
    fn empty_file_means_defaults_and_no_sources() {
        let c = parse("").unwrap();
        assert_eq!(c.target, "/run/private");
        assert_eq!(c.limits, Limits::default());
        assert!(c.sources.is_empty());
    }

    #[test]
    fn default_limits_are_the_documented_ones() {
        let l = Limits::default();
        assert_eq!(
            (l.max_file_bytes, l.max_total_bytes, l.max_files),
            (1 << 20, 16 << 20, 1024)
        );
    }

    #[test]
    fn embedded_default_reads_private_d() {
        let c = Config::embedded_default();
        c.validate().unwrap();
        assert_eq!(c.sources[0].plugin, "host-dir");
        assert_eq!(
            c.sources[0].grant.dirs,
            vec![PathBuf::from(DEFAULT_PRIVATE_DIR)]
        );
    }

    #[test]
    fn host_dir_gets_its_only_granted_dir() {
        let c =
            parse("[[source]]\nname='ent'\nplugin='host-dir'\ngrant.dirs=['/srv/ent']\n").unwrap();
        assert_eq!(c.sources[0].config["dir"], "/srv/ent");
        assert!(c.sources[0].required);
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let e = parse("targt = '/x'").unwrap_err().to_string();
        assert!(e.contains("targt") && e.contains("test.toml"), "{e}");
        let e = parse("[[source]]\nname='a'\nplugin='host-dir'\nrequird=false\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("requird"), "{e}");
    }

    #[test]
    fn errors_name_the_offending_key() {
        let cases = [
            ("target='run/private'", "target"),
            ("target='/proc/x'", "target"),
            ("[limits]\nmax_files=0", "limits.max_files"),
            ("[limits]\nmax_file_bytes=100\nmax_total_bytes=10", "limits.max_file_bytes"),
            ("[[source]]\nname='Bad Name'\nplugin='host-dir'", "source[0].name"),
            ("[[source]]\nname='a'\nplugin='nope'", "source[0].plugin"),
            ("[[source]]\nname='a'\nplugin='/x/p.wasm'", "source[0].sha256"),
            ("[[source]]\nname='a'\nplugin='/x/p.wasm'\nsha256='abc'", "source[0].sha256"),
            ("[[source]]\nname='a'\nplugin='host-dir'\nsha256='00'", "source[0].sha256"),
            ("[[source]]\nname='a'\nplugin='host-dir'\n[[source]]\nname='a'\nplugin='host-dir'", "source[1].name"),
            ("[[source]]\nname='a'\nplugin='host-dir'\ngrant.dirs=['rel']", "source[0].grant.dirs[0]"),
            ("[[source]]\nname='a'\nplugin='host-dir'\ngrant.dirs=['/a/../b']", "source[0].grant.dirs[0]"),
            ("[[source]]\nname='a'\nplugin='host-dir'\ngrant.hosts=['nohost']", "source[0].grant.hosts[0]"),
            ("[[source]]\nname='a'\nplugin='host-dir'\nwhen={stage='later'}", "source[0].when.stage"),
            ("[[source]]\nname='a'\nplugin='host-dir'\nwhen={value='x'}", "source[0].when.value"),
            ("[[source]]\nname='a'\nplugin='host-dir'\ngrant.dirs=['/srv/a']\nconfig={dir='/etc'}", "source[0].config.dir"),
            ("[[source]]\nname='v'\nplugin='vault'\ngrant.hosts=['127.0.0.1:8200']", "source[0].config.address"),
            ("[[source]]\nname='v'\nplugin='vault'\ngrant.hosts=['127.0.0.1:8200']\nconfig={address='http://127.0.0.1:8201'}", "source[0].config.address"),
            ("[[source]]\nname='v'\nplugin='vault'\ngrant.hosts=['127.0.0.1:8200']\nconfig={address='http://127.0.0.1:8200',token_file='/t'}", "source[0].config.token_file"),
            ("[[source]]\nname='a'\nplugin='host-dir'\ngrant.hosts=['::1:80']", "source[0].grant.hosts[0]"),
        ];
        for (text, key) in cases {
            let e = parse(text).expect_err(text).to_string();
            assert!(e.contains(&format!("`{key}`")), "{text:?} gave {e}");
        }
    }

    #[test]
    fn vault_source_with_its_address_and_files_granted_is_accepted() {
        let c = parse(
            "[[source]]\nname='vault'\nplugin='vault'\nwhen={annotation='io.privy.vault'}\n\
             grant.hosts=['vault.example:8200']\ngrant.files=['/etc/privy/t','/etc/privy/ca.pem']\n\
             config={address='https://Vault.example:8200/',token_file='/etc/privy/t',ca_file='/etc/privy/ca.pem',allow='ci/*'}\n",
        )
        .unwrap();
        assert_eq!(c.sources[0].plugin, "vault");
    }

    #[test]
    fn effective_config_never_shows_config_values() {
        let c = parse("[[source]]\nname='a'\nplugin='host-dir'\nconfig={token='s3cr3t-value'}")
            .unwrap();
        let t = c.effective_toml();
        assert!(!t.contains("s3cr3t"), "{t}");
        assert!(t.contains("token"), "{t}");
    }

    #[test]
    fn b9_targets_on_the_root_or_system_dirs_are_refused_deep_ones_are_not() {
        for bad in [
            "/",
            "/.",
            "/./",
            "//",
            "/run/..",
            "/proc",
            "/proc/x",
            "/sys/fs",
            "/dev/shm",
            "/bin",
            "/usr",
            "/usr/bin",
            "/etc",
            "/run",
            "/tmp",
            "/var/lib",
            "/lib64",
            "/run/./private",
        ] {
            let e = parse(&format!("target = {bad:?}"))
                .expect_err(bad)
                .to_string();
            assert!(e.starts_with("config key `target`:"), "{bad}: {e}");
        }
        for ok in [
            "/run/private",
            "/etc/pki/entitlement",
            "/var/lib/app/keys",
            "/private",
            "/usr/share/app/keys",
        ] {
            assert_eq!(parse(&format!("target = {ok:?}")).unwrap().target, ok);
        }
        assert_eq!(
            target_refusal("/proc"),
            Some("is the system directory /proc".into())
        );
        assert_eq!(target_refusal("/proc/sys"), Some("is under /proc".into()));
        assert_eq!(target_refusal("/"), Some("is the container's root".into()));
        assert_eq!(target_refusal("/procfs"), None);
    }

    #[test]
    fn b17_every_path_in_the_config_must_be_absolute_and_the_error_names_its_key() {
        for (text, key) in [
            ("log_file = 'privy.log'", "log_file"),
            ("cache_dir = 'cache'", "cache_dir"),
            ("state_dir = './state'", "state_dir"),
            ("audit_key = 'k/audit.key'", "audit_key"),
            ("log_file = '/var/log/../privy.log'", "log_file"),
            ("[daemon]\nsocket = 'privy.sock'", "daemon.socket"),
        ] {
            let e = parse(text).expect_err(text).to_string();
            assert!(
                e.starts_with(&format!("config key `{key}`:")),
                "{text}: {e}"
            );
        }
        // Empty log_file still means stderr.
        assert!(parse("log_file = ''")
            .unwrap()
            .log_file
            .as_os_str()
            .is_empty());
    }
}
