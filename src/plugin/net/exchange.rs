//! The network I/O of the `http` import: the runtime the exchanges run on,
//! TCP to checked addresses, TLS (rustls, ring) trusting the CA file the
//! policy allowed, one HTTP/1.1 exchange with bounded time and body, and
//! how hyper's errors become one line.

use super::{NetError, NetResponse};
use crate::config::grant::{HostName, HttpUrl};
use http_body_util::BodyExt;
use hyper::body::Bytes;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Largest CA file read.
pub(super) const MAX_CA_BYTES: u64 = 1 << 20;
/// CA bundles tried, in order, when a request names no `ca-file`.
pub(super) const SYSTEM_CA_FILES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];
/// A CA file, read as every file privy reads for a source: without
/// blocking, regular files only (a FIFO here hung the call, B4), capped.
pub(super) fn read_capped(path: &str, address: &str) -> Result<Vec<u8>, NetError> {
    use crate::sys::fs::ReadError;
    crate::sys::fs::read_regular(std::path::Path::new(path), MAX_CA_BYTES).map_err(|e| match e {
        ReadError::Io(e) => NetError::Unavailable(format!("{address}: CA file {path}: {e}")),
        e => NetError::Invalid(format!("{address}: CA file {path} {e}")),
    })
}

/// TLS client settings trusting the certificates in `pem` (the CA file at
/// `path`, for errors), HTTP/1.1 only.
pub(super) fn tls_client(
    pem: &[u8],
    path: &str,
    address: &str,
) -> Result<Arc<rustls::ClientConfig>, NetError> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(pem) {
        let cert = cert
            .map_err(|e| NetError::Invalid(format!("{address}: CA file {path}: not PEM: {e}")))?;
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
    Ok(Arc::new(cfg))
}

/// One exchange, run on the network runtime.
pub(super) struct Exchange {
    pub(super) addrs: Vec<SocketAddr>,
    pub(super) target: HttpUrl,
    pub(super) tls: Option<Arc<rustls::ClientConfig>>,
    pub(super) connect_timeout: Duration,
    pub(super) deadline: Instant,
    pub(super) budget_ms: u64,
    pub(super) max_body: u64,
}

pub(super) type Body = http_body_util::Full<Bytes>;

impl Exchange {
    pub(super) async fn run(self, request: hyper::Request<Body>) -> Result<NetResponse, NetError> {
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
pub(super) struct AbortOnDrop<T>(pub(super) tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The runtime the network work runs on: one worker thread, created on
/// first use, with its own I/O driver and timers.
pub(super) fn runtime() -> &'static tokio::runtime::Runtime {
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
}
