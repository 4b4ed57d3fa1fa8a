//! The node agent: `privy daemon` keeps every configured source's plugin
//! compiled, type-checked and pre-instantiated (`InstancePre`) in a pooled
//! engine, and serves thin hooks (`privy-hook`) over its socket: given a
//! container's OCI state, it plans, fetches and checks, and answers with
//! the checked files or the one line that says why not (`POST /v1/hook`).
//! The hook materializes and audits; nothing here touches a container.
//!
//! **Reload.** The config file and every plugin file it names are
//! fingerprinted (device, inode, size, mtime, ctime). Before each request,
//! every second, and on SIGHUP the fingerprints are compared, and a change
//! reloads everything: the config is parsed and checked again, every
//! digest pin verified again. Comparing on every request (a few `stat`s)
//! means a changed plugin file is never served from code compiled before
//! the change; the 1 s poll only makes a broken change show up in the log
//! without waiting for a container. Polling was chosen over inotify: it
//! needs no watch on directories that editors and package managers
//! replace by rename, no extra dependency, and costs ~1 µs per file.
//! A config that no longer parses keeps the previous one serving and says
//! so once. A source whose plugin cannot be made ready (a changed file
//! with a stale pin) fails closed with that one line; the others keep
//! working.
//!
//! **Trust.** Every connection is attributed by `SO_PEERCRED`. The agent
//! serves root's hooks (rootful engines) and ordinary users' hooks
//! (rootless engines), and checks first that the state's pid is a live
//! process outside the caller's mount namespace (a container's init at
//! createRuntime) and, for a user, that it is that user's container
//! ([`check_container`]). For a user, the request is then planned for
//! that uid: `when.users` decides which operator sources it gets, run here
//! with the agent's rights, so a source may read what the user cannot;
//! the container's bundle is read with the user's own rights
//! ([`super::rights`]), so naming a path tells the user nothing it could
//! not learn itself; and an upload ticket is claimed *for* that uid, so a
//! user's container never gets a ticket that is not the user's own. A
//! hook that finds no agent runs the pipeline in its own process, with
//! its own rights: the user's uploads, and what the user may read.

use super::api::{ApiError, Reply};
use super::proto::{HookBody, B64, HOOK_FAILED, HOOK_NOT_SERVED};
use super::store::Caller;
use crate::config::{Config, PluginRef};
use crate::pipeline::check::Checked;
use crate::pipeline::fetch::Plugins;
use crate::pipeline::gather::{gather_with, GatherError, Gathered};
use crate::pipeline::plan::{self, PlannedSource};
use crate::pipeline::request::Request;
use crate::plugin::{Plugin, PluginError, PluginHost};
use base64::Engine as _;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use zeroize::Zeroizing;

/// Instance slots in the pool: how many plugin calls run at once. A
/// request holds one per source it runs; more wait for a slot rather than
/// fail (a pool that is out of slots refuses to instantiate).
pub const SLOTS: u32 = 32;

/// What identifies a file's version without reading it (the agent's
/// config and plugins, the refresh scheduler's state records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

pub(super) fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        dev: m.dev(),
        ino: m.ino(),
        size: m.size(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
    })
}

/// One loaded config and its ready plugins.
pub struct Warm {
    pub cfg: Config,
    host: PluginHost,
    /// By source name: the plugin it names, and that plugin ready or the
    /// line it failed with.
    plugins: HashMap<String, (PluginRef, Result<Arc<Plugin>, String>)>,
    stamps: Vec<(PathBuf, Option<Stamp>)>,
}

impl Plugins for Warm {
    fn plugin(&self, host: &PluginHost, src: &PlannedSource) -> Result<Arc<Plugin>, PluginError> {
        match self.plugins.get(&src.name) {
            Some((r, ready)) if *r == src.plugin => match ready {
                Ok(p) => Ok(p.clone()),
                Err(line) => Err(PluginError::Unready(line.clone())),
            },
            // Not one of the config's sources: loaded for this call.
            _ => host.load(&src.plugin).map(Arc::new),
        }
    }
}

