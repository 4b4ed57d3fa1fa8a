//! The plugin host: a wasmtime engine for source components, their cache of
//! precompiled code, and one sandboxed call per source (leak rule L5).
//!
//! Every call gets a fresh `Store` with a memory cap, a CPU cap (epoch
//! ticks counted while Wasm runs), a wall-clock timeout and a host-side cap
//! on logging. WASI gets nothing ambient: no env, no stdio, no sockets, and
//! the filesystem only as the read-only directories the grant names.
//! Components are compiled once per (engine settings, wasm digest) and kept
//! in a root-owned cache, so the hook never compiles on a container start.

mod bindings;
mod cache;
mod embedded;
mod expiry;
mod imports;
mod limits;
pub mod net;
pub mod scaffold;
mod tickets;
mod wasi_open;

use crate::config::{Grant, Limits};
use crate::pipeline::plan::PluginRef;
use crate::secret::Secret;
use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, Store, UpdateDeadline};

use bindings::privy::source::types as wit;
pub use cache::ComponentCache;
pub use embedded::{embedded, embedded_names, EmbeddedPlugin};
use imports::HostState;
use limits::{classify, one_line, TICK};
pub use limits::{pooled_wasm_config, wasm_config};

/// The WIT package version this host implements.
pub const WIT_VERSION: &str = "0.1.0";

/// Directory holding the guest components built from `plugins/` (fixtures included).
pub const GUEST_DIR: &str = env!("PRIVY_GUEST_DIR");

/// What went wrong in one plugin, without the source's name (the caller adds it).
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("plugin {path}: {msg}")]
    Load { path: String, msg: String },
    #[error("plugin digest mismatch: {path} has sha256 {actual}, config pins {expected}")]
    Digest {
        path: String,
        actual: String,
        expected: String,
    },
    #[error("not a privy source component: {0}")]
    Incompatible(String),
    #[error("{kind}: {msg}")]
    Source { kind: &'static str, msg: String },
    #[error("CPU limit of {0} ms exceeded")]
    Cpu(u64),
    #[error("memory limit of {0} MiB exceeded")]
    Memory(u64),
    #[error("wall-clock timeout of {0} ms exceeded")]
    Timeout(u64),
    #[error("plugin trapped: {0}")]
    Trap(String),
    #[error("grant: {0}")]
    Grant(String),
    /// A plugin the node agent could not make ready when it loaded its
    /// config: the line it failed with then (a stale digest pin, a
    /// missing file), given to every request for that source until the
    /// file or the config changes.
    #[error("{0}")]
    Unready(String),
}

pub use crate::pipeline::check::RawFile;

/// The request as plugins see it.
#[derive(Debug, Clone)]
pub struct PluginRequest {
    pub container_id: String,
    pub stage: crate::pipeline::request::Stage,
    pub annotations: BTreeMap<String, String>,
    pub image: Option<String>,
    pub names: Vec<String>,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// The container's bundle (not shown to plugins: the daemon keeps a
    /// claimed ticket while it exists).
    pub bundle: Option<std::path::PathBuf>,
    /// The host uid a ticket is claimed for (not shown to plugins): the
    /// request's caller. The daemon gives a claim only that uid's tickets,
    /// also when the node agent (root) claims for a user's container.
    pub claimant: Option<u32>,
}

impl PluginRequest {
    /// A request with no annotations, names or image, for root: what
    /// `privy plugin run`, benches and tests start from.
    pub fn bare(container_id: &str, stage: crate::pipeline::request::Stage) -> Self {
        PluginRequest {
            container_id: container_id.to_owned(),
            stage,
            annotations: BTreeMap::new(),
            image: None,
            names: Vec::new(),
            uid: 0,
            gid: 0,
            additional_gids: Vec::new(),
            bundle: None,
            claimant: None,
        }
    }
}

impl From<&crate::pipeline::request::Request> for PluginRequest {
    fn from(r: &crate::pipeline::request::Request) -> Self {
        PluginRequest {
            container_id: r.container_id.clone(),
            stage: r.stage,
            annotations: r.annotations.clone(),
            image: r.image.clone(),
            names: r.names.clone(),
            uid: r.user.uid,
            gid: r.user.gid,
            additional_gids: r.user.additional_gids.clone(),
            bundle: Some(r.bundle.clone()),
            claimant: r.caller.uid,
        }
    }
}

/// What one call returned: the files, unchecked, and when the source said
/// they expire.
#[derive(Debug)]
pub struct Output {
    pub files: Vec<RawFile>,
    /// Unix seconds, the earliest the source gave, already clamped
    /// ([`crate::pipeline::check::clamp_expiry`]); `None`: it gave none.
    pub expires: Option<u64>,
}

/// Everything one call needs besides the component.
pub struct Call<'a> {
    pub source: &'a str,
    pub grant: &'a Grant,
    pub config: &'a BTreeMap<String, String>,
    pub limits: &'a Limits,
    pub request: &'a PluginRequest,
    /// The daemon's socket, for a source granted `daemon = true`.
    pub daemon: Option<&'a std::path::Path>,
}

