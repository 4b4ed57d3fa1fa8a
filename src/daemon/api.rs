//! The API's routes and handlers: what each request does to the store,
//! and how its answer and its errors are shaped.
//!
//! Every error is `{"error":"one line"}`. No error repeats a value that was
//! sent (L7, B13): file contents never, and malformed JSON is described by
//! what was wrong and where (line and column), not by serde's wording,
//! which quotes the offending value. File contents are read straight from
//! the raw JSON text into zeroizing buffers, escapes included, so neither
//! serde's scratch space nor an error message ever holds them.

use super::http::{self, Conn, Framing, HttpError};
use super::store::{Caller, Scope, Store, TicketError, TicketInfo, Upload};
use super::{ClaimBody, Created, B64};
use crate::secret::{RelPath, Secret};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use zeroize::Zeroizing;

/// The store, shared by every connection and the sweeper.
pub type Shared = Arc<Mutex<Store>>;

/// Lock the store.
pub fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Store> {
    // A panic while holding the lock leaves the store consistent enough to
    // serve (every method finishes its mutation or makes none).
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// Largest body of any request but an upload (a claim: a container id of
/// at most 1024 bytes and a bundle path, JSON-escaped).
pub const SMALL_BODY: u64 = 64 * 1024;
/// Largest hook request: an OCI state (its annotations included) and the
/// hook's own annotations. Only root is served.
pub const HOOK_BODY: u64 = 1 << 20;
/// Longest bundle path a claim may name (PATH_MAX).
const MAX_BUNDLE_BYTES: usize = 4096;

/// What the handlers need.
pub struct Ctx {
    pub store: Shared,
    /// Largest upload body, in bytes.
    pub upload_limit: u64,
    /// How long a client has to send its request head.
    pub header_timeout: Duration,
    /// The node agent, which serves thin hooks (`POST /v1/hook`).
    pub agent: Arc<super::agent::Agent>,
}

/// One file of an upload, as sent (`data` is standard base64).
#[derive(Deserialize)]
pub struct UploadFile<'a> {
    /// Borrowed from the body unless it has escapes (`my\"key`).
    #[serde(borrow)]
    pub path: Cow<'a, str>,
    #[serde(default = "default_mode")]
    pub mode: u32,
    /// The raw JSON text of the value: decoded by `file_data` into a
    /// zeroizing buffer, never by serde.
    #[serde(borrow)]
    pub data: &'a RawValue,
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

/// A whole answer.
pub struct Reply {
    pub status: u16,
    /// JSON; zeroized once sent (a claim's answer carries files).
    pub body: Zeroizing<Vec<u8>>,
}

impl Reply {
    fn json(status: u16, v: &impl serde::Serialize) -> Reply {
        Reply {
            status,
            body: Zeroizing::new(serde_json::to_vec(v).expect("serializes")),
        }
    }

    /// `{"error": msg}` with `status`.
    pub fn error(status: u16, msg: &str) -> Reply {
        Reply::json(status, &serde_json::json!({ "error": msg }))
    }
}

/// A refusal: status and one line.
#[derive(Debug)]
pub struct ApiError(pub u16, pub String);

impl From<TicketError> for ApiError {
    fn from(e: TicketError) -> Self {
        ApiError(e.status(), e.to_string())
    }
}

impl From<HttpError> for ApiError {
    fn from(e: HttpError) -> Self {
        ApiError(e.status(), e.to_string())
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(400, msg.into())
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    Health,
    Create,
    Show(String),
    Remove(String),
    Claim(String),
    Hook,
}

/// Decode `%XX` escapes in one path segment; `None` if malformed or not UTF-8.
fn percent_decoded(seg: &str) -> Option<String> {
    let b = seg.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Map a method and target to a route. Unknown paths are 404, known paths
/// with another method 405.
pub fn route(method: &str, target: &str) -> Result<Route, ApiError> {
    let path = target.split('?').next().unwrap_or_default();
    let not_allowed = || ApiError(405, format!("method {} is not allowed here", shown(method)));
    let ticket =
        |seg: &str| percent_decoded(seg).ok_or_else(|| ApiError::from(TicketError::Malformed));
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["", "v1", "health"] => match method {
            "GET" => Ok(Route::Health),
            _ => Err(not_allowed()),
        },
        ["", "v1", "tickets"] => match method {
            "POST" => Ok(Route::Create),
            _ => Err(not_allowed()),
        },
        ["", "v1", "tickets", t] if !t.is_empty() => match method {
            "GET" => Ok(Route::Show(ticket(t)?)),
            "DELETE" => Ok(Route::Remove(ticket(t)?)),
            _ => Err(not_allowed()),
        },
        ["", "v1", "tickets", t, "claim"] if !t.is_empty() => match method {
            "POST" => Ok(Route::Claim(ticket(t)?)),
            _ => Err(not_allowed()),
        },
        ["", "v1", "hook"] => match method {
            "POST" => Ok(Route::Hook),
            _ => Err(not_allowed()),
        },
        _ => Err(ApiError(404, "no such endpoint".into())),
    }
}

/// A method name, safe to print (it is a token, but keep it short).
fn shown(method: &str) -> String {
    crate::shown::shown(method)
}

/// serde's messages quote the value they choke on ("invalid type: string
/// \"...\""), which may be a secret: keep only those that name one of our
/// own fields, and otherwise say what kind of thing was wrong and where.
pub fn json_error(what: &str, e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    const FIELDS: &[&str] = &["files", "path", "data", "container_id", "bundle"];
    let at = format!("at line {} column {}", e.line(), e.column());
    let kind = match e.classify() {
        Category::Io => "the body could not be read".to_owned(),
        Category::Syntax => "the body is not valid JSON".to_owned(),
        Category::Eof => "the body ends before its JSON does".to_owned(),
        Category::Data => {
            let msg = e.to_string();
            FIELDS
                .iter()
                .find_map(|f| {
                    ["missing field", "duplicate field"]
                        .iter()
                        .find(|p| msg.starts_with(&format!("{p} `{f}`")))
                        .map(|p| format!("{p} `{f}`"))
                })
                .unwrap_or_else(|| "a field has the wrong type or value".to_owned())
        }
    };
    format!("malformed {what}: {kind} ({at})")
}

/// The bytes of a JSON string's text (`"..."`, escapes and all), for file
/// data: base64 is ASCII, so an escape must stand for an ASCII character,
/// and anything else is refused. Decoded into a zeroizing buffer.
pub fn json_ascii_string(raw: &str) -> Option<Zeroizing<Vec<u8>>> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?.as_bytes();
    let mut out = Zeroizing::new(Vec::with_capacity(inner.len()));
    let mut i = 0;
    while i < inner.len() {
        let b = inner[i];
        i += 1;
        if b != b'\\' {
            if !b.is_ascii() || b < 0x20 || b == b'"' {
                return None;
            }
            out.push(b);
            continue;
        }
        let e = *inner.get(i)?;
        i += 1;
        out.push(match e {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let hex = std::str::from_utf8(inner.get(i..i + 4)?).ok()?;
                i += 4;
                let c = u16::from_str_radix(hex, 16).ok()?;
                if c >= 0x80 {
                    return None;
                }
                c as u8
            }
            _ => return None,
        });
    }
    Some(out)
}

