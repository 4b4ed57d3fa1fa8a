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
//! The exchanges run on one small runtime owned by [`exchange`] (created
//! on first use), so the caller's runtime needs no I/O driver, and dropping
//! the plugin call (its wall-clock timeout) aborts the exchange. The rules
//! (what the grant allows, which addresses, methods and headers) are
//! [`policy`]'s; the grammar of a grant and a URL is `config::grant`'s.

pub mod exchange;
pub mod policy;

use super::bindings::privy::source::http as wit_http;

use crate::config::grant::{redact_query, HostPort, HttpUrl};
use crate::config::{Grant, Limits};
use exchange::{runtime, AbortOnDrop, Exchange};
use hyper::body::Bytes;
use policy::{check_cleartext, check_headers, connectable, parse_method, MAX_REQUESTS};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::config::grant::{parse_grant_host, parse_host, parse_port, HostName};

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
        policy::granted(&self.hosts, t)
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
            let granted = policy::describe(&self.hosts);
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
                if !policy::ca_file_granted(&self.grant_files, p) {
                    return Err(NetError::Denied(format!(
                        "{address}: CA file {p} is not in grant.files"
                    )));
                }
                (p.to_owned(), exchange::read_capped(p, address)?)
            }
            None => {
                let p = exchange::SYSTEM_CA_FILES
                    .iter()
                    .find(|p| std::path::Path::new(p).is_file())
                    .ok_or_else(|| {
                        NetError::Unavailable(format!(
                            "{address}: no ca-file given and no system CA bundle found"
                        ))
                    })?;
                (p.to_string(), exchange::read_capped(p, address)?)
            }
        };
        let cfg = exchange::tls_client(&pem, &path, address)?;
        self.tls = Some((ca_file.map(str::to_owned), cfg.clone()));
        Ok(cfg)
    }
}

/// The `privy:source/http` import, for the store state of one call.
impl wit_http::Host for super::imports::HostState {
    async fn send(
        &mut self,
        req: wit_http::HttpRequest,
    ) -> Result<wit_http::HttpResponse, wit_http::HttpError> {
        let req = NetRequest {
            method: req.method,
            url: req.url,
            headers: req.headers.into_iter().map(|h| (h.name, h.value)).collect(),
            body: req.body,
            ca_file: req.ca_file,
        };
        match self.net.send(req).await {
            Ok(r) => Ok(wit_http::HttpResponse {
                status: r.status,
                headers: r
                    .headers
                    .into_iter()
                    .map(|(name, value)| wit_http::Header { name, value })
                    .collect(),
                body: r.body,
            }),
            Err(e) => Err(match e {
                NetError::Invalid(m) => wit_http::HttpError::InvalidRequest(m),
                NetError::Denied(m) => wit_http::HttpError::Denied(m),
                NetError::Unavailable(m) => wit_http::HttpError::Unavailable(m),
                NetError::BadResponse(m) => wit_http::HttpError::BadResponse(m),
            }),
        }
    }
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