/// A source component, compiled, type-checked and linked against the host:
/// ready to instantiate once per call.
pub struct Plugin {
    pre: bindings::SourcePluginPre<HostState>,
    imports: Vec<String>,
}

impl Plugin {
    /// The interfaces the component imports (WASI and privy's host).
    pub fn imports(&self) -> &[String] {
        &self.imports
    }
}

/// Whether a component built for contract version `v` runs on this host:
/// the same minor version while the major is 0, the same major after.
pub fn compatible(v: &str) -> bool {
    let parse = |s: &str| -> Option<(u64, u64)> {
        let mut it = s.split('.');
        Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
    };
    match (parse(v), parse(WIT_VERSION)) {
        (Some((0, a)), Some((0, b))) => a == b,
        (Some((a, _)), Some((b, _))) => a == b,
        _ => false,
    }
}

/// The engine, the linker and the component cache.
pub struct PluginHost {
    engine: Engine,
    linker: Linker<HostState>,
    cache: ComponentCache,
    ticker: OnceLock<()>,
}

impl PluginHost {
    /// A host whose compiled components live in `cache_dir`. Memory is
    /// mapped per call: the cheapest start for a process that makes one
    /// call per source, as the hook does.
    pub fn new(cache_dir: &std::path::Path) -> Result<Self, PluginError> {
        Self::with_config(cache_dir, &wasm_config())
    }

    /// A host for a process that makes many calls (the daemon, benches):
    /// instances come from a pool of `slots`, sized for `limits`.
    pub fn new_pooled(
        cache_dir: &std::path::Path,
        limits: &Limits,
        slots: u32,
    ) -> Result<Self, PluginError> {
        Self::with_config(
            cache_dir,
            &pooled_wasm_config(slots, limits.plugin_memory_bytes),
        )
    }