/// A file's data: standard base64 in a JSON string. Without escapes (what
/// privy's client sends) it is decoded straight from the body; with them,
/// through one zeroizing buffer. Line breaks that some encoders put into
/// base64 (and JSON escapes as `\n`) are not part of it.
fn file_data(path: &RelPath, raw: &RawValue) -> Result<Secret, ApiError> {
    let not_b64 = || bad(format!("{path}: data is not a string of standard base64"));
    let text = raw.get();
    let decoded = if text.contains('\\') {
        let mut unescaped = json_ascii_string(text).ok_or_else(not_b64)?;
        unescaped.retain(|b| !matches!(b, b'\n' | b'\r'));
        B64.decode(&unescaped[..])
    } else {
        let inner = text
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .ok_or_else(not_b64)?;
        B64.decode(inner)
    };
    decoded.map(Secret::new).map_err(|_| not_b64())
}

/// An upload body's files, scope and TTL.
pub fn decode_upload(body: &[u8]) -> Result<(Vec<Upload>, Scope, Option<u64>), ApiError> {
    let parsed: UploadBody<'_> =
        serde_json::from_slice(body).map_err(|e| bad(json_error("upload", &e)))?;
    let mut files = Vec::with_capacity(parsed.files.len());
    for f in &parsed.files {
        let path = RelPath::new(&f.path).map_err(|e| bad(format!("destination {e}")))?;
        if f.mode > 0o7777 {
            return Err(bad(format!(
                "{path}: mode {:o} is not a permission mode",
                f.mode
            )));
        }
        let data = file_data(&path, f.data)?;
        files.push(Upload {
            path,
            data,
            mode: f.mode,
        });
    }
    Ok((files, parsed.scope.unwrap_or(Scope::Run), parsed.ttl_secs))
}

