//! `privy.toml`: what sources run, with which grants and limits.
//!
//! Two layers. [`mod@file`] is the schema exactly as written (serde structs
//! with `deny_unknown_fields`, a doc comment on every field). This module
//! is the model every other part of privy uses: [`Config::from_file`]
//! checks every value, in a fixed order, with errors that name the
//! offending key (``config key `source[0].grant.dirs[0]`: "rel" must be an
//! absolute path``), and builds typed values: [`Stage`], [`HostPort`],
//! [`PluginRef`]. The grant grammar is [`grant`]; what the core knows about
//! the built-in plugins (their names, precedence and config checks) is
//! [`builtin`], read from their manifests; [`glob`] is the pattern grammar
//! of `when`. With no file, [`Config::embedded_default`] applies
//! (`config/default.toml`: `host-dir` over `/etc/privy/private.d`, target
//! `/run/private`).

pub mod builtin;
pub mod duration;
pub mod file;
pub mod glob;
pub mod grant;
pub mod users;

use crate::contract::Stage;
use crate::shown;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use file::{
    ConfigFile, DaemonConfig, GrantFile, Limits, ShimConfig, SourceFile, UserFile, WhenFile,
};
pub use grant::HostPort;
pub use users::UserMatch;

/// The shortest `refresh` a source may set: a refresh re-runs the plugin
/// and enters the container, so below a second it would only burn CPU.
pub const MIN_REFRESH: std::time::Duration = std::time::Duration::from_secs(1);

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

/// A validated config. Serializes as the file it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Absolute path inside the container where the tmpfs is mounted.
    pub target: String,
    pub limits: Limits,
    pub cache_dir: PathBuf,
    pub state_dir: PathBuf,
    /// Empty: logs go to stderr.
    pub log_file: PathBuf,
    pub audit_key: PathBuf,
    pub daemon: DaemonConfig,
    pub shim: ShimConfig,
    /// The sources, in order. Later sources beat earlier ones of the same precedence.
    pub sources: Vec<SourceConfig>,
}

/// One source, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceConfig {
    /// Unique: lowercase letters, digits and `-`.
    pub name: String,
    pub plugin: PluginRef,
    /// Whether a failure stops the container (true) or is logged and skipped.
    pub required: bool,
    /// How often the node agent refreshes running containers' files from
    /// this source; `None`: never on its own (see `daemon::rotation`).
    pub refresh: Option<std::time::Duration>,
    /// Run only for containers that match; `None`: every container.
    pub when: Option<When>,
    pub grant: Grant,
    /// Free-form strings the plugin reads through the `config` host import.
    pub config: BTreeMap<String, String>,
}

/// A source's match condition: all given fields must match.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct When {
    /// The container must carry this annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotation: Option<String>,
    /// ... with exactly this value (needs `annotation`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Only at this stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<Stage>,
    /// Only containers of pods in a Kubernetes namespace matching this glob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Only containers of pods whose name matches this glob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// Only containers whose name in the pod spec matches this glob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Only containers whose image reference (registry included) matches this glob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Only containers of pods carrying each of these annotations with a
    /// value matching its glob.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,
    /// Who may receive the files when the hook runs without real root;
    /// `None`: root only (see [`crate::pipeline::plan::users_allow`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<UserMatch>>,
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
    /// `host:port` pairs the plugin may reach through the `http` host import.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostPort>,
    /// May claim per-run uploads from `privy daemon` (the `upload` source).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub daemon: bool,
}

/// The plugin a source runs.
#[derive(Clone, PartialEq)]
pub enum PluginRef {
    /// Shipped inside the binary (a name in [`builtin::catalog`]).
    Embedded(String),
    /// A `.wasm` file that must hash to `sha256` (hex, as the config wrote it).
    File { path: PathBuf, sha256: String },
    /// Wasm bytes the caller already holds (`privy plugin run FILE`), run
    /// without an owner or digest check. Config parsing never produces it.
    Inline(Arc<[u8]>),
}

