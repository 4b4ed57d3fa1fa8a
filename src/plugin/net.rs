//! The `privy:source/http` host import: the only way a plugin reaches the
//! network, and only the `host:port` pairs its `grant.hosts` names (L5).
//!
//! The host does everything a plugin could abuse: it parses the URL,
//! matches the authority against the grant, resolves names itself (once per
//! plugin call, pinned for the rest of the call, so a rebinding DNS answer
//! cannot move a later request), opens the TCP connection to a checked
//! address, speaks TLS with a CA file that is itself granted, and never
//! follows a redirect (a 3xx goes back to the plugin, and following it is a
//! new, newly checked `send`). The connect time, the whole exchange and the
//! response size are bounded by the source's limits. Logs name the method,
//! address, status and sizes; never a header value or a body.
//!
//! The exchanges run on one small runtime owned by this module (created on
//! first use), so the caller's runtime needs no I/O driver, and dropping the
//! plugin call (its wall-clock timeout) aborts the exchange.

use crate::config::grant::{redact_query, HostPort, HttpUrl};
use crate::config::{Grant, Limits};
use http_body_util::BodyExt;
use hyper::body::Bytes;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

pub use crate::config::grant::{parse_grant_host, parse_host, parse_port, HostName};

/// Requests one plugin call may make.
pub const MAX_REQUESTS: u32 = 32;
/// Headers one request may carry, and their total size in bytes.
const MAX_HEADERS: usize = 64;
const MAX_HEADER_BYTES: usize = 64 << 10;
/// Largest CA file read.
const MAX_CA_BYTES: u64 = 1 << 20;
/// CA bundles tried, in order, when a request names no `ca-file`.
const SYSTEM_CA_FILES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];
/// Headers the host sets itself; a plugin may not.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
];

/// One request as the plugin asked for it.
#[derive(Clone)]
pub struct NetRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub ca_file: Option<String>,
}

/// Header values and bodies may be tokens: never shown.
impl std::fmt::Debug for NetRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetRequest")
            .field("method", &self.method)
            .field("url", &redact_query(&self.url))
            .field("headers", &self.headers.len())
            .field("body_bytes", &self.body.len())
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// One response, whole.
pub struct NetResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for NetResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetResponse")
            .field("status", &self.status)
            .field("headers", &self.headers.len())
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

/// Why no response came back; the message names the address, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("denied: {0}")]
    Denied(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("bad response: {0}")]
    BadResponse(String),
}

/// Parse an absolute `http://` or `https://` URL without user info
/// ([`crate::config::grant::parse_url`]); refused as an invalid request.
pub fn parse_url(url: &str) -> Result<HttpUrl, NetError> {
    crate::config::grant::parse_url(url).map_err(|e| NetError::Invalid(e.to_string()))
}

/// Whether `ip` may be connected to at all, whatever the grant says. An
/// unspecified address (which Linux treats as "this host"), multicast and
/// broadcast are never the server a grant means.
pub fn connectable(ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    !(ip.is_unspecified() || ip.is_multicast() || matches!(ip, IpAddr::V4(v4) if v4.is_broadcast()))
}

/// Plain `http://` only to loopback: a token never crosses a network in
/// clear. Checked on the addresses actually connected to.
pub fn check_cleartext(t: &HttpUrl, addrs: &[SocketAddr]) -> Result<(), NetError> {
    if t.tls {
        return Ok(());
    }
    match addrs.iter().find(|a| !a.ip().to_canonical().is_loopback()) {
        Some(a) => Err(NetError::Denied(format!(
            "{}: plain http only to loopback, and {} is not; use https",
            t.address(),
            a.ip()
        ))),
        None => Ok(()),
    }
}

/// The network side of one plugin call: its grant, its budget, and the
/// names it has resolved so far.
pub struct Net {
    source: String,
    hosts: Vec<HostPort>,
    grant_files: Vec<PathBuf>,
    max_body: u64,
    connect_timeout: Duration,
    /// The whole call's network work ends here.
    deadline: Instant,
    budget_ms: u64,
    requests: u32,
    /// Addresses each granted name resolved to, pinned for the call.
    pinned: BTreeMap<(String, u16), Vec<SocketAddr>>,
    /// The TLS setup for the last CA file used.
    tls: Option<(Option<String>, Arc<rustls::ClientConfig>)>,
}