/// A claim body, checked.
pub fn decode_claim(body: &[u8]) -> Result<ClaimBody, ApiError> {
    let c: ClaimBody = serde_json::from_slice(body).map_err(|e| bad(json_error("claim", &e)))?;
    if !crate::oci::valid_id(&c.container_id) {
        return Err(bad("container_id is not a valid OCI id"));
    }
    if !c.bundle.is_absolute() {
        return Err(bad("bundle must be an absolute path"));
    }
    if c.bundle.as_os_str().len() > MAX_BUNDLE_BYTES {
        return Err(bad(format!(
            "bundle is longer than {MAX_BUNDLE_BYTES} bytes"
        )));
    }
    Ok(c)
}

/// Request bytes a uid is sending, counted against its
/// `max_bytes_per_uid` until dropped.
struct InFlight<'a> {
    store: &'a Shared,
    uid: u32,
    counted: u64,
}

impl InFlight<'_> {
    /// Count `raw` more body bytes, at what base64 decodes them to.
    fn charge(&mut self, raw: u64) -> Result<(), ApiError> {
        let worth = raw.div_ceil(4) * 3;
        lock(self.store).reserve(self.uid, worth)?;
        self.counted += worth;
        Ok(())
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.counted > 0 {
            lock(self.store).release(self.uid, self.counted);
        }
    }
}

/// Read one request from `conn` and answer it. The head must be complete
/// by `head_deadline`; the caller bounds the whole exchange.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    caller: &Caller,
    peer_pid: Option<i32>,
    ctx: &Ctx,
    head_deadline: tokio::time::Instant,
) -> Reply {
    match handle(conn, caller, peer_pid, ctx, head_deadline).await {
        Ok(r) => r,
        Err(ApiError(status, msg)) => Reply::error(status, &msg),
    }
}