impl std::fmt::Debug for PluginRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginRef::Embedded(n) => f.debug_tuple("Embedded").field(n).finish(),
            PluginRef::File { path, sha256 } => f
                .debug_struct("File")
                .field("path", path)
                .field("sha256", sha256)
                .finish(),
            PluginRef::Inline(b) => write!(f, "Inline({} bytes)", b.len()),
        }
    }
}

impl PluginRef {
    /// What `plugin = ...` says: the name, or the path.
    pub fn as_written(&self) -> String {
        match self {
            PluginRef::Embedded(n) => n.clone(),
            PluginRef::File { path, .. } => path.display().to_string(),
            PluginRef::Inline(_) => "<inline>".into(),
        }
    }

    /// The pinned digest of a `.wasm` file plugin, as written.
    pub fn sha256(&self) -> Option<&str> {
        match self {
            PluginRef::File { sha256, .. } => Some(sha256),
            _ => None,
        }
    }
}

/// `plugin == "host-dir"`: compares what `plugin = ...` says.
impl PartialEq<&str> for PluginRef {
    fn eq(&self, other: &&str) -> bool {
        !matches!(self, PluginRef::Inline(_)) && self.as_written() == *other
    }
}

/// How strongly a source's file wins over the same path from another one.
/// Higher wins: an upload for this run beats the user's references, which
/// beat operator sources, which beat the host directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Precedence {
    HostDir = 0,
    Operator = 1,
    UserReference = 2,
    Upload = 3,
}

impl SourceConfig {
    /// The model of a source `from_file` has checked.
    fn typed(s: &SourceFile, embedded: bool, hosts: Vec<HostPort>) -> SourceConfig {
        let plugin = match &s.sha256 {
            Some(h) if !embedded => PluginRef::File {
                path: s.plugin.clone().into(),
                sha256: h.clone(),
            },
            _ => PluginRef::Embedded(s.plugin.clone()),
        };
        SourceConfig {
            name: s.name.clone(),
            plugin,
            required: s.required,
            refresh: s
                .refresh
                .as_deref()
                .map(|r| duration::parse(r).expect("checked")),
            when: s.when.as_ref().map(|w| When {
                annotation: w.annotation.clone(),
                value: w.value.clone(),
                stage: w.stage.as_deref().map(|st| st.parse().expect("checked")),
                namespace: w.namespace.clone(),
                pod: w.pod.clone(),
                container: w.container.clone(),
                image: w.image.clone(),
                pod_annotations: w.pod_annotations.clone(),
                users: w.users.as_ref().map(|us| {
                    us.iter()
                        .map(|u| UserMatch::try_from(u.clone()).expect("checked"))
                        .collect()
                }),
            }),
            grant: Grant {
                dirs: s.grant.dirs.clone(),
                files: s.grant.files.clone(),
                hosts,
                daemon: s.grant.daemon,
            },
            config: s.config.clone(),
        }
    }
}

impl From<&SourceConfig> for SourceFile {
    fn from(s: &SourceConfig) -> SourceFile {
        SourceFile {
            name: s.name.clone(),
            plugin: s.plugin.as_written(),
            sha256: s.plugin.sha256().map(str::to_owned),
            required: s.required,
            refresh: s.refresh.map(duration::format),
            when: s.when.as_ref().map(|w| WhenFile {
                annotation: w.annotation.clone(),
                value: w.value.clone(),
                stage: w.stage.map(|st| st.as_str().to_owned()),
                namespace: w.namespace.clone(),
                pod: w.pod.clone(),
                container: w.container.clone(),
                image: w.image.clone(),
                pod_annotations: w.pod_annotations.clone(),
                users: w
                    .users
                    .as_ref()
                    .map(|us| us.iter().cloned().map(UserFile::from).collect()),
            }),
            grant: GrantFile {
                dirs: s.grant.dirs.clone(),
                files: s.grant.files.clone(),
                hosts: s
                    .grant
                    .hosts
                    .iter()
                    .map(|h| h.as_str().to_owned())
                    .collect(),
                daemon: s.grant.daemon,
            },
            config: s.config.clone(),
        }
    }
}

