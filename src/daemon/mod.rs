//! `privy daemon`: the node agent ([`agent`]: every source's plugin warm,
//! serving thin hooks) and the holder of per-run uploads in memory, keyed
//! by ticket (L1, L8).
//!
//! HTTP/1.1 with JSON bodies on a Unix socket, like the Docker API, so
//! `curl --unix-socket /run/privy/privy.sock http://privy/v1/health` works.
//! Every request is attributed to the peer's uid by `SO_PEERCRED`; nothing
//! in a request can claim another identity.
//!
//! | method and path                   | who           | what                                  |
//! |-----------------------------------|---------------|---------------------------------------|
//! | `GET /v1/health`                  | anyone        | `{"ok":true,"tickets":N,"version":V}` |
//! | `POST /v1/tickets`                | anyone        | upload; body [`UploadBody`]; 201 with [`Created`] |
//! | `GET /v1/tickets/{ticket}`        | owner, root   | names, sizes, expiry, containers      |
//! | `DELETE /v1/tickets/{ticket}`     | owner, root   | drop it now (zeroized); 204           |
//! | `POST /v1/tickets/{ticket}/claim` | owner, root   | the files, for the hook; body [`ClaimBody`] |
//! | `POST /v1/hook`                   | root          | a container's checked files, for `privy-hook`; body [`proto::HookBody`] |
//!
//! Errors are `{"error": "one line"}` with 400 (malformed), 403 (another
//! uid's ticket; a hook's pid that is not a container's), 404 (unknown),
//! 410 (expired, removed or deleted), 413 (over a limit), 408 (too slow),
//! 421 (a hook the agent does not serve: it runs in process), 422 (a
//! hook's sources failed or were refused) or 503 (too many connections). Nothing
//! here logs a request path, since it carries the ticket, or a body.
//!
//! One local user must not be able to starve the others or the hook
//! (B2, B3): connections are capped per uid and in total with a reserve for
//! root ([`admission`]), each must send its head within
//! `daemon.header_timeout_secs` and its whole request within
//! `daemon.request_timeout_secs`, and request bodies count against the
//! uid's `max_bytes_per_uid` before they are buffered ([`http`], [`api`]).
//!
//! Modules: [`listen`] (the socket and who connects), [`http`] (the
//! protocol), [`api`] (routes and handlers), [`store`] (tickets and per-uid
//! usage), [`admission`] (connection caps), [`rights`] (bundle checks with
//! a claimant's own rights), [`rotation`] (refreshing served containers on
//! a schedule and on SIGHUP), [`proto`] (the types both ends agree on),
//! [`client`] (the blocking client every other part of privy uses).

pub use privy_core::daemon::{client, proto};

pub mod admission;
pub mod agent;
pub mod api;
pub mod http;
pub mod listen;
pub mod rights;
pub mod rotation;
pub mod store;

use crate::config::Config;
use admission::{Admission, ConnLimits, Slot};
use api::{lock, Ctx, Reply, Shared};
pub use api::{UploadBody, UploadFile};
pub use listen::Listen;
pub use proto::{ClaimBody, Created, FileInfo, Scope, TicketInfo, B64};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
pub use store::Caller;
use store::{Store, StoreLimits};

pub use store::TICKET_PREFIX;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("a privy daemon already listens on {0}")]
    AlreadyRunning(PathBuf),
    #[error("socket {path}: {error}")]
    Socket {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("socket directory {path}: {msg}")]
    SocketDir { path: PathBuf, msg: String },
    #[error("async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("agent: {0}")]
    Agent(String),
}

/// Give freed memory back to the system (B2). With `mlockall`, every page
/// the allocator keeps stays resident; glibc keeps large freed blocks when
/// its mmap threshold adapts upwards (to the largest block freed, up to
/// 32 MiB), so a burst of big uploads would pin that memory for good. A
/// fixed threshold keeps every request body and upload in its own mapping,
/// unmapped when freed; [`trim_memory`] returns the small leftovers.
fn tune_allocator() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt with constant arguments.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1024 * 1024);
    }
}

fn trim_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// File descriptors the daemon keeps for itself besides connections
/// (listener, epoll, log file, blocking threads' files).
const FD_RESERVE: u64 = 64;

/// Raise the open-file limit to its hard limit, and fit the connection caps
/// under it, so the caps (not the kernel) decide who is refused.
fn fit_connections(d: &crate::config::DaemonConfig) -> ConnLimits {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let soft = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                hard
            } else {
                soft
            }
        }
        Ok((soft, _)) => soft,
        Err(_) => u64::MAX,
    };
    let usable = soft.saturating_sub(FD_RESERVE).max(2);
    let mut l = ConnLimits {
        max_connections: d.max_connections,
        max_connections_per_uid: d.max_connections_per_uid,
        root_reserved_connections: d.root_reserved_connections,
    };
    if u64::from(l.max_connections) > usable {
        let max = usable.min(u64::from(u32::MAX)) as u32;
        tracing::warn!(
            "daemon.max_connections ({}) does not fit the open-file limit ({soft}); using {max}",
            l.max_connections
        );
        l.max_connections = max;
        l.root_reserved_connections = l.root_reserved_connections.min(max / 2);
    }
    l
}