async fn handle<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    caller: &Caller,
    peer_pid: Option<i32>,
    ctx: &Ctx,
    head_deadline: tokio::time::Instant,
) -> Result<Reply, ApiError> {
    let head = tokio::time::timeout_at(head_deadline, conn.read_head())
        .await
        .map_err(|_| {
            ApiError(
                408,
                format!(
                    "no complete request head within {} s (daemon.header_timeout_secs)",
                    ctx.header_timeout.as_secs()
                ),
            )
        })??;
    let route = route(&head.method, &head.target)?;
    let limit = match route {
        Route::Create => ctx.upload_limit,
        Route::Hook => HOOK_BODY,
        _ => SMALL_BODY,
    };
    if route == Route::Create && head.framing == Framing::None {
        return Err(bad(
            "malformed upload: the request has no body (send JSON with a Content-Length)",
        ));
    }
    let mut inflight = InFlight {
        store: &ctx.store,
        uid: caller.uid,
        counted: 0,
    };
    // Only uploads count against max_bytes_per_uid: they become held
    // files. Other bodies are small (SMALL_BODY) and few (the connection
    // caps), and a claim must never fail because its uid holds uploads:
    // root, which claims for every container, may hold some of its own.
    let counts = route == Route::Create;
    let body = conn
        .read_body(&head, limit, |n| {
            if counts {
                inflight.charge(n)
            } else {
                Ok(())
            }
        })
        .await?;
    match route {
        Route::Health => {
            let n = lock(&ctx.store).len();
            Ok(Reply::json(
                200,
                &serde_json::json!({"ok": true, "tickets": n, "version": env!("CARGO_PKG_VERSION")}),
            ))
        }
        Route::Create => {
            let decoded = decode_upload(&body);
            // The body is zeroized and no longer counted before the files
            // it held are counted as the ticket's.
            drop(body);
            drop(inflight);
            let (files, scope, ttl) = decoded?;
            let n = files.len();
            let ttl = ttl.map(Duration::from_secs);
            let (ticket, info) =
                lock(&ctx.store).create(caller.uid, files, scope, ttl, Instant::now())?;
            tracing::info!(uid = caller.uid, files = n, bytes = info.bytes, scope = ?scope, "upload held");
            Ok(Reply::json(201, &Created { ticket, info }))
        }
        Route::Show(t) => {
            let info: TicketInfo = lock(&ctx.store).info(caller.uid, &t, Instant::now())?;
            Ok(Reply::json(200, &info))
        }
        Route::Remove(t) => {
            lock(&ctx.store).delete(caller.uid, &t, Instant::now())?;
            tracing::info!(uid = caller.uid, "ticket deleted");
            Ok(Reply {
                status: 204,
                body: Zeroizing::new(Vec::new()),
            })
        }
        Route::Claim(t) => {
            let c = decode_claim(&body)?;
            drop(body);
            drop(inflight);
            let claimant = claimant(caller, c.for_uid)?;
            let anchor = lifetime_anchor(&claimant, &c).await;
            claim(ctx, &claimant, &t, &c.container_id, anchor)
        }
        Route::Hook => {
            drop(inflight);
            ctx.agent.serve(caller, peer_pid, &body).await
        }
    }
}

/// Whose claim this is: the caller's own, or, when root (the node agent)
/// claims for a user's container, that user's, with that user's rights
/// and groups; anyone else naming another uid is refused.
fn claimant(caller: &Caller, for_uid: Option<u32>) -> Result<Caller, ApiError> {
    match for_uid {
        None => Ok(caller.clone()),
        Some(u) if u == caller.uid => Ok(caller.clone()),
        Some(u) if caller.uid == 0 => Ok(Caller::for_uid(u)),
        Some(_) => Err(ApiError(
            403,
            "only root may claim for another uid's container".into(),
        )),
    }
}

/// How long to wait for a claimant's `config.json`: a bundle on a file
/// system that never answers must not hold the claim (or a worker) forever.
const ANCHOR_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// The path the claim's ticket lives by ([`crate::engines::lifetime`]),
/// read off the async workers with the claimant's rights; the bundle's
/// `config.json` (the old rule) if that takes too long.
async fn lifetime_anchor(caller: &Caller, c: &ClaimBody) -> std::path::PathBuf {
    let fallback = c.bundle.join("config.json");
    let (who, bundle, id) = (caller.clone(), c.bundle.clone(), c.container_id.clone());
    let read =
        tokio::task::spawn_blocking(move || super::rights::lifetime_anchor(&who, &bundle, &id));
    match tokio::time::timeout(ANCHOR_READ_TIMEOUT, read).await {
        Ok(Ok(a)) => a,
        _ => fallback,
    }
}

