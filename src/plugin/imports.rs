//! The per-call store state and the `privy:source/host` imports: logging
//! (capped), the source's config values, and the grant-checked `file-mode`
//! and `read-file`. The other imports: `privy:source/tickets` is
//! [`super::tickets`], `privy:source/http` is [`super::net`],
//! `privy:source/expiry` is [`super::expiry`].

use super::bindings::privy::source::host::{self as wit_host, Level};
use super::bindings::privy::source::types as wit_types;
use super::PluginError;
use crate::config::{Grant, Limits};
use crate::sys::fs::{self as files, ReadError};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// Log lines a plugin may write per call; the rest are counted and dropped.
const MAX_LOG_LINES: u32 = 100;
/// Longest log line kept, in characters.
const MAX_LOG_CHARS: usize = 1024;

pub struct HostState {
    source: String,
    wasi: WasiCtx,
    table: ResourceTable,
    pub limits: StoreLimits,
    config: BTreeMap<String, String>,
    grant_dirs: Vec<PathBuf>,
    grant_files: Vec<PathBuf>,
    max_file_bytes: u64,
    /// Granted directories opened by `file-mode`, kept for the call.
    grant_fds: Vec<Option<std::os::fd::OwnedFd>>,
    log_lines: u32,
    /// The network grant and budget of this call.
    pub(super) net: super::net::Net,
    pub ticks: u64,
    pub cpu_exceeded: bool,
    /// Set only for a source granted `daemon = true`.
    pub(super) daemon: Option<DaemonLink>,
    /// The call's wall clock (`limits.plugin_timeout_ms`) ends here; host
    /// calls that wait get only what is left of it.
    pub deadline: Instant,
    /// The epoch callback found the wall clock spent.
    pub timed_out: bool,
    /// The earliest expiry the source gave (`privy:source/expiry`), clamped.
    pub(super) expires: Option<u64>,
    /// An expiry was ignored (too far ahead) and the log said so.
    pub(super) expiry_ignored: bool,
}

/// How a source granted `daemon = true` reaches `privy daemon`, and for
/// which container it claims.
#[derive(Debug, Clone)]
pub struct DaemonLink {
    pub socket: PathBuf,
    pub container_id: String,
    pub bundle: PathBuf,
    /// The host uid the claim is for; `None`: this process's own.
    pub claimant: Option<u32>,
}