impl Net {
    /// The network grant of one call that starts now.
    pub fn new(source: &str, grant: &Grant, limits: &Limits) -> Net {
        let hosts = grant.hosts.clone();
        let budget_ms = limits.plugin_timeout_ms.saturating_mul(9) / 10;
        Net {
            source: source.to_owned(),
            hosts,
            grant_files: grant.files.clone(),
            max_body: limits.max_total_bytes,
            connect_timeout: Duration::from_millis((limits.plugin_timeout_ms / 4).max(1)),
            deadline: Instant::now() + Duration::from_millis(budget_ms),
            budget_ms,
            requests: 0,
            pinned: BTreeMap::new(),
            tls: None,
        }
    }

    /// Whether the grant names exactly this host and port.
    fn granted(&self, t: &HttpUrl) -> bool {
        self.hosts.iter().any(|h| h.grants(t))
    }

    /// Make one exchange, checked against the grant at every step.
    pub async fn send(&mut self, req: NetRequest) -> Result<NetResponse, NetError> {
        self.requests += 1;
        if self.requests > MAX_REQUESTS {
            return Err(NetError::Denied(format!(
                "more than {MAX_REQUESTS} requests in one call"
            )));
        }
        let target = parse_url(&req.url)?;
        let address = target.address();
        let method = parse_method(&req.method)?;
        if !self.granted(&target) {
            let granted = if self.hosts.is_empty() {
                "none".to_string()
            } else {
                self.hosts
                    .iter()
                    .map(|h| format!("{}:{}", h.host(), h.port()))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(NetError::Denied(format!(
                "{address} is not in grant.hosts (granted: {granted})"
            )));
        }
        let headers = check_headers(&req.headers)?;
        let addrs = self.resolve(&target).await?;
        check_cleartext(&target, &addrs)?;
        let tls = if target.tls {
            Some(self.tls_config(req.ca_file.as_deref(), &address)?)
        } else {
            None
        };
        let mut builder = hyper::Request::builder()
            .method(method.clone())
            .uri(target.path.as_str())
            .header(hyper::header::HOST, target.authority())
            .header(hyper::header::CONNECTION, "close");
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        let body_len = req.body.len();
        let request = builder
            .body(http_body_util::Full::new(Bytes::from(req.body)))
            .map_err(|_| NetError::Invalid(format!("{address}: request could not be built")))?;
        let started = Instant::now();
        let exchange = Exchange {
            addrs,
            target: target.clone(),
            tls,
            connect_timeout: self.connect_timeout,
            deadline: self.deadline,
            budget_ms: self.budget_ms,
            max_body: self.max_body,
        };
        let task = AbortOnDrop(runtime().spawn(exchange.run(request)));
        let mut task = task;
        let result = match (&mut task.0).await {
            Ok(r) => r,
            Err(_) => Err(NetError::Unavailable(format!(
                "{address}: the network task failed"
            ))),
        };
        let path = target.path.split('?').next().unwrap_or("");
        match &result {
            Ok(r) => tracing::debug!(
                source = %self.source, %method, %address, path, status = r.status,
                sent_bytes = body_len, received_bytes = r.body.len(),
                ms = started.elapsed().as_millis() as u64, "plugin http exchange"
            ),
            Err(e) => tracing::debug!(
                source = %self.source, %method, %address, path,
                ms = started.elapsed().as_millis() as u64, "plugin http exchange failed: {e}"
            ),
        }
        result
    }

    /// The addresses to connect to: an IP literal as is; a name resolved by
    /// the host once per call and pinned. Unconnectable addresses are dropped.
    async fn resolve(&mut self, t: &HttpUrl) -> Result<Vec<SocketAddr>, NetError> {
        let name = match &t.host {
            HostName::Ip(ip) => {
                return if connectable(*ip) {
                    Ok(vec![SocketAddr::new(*ip, t.port)])
                } else {
                    Err(NetError::Denied(format!(
                        "{}: not a connectable address",
                        t.address()
                    )))
                };
            }
            HostName::Name(n) => n.clone(),
        };
        let key = (name.clone(), t.port);
        if let Some(a) = self.pinned.get(&key) {
            return Ok(a.clone());
        }
        let port = t.port;
        let limit = self
            .connect_timeout
            .min(self.deadline.saturating_duration_since(Instant::now()));
        let lookup = AbortOnDrop(runtime().spawn({
            let name = name.clone();
            async move {
                tokio::time::timeout(limit, tokio::net::lookup_host((name.as_str(), port)))
                    .await
                    .map(|r| r.map(|it| it.collect::<Vec<SocketAddr>>()))
            }
        }));
        let address = t.address();
        let mut lookup = lookup;
        let found: Vec<SocketAddr> = match (&mut lookup.0).await {
            Ok(Ok(Ok(found))) => found,
            Ok(Ok(Err(e))) => {
                return Err(NetError::Unavailable(format!(
                    "{address}: cannot resolve: {e}"
                )))
            }
            Ok(Err(_)) => {
                return Err(NetError::Unavailable(format!(
                    "{address}: no DNS answer within {} ms",
                    limit.as_millis()
                )))
            }
            Err(_) => {
                return Err(NetError::Unavailable(format!(
                    "{address}: the DNS task failed"
                )))
            }
        };
        let mut usable: Vec<SocketAddr> =
            found.into_iter().filter(|a| connectable(a.ip())).collect();
        usable.dedup();
        if usable.is_empty() {
            return Err(NetError::Denied(format!(
                "{address}: resolves to no connectable address"
            )));
        }
        self.pinned.insert(key, usable.clone());
        Ok(usable)
    }

    /// TLS client settings trusting `ca_file` (which must be granted) or,
    /// for `None`, the system's CA bundle.
    fn tls_config(
        &mut self,
        ca_file: Option<&str>,
        address: &str,
    ) -> Result<Arc<rustls::ClientConfig>, NetError> {
        if let Some((file, cfg)) = &self.tls {
            if file.as_deref() == ca_file {
                return Ok(cfg.clone());
            }
        }
        let (path, pem) = match ca_file {
            Some(p) => {
                if !self.grant_files.iter().any(|f| f.as_os_str() == p) {
                    return Err(NetError::Denied(format!(
                        "{address}: CA file {p} is not in grant.files"
                    )));
                }
                (p.to_owned(), read_capped(p, address)?)
            }
            None => {
                let p = SYSTEM_CA_FILES
                    .iter()
                    .find(|p| std::path::Path::new(p).is_file())
                    .ok_or_else(|| {
                        NetError::Unavailable(format!(
                            "{address}: no ca-file given and no system CA bundle found"
                        ))
                    })?;
                (p.to_string(), read_capped(p, address)?)
            }
        };
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| {
                NetError::Invalid(format!("{address}: CA file {path}: not PEM: {e}"))
            })?;
            roots.add(cert).map_err(|e| {
                NetError::Invalid(format!("{address}: CA file {path}: bad certificate: {e}"))
            })?;
        }
        if roots.is_empty() {
            return Err(NetError::Invalid(format!(
                "{address}: CA file {path} holds no certificate"
            )));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| NetError::Unavailable(format!("{address}: TLS setup: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let cfg = Arc::new(cfg);
        self.tls = Some((ca_file.map(str::to_owned), cfg.clone()));
        Ok(cfg)
    }
}

/// A CA file, read as every file privy reads for a source: without
/// blocking, regular files only (a FIFO here hung the call, B4), capped.
fn read_capped(path: &str, address: &str) -> Result<Vec<u8>, NetError> {
    use crate::sys::fs::ReadError;
    crate::sys::fs::read_regular(std::path::Path::new(path), MAX_CA_BYTES).map_err(|e| match e {
        ReadError::Io(e) => NetError::Unavailable(format!("{address}: CA file {path}: {e}")),
        e => NetError::Invalid(format!("{address}: CA file {path} {e}")),
    })
}

/// An HTTP method token of 1-16 uppercase letters; never `CONNECT`.
fn parse_method(m: &str) -> Result<hyper::Method, NetError> {
    if m.is_empty() || m.len() > 16 || !m.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(NetError::Invalid(format!(
            "method {:?} is not 1-16 uppercase letters",
            crate::shown::one_line(m, 20)
        )));
    }
    if m == "CONNECT" {
        return Err(NetError::Invalid("method CONNECT is not allowed".into()));
    }
    hyper::Method::from_bytes(m.as_bytes())
        .map_err(|_| NetError::Invalid(format!("method {m:?} is not valid")))
}

/// The plugin's headers, checked: valid, not reserved, bounded. Errors name
/// the header, never its value.
fn check_headers(
    h: &[(String, String)],
) -> Result<Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)>, NetError> {
    if h.len() > MAX_HEADERS {
        return Err(NetError::Invalid(format!(
            "more than {MAX_HEADERS} headers"
        )));
    }
    let total: usize = h.iter().map(|(n, v)| n.len() + v.len()).sum();
    if total > MAX_HEADER_BYTES {
        return Err(NetError::Invalid(format!(
            "headers larger than {MAX_HEADER_BYTES} bytes"
        )));
    }
    h.iter()
        .map(|(n, v)| {
            let shown = crate::shown::one_line(n, 64);
            let name = hyper::header::HeaderName::from_bytes(n.as_bytes())
                .map_err(|_| NetError::Invalid(format!("header name {shown:?} is not valid")))?;
            if RESERVED_HEADERS.contains(&name.as_str()) {
                return Err(NetError::Invalid(format!(
                    "header {shown} is set by the host"
                )));
            }
            let mut value = hyper::header::HeaderValue::from_str(v)
                .map_err(|_| NetError::Invalid(format!("header {shown}: value is not valid")))?;
            value.set_sensitive(true);
            Ok((name, value))
        })
        .collect()
}