impl Warm {
    /// Load every plugin `cfg` may run, each checked against its pin.
    /// `config` is the config file and its fingerprint taken *before* it
    /// was read (as each plugin's is taken before it is read), so a write
    /// that lands while it is read shows as a change and loads again.
    fn load(cfg: Config, config: Option<(PathBuf, Option<Stamp>)>) -> Result<Warm, PluginError> {
        let mut sources: Vec<(String, PluginRef, u64)> = cfg
            .sources
            .iter()
            .map(|s| {
                let p = plan::plan_source(s, &cfg.limits);
                (s.name.clone(), p.plugin, p.limits.plugin_memory_bytes)
            })
            .collect();
        let catalog = crate::config::builtin::catalog();
        if let Some(up) = catalog.implicit_ticket_source() {
            if !cfg
                .sources
                .iter()
                .any(|s| catalog.claims_tickets(&s.plugin))
            {
                sources.push((
                    up.name.clone(),
                    plan::plan_source_plugin(&up.plugin),
                    cfg.limits.plugin_memory_bytes,
                ));
            }
        }
        let memory = sources
            .iter()
            .map(|s| s.2)
            .chain([cfg.limits.plugin_memory_bytes])
            .max()
            .unwrap_or_default();
        let mut limits = cfg.limits.clone();
        limits.plugin_memory_bytes = memory;
        let host = PluginHost::new_pooled(&cfg.cache_dir, &limits, SLOTS)?;
        let mut stamps: Vec<(PathBuf, Option<Stamp>)> = config.into_iter().collect();
        let mut plugins = HashMap::new();
        for (name, r, _) in sources {
            if let PluginRef::File { path, .. } = &r {
                stamps.push((path.clone(), stamp(path)));
            }
            let ready = host.load(&r).map(Arc::new).map_err(|e| e.to_string());
            match &ready {
                Ok(_) => tracing::debug!(source = %name, "plugin ready"),
                Err(e) => tracing::error!(
                    source = %name,
                    "source {name:?} cannot run, and fails closed until its file or the config changes: {e}"
                ),
            }
            plugins.insert(name, (r, ready));
        }
        Ok(Warm {
            cfg,
            host,
            plugins,
            stamps,
        })
    }

    fn changed(&self) -> bool {
        self.stamps.iter().any(|(p, s)| stamp(p) != *s)
    }

    /// How many plugins are ready, of how many.
    pub fn ready(&self) -> (usize, usize) {
        (
            self.plugins.values().filter(|(_, r)| r.is_ok()).count(),
            self.plugins.len(),
        )
    }
}

/// Which config the agent reads, and where it listens.
#[derive(Debug, Clone)]
pub struct Source {
    /// The config file and whether it was named (a named one must exist).
    pub path: PathBuf,
    pub explicit: bool,
    /// The socket this agent listens on, for sources granted `daemon =
    /// true` (uploads are claimed from this process), when it is known.
    pub socket: Option<PathBuf>,
}

/// The agent: the current [`Warm`], swapped whole on reload; requests in
/// flight keep the one they started with.
pub struct Agent {
    source: Source,
    warm: RwLock<Arc<Warm>>,
    reloading: Mutex<()>,
    /// The config file's fingerprint when it last failed to load (said
    /// once, not on every check).
    refused: Mutex<Option<Option<Stamp>>>,
    permits: Arc<tokio::sync::Semaphore>,
}

impl Agent {
    /// Load `cfg` (already read from `source.path`) and make every plugin ready.
    pub fn new(cfg: Config, source: Source) -> Result<Agent, PluginError> {
        let stamped = (source.path.clone(), stamp(&source.path));
        let warm = Warm::load(cfg, Some(stamped))?;
        let (ready, all) = warm.ready();
        tracing::info!(
            ready,
            sources = all,
            "agent: plugins compiled and pre-instantiated"
        );
        Ok(Agent {
            source,
            warm: RwLock::new(Arc::new(warm)),
            reloading: Mutex::new(()),
            refused: Mutex::new(None),
            permits: Arc::new(tokio::sync::Semaphore::new(SLOTS as usize)),
        })
    }