impl HostState {
    pub fn new(
        source: &str,
        grant: &Grant,
        config: &BTreeMap<String, String>,
        limits: &Limits,
        daemon: Option<DaemonLink>,
    ) -> Result<Self, PluginError> {
        let mut b = WasiCtxBuilder::new();
        // Sync file operations on the calling thread: no blocking pool. Safe
        // because no open can block (see `wasi_open`).
        b.allow_blocking_current_thread(super::wasi_open::BLOCK_CURRENT_THREAD);
        for dir in &grant.dirs {
            // A granted directory that does not exist simply is not there for
            // the plugin; host-dir treats that as "no files". One that exists
            // but this process may not reach (a rootless hook, a root-only
            // directory) is an error, never "no files": the source fails
            // with its line instead of giving the container nothing.
            match std::fs::metadata(dir) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(PluginError::Grant(format!(
                        "cannot open {}: {e}",
                        dir.display()
                    )))
                }
            }
            let guest = dir.to_string_lossy();
            b.preopened_dir(dir, &guest, FsPerms::ReadOnly)
                .map_err(|e| PluginError::Grant(format!("cannot open {}: {e}", dir.display())))?;
        }
        let net = super::net::Net::new(source, grant, limits);
        let limits_store = StoreLimitsBuilder::new()
            .memory_size(limits.plugin_memory_bytes as usize)
            .table_elements(1 << 20)
            .instances(64)
            .memories(16)
            .tables(64)
            .trap_on_grow_failure(true)
            .build();
        Ok(HostState {
            source: source.to_owned(),
            wasi: b.build(),
            table: ResourceTable::new(),
            limits: limits_store,
            config: config.clone(),
            grant_dirs: grant.dirs.clone(),
            grant_files: grant.files.clone(),
            max_file_bytes: limits.max_file_bytes,
            grant_fds: grant.dirs.iter().map(|_| None).collect(),
            log_lines: 0,
            net,
            ticks: 0,
            cpu_exceeded: false,
            daemon: daemon.filter(|_| grant.daemon),
            deadline: Instant::now() + Duration::from_millis(limits.plugin_timeout_ms),
            timed_out: false,
            expires: None,
            expiry_ignored: false,
        })
    }

    /// The source this call runs for.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The call's resources (WASI descriptors among them).
    pub fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    /// What is left of the call's wall clock (at least 1 ms: a socket
    /// timeout of zero means none).
    pub(super) fn remaining(&self) -> Duration {
        self.deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    }

    /// Report lines that were dropped by the log cap.
    pub fn finish_logging(&self) {
        if self.log_lines > MAX_LOG_LINES {
            tracing::warn!(source = %self.source, dropped = self.log_lines - MAX_LOG_LINES, "plugin log lines over the cap were dropped");
        }
    }

    fn grant_mode(&mut self, path: &str) -> Result<u32, String> {
        let p = Path::new(path);
        if self.grant_files.iter().any(|f| f == p) {
            return std::fs::metadata(p)
                .map(|m| m.mode() & 0o7777)
                .map_err(|e| e.to_string());
        }
        for (i, d) in self.grant_dirs.iter().enumerate() {
            if let Ok(rel) = p.strip_prefix(d) {
                if self.grant_fds[i].is_none() {
                    let fd = crate::sys::open_dir_path(d)
                        .map_err(|e| format!("{}: {e}", d.display()))?;
                    self.grant_fds[i] = Some(fd);
                }
                let dir = self.grant_fds[i].as_ref().expect("opened above");
                let rel = rel.to_string_lossy();
                let rel = if rel.is_empty() { "." } else { &rel };
                let fd = crate::sys::openat2(
                    std::os::fd::AsRawFd::as_raw_fd(dir),
                    rel,
                    libc::O_PATH,
                    0,
                    crate::sys::RESOLVE_BENEATH | crate::sys::RESOLVE_NO_MAGICLINKS,
                )
                .map_err(|e| format!("{path}: {e}"))?;
                let f = std::fs::File::from(fd);
                return f
                    .metadata()
                    .map(|m| m.mode() & 0o7777)
                    .map_err(|e| e.to_string());
            }
        }
        Err(format!("{path} is not covered by the grant"))
    }

    /// A `grant.files` entry, read without ever blocking: opened
    /// `O_NONBLOCK`, and refused unless it is a regular file (B4).
    fn grant_read(&self, path: &str) -> Result<Vec<u8>, String> {
        let p = Path::new(path);
        if !self.grant_files.iter().any(|f| f == p) {
            return Err(format!("{path} is not in grant.files"));
        }
        files::read_regular(p, self.max_file_bytes).map_err(|e| {
            let msg = match e {
                ReadError::TooBig(max) => {
                    format!("{path} is larger than limits.max_file_bytes ({max})")
                }
                ReadError::Io(e) => format!("{path}: {e}"),
                e => format!("{path} {e}"),
            };
            // The plugin may swallow the error: the operator still sees why.
            tracing::info!(source = %self.source, "read-file: {msg}");
            msg
        })
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wit_types::Host for HostState {}

impl wit_host::Host for HostState {
    fn log(&mut self, level: Level, message: String) {
        self.log_lines = self.log_lines.saturating_add(1);
        if self.log_lines > MAX_LOG_LINES {
            return;
        }
        let msg = crate::shown::one_line(&message, MAX_LOG_CHARS);
        let src = self.source.as_str();
        match level {
            Level::Debug => tracing::debug!(source = src, "plugin: {msg}"),
            Level::Info => tracing::info!(source = src, "plugin: {msg}"),
            Level::Warn => tracing::warn!(source = src, "plugin: {msg}"),
            Level::Error => tracing::error!(source = src, "plugin: {msg}"),
        }
    }

    fn config(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }

    fn config_keys(&mut self) -> Vec<String> {
        self.config.keys().cloned().collect()
    }

    fn file_mode(&mut self, path: String) -> Result<u32, String> {
        self.grant_mode(&path)
    }

    fn read_file(&mut self, path: String) -> Result<Vec<u8>, String> {
        self.grant_read(&path)
    }
}