/// One exchange, run on the network runtime.
struct Exchange {
    addrs: Vec<SocketAddr>,
    target: HttpUrl,
    tls: Option<Arc<rustls::ClientConfig>>,
    connect_timeout: Duration,
    deadline: Instant,
    budget_ms: u64,
    max_body: u64,
}

type Body = http_body_util::Full<Bytes>;

impl Exchange {
    async fn run(self, request: hyper::Request<Body>) -> Result<NetResponse, NetError> {
        let address = self.target.address();
        let deadline = tokio::time::Instant::from_std(self.deadline);
        let budget_ms = self.budget_ms;
        match tokio::time::timeout_at(deadline, self.connect_and_send(request)).await {
            Ok(r) => r,
            Err(_) => Err(NetError::Unavailable(format!(
                "{address}: no complete response within the call's network budget of {budget_ms} ms"
            ))),
        }
    }

    async fn connect_and_send(
        self,
        request: hyper::Request<Body>,
    ) -> Result<NetResponse, NetError> {
        let address = self.target.address();
        // Name the address only where it differs from the URL's.
        let to = |a: &SocketAddr| match &self.target.host {
            HostName::Ip(_) => String::new(),
            HostName::Name(_) => format!(" to {a}"),
        };
        let mut last = String::new();
        let mut stream = None;
        for a in &self.addrs {
            match tokio::time::timeout(self.connect_timeout, tokio::net::TcpStream::connect(a))
                .await
            {
                Ok(Ok(s)) => {
                    stream = Some(s);
                    break;
                }
                Ok(Err(e)) => last = format!("connect{}: {e}", to(a)),
                Err(_) => {
                    last = format!(
                        "connect{}: no answer within {} ms",
                        to(a),
                        self.connect_timeout.as_millis()
                    )
                }
            }
        }
        let Some(stream) = stream else {
            return Err(NetError::Unavailable(format!("{address}: {last}")));
        };
        let _ = stream.set_nodelay(true);
        match &self.tls {
            None => http1(stream, request, &address, self.max_body).await,
            Some(cfg) => {
                let name = match &self.target.host {
                    HostName::Ip(ip) => rustls_pki_types::ServerName::IpAddress((*ip).into()),
                    HostName::Name(n) => rustls_pki_types::ServerName::try_from(n.clone())
                        .map_err(|_| NetError::Invalid(format!("{address}: not a TLS name")))?,
                };
                let tls = tokio_rustls::TlsConnector::from(cfg.clone())
                    .connect(name, stream)
                    .await
                    .map_err(|e| NetError::Unavailable(format!("{address}: TLS: {e}")))?;
                http1(tls, request, &address, self.max_body).await
            }
        }
    }
}

