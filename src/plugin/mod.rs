//! The plugin host: a wasmtime engine for source components, their cache of
//! precompiled code, and one sandboxed call per source (leak rule L5).
//!
//! Every call gets a fresh `Store` with a memory cap, a CPU cap (epoch
//! ticks counted while Wasm runs), a wall-clock timeout and a host-side cap
//! on logging. WASI gets nothing ambient: no env, no stdio, no sockets, and
//! the filesystem only as the read-only directories the grant names.
//! Components are compiled once per (engine settings, wasm digest) and kept
//! in a root-owned cache, so the hook never compiles on a container start.

mod cache;
mod host;
pub mod net;
pub mod scaffold;
mod wasi_open;

use crate::config::{Grant, Limits};
use crate::pipeline::plan::PluginRef;
use crate::secret::Secret;
use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, Store, UpdateDeadline};

pub use cache::ComponentCache;
use host::HostState;

mod bindings {
    wasmtime::component::bindgen!({
        world: "source-plugin",
        path: "wit",
        exports: { default: async },
        imports: { "privy:source/http.send": async },
    });
}

use bindings::privy::source::types as wit;

/// The WIT package version this host implements.
pub const WIT_VERSION: &str = "0.1.0";

/// Length of one epoch tick; CPU limits are counted in these.
const TICK: Duration = Duration::from_millis(10);

/// A plugin shipped inside the binary.
pub struct EmbeddedPlugin {
    pub name: &'static str,
    pub wasm: &'static [u8],
    pub sha256: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/embedded.rs"));

/// The embedded plugin called `name`.
pub fn embedded(name: &str) -> Option<&'static EmbeddedPlugin> {
    EMBEDDED.iter().find(|p| p.name == name)
}

/// Names of all embedded plugins.
pub fn embedded_names() -> Vec<&'static str> {
    EMBEDDED.iter().map(|p| p.name).collect()
}

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
        }
    }
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

/// The engine configuration; part of the cache key through wasmtime's
/// compatibility hash, so changing it invalidates cached code.
pub fn engine_config() -> Config {
    let mut c = Config::new();
    c.epoch_interruption(true);
    c.wasm_component_model(true);
    c.max_wasm_stack(512 << 10);
    c.async_stack_size(1 << 20);
    c.memory_reservation(1 << 30);
    c.memory_guard_size(64 << 10);
    c
}

/// The engine configuration for a long-lived host: the same settings, plus
/// a pooling allocator with `slots` instance slots, so each call reuses
/// reserved memory and stacks instead of mapping them afresh. `memory` is
/// the largest linear memory a plugin may have (`limits.plugin_memory_bytes`).
pub fn pooled_engine_config(slots: u32, memory: u64) -> Config {
    let mut pool = wasmtime::PoolingAllocationConfig::default();
    pool.total_component_instances(slots)
        .total_core_instances(slots * 8)
        .total_memories(slots * 2)
        .total_tables(slots * 8)
        .total_stacks(slots)
        .max_memories_per_component(2)
        .max_memory_size(memory as usize);
    let mut c = engine_config();
    c.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    c
}

impl PluginHost {
    /// A host whose compiled components live in `cache_dir`. Memory is
    /// mapped per call: the cheapest start for a process that makes one
    /// call per source, as the hook does.
    pub fn new(cache_dir: &std::path::Path) -> Result<Self, PluginError> {
        Self::with_config(cache_dir, &engine_config())
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
            &pooled_engine_config(slots, limits.plugin_memory_bytes),
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

    fn start_ticker(&self) {
        self.ticker.get_or_init(|| {
            let engine = self.engine.weak();
            std::thread::Builder::new()
                .name("privy-epoch".into())
                .spawn(move || loop {
                    std::thread::sleep(TICK);
                    match engine.upgrade() {
                        Some(e) => e.increment_epoch(),
                        None => return,
                    }
                })
                .expect("spawn epoch ticker");
        });
    }

    /// Run one `fetch` in a fresh store under `call.limits`.
    pub async fn fetch(
        &self,
        plugin: &Plugin,
        call: Call<'_>,
    ) -> Result<Vec<RawFile>, PluginError> {
        self.start_ticker();
        let limits = call.limits;
        let link = call.daemon.map(|socket| host::DaemonLink {
            socket: socket.to_owned(),
            container_id: call.request.container_id.clone(),
            bundle: call.request.bundle.clone().unwrap_or_default(),
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
        let req = to_wit(call.request);
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
            Ok(files) => Ok(files
                .into_iter()
                .map(|f| RawFile {
                    path: f.path,
                    data: Secret::new(f.data),
                    mode: f.mode,
                })
                .collect()),
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

fn to_wit(r: &PluginRequest) -> wit::Request {
    wit::Request {
        container_id: r.container_id.clone(),
        stage: match r.stage {
            crate::pipeline::request::Stage::Run => wit::Stage::Run,
            crate::pipeline::request::Stage::Build => wit::Stage::Build,
        },
        annotations: r
            .annotations
            .iter()
            .map(|(k, v)| wit::Annotation {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
        image: r.image.clone(),
        names: r.names.clone(),
        user: wit::User {
            uid: r.uid,
            gid: r.gid,
            additional_gids: r.additional_gids.clone(),
        },
    }
}

/// Turn a wasmtime error into the limit it hit, or a one-line trap.
fn classify(e: &wasmtime::Error, store: &Store<HostState>, limits: &Limits) -> PluginError {
    let st = store.data();
    if st.timed_out {
        return PluginError::Timeout(limits.plugin_timeout_ms);
    }
    if st.cpu_exceeded {
        return PluginError::Cpu(limits.plugin_cpu_ms);
    }
    let text = format!("{e:#}");
    if text.contains("forcing trap when growing memory") || text.contains("memory minimum size") {
        return PluginError::Memory(limits.plugin_memory_bytes >> 20);
    }
    if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
        let what = match trap {
            wasmtime::Trap::StackOverflow => "stack overflow (runaway recursion)".to_string(),
            wasmtime::Trap::UnreachableCodeReached => "wasm `unreachable` executed (the plugin panicked or aborted)".into(),
            wasmtime::Trap::MemoryOutOfBounds => {
                "out-of-bounds memory access (its stack ran out, as deep recursion does, or a plugin bug)".into()
            }
            wasmtime::Trap::Interrupt => return PluginError::Cpu(limits.plugin_cpu_ms),
            other => other.to_string(),
        };
        return PluginError::Trap(what);
    }
    PluginError::Trap(one_line(e))
}

/// An error chain as one whole line, its parts joined with `: `. Parts
/// that span lines (wasmparser pretty-prints the bytes it expected and
/// found, `expected=[\n    0x0,\n ...]`) are folded onto one line, not
/// cut at their first newline.
fn one_line(e: &wasmtime::Error) -> String {
    let s: Vec<String> = e.chain().map(|c| fold_lines(&c.to_string())).collect();
    crate::shown::one_line(&s.join(": "), 400)
}

/// `s` with every run of whitespace (newlines included) made one space, and
/// the padding of a pretty-printed list dropped: `[ 0x0, 0x61, ]` becomes
/// `[0x0, 0x61]`.
fn fold_lines(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace("[ ", "[")
        .replace(", ]", "]")
}
