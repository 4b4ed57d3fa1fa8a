//! The network grant's rules, as pure checks: which authority a grant
//! names, which addresses may be connected to at all, plain HTTP only to
//! loopback, which methods and headers a plugin may send, which CA file it
//! may trust. No I/O here (that is [`super::exchange`]).

use super::NetError;
use crate::config::grant::{HostPort, HttpUrl};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// Requests one plugin call may make.
pub const MAX_REQUESTS: u32 = 32;
/// Headers one request may carry, and their total size in bytes.
pub(super) const MAX_HEADERS: usize = 64;
pub(super) const MAX_HEADER_BYTES: usize = 64 << 10;
/// Headers the host sets itself; a plugin may not.
pub(super) const RESERVED_HEADERS: &[&str] = &[
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

/// Whether `hosts` (a grant's) names exactly `url`'s host and port: a
/// name never grants its address, nor an address its name.
pub fn granted(hosts: &[HostPort], url: &HttpUrl) -> bool {
    hosts.iter().any(|h| h.grants(url))
}

/// The grant as an error line lists it: `none`, or `host:port, ...`.
pub fn describe(hosts: &[HostPort]) -> String {
    if hosts.is_empty() {
        return "none".to_string();
    }
    hosts
        .iter()
        .map(|h| format!("{}:{}", h.host(), h.port()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether a request's `ca-file` is one of the grant's files.
pub fn ca_file_granted(grant_files: &[PathBuf], path: &str) -> bool {
    grant_files.iter().any(|f| f.as_os_str() == path)
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

/// An HTTP method token of 1-16 uppercase letters; never `CONNECT`.
pub fn parse_method(m: &str) -> Result<hyper::Method, NetError> {
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
pub fn check_headers(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::grant::parse_url;

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
}