/// One HTTP/1.1 request and its whole response over `io`.
async fn http1<IO>(
    io: IO,
    request: hyper::Request<Body>,
    address: &str,
    max_body: u64,
) -> Result<NetResponse, NetError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let io = hyper_util::rt::TokioIo::new(io);
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(256 << 10)
        .handshake::<_, Body>(io)
        .await
        .map_err(|e| hyper_error(address, &e))?;
    let _conn = AbortOnDrop(tokio::spawn(conn));
    let resp = sender
        .send_request(request)
        .await
        .map_err(|e| hyper_error(address, &e))?;
    let (parts, body) = resp.into_parts();
    let body = http_body_util::Limited::new(body, max_body as usize)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                NetError::BadResponse(format!(
                    "{address}: response body larger than {max_body} bytes"
                ))
            } else if let Some(h) = e.downcast_ref::<hyper::Error>() {
                hyper_error(address, h)
            } else {
                NetError::BadResponse(format!("{address}: response body: {e}"))
            }
        })?
        .to_bytes();
    let headers = parts
        .headers
        .iter()
        .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    Ok(NetResponse {
        status: parts.status.as_u16(),
        headers,
        body: Vec::from(body),
    })
}

fn hyper_error(address: &str, e: &hyper::Error) -> NetError {
    let text = std::error::Error::source(e)
        .map(|s| format!("{e}: {s}"))
        .unwrap_or_else(|| e.to_string());
    let text = crate::shown::one_line(&text, 200);
    if e.is_parse() || e.is_parse_status() {
        NetError::BadResponse(format!("{address}: not valid HTTP: {text}"))
    } else {
        NetError::Unavailable(format!("{address}: {text}"))
    }
}