impl From<&Config> for ConfigFile {
    fn from(c: &Config) -> ConfigFile {
        ConfigFile {
            target: c.target.clone(),
            limits: c.limits.clone(),
            cache_dir: c.cache_dir.clone(),
            state_dir: c.state_dir.clone(),
            log_file: c.log_file.clone(),
            audit_key: c.audit_key.clone(),
            daemon: c.daemon.clone(),
            shim: c.shim.clone(),
            sources: c.sources.iter().map(SourceFile::from).collect(),
        }
    }
}

/// A config serializes as the file it was read from.
impl Serialize for Config {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ConfigFile::from(self).serialize(s)
    }
}

impl Config {
    /// The config used when no file exists: `config/default.toml`, taken as
    /// written (no built-in plugin's config defaults are filled in, so
    /// `privy config check` shows exactly that file).
    pub fn embedded_default() -> Self {
        let text = include_str!("default.toml");
        let file: ConfigFile = toml::from_str(text).expect("config/default.toml parses");
        Self::from_file(file).expect("config/default.toml is valid")
    }

    /// Parse and validate TOML text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let mut file: ConfigFile = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            // toml's messages can span lines ("invalid table header\nexpected
            // ..."); an error is one line.
            msg: e.message().split_whitespace().collect::<Vec<_>>().join(" ")
                + &e.span()
                    .map(|s| format!(" (at byte {})", s.start))
                    .unwrap_or_default(),
        })?;
        fill_defaults(&mut file);
        Self::from_file(file)
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

    /// Check everything that can be checked without touching plugins, in a
    /// fixed order (the first problem is the one reported), and build the
    /// model.
    pub fn from_file(f: ConfigFile) -> Result<Self, ConfigError> {
        check_abs_clean("target", Path::new(&f.target))?;
        // `Path` drops `.` components (`/.` is `/` to it): judge the string.
        let canonical = clean_target(&f.target).ok_or_else(|| {
            invalid(
                "target",
                format!("{:?} must be a clean path without `.` or `..`", f.target),
            )
        })?;
        if let Some(why) = target_refusal(&canonical) {
            return Err(invalid("target", format!("{:?} {why}", f.target)));
        }
        // Every other path privy itself opens must be absolute: the hook runs
        // with the bundle as its working directory, so a relative path would
        // write into the container's bundle (B17).
        for (key, p) in [
            ("cache_dir", &f.cache_dir),
            ("state_dir", &f.state_dir),
            ("audit_key", &f.audit_key),
        ] {
            check_abs_clean(key, p)?;
        }
        if !f.log_file.as_os_str().is_empty() {
            check_abs_clean("log_file", &f.log_file)?;
        }
        let l = &f.limits;
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
        if let Some(r) = &f.shim.runtime {
            check_abs_clean("shim.runtime", r)?;
        }
        let d = &f.daemon;
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
            ("daemon.hook_budget_ms", d.hook_budget_ms),
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
        let mut sources = Vec::with_capacity(f.sources.len());
        for (i, s) in f.sources.iter().enumerate() {
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
            let builtin = builtin::catalog().get(&s.plugin);
            if builtin.is_some() {
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
                        builtin::catalog().names().join(", ")
                    ),
                ));
            }
            if let Some(w) = &s.when {
                if w.value.is_some() && w.annotation.is_none() {
                    return Err(invalid(key("when.value"), "needs when.annotation"));
                }
                if let Some(st) = &w.stage {
                    st.parse::<Stage>()
                        .map_err(|e| invalid(key("when.stage"), e))?;
                }
                check_pod_when(w, &key)?;
                for (j, u) in w.users.iter().flatten().enumerate() {
                    UserMatch::try_from(u.clone())
                        .map_err(|e| invalid(key(&format!("when.users[{j}]")), e))?;
                }
            }
            if let Some(r) = &s.refresh {
                let d = duration::parse(r)
                    .map_err(|e| invalid(key("refresh"), format!("{} {e}", shown::shown(r))))?;
                if d < MIN_REFRESH {
                    return Err(invalid(
                        key("refresh"),
                        format!(
                            "{} is shorter than the minimum, {}",
                            shown::shown(r),
                            duration::format(MIN_REFRESH)
                        ),
                    ));
                }
            }
            for (j, d) in s.grant.dirs.iter().enumerate() {
                check_abs_clean(&key(&format!("grant.dirs[{j}]")), d)?;
            }
            for (j, f) in s.grant.files.iter().enumerate() {
                check_abs_clean(&key(&format!("grant.files[{j}]")), f)?;
            }
            // A built-in plugin's own checks on its config (its manifest's
            // rules), where the host-dir and vault checks always ran.
            if let Some(b) = builtin {
                b.check(s, &key)?;
            }
            let mut hosts = Vec::with_capacity(s.grant.hosts.len());
            for (j, h) in s.grant.hosts.iter().enumerate() {
                hosts.push(h.parse::<HostPort>().map_err(|e| {
                    invalid(
                        key(&format!("grant.hosts[{j}]")),
                        format!("{e}; must be host:port"),
                    )
                })?);
            }
            sources.push(SourceConfig::typed(s, builtin.is_some(), hosts));
        }
        Ok(Config {
            target: f.target,
            limits: f.limits,
            cache_dir: f.cache_dir,
            state_dir: f.state_dir,
            log_file: f.log_file,
            audit_key: f.audit_key,
            daemon: f.daemon,
            shim: f.shim,
            sources,
        })
    }

    /// Check this config again, as [`Config::from_file`] checked its file.
    pub fn validate(&self) -> Result<(), ConfigError> {
        Self::from_file(ConfigFile::from(self)).map(|_| ())
    }

    /// The effective config as TOML, with every `config` value replaced by
    /// `<set>`: operators sometimes put tokens there, and this is printed.
    pub fn effective_toml(&self) -> String {
        let mut shown = ConfigFile::from(self);
        for s in &mut shown.sources {
            for v in s.config.values_mut() {
                *v = "<set>".into();
            }
        }
        toml::to_string_pretty(&shown).expect("config serializes")
    }
}