    fn with_config(cache_dir: &std::path::Path, config: &Config) -> Result<Self, PluginError> {
        let engine = Engine::new(config).map_err(|e| PluginError::Trap(format!("engine: {e}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| PluginError::Trap(format!("linker: {e}")))?;
        bindings::SourcePlugin::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| PluginError::Trap(format!("linker: {e}")))?;
        wasi_open::add_to_linker(&mut linker)
            .map_err(|e| PluginError::Trap(format!("linker: {e}")))?;
        let cache = ComponentCache::new(&engine, cache_dir);
        Ok(PluginHost {
            engine,
            linker,
            cache,
            ticker: OnceLock::new(),
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The plugin for `plugin`: verified against its digest, compiled code
    /// from the cache (or compiled into it), and type-checked against the
    /// host once, so each call only instantiates.
    pub fn load(&self, plugin: &PluginRef) -> Result<Plugin, PluginError> {
        let component = match plugin {
            PluginRef::Embedded(name) => {
                let p = embedded(name).ok_or_else(|| PluginError::Load {
                    path: name.clone(),
                    msg: "no such embedded plugin".into(),
                })?;
                self.cache.get_or_compile(p.wasm, p.sha256)?
            }
            PluginRef::File { path, sha256 } => {
                let bytes = read_pinned(path, sha256)?;
                self.cache.get_or_compile(&bytes, sha256)?
            }
            PluginRef::Inline(wasm) => return self.load_bytes(wasm),
        };
        self.prepare(component)
    }

    /// The plugin for raw wasm bytes (`privy plugin run`, tests): hashed,
    /// then taken from the cache or compiled into it.
    pub fn load_bytes(&self, wasm: &[u8]) -> Result<Plugin, PluginError> {
        use sha2::Digest;
        let component = self
            .cache
            .get_or_compile(wasm, &hex::encode(sha2::Sha256::digest(wasm)))?;
        self.prepare(component)
    }

    /// Check that `component` is a source for this host, with a clear
    /// message for a contract version mismatch, and pre-link it.
    fn prepare(&self, component: Component) -> Result<Plugin, PluginError> {
        let ty = component.component_type();
        let imports: Vec<String> = ty
            .imports(&self.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        let exports = ty.exports(&self.engine).map(|(n, _)| n.to_string());
        for n in imports.iter().cloned().chain(exports) {
            if let Some(v) = n
                .strip_prefix("privy:source/")
                .and_then(|r| r.split_once('@'))
                .map(|(_, v)| v)
            {
                if !compatible(v) {
                    return Err(PluginError::Incompatible(format!(
                        "built for privy:source@{v}; this privy implements privy:source@{WIT_VERSION}"
                    )));
                }
            }
        }
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| PluginError::Incompatible(one_line(&e)))?;
        let pre = bindings::SourcePluginPre::new(pre).map_err(|e| {
            PluginError::Incompatible(format!(
                "{} (a source exports privy:source/source@{WIT_VERSION})",
                one_line(&e)
            ))
        })?;
        Ok(Plugin { pre, imports })
    }

    /// Run one `fetch` in a fresh store under `call.limits`.
    pub async fn fetch(&self, plugin: &Plugin, call: Call<'_>) -> Result<Output, PluginError> {
        limits::start_ticker(&self.engine, &self.ticker);
        let limits = call.limits;
        let link = call.daemon.map(|socket| imports::DaemonLink {
            socket: socket.to_owned(),
            container_id: call.request.container_id.clone(),
            bundle: call.request.bundle.clone().unwrap_or_default(),
            claimant: call.request.claimant,
        });
        let state = HostState::new(call.source, call.grant, call.config, limits, link)?;
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        let cpu_ticks = limits
            .plugin_cpu_ms
            .div_ceil(TICK.as_millis() as u64)
            .max(1);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |mut ctx| {
            let st = ctx.data_mut();
            st.ticks += 1;
            // The wall clock, checked whenever Wasm runs again: time spent in
            // host calls counts, whatever runtime polls this call.
            if std::time::Instant::now() >= st.deadline {
                st.timed_out = true;
                return Ok(UpdateDeadline::Interrupt);
            }
            if st.ticks > cpu_ticks {
                st.cpu_exceeded = true;
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        let req = bindings::to_wit(call.request);
        let run = async {
            let inst = plugin
                .pre
                .instantiate_async(&mut store)
                .await
                .map_err(|e| classify(&e, &store, limits))?;
            inst.privy_source_source()
                .call_fetch(&mut store, &req)
                .await
                .map_err(|e| classify(&e, &store, limits))
        };
        let out = tokio::time::timeout(Duration::from_millis(limits.plugin_timeout_ms), run)
            .await
            .map_err(|_| PluginError::Timeout(limits.plugin_timeout_ms))??;
        store.data().finish_logging();
        match out {
            Ok(files) => Ok(Output {
                files: files
                    .into_iter()
                    .map(|f| RawFile {
                        path: f.path,
                        data: Secret::new(f.data),
                        mode: f.mode,
                    })
                    .collect(),
                expires: store.data().expires,
            }),
            Err(e) => {
                let (kind, msg) = match e {
                    wit::SourceError::NotFound(m) => ("not found", m),
                    wit::SourceError::Denied(m) => ("denied", m),
                    wit::SourceError::Unavailable(m) => ("unavailable", m),
                    wit::SourceError::InvalidConfig(m) => ("invalid config", m),
                    wit::SourceError::Other(m) => ("error", m),
                };
                Err(PluginError::Source {
                    kind,
                    msg: crate::shown::one_line(&msg, 300),
                })
            }
        }
    }
}

/// A configured source whose plugin cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PrecompileError {
    /// The plugin host could not be made.
    #[error(transparent)]
    Host(#[from] PluginError),
    #[error("source {name:?}: {error}")]
    Source { name: String, error: PluginError },
}

/// Load every plugin `cfg` may run (its sources, and the built-in that
/// serves tickets, which runs for any container with one): digest, pinning,
/// world and version are checked, and compiled code lands in the cache, so
/// the first container start does not pay for Cranelift (`privy install`,
/// `privy config check`).
pub fn precompile(cfg: &crate::config::Config) -> Result<(), PrecompileError> {
    let host = PluginHost::new(&cfg.cache_dir)?;
    let load = |name: &str, plugin: &PluginRef| {
        host.load(&crate::pipeline::plan::plan_source_plugin(plugin))
            .map(drop)
            .map_err(|error| PrecompileError::Source {
                name: name.to_owned(),
                error,
            })
    };
    for s in &cfg.sources {
        load(&s.name, &s.plugin)?;
    }
    let catalog = crate::config::builtin::catalog();
    if let Some(up) = catalog.implicit_ticket_source() {
        if !cfg
            .sources
            .iter()
            .any(|s| catalog.claims_tickets(&s.plugin))
        {
            load(&up.name, &up.plugin)?;
        }
    }
    Ok(())
}

/// Largest `.wasm` privy reads (a source component is a few MiB at most).
pub const MAX_WASM_BYTES: u64 = 256 << 20;

/// Read a `.wasm` file named in config: a regular file (opened without
/// blocking, so a FIFO or device is refused at once, B4), owned by root, not
/// writable by group or others, and hashing to the pinned digest. Owner and
/// mode are taken from the descriptor that is read, so nothing can be
/// swapped in between the check and the read.
pub fn read_pinned(path: &std::path::Path, sha256: &str) -> Result<Vec<u8>, PluginError> {
    use sha2::Digest;
    use std::os::unix::fs::MetadataExt;
    let shown = path.display().to_string();
    let load = |msg: String| PluginError::Load {
        path: shown.clone(),
        msg,
    };
    let f = crate::sys::fs::open_regular(path).map_err(|e| load(e.to_string()))?;
    let meta = f.metadata().map_err(|e| load(e.to_string()))?;
    if meta.uid() != 0 || meta.mode() & 0o022 != 0 {
        return Err(load(
            "must be owned by root and not writable by group or others".into(),
        ));
    }
    let bytes = crate::sys::fs::read_capped(f, MAX_WASM_BYTES).map_err(|e| load(e.to_string()))?;
    let actual = hex::encode(sha2::Sha256::digest(&bytes));
    if !actual.eq_ignore_ascii_case(sha256) {
        return Err(PluginError::Digest {
            path: shown,
            actual,
            expected: sha256.into(),
        });
    }
    Ok(bytes)
}