/// Aborts its task when dropped: a cancelled plugin call stops its I/O.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The runtime the network work runs on: one worker thread, created on
/// first use, with its own I/O driver and timers.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(4)
            .thread_name("privy-net")
            .enable_all()
            .build()
            .expect("cannot start the network runtime")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(hosts: &[&str]) -> Net {
        let grant = Grant {
            hosts: hosts.iter().map(|s| s.parse().unwrap()).collect(),
            ..Grant::default()
        };
        Net::new("t", &grant, &Limits::default())
    }

    #[test]
    fn grant_entries_parse_names_and_literals() {
        assert_eq!(
            parse_grant_host("Vault.Example.:8200").unwrap(),
            (HostName::Name("vault.example".into()), 8200)
        );
        assert_eq!(
            parse_grant_host("[::1]:8200").unwrap(),
            (HostName::Ip("::1".parse().unwrap()), 8200)
        );
        for bad in [
            "::1:8200",
            "host",
            "host:0",
            "host:99999",
            ":80",
            "a b:80",
            "[x]:1",
        ] {
            assert!(parse_grant_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_with_user_info_or_other_schemes_are_refused() {
        let t = parse_url("https://vault.example/v1/x?list=true").unwrap();
        assert_eq!(
            (t.tls, t.port, t.path.as_str()),
            (true, 443, "/v1/x?list=true")
        );
        assert_eq!(parse_url("http://127.0.0.1:8200").unwrap().path, "/");
        for bad in [
            "ftp://127.0.0.1/",
            "http://granted@127.0.0.1:8200/",
            "http://127.0.0.1:8200@evil:80/",
            "/relative",
            "http://[::1/",
            "http://127.0.0.1:/",
        ] {
            assert!(matches!(parse_url(bad), Err(NetError::Invalid(_))), "{bad}");
        }
    }

    #[test]
    fn b4_a_fifo_as_the_ca_file_is_refused_at_once() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("ca.pem");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid C string; mkfifo reads nothing else.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let path = fifo.display().to_string();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(read_capped(&path, "h:443")));
        let got = rx.recv_timeout(Duration::from_secs(5));
        if got.is_err() {
            // Release the reader still waiting on it, then fail.
            let _ = std::fs::OpenOptions::new().write(true).open(&fifo);
            panic!("reading a FIFO as the CA file blocked");
        }
        let e = got.unwrap().unwrap_err().to_string();
        assert!(e.contains("is a FIFO, not a regular file"), "{e}");
    }

    #[test]
    fn fuzz_a_query_without_a_path_is_sent_as_slash_query_not_a_bare_query() {
        // Found by tests/integration/fuzz_parsers.rs: the request target
        // was `?a=b`, which is not HTTP.
        assert_eq!(parse_url("http://127.0.0.1?a=b").unwrap().path, "/?a=b");
        assert_eq!(parse_url("http://127.0.0.1:1?a=b").unwrap().path, "/?a=b");
        assert_eq!(parse_url("http://h/x?a=b").unwrap().path, "/x?a=b");
        assert_eq!(parse_url("http://h/x").unwrap().path, "/x");
    }

    #[test]
    fn port_over_65535_in_a_url_is_refused_not_made_the_default() {
        // `http::Uri` parses these, and reports no port at all for them.
        for bad in [
            "http://127.0.0.1:65536/",
            "http://127.0.0.1:99999/v1",
            "https://vault.example:4294967376/",
            "http://[::1]:70000/",
            "http://127.0.0.1:0/",
            "http://127.0.0.1:00/",
        ] {
            let e = parse_url(bad).unwrap_err().to_string();
            assert!(e.contains("port"), "{bad}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
        assert_eq!(parse_url("http://127.0.0.1:65535/").unwrap().port, 65535);
        assert_eq!(parse_url("http://127.0.0.1:08200/").unwrap().port, 8200);
        assert_eq!(parse_url("http://[::1]/").unwrap().port, 80);
        // A grant that names port 80 is not reached through port 65616.
        let n = net(&["127.0.0.1:80"]);
        assert!(parse_url("http://127.0.0.1:65616/").is_err());
        assert!(n.granted(&parse_url("http://127.0.0.1/").unwrap()));
    }

    #[test]
    fn port_over_65535_or_signed_in_a_grant_is_refused() {
        for bad in ["h:65536", "h:99999", "h:+80", "h:-1", "h:", "[::1]", "h:0"] {
            assert!(parse_grant_host(bad).is_err(), "{bad}");
        }
        let e = parse_grant_host("h:70000").unwrap_err();
        assert!(e.contains("over 65535"), "{e}");
        assert_eq!(parse_grant_host("h:65535").unwrap().1, 65535);
    }

    #[test]
    fn only_the_exact_granted_authority_matches() {
        let n = net(&["127.0.0.1:8200", "vault.example:443"]);
        let ok = |u: &str| n.granted(&parse_url(u).unwrap());
        assert!(ok("http://127.0.0.1:8200/v1"));
        assert!(ok("https://VAULT.example/v1"));
        assert!(!ok("http://127.0.0.1:8201/"));
        assert!(!ok("http://127.0.0.2:8200/"));
        assert!(
            !ok("http://localhost:8200/"),
            "a name never matches an IP grant"
        );
        assert!(!ok("https://vault.example.evil:443/"));
        assert!(!ok("http://[::ffff:127.0.0.1]:8200/"));
    }

    #[test]
    fn plain_http_goes_only_to_loopback_addresses() {
        let a = |s: &str| -> SocketAddr { s.parse().unwrap() };
        let http = parse_url("http://vault.example:8200/").unwrap();
        let https = parse_url("https://vault.example:8200/").unwrap();
        assert!(check_cleartext(&http, &[a("127.0.0.1:8200"), a("[::1]:8200")]).is_ok());
        assert!(check_cleartext(&http, &[a("[::ffff:127.0.0.1]:8200")]).is_ok());
        let e = check_cleartext(&http, &[a("127.0.0.1:8200"), a("192.0.2.7:8200")]).unwrap_err();
        assert!(
            matches!(&e, NetError::Denied(m) if m.contains("192.0.2.7")),
            "{e}"
        );
        assert!(check_cleartext(&https, &[a("192.0.2.7:8200")]).is_ok());
    }

    #[test]
    fn unconnectable_addresses_are_never_used() {
        for a in [
            "0.0.0.0",
            "::",
            "224.0.0.1",
            "255.255.255.255",
            "::ffff:0.0.0.0",
        ] {
            assert!(!connectable(a.parse().unwrap()), "{a}");
        }
        assert!(connectable("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn reserved_and_malformed_headers_are_refused_without_their_value() {
        let h = |n: &str, v: &str| vec![(n.to_string(), v.to_string())];
        assert!(check_headers(&h("x-vault-token", "abc")).is_ok());
        for (n, v) in [
            ("Host", "evil"),
            ("content-length", "1"),
            ("bad name", "x"),
            ("x-a", "sec\nret"),
        ] {
            let e = check_headers(&h(n, v)).unwrap_err().to_string();
            assert!(!e.contains("evil") && !e.contains("sec"), "{e}");
        }
        assert!(parse_method("get").is_err());
        assert!(parse_method("CONNECT").is_err());
        assert!(parse_method("LIST").is_ok());
    }

    #[test]
    fn debug_output_shows_no_header_value_body_or_query() {
        let r = NetRequest {
            method: "GET".into(),
            url: "http://127.0.0.1:1/v1/x?token=s3cr3t".into(),
            headers: vec![("x-vault-token".into(), "s3cr3t".into())],
            body: b"s3cr3t".to_vec(),
            ca_file: None,
        };
        let shown = format!("{r:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }
}