/// Fill in what built-in plugins' manifests default (`host-dir` with one
/// granted directory and no `dir` reads that directory).
fn fill_defaults(f: &mut ConfigFile) {
    for s in &mut f.sources {
        if let Some(b) = builtin::catalog().get(&s.plugin) {
            b.fill_defaults(s);
        }
    }
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
fn check_pod_when(w: &WhenFile, key: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
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
            && (first.contains(['.', ':']) || first == "localhost" || glob::is_glob(first));
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
    fn the_shims_runtime_is_an_absolute_path_or_unset() {
        assert_eq!(parse("").unwrap().shim.runtime, None);
        let c = parse("[shim]\nruntime = \"/usr/bin/crun\"\n").unwrap();
        assert_eq!(c.shim.runtime, Some(PathBuf::from("/usr/bin/crun")));
        let e = parse("[shim]\nruntime = \"crun\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("shim.runtime") && e.contains("absolute"), "{e}");
        assert!(parse("[shim]\nruntim = \"/x\"\n").is_err());
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
            ("[[source]]\nname='a'\nplugin='host-dir'\nwhen={users=['root','group:']}", "source[0].when.users[1]"),
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
    fn refresh_is_a_duration_of_at_least_a_second_shown_canonically() {
        let c = parse("[[source]]\nname='a'\nplugin='host-dir'\nrefresh='90s'\n").unwrap();
        assert_eq!(
            c.sources[0].refresh,
            Some(std::time::Duration::from_secs(90))
        );
        assert!(c.effective_toml().contains("refresh = \"1m30s\""));
        assert_eq!(parse(&c.effective_toml()).unwrap().sources, c.sources);
        let c = parse("[[source]]\nname='a'\nplugin='host-dir'\n").unwrap();
        assert_eq!(c.sources[0].refresh, None);
        assert!(!c.effective_toml().contains("refresh"));
        for (bad, why) in [
            ("'5'", "without a unit"),
            ("'0s'", "shorter than the minimum, 1s"),
            ("'soon'", "without a number"),
            ("'1.5h'", "not a unit"),
        ] {
            let e = parse(&format!(
                "[[source]]\nname='a'\nplugin='host-dir'\n[[source]]\nname='b'\nplugin='host-dir'\nrefresh={bad}\n"
            ))
            .expect_err(bad)
            .to_string();
            assert!(
                e.starts_with("config key `source[1].refresh`:") && e.contains(why),
                "{bad}: {e}"
            );
            assert!(!e.contains('\n'), "{e}");
        }
        // A number where a string belongs is serde's error, naming the key.
        let e = parse("[[source]]\nname='a'\nplugin='host-dir'\nrefresh=5\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("refresh") || e.contains("string"), "{e}");
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
    fn when_users_is_typed_and_shown_as_written() {
        let c = parse(
            "[[source]]\nname='a'\nplugin='host-dir'\nwhen={users=['privy-rl', 1002, '1003', 'group:dev']}",
        )
        .unwrap();
        let users = c.sources[0].when.as_ref().unwrap().users.clone().unwrap();
        assert_eq!(
            users,
            vec![
                UserMatch::User("privy-rl".into()),
                UserMatch::Uid(1002),
                UserMatch::Uid(1003),
                UserMatch::Group("dev".into()),
            ]
        );
        let t = c.effective_toml();
        let one_line: String = t.split_whitespace().collect();
        assert!(
            one_line.contains(r#"users=["privy-rl",1002,1003,"group:dev",]"#),
            "{t}"
        );
        assert_eq!(parse(&t).unwrap().sources, c.sources);
        // No `users`: the model says so (root only), and shows nothing.
        let c = parse("[[source]]\nname='a'\nplugin='host-dir'\nwhen={stage='run'}").unwrap();
        assert_eq!(c.sources[0].when.as_ref().unwrap().users, None);
        assert!(!c.effective_toml().contains("users"));
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

    #[test]
    fn config_refuses_pod_conditions_that_could_never_match_naming_the_key() {
        let cases = [
            ("namespace = 'Payments'", "source[0].when.namespace"),
            ("namespace = ''", "source[0].when.namespace"),
            ("namespace = 'a.b'", "source[0].when.namespace"),
            ("pod = 'api_1'", "source[0].when.pod"),
            ("container = 'App'", "source[0].when.container"),
            ("image = 'busybox:*'", "source[0].when.image"),
            ("image = 'library/busybox'", "source[0].when.image"),
            ("image = 'a b/c'", "source[0].when.image"),
            (
                "pod_annotations = { '' = 'x' }",
                "source[0].when.pod_annotations",
            ),
        ];
        for (when, key) in cases {
            let text = format!("[[source]]\nname='a'\nplugin='host-dir'\nwhen = {{ {when} }}\n");
            let e = crate::config::Config::parse(&text, std::path::Path::new("t.toml"))
                .expect_err(when)
                .to_string();
            assert!(e.contains(&format!("`{key}`")), "{when:?} gave {e}");
        }
        let e = crate::config::Config::parse(
            "[[source]]\nname='a'\nplugin='host-dir'\nwhen = { namespce = 'x' }\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("namespce"), "{e}");
        for ok in [
            "namespace = 'team-*'",
            "pod = 'api-7.v2'",
            "container = 'app'",
            "image = 'registry.example.com/payments/*'",
            "image = 'localhost/x:1'",
            "image = 'registry:5000/x/**'",
            "image = '*/library/busybox:*'",
            "image = '**'",
            "pod_annotations = { 'io.privy.team' = 'blue*' }",
        ] {
            let text = format!("[[source]]\nname='a'\nplugin='host-dir'\nwhen = {{ {ok} }}\n");
            crate::config::Config::parse(&text, std::path::Path::new("t.toml")).expect(ok);
        }
    }

    #[test]
    fn config_check_shows_pod_conditions() {
        let c = crate::config::Config::parse(
            "[[source]]\nname='a'\nplugin='host-dir'\n\
             when = { namespace = 'payments', image = 'r.io/p/*', pod_annotations = { team = 'blue' } }\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let t = c.effective_toml();
        for want in [
            "namespace = \"payments\"",
            "image = \"r.io/p/*\"",
            "team = \"blue\"",
        ] {
            assert!(t.contains(want), "{want} not in {t}");
        }
    }
}