    /// The config and plugins serving now.
    pub fn current(&self) -> Arc<Warm> {
        self.warm.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reload when the config or a plugin file changed (or always, when
    /// `force`: SIGHUP). Blocking: compiles what the cache lacks.
    pub fn refresh(&self, force: bool) {
        let _one = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.current();
        if !force && !now.changed() {
            return;
        }
        let before = stamp(&self.source.path);
        let cfg = match Config::load(&self.source.path, self.source.explicit) {
            Ok(c) => c,
            Err(e) => {
                let s = before;
                let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
                if force || refused.as_ref() != Some(&s) {
                    tracing::error!("agent: {e}; still serving the config loaded before");
                }
                *refused = Some(s);
                return;
            }
        };
        *self.refused.lock().unwrap_or_else(|e| e.into_inner()) = None;
        match Warm::load(cfg, Some((self.source.path.clone(), before))) {
            Ok(w) => {
                let (ready, all) = w.ready();
                *self.warm.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(w);
                tracing::info!(ready, sources = all, "agent: config reloaded");
            }
            Err(e) => {
                tracing::error!("agent: reloading: {e}; still serving the config loaded before")
            }
        }
    }

    /// Gather what `planned` gives `req` with `warm`'s plugins, on this
    /// thread (a blocking one: never a runtime worker), on a runtime of its
    /// own, holding one pool slot per source (a burst waits for slots). A
    /// source granted `daemon = true` claims from this agent's socket.
    /// Serving hooks and the refresh scheduler ([`super::rotation`]) share it.
    pub fn gather_blocking(
        &self,
        warm: &Warm,
        mut planned: Vec<PlannedSource>,
        req: &Request,
    ) -> Result<Gathered, GatherError> {
        if let Some(sock) = &self.source.socket {
            for p in planned.iter_mut().filter(|p| p.daemon.is_some()) {
                p.daemon = Some(sock.clone());
            }
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(GatherError::Runtime)?;
        rt.block_on(async {
            let n = (planned.len() as u32).clamp(1, SLOTS);
            let _slots = self
                .permits
                .acquire_many(n)
                .await
                .map_err(|e| GatherError::Runtime(std::io::Error::other(e)))?;
            gather_with(&warm.host, warm, &warm.cfg, planned, req).await
        })
    }

    /// Answer one hook's request (`POST /v1/hook`).
    pub async fn serve(
        self: &Arc<Self>,
        caller: &Caller,
        peer_pid: Option<i32>,
        body: &[u8],
    ) -> Result<Reply, ApiError> {
        let b: HookBody = serde_json::from_slice(body)
            .map_err(|e| ApiError(400, super::api::json_error("hook request", &e)))?;
        if let Some(theirs) = b.config.as_deref().filter(|p| *p != self.source.path) {
            return Err(ApiError(
                HOOK_NOT_SERVED,
                format!(
                    "the agent serves {}, not {}; the hook runs the pipeline in its own process",
                    self.source.path.display(),
                    crate::shown::shown(&theirs.display().to_string())
                ),
            ));
        }
        let failed = |e: &dyn std::fmt::Display| ApiError(HOOK_FAILED, e.to_string());
        let state = crate::oci::State::parse(b.state.as_bytes()).map_err(|e| failed(&e))?;
        if !crate::oci::valid_id(&state.id) {
            return Err(failed(&format!(
                "container id {:?} is not a valid OCI id",
                state.id
            )));
        }
        let pid = state.pid.ok_or_else(|| {
            failed(&"the OCI state has no pid; privy must run as a createRuntime hook")
        })?;
        check_container(caller.uid, peer_pid, pid).map_err(|e| ApiError(403, e))?;
        let me = self.clone();
        let hook_annotations = b.hook_annotations;
        let all_required = b.refresh;
        let started = std::time::Instant::now();
        // The request is read, planned and gathered off the runtime's
        // workers: a source granted `daemon = true` claims its ticket from
        // this very process over the socket with a blocking call, which
        // must never hold a worker the claim's own answer needs.
        let who = caller.clone();
        let result = tokio::task::spawn_blocking(move || {
            me.refresh(false);
            let warm = me.current();
            // The bundle is the caller's to name: read with its rights.
            let mut req = super::rights::as_caller_do(&who, || {
                crate::pipeline::request::Request::load_with(state, hook_annotations.as_deref())
            })
            .ok_or("could not take the caller's filesystem ids to read its bundle")?
            .map_err(|e| e.to_string())?;
            req.caller = crate::pipeline::request::Caller::for_uid(who.uid);
            let mut planned = plan::plan(&warm.cfg, &req);
            if all_required {
                // A refresh: a failing source keeps the files as they are.
                planned.iter_mut().for_each(|p| p.required = true);
            }
            me.gather_blocking(&warm, planned, &req)
                .map(|g| (req.container_id.clone(), g))
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| ApiError(500, format!("agent: {e}")))?;
        let (id, got) = result.map_err(|e| ApiError(HOOK_FAILED, e))?;
        tracing::info!(
            container = %id,
            files = got.checked.files.len(),
            sources = got.planned.len(),
            us = started.elapsed().as_micros() as u64,
            "agent: served a hook"
        );
        Ok(Reply {
            status: 200,
            body: encode(&got.checked),
        })
    }
}

/// Whether `pid` is a live process that `uid` may be served for: any for
/// root; for anyone else a process running as `uid` or in a user
/// namespace `uid` owns (a rootless engine's container, whose users map
/// to the caller's subordinate ids).
pub fn is_callers_container(uid: u32, pid: i32) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    if pid <= 0 {
        return Err(format!("pid {pid} is not a process"));
    }
    let owner = std::fs::metadata(format!("/proc/{pid}"))
        .map_err(|_| format!("pid {pid} is not a live process"))?
        .uid();
    if uid != 0 && owner != uid && crate::sys::userns::owner_of(pid) != Some(uid) {
        return Err(format!(
            "pid {pid} is not the caller's container (neither its process nor in a user namespace the caller owns)"
        ));
    }
    Ok(())
}

/// Whether `pid` may be served to a caller with `uid` whose own process is
/// `peer`: a live process, not in the caller's own mount namespace (the
/// container's init has its own by createRuntime), and, unless the caller
/// is root, the caller's container: the process runs as the caller, or in
/// a user namespace the caller owns (a rootless engine's container, whose
/// users map to the caller's subordinate ids). For anyone but root, a
/// namespace that cannot be compared is a refusal.
pub fn check_container(uid: u32, peer: Option<i32>, pid: i32) -> Result<(), String> {
    is_callers_container(uid, pid)?;
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let ns = |p: &Path| std::fs::read_link(p.join("ns/mnt")).ok();
    let Some(peer) = peer else {
        return Err("cannot tell which process asks (no pid in SO_PEERCRED)".into());
    };
    // Reading another process's namespace needs ptrace-read access, which
    // the unit does not grant (no CAP_SYS_PTRACE) and a runtime's init may
    // refuse (not dumpable). For root, who could start any process anyway,
    // an unreadable namespace is no refusal; for anyone else it is.
    match (ns(&proc_dir), ns(Path::new(&format!("/proc/{peer}")))) {
        (Some(theirs), Some(mine)) if theirs == mine => Err(format!(
            "pid {pid} shares the asking process's mount namespace, so it is not a container being created"
        )),
        (None, _) | (_, None) if uid != 0 => Err(format!(
            "pid {pid}: its mount namespace cannot be compared with the asking process's"
        )),
        _ => Ok(()),
    }
}

/// The answer: `{"files":[{"path","mode","source","data"}],"overrides":[...],"dropped":[...]}`,
/// and `"expires":UNIX_SECONDS` when a source said when its data expires
/// (an optional member: an older hook ignores it, and an older agent's
/// answer without it means none), file contents base64 in one buffer sized
/// once (no stray copies) and zeroized after it is sent.
fn encode(c: &Checked) -> Zeroizing<Vec<u8>> {
    let mut meta = serde_json::json!({
        "overrides": c.overrides.iter().map(|o| serde_json::json!({"path": o.path, "winner": o.winner, "loser": o.loser})).collect::<Vec<_>>(),
        "dropped": c.dropped.iter().map(|d| serde_json::json!({"path": d.path, "source": d.source})).collect::<Vec<_>>(),
    });
    if let Some(at) = c.expires {
        meta["expires"] = at.into();
    }
    let meta = serde_json::to_vec(&meta).expect("serializes");
    let size: usize = c
        .files
        .iter()
        .map(|f| {
            (f.path.as_str().len() + f.source.len()) * 6
                + base64::encoded_len(f.data.len(), true).expect("small")
                + 64
        })
        .sum::<usize>()
        + meta.len()
        + 16;
    let mut out = Zeroizing::new(Vec::with_capacity(size));
    out.extend_from_slice(b"{\"files\":[");
    for (i, f) in c.files.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"path\":");
        serde_json::to_writer(&mut *out, f.path.as_str()).expect("string");
        out.extend_from_slice(b",\"source\":");
        serde_json::to_writer(&mut *out, &f.source).expect("string");
        out.extend_from_slice(format!(",\"mode\":{},\"data\":\"", f.mode).as_bytes());
        let at = out.len();
        out.resize(
            at + base64::encoded_len(f.data.len(), true).expect("small"),
            0,
        );
        B64.encode_slice(f.data.expose(), &mut out[at..])
            .expect("sized");
        out.extend_from_slice(b"\"}");
    }
    out.extend_from_slice(b"],");
    // `meta` is `{...}`: splice its members in after the files.
    out.extend_from_slice(&meta[1..]);
    debug_assert!(out.len() <= size, "answer buffer was sized too small");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_carries_the_expiry_only_when_a_source_gave_one() {
        use crate::pipeline::check::CheckedFile;
        use crate::secret::{RelPath, Secret};
        let mut c = Checked {
            files: vec![CheckedFile {
                path: RelPath::new("a/b").unwrap(),
                data: Secret::new(b"bytes".to_vec()),
                mode: 0o400,
                source: "s".into(),
            }],
            ..Checked::default()
        };
        let v: serde_json::Value = serde_json::from_slice(&encode(&c)).unwrap();
        assert!(v.get("expires").is_none(), "{v}");
        assert_eq!(v["files"][0]["path"], "a/b");
        c.expires = Some(1_800_000_000);
        let v: serde_json::Value = serde_json::from_slice(&encode(&c)).unwrap();
        assert_eq!(v["expires"], 1_800_000_000u64);
        assert_eq!(v["files"][0]["data"], "Ynl0ZXM=");
    }
}