/// Serve one admitted connection: its request within the deadlines, then
/// its answer, then close.
async fn connection(
    stream: tokio::net::UnixStream,
    who: Caller,
    peer_pid: Option<i32>,
    slot: Slot,
    ctx: Arc<Ctx>,
    request_timeout: Duration,
) {
    let accepted = tokio::time::Instant::now();
    let mut conn = http::Conn::new(stream);
    let head_deadline = accepted + ctx.header_timeout;
    let reply = match tokio::time::timeout_at(
        accepted + request_timeout,
        api::serve(&mut conn, &who, peer_pid, &ctx, head_deadline),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Reply::error(
            408,
            &format!(
                "the request was not complete within {} s (daemon.request_timeout_secs)",
                request_timeout.as_secs()
            ),
        ),
    };
    let bytes = api::encode(&reply);
    drop(reply);
    // A client that does not read its answer is not waited for longer than
    // it was for its request.
    let _ = tokio::time::timeout(request_timeout, conn.send(&bytes)).await;
    drop(slot);
}

/// Refused connections, logged at most once per 10 s: an operator learns
/// that someone is at the caps, and a flood does not become a log flood.
#[derive(Default)]
struct Refusals {
    count: u64,
    next_log: Option<Instant>,
}

impl Refusals {
    fn note(&mut self, why: &str) {
        self.count += 1;
        let now = Instant::now();
        if self.next_log.is_none_or(|t| now >= t) {
            tracing::warn!(
                refused = self.count,
                latest = why,
                "connections refused at the daemon's caps"
            );
            self.count = 0;
            self.next_log = Some(now + Duration::from_secs(10));
        }
    }
}

/// Answer a connection that is not taken, without waiting for it.
fn refuse(stream: tokio::net::UnixStream, msg: &str) {
    let bytes = api::encode(&Reply::error(503, msg));
    // Best effort: a fresh socket's buffer holds this short answer.
    let _ = stream.try_write(&bytes);
}

/// Run the daemon until SIGTERM or SIGINT: the uploads' holder and the
/// node agent ([`agent`]) for the config at `config` (its path, and
/// whether it was named). SIGHUP reloads the config and every plugin, then
/// refreshes every served container ([`rotation`]).
pub fn serve(cfg: &Config, config: (PathBuf, bool), listen: Listen) -> Result<(), DaemonError> {
    crate::sys::process::harden();
    tune_allocator();
    crate::sys::process::lock_memory();
    // The plugins are made ready before the socket is bound: a hook that
    // comes meanwhile finds no agent and runs in process at once, instead
    // of waiting in the listen queue for the compiler.
    let socket = match &listen {
        Listen::Path(p) => p.clone(),
        Listen::Inherited(_) => cfg.daemon.socket_path(),
    };
    let agent = Arc::new(
        agent::Agent::new(
            cfg.clone(),
            agent::Source {
                path: config.0,
                explicit: config.1,
                socket: Some(socket),
            },
        )
        .map_err(|e| DaemonError::Agent(e.to_string()))?,
    );
    let (std_listener, owned_path) = match listen {
        Listen::Path(p) => (listen::bind(cfg, &p)?, Some(p)),
        Listen::Inherited(l) => (l, None),
    };
    let shown = owned_path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "systemd socket".into());
    std_listener
        .set_nonblocking(true)
        .map_err(DaemonError::Runtime)?;
    let d = &cfg.daemon;
    // base64 grows 4/3; the JSON around the files is small next to them.
    let framing = 512 * u64::from(cfg.limits.max_files) + 64 * 1024;
    let upload_limit = cfg.limits.max_total_bytes / 3 * 4 + framing;
    let limits = StoreLimits {
        max_file_bytes: cfg.limits.max_file_bytes,
        max_total_bytes: cfg.limits.max_total_bytes,
        max_files: cfg.limits.max_files,
        max_bytes_per_uid: d.max_bytes_per_uid,
        max_tickets_per_uid: d.max_tickets_per_uid,
        // Counted as bodies are (3/4 of their size).
        in_flight_slack: framing / 4 * 3,
        default_ttl: Duration::from_secs(d.ticket_ttl_secs),
        max_age: Duration::from_secs(d.ticket_max_age_secs),
    };
    let store: Shared = Arc::new(Mutex::new(Store::new(limits)));
    let admission = Admission::new(fit_connections(d));
    let ctx = Arc::new(Ctx {
        store: store.clone(),
        upload_limit,
        header_timeout: Duration::from_secs(d.header_timeout_secs),
        agent: agent.clone(),
    });
    let request_timeout = Duration::from_secs(d.request_timeout_secs);
    let sweep_every = Duration::from_secs(d.sweep_secs);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // Locked memory (mlockall) makes every stack resident: keep them
        // small, and few blocking threads (only bundle checks use them).
        .thread_stack_size(512 * 1024)
        // Bundle checks, and hook requests (each gathers on its own
        // blocking thread: agent::Agent::serve says why).
        .max_blocking_threads(4 + agent::SLOTS as usize)
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    let result = rt.block_on(async {
        let listener =
            tokio::net::UnixListener::from_std(std_listener).map_err(DaemonError::Runtime)?;
        let sweeper = tokio::spawn(sweep_forever(store.clone(), sweep_every));
        // Refreshing enters containers' mount namespaces: real root only.
        let rotation = crate::sys::userns::is_real_root()
            .then(|| rotation::Rotation::start(agent.clone(), PathBuf::from("/proc/self/exe")));
        let watcher = tokio::spawn(watch_config(agent.clone(), rotation));
        tracing::info!(socket = %shown, "privy daemon listening");
        let stop = shutdown_signal();
        tokio::pin!(stop);
        let mut quiet_until = Instant::now();
        let mut refusals = Refusals::default();
        loop {
            let accepted = tokio::select! {
                _ = &mut stop => break,
                a = listener.accept() => a,
            };
            let stream = match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of descriptors or memory: the caps keep this from
                    // happening through connections alone; wait, do not spin.
                    if Instant::now() >= quiet_until {
                        tracing::warn!("accepting a connection: {e}");
                        quiet_until = Instant::now() + Duration::from_secs(10);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let peer_pid = stream.peer_cred().ok().and_then(|c| c.pid());
            let Some(who) = listen::caller(&stream) else {
                refuse(stream, "cannot tell who is asking (no SO_PEERCRED)");
                continue;
            };
            match admission.admit(who.uid) {
                Ok(slot) => {
                    tokio::spawn(connection(
                        stream,
                        who,
                        peer_pid,
                        slot,
                        ctx.clone(),
                        request_timeout,
                    ));
                }
                Err(why) => {
                    let why = why.to_string();
                    refusals.note(&why);
                    refuse(stream, &why);
                }
            }
        }
        // Let answers in progress finish, briefly.
        let until = Instant::now() + Duration::from_secs(2);
        while admission.open() > 0 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sweeper.abort();
        watcher.abort();
        Ok(())
    });
    rt.shutdown_timeout(Duration::from_millis(100));
    let n = lock(&store).len();
    drop(ctx);
    drop(store);
    if let Some(p) = owned_path {
        let _ = std::fs::remove_file(p);
    }
    tracing::info!(
        dropped = n,
        "privy daemon stopped; every upload it held is gone"
    );
    result
}

