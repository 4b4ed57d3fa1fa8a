//! `privy daemon`: holds per-run uploads in memory, keyed by ticket (L1, L8).
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
//!
//! Errors are `{"error": "one line"}` with 400 (malformed), 403 (another
//! uid's ticket), 404 (unknown), 410 (expired, removed or deleted) or 413
//! (over a limit). Nothing here logs a request path, since it carries the
//! ticket, or a body.

pub mod client;
pub mod store;

use crate::config::Config;
use crate::secret::{RelPath, Secret};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
pub use store::{Scope, TicketInfo};
use store::{Store, StoreLimits, TicketError, Upload};
use zeroize::Zeroize;

pub use store::TICKET_PREFIX;

/// Base64 as the API carries file contents.
pub const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// One file of an upload, as sent (`data` is standard base64).
#[derive(Deserialize)]
pub struct UploadFile<'a> {
    pub path: &'a str,
    #[serde(default = "default_mode")]
    pub mode: u32,
    #[serde(borrow)]
    pub data: &'a str,
}

fn default_mode() -> u32 {
    0o400
}

/// `POST /v1/tickets`.
#[derive(Deserialize)]
pub struct UploadBody<'a> {
    #[serde(borrow)]
    pub files: Vec<UploadFile<'a>>,
    /// `run` (default) or `build`.
    #[serde(default)]
    pub scope: Option<Scope>,
    /// Seconds to wait for a claim [default: daemon.ticket_ttl_secs].
    #[serde(default)]
    pub ttl_secs: Option<u64>,
}

/// The answer to an upload.
#[derive(Serialize, Deserialize, Debug)]
pub struct Created {
    pub ticket: String,
    #[serde(flatten)]
    pub info: TicketInfo,
}

/// `POST /v1/tickets/{ticket}/claim`.
#[derive(Serialize, Deserialize, Debug)]
pub struct ClaimBody {
    pub container_id: String,
    /// The container's bundle; the ticket lives while it exists.
    pub bundle: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("a privy daemon already listens on {0}")]
    AlreadyRunning(PathBuf),
    #[error("socket {path}: {error}")]
    Socket {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("async runtime: {0}")]
    Runtime(std::io::Error),
}

/// Where the daemon listens.
pub enum Listen {
    /// Bind this path (0666: every uid may upload; tickets are per uid).
    Path(PathBuf),
    /// A socket systemd passed (`LISTEN_FDS`).
    Inherited(std::os::unix::net::UnixListener),
}

impl Listen {
    /// The socket systemd passed, if this process was socket-activated.
    pub fn from_systemd() -> Option<Listen> {
        let pid: u32 = std::env::var("LISTEN_PID").ok()?.parse().ok()?;
        let fds: u32 = std::env::var("LISTEN_FDS").ok()?.parse().ok()?;
        if pid != std::process::id() || fds < 1 {
            return None;
        }
        use std::os::fd::FromRawFd;
        // SAFETY: systemd passes fd 3 as a listening socket for this pid; we
        // take ownership of it once, here.
        let l = unsafe { std::os::unix::net::UnixListener::from_raw_fd(3) };
        Some(Listen::Inherited(l))
    }
}

type Shared = Arc<Mutex<Store>>;

/// The peer's credentials, from `SO_PEERCRED`.
#[derive(Clone, Copy, Debug)]
struct Peer {
    uid: Option<u32>,
}

impl
    axum::extract::connect_info::Connected<
        axum::serve::IncomingStream<'_, tokio::net::UnixListener>,
    > for Peer
{
    fn connect_info(s: axum::serve::IncomingStream<'_, tokio::net::UnixListener>) -> Self {
        Peer {
            uid: s.io().peer_cred().ok().map(|c| c.uid()),
        }
    }
}

struct ApiError(StatusCode, String);