fn claim(
    ctx: &Ctx,
    caller: &Caller,
    ticket: &str,
    container_id: &str,
    anchor: std::path::PathBuf,
) -> Result<Reply, ApiError> {
    let mut out = Zeroizing::new(Vec::with_capacity(256));
    let mut st = lock(&ctx.store);
    let files = st.claim(caller, ticket, container_id, anchor, Instant::now())?;
    let size: usize = files
        .iter()
        .map(|(p, d, _)| p.len() * 6 + base64::encoded_len(d.len(), true).expect("small") + 48)
        .sum();
    // Sized once, so the answer is never reallocated (no stray copies).
    out.reserve_exact(size + 16);
    out.extend_from_slice(b"{\"files\":[");
    for (i, (path, data, mode)) in files.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"path\":");
        serde_json::to_writer(&mut *out, path).expect("string");
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
    tracing::info!(uid = caller.uid, container = %container_id, files = files.len(), "ticket claimed");
    Ok(Reply {
        status: 200,
        body: out,
    })
}

/// The whole answer to send for `reply`.
pub fn encode(reply: &Reply) -> Zeroizing<Vec<u8>> {
    http::response(reply.status, &reply.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_root_claims_for_another_uid_and_then_as_that_uid() {
        let user = Caller {
            uid: 1001,
            gid: 1001,
            groups: vec![1001],
        };
        assert_eq!(claimant(&user, None).unwrap(), user);
        assert_eq!(claimant(&user, Some(1001)).unwrap(), user);
        let e = claimant(&user, Some(0)).unwrap_err();
        assert_eq!(e.0, 403);
        assert_eq!(claimant(&Caller::root(), None).unwrap(), Caller::root());
        let for_user = claimant(&Caller::root(), Some(4242)).unwrap();
        assert_eq!(for_user.uid, 4242);
        assert_ne!(for_user.gid, 0, "never root's group for another uid");
        assert!(!for_user.groups.contains(&0));
    }

    #[test]
    fn routes_and_their_methods() {
        assert_eq!(route("GET", "/v1/health?x=1").unwrap(), Route::Health);
        assert_eq!(route("POST", "/v1/tickets").unwrap(), Route::Create);
        assert_eq!(
            route("DELETE", "/v1/tickets/pvt_%61b").unwrap(),
            Route::Remove("pvt_ab".into())
        );
        assert_eq!(
            route("POST", "/v1/tickets/t/claim").unwrap(),
            Route::Claim("t".into())
        );
        assert_eq!(route("PUT", "/v1/health").unwrap_err().0, 405);
        assert_eq!(route("GET", "/v1/tickets/").unwrap_err().0, 404);
        assert_eq!(route("GET", "/v1/nope").unwrap_err().0, 404);
        assert_eq!(route("GET", "/v1/tickets/%zz").unwrap_err().0, 400);
        assert_eq!(route("GET", "/v1/tickets/%ff").unwrap_err().0, 400);
    }

    #[test]
    fn b13_escaped_paths_and_data_are_accepted() {
        // `my"key` as a name, and data with every escape JSON allows for ASCII.
        let body = br#"{"files":[{"path":"my\"key","data":"c2Vj\u0063mV0\/w==\n"}]}"#;
        let (files, scope, ttl) = decode_upload(body).unwrap();
        assert_eq!(files[0].path.as_str(), "my\"key");
        assert_eq!(files[0].data.expose(), b"secret\xff");
        assert_eq!((scope, ttl), (Scope::Run, None));
    }

    #[test]
    fn b13_no_error_repeats_a_submitted_value() {
        let secret = "U0VDUkVULVZBTFVFLTQy"; // base64 of SECRET-VALUE-42
        let plain = "SECRET-VALUE-42";
        let bodies = [
            format!(r#"{{"files":[{{"path":"k","data":"{secret}!"}}]}}"#),
            format!(
                r#"{{"files":[{{"path":"k","data":"\u0055{}"}}],"scope":"{plain}"}}"#,
                &secret[1..]
            ),
            format!(r#"{{"files":[{{"path":"k","data":"{secret}","mode":"{plain}"}}]}}"#),
            format!(r#"{{"files":[{{"path":"k","data":["{secret}"]}}]}}"#),
            format!(r#"{{"files":[{{"path":"k","data":"{secret}"}}],"ttl_secs":"{plain}"}}"#),
            format!(r#"{{"files":"{plain}"}}"#),
            format!(r#"{{"files":[{{"path":"k","data":"{secret}"#),
            format!(r#"{{"{plain}":1"#),
        ];
        for b in &bodies {
            let e = decode_upload(b.as_bytes()).expect_err(b).1;
            assert!(
                !e.contains(secret) && !e.contains(plain) && !e.contains("U0VD"),
                "{e}"
            );
            assert!(
                e.starts_with("malformed upload") || e.starts_with("k: data"),
                "{e}"
            );
            assert!(!e.contains('\n'));
        }
        let e = decode_claim(format!(r#"{{"container_id":1,"bundle":"/{plain}"}}"#).as_bytes())
            .unwrap_err()
            .1;
        assert!(!e.contains(plain), "{e}");
        let e = decode_upload(b"{}").unwrap_err().1;
        assert!(e.contains("missing field `files`"), "{e}");
    }

    #[test]
    fn deep_nesting_is_refused_within_a_daemon_workers_stack() {
        // The daemon's workers have 512 KiB stacks (see `daemon::serve`).
        let worker = std::thread::Builder::new().stack_size(512 * 1024);
        let errors = worker
            .spawn(|| {
                ["[", "{\"a\":", "{\"files\":[{\"data\":"]
                    .iter()
                    .map(|open| {
                        let body = format!("{{\"files\":{}", open.repeat(100_000));
                        decode_upload(body.as_bytes()).unwrap_err().1
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap()
            .join()
            .unwrap();
        for e in errors {
            assert!(e.starts_with("malformed upload"), "{e}");
        }
    }

    #[test]
    fn json_strings_decode_only_to_ascii() {
        let d = |s: &str| json_ascii_string(s).map(|v| v.to_vec());
        assert_eq!(d(r#""a\"b\\c\/d\u0041""#).unwrap(), b"a\"b\\c/dA");
        for bad in [
            r#""\u00e9""#,
            r#""\x""#,
            r#""\u00""#,
            "\"é\"",
            "1",
            r#""abc"#,
        ] {
            assert!(d(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn fuzz_json_strings_round_trip_and_any_body_gives_one_line() {
        use proptest::prelude::*;
        let cfg = || proptest::test_runner::Config {
            cases: 2000,
            failure_persistence: None,
            ..Default::default()
        };
        // Whatever serde_json writes for an ASCII string, we read back.
        proptest::test_runner::TestRunner::new(cfg())
            .run(&proptest::collection::vec(0u8..128, 0..200), |ascii| {
                let s = String::from_utf8(ascii).unwrap();
                let json = serde_json::to_string(&s).unwrap();
                let back = json_ascii_string(&json).map(|v| v.to_vec());
                prop_assert_eq!(back, Some(s.into_bytes()));
                Ok(())
            })
            .unwrap();
        // Any body: files, or a 400 with one line.
        let near = proptest::collection::vec(
            proptest::sample::select(vec![
                "{",
                "}",
                "[",
                "]",
                ",",
                ":",
                "\"files\"",
                "\"path\"",
                "\"data\"",
                "\"mode\"",
                "\"k\"",
                "\"QUJD\"",
                "\"\\u0041\"",
                "\"\\ud800\"",
                "\"\\\"",
                "1",
                "-1",
                "null",
                "\"scope\"",
                "\"run\"",
                "1e400",
            ]),
            0..40,
        )
        .prop_map(|t| t.concat().into_bytes());
        let body = prop_oneof![near, proptest::collection::vec(any::<u8>(), 0..300)];
        proptest::test_runner::TestRunner::new(cfg())
            .run(&body, |b| {
                if let Err(ApiError(status, msg)) = decode_upload(&b) {
                    prop_assert_eq!(status, 400);
                    // File names may be named; values are checked on a live
                    // daemon (tests/integration/harden_daemon/fuzz.rs).
                    prop_assert!(!msg.contains('\n'), "{}", msg);
                }
                Ok(())
            })
            .unwrap();
    }
}