/// Every `every`: end expired tickets and run tickets whose containers are
/// gone, then give freed memory back. Bundles are checked outside the
/// store's lock, each with its claimant's own rights ([`rights`]).
async fn sweep_forever(store: Shared, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let checked_at = Instant::now();
        let bundles = lock(&store).claimed_bundles();
        let gone = if bundles.is_empty() {
            Default::default()
        } else {
            tokio::task::spawn_blocking(move || gone_bundles(bundles))
                .await
                .unwrap_or_default()
        };
        let n = lock(&store).sweep(Instant::now(), |c| {
            // A claim made while the check ran is newer than its answer.
            c.at > checked_at || !gone.contains(&(c.bundle.to_owned(), c.caller.clone()))
        });
        if n > 0 {
            tracing::info!(ended = n, "tickets expired or their containers removed");
        }
        trim_memory();
    }
}

/// Which of `bundles` no longer exist, each looked up as its claimant.
fn gone_bundles(bundles: Vec<(PathBuf, Caller)>) -> std::collections::HashSet<(PathBuf, Caller)> {
    let mut by_caller: std::collections::HashMap<Caller, Vec<PathBuf>> = Default::default();
    for (b, c) in bundles {
        by_caller.entry(c).or_default().push(b);
    }
    let mut gone = std::collections::HashSet::new();
    for (c, paths) in by_caller {
        let exist = rights::bundles_exist(&c, &paths);
        for (p, e) in paths.into_iter().zip(exist) {
            if !e {
                gone.insert((p, c.clone()));
            }
        }
    }
    gone
}

/// Reload the agent on SIGHUP, and when the config or a plugin file
/// changed (checked every second; requests check again before they run).
/// After a SIGHUP's reload, every served container is refreshed now.
async fn watch_config(agent: Arc<agent::Agent>, rotation: Option<rotation::Rotation>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).expect("signal handler");
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let force = tokio::select! {
            _ = hup.recv() => true,
            _ = tick.tick() => false,
        };
        if force {
            tracing::info!("SIGHUP: reloading the config and every plugin");
        }
        let a = agent.clone();
        let _ = tokio::task::spawn_blocking(move || a.refresh(force)).await;
        if let (true, Some(r)) = (force, &rotation) {
            r.refresh_all();
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("signal handler");
    let mut int = signal(SignalKind::interrupt()).expect("signal handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