impl From<TicketError> for ApiError {
    fn from(e: TicketError) -> Self {
        ApiError(
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
            e.to_string(),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

fn peer_uid(p: Peer) -> Result<u32, ApiError> {
    p.uid.ok_or_else(|| {
        ApiError(
            StatusCode::FORBIDDEN,
            "cannot tell who is asking (no SO_PEERCRED)".into(),
        )
    })
}

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Store> {
    // A panic while holding the lock leaves the store consistent enough to
    // serve (every method finishes its mutation or makes none).
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// A response body that zeroizes its bytes once hyper has sent them.
struct Wiped(Vec<u8>);

impl AsRef<[u8]> for Wiped {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Wiped {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

fn wiped_json(status: StatusCode, v: Vec<u8>) -> Response {
    let mut r = Response::new(axum::body::Body::from(Bytes::from_owner(Wiped(v))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    r
}

/// Zeroize a request body once parsed, where we hold its only reference.
fn wipe(body: Bytes) {
    if let Ok(mut m) = body.try_into_mut() {
        m.as_mut().zeroize();
    }
}

async fn health(State(s): State<Shared>) -> Json<serde_json::Value> {
    let n = lock(&s).len();
    Json(serde_json::json!({"ok": true, "tickets": n, "version": env!("CARGO_PKG_VERSION")}))
}

fn decode_upload(body: &[u8]) -> Result<(Vec<Upload>, Scope, Option<u64>), ApiError> {
    let parsed: UploadBody<'_> =
        serde_json::from_slice(body).map_err(|e| bad(format!("malformed upload: {e}")))?;
    let mut files = Vec::with_capacity(parsed.files.len());
    for f in &parsed.files {
        let path = RelPath::new(f.path).map_err(|e| bad(format!("destination {e}")))?;
        if f.mode > 0o7777 {
            return Err(bad(format!(
                "{path}: mode {:o} is not a permission mode",
                f.mode
            )));
        }
        let data = B64
            .decode(f.data)
            .map_err(|_| bad(format!("{path}: data is not standard base64")))?;
        files.push(Upload {
            path,
            data: Secret::new(data),
            mode: f.mode,
        });
    }
    Ok((files, parsed.scope.unwrap_or(Scope::Run), parsed.ttl_secs))
}

async fn create(
    State(s): State<Shared>,
    ConnectInfo(p): ConnectInfo<Peer>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let uid = peer_uid(p)?;
    let decoded = decode_upload(&body);
    wipe(body);
    let (files, scope, ttl) = decoded?;
    let n = files.len();
    let ttl = ttl.map(Duration::from_secs);
    let (ticket, info) = lock(&s).create(uid, files, scope, ttl, Instant::now())?;
    tracing::info!(uid, files = n, bytes = info.bytes, scope = ?scope, "upload held");
    let out = serde_json::to_vec(&Created { ticket, info }).expect("serializes");
    Ok(wiped_json(StatusCode::CREATED, out))
}

async fn show(
    State(s): State<Shared>,
    ConnectInfo(p): ConnectInfo<Peer>,
    UrlPath(ticket): UrlPath<String>,
) -> Result<Json<TicketInfo>, ApiError> {
    let uid = peer_uid(p)?;
    Ok(Json(lock(&s).info(uid, &ticket, Instant::now())?))
}

async fn remove(
    State(s): State<Shared>,
    ConnectInfo(p): ConnectInfo<Peer>,
    UrlPath(ticket): UrlPath<String>,
) -> Result<StatusCode, ApiError> {
    let uid = peer_uid(p)?;
    lock(&s).delete(uid, &ticket, Instant::now())?;
    tracing::info!(uid, "ticket deleted");
    Ok(StatusCode::NO_CONTENT)
}

async fn claim(
    State(s): State<Shared>,
    ConnectInfo(p): ConnectInfo<Peer>,
    UrlPath(ticket): UrlPath<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let uid = peer_uid(p)?;
    let body: ClaimBody =
        serde_json::from_slice(&body).map_err(|e| bad(format!("malformed claim: {e}")))?;
    if !crate::hook::valid_id(&body.container_id) {
        return Err(bad("container_id is not a valid OCI id"));
    }
    if !body.bundle.is_absolute() {
        return Err(bad("bundle must be an absolute path"));
    }
    let mut out = Vec::with_capacity(256);
    {
        let mut st = lock(&s);
        let files = st.claim(
            uid,
            &ticket,
            &body.container_id,
            body.bundle.clone(),
            Instant::now(),
        )?;
        out.extend_from_slice(b"{\"files\":[");
        for (i, (path, data, mode)) in files.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"path\":");
            serde_json::to_writer(&mut out, path).expect("string");
            out.extend_from_slice(format!(",\"mode\":{mode},\"data\":\"").as_bytes());
            let at = out.len();
            out.resize(
                at + base64::encoded_len(data.len(), true).expect("small"),
                0,
            );
            B64.encode_slice(data.expose(), &mut out[at..])
                .expect("sized");
            out.extend_from_slice(b"\"}");
        }
        out.extend_from_slice(b"]}");
        tracing::info!(uid, container = %body.container_id, files = files.len(), "ticket claimed");
    }
    Ok(wiped_json(StatusCode::OK, out))
}

/// The API routes over a store.
fn router(store: Shared, body_limit: usize) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/tickets", post(create))
        .route("/v1/tickets/{ticket}", get(show).delete(remove))
        .route("/v1/tickets/{ticket}/claim", post(claim))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(store)
}

/// Whether a claimant's container still exists: its bundle's config.json is there.
fn bundle_exists(bundle: &Path) -> bool {
    bundle.join("config.json").exists()
}

fn bind(path: &Path) -> Result<std::os::unix::net::UnixListener, DaemonError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |error| DaemonError::Socket {
        path: path.to_owned(),
        error,
    };
    if let Some(dir) = path.parent() {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(err)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).map_err(err)?;
        }
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => return Err(DaemonError::AlreadyRunning(path.to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        // A socket file nobody listens on: left by a daemon that died.
        Err(_) => std::fs::remove_file(path).map_err(err)?,
    }
    let l = std::os::unix::net::UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).map_err(err)?;
    Ok(l)
}

/// Keep this process's memory out of swap (L1); best effort.
fn lock_memory() {
    // SAFETY: mlockall with constant flags.
    let r = unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) };
    if r != 0 {
        tracing::warn!(
            "mlockall failed ({}); uploads may be swapped out",
            std::io::Error::last_os_error()
        );
    }
}

/// Run the daemon until SIGTERM or SIGINT.
pub fn run(cfg: &Config, listen: Listen) -> Result<(), DaemonError> {
    crate::hook::harden_process();
    lock_memory();
    let (std_listener, owned_path) = match listen {
        Listen::Path(p) => (bind(&p)?, Some(p)),
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
    let limits = StoreLimits {
        max_file_bytes: cfg.limits.max_file_bytes,
        max_total_bytes: cfg.limits.max_total_bytes,
        max_files: cfg.limits.max_files,
        max_bytes_per_uid: d.max_bytes_per_uid,
        default_ttl: Duration::from_secs(d.ticket_ttl_secs),
        max_age: Duration::from_secs(d.ticket_max_age_secs),
    };
    // base64 grows 4/3; JSON framing per file is small next to the limits.
    let body_limit = (cfg.limits.max_total_bytes as usize) / 3 * 4
        + 512 * cfg.limits.max_files as usize
        + 64 * 1024;
    let store: Shared = Arc::new(Mutex::new(Store::new(limits)));
    let sweep_every = Duration::from_secs(d.sweep_secs);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    let result = rt.block_on(async {
        let listener =
            tokio::net::UnixListener::from_std(std_listener).map_err(DaemonError::Runtime)?;
        let sweeper = {
            let store = store.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(sweep_every);
                loop {
                    tick.tick().await;
                    let n = lock(&store).sweep(Instant::now(), bundle_exists);
                    if n > 0 {
                        tracing::info!(ended = n, "tickets expired or their containers removed");
                    }
                }
            })
        };
        tracing::info!(socket = %shown, "privy daemon listening");
        let app = router(store.clone(), body_limit);
        let served = axum::serve(listener, app.into_make_service_with_connect_info::<Peer>())
            .with_graceful_shutdown(shutdown_signal())
            .await;
        sweeper.abort();
        served.map_err(DaemonError::Runtime)
    });
    let n = lock(&store).len();
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

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("signal handler");
    let mut int = signal(SignalKind::interrupt()).expect("signal handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
