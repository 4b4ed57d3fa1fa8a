//! The grant grammar: what `grant.hosts` entries and the URLs a plugin
//! sends mean. Both the config (which checks them when it is loaded) and
//! the plugin host's `http` import (which matches a request against the
//! grant) use this one file, so the two can never disagree about what a
//! grant allows, and neither imports the other.
//!
//! A host is an IPv4 literal, a bracketed IPv6 literal, or a DNS name
//! (compared lowercase, without a trailing dot); a port is 1 to 65535,
//! written in decimal. A name never matches an address, nor an address a
//! name. URLs are absolute `http` or `https`, without user info; their
//! query is never shown in an error (it may carry a token).

use crate::shown::one_line;
use std::net::IpAddr;

/// A host as a grant or a URL names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostName {
    Ip(IpAddr),
    /// Lowercase, no trailing dot.
    Name(String),
}

impl std::fmt::Display for HostName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostName::Ip(IpAddr::V6(a)) => write!(f, "[{a}]"),
            HostName::Ip(a) => write!(f, "{a}"),
            HostName::Name(n) => f.write_str(n),
        }
    }
}

/// Parse a host as it appears in a URL or a grant: an IPv4 literal, a
/// bracketed IPv6 literal, or a DNS name (letters, digits, `-`, `.`, `_`).
pub fn parse_host(s: &str) -> Result<HostName, String> {
    if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return inner
            .parse::<std::net::Ipv6Addr>()
            .map(|a| HostName::Ip(IpAddr::V6(a)))
            .map_err(|_| format!("{s:?} is not an IPv6 address"));
    }
    if let Ok(a) = s.parse::<std::net::Ipv4Addr>() {
        return Ok(HostName::Ip(IpAddr::V4(a)));
    }
    let name = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!(
            "{s:?} is not a host name or IP address (IPv6 goes in brackets)"
        ));
    }
    Ok(HostName::Name(name))
}

/// Parse a port as a grant or a URL writes it: decimal digits, 1 to 65535.
/// Nothing is read into it: not a sign, not a value over 65535 (which
/// `http::Uri` silently drops, so that the default port would be used).
pub fn parse_port(p: &str) -> Result<u16, String> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "port {:?} is not a number from 1 to 65535",
            one_line(p, 20)
        ));
    }
    let digits = p.trim_start_matches('0');
    if digits.is_empty() {
        return Err("port 0 is not a port".into());
    }
    digits
        .parse::<u16>()
        .map_err(|_| format!("port {} is over 65535", one_line(p, 20)))
}

/// Parse one `grant.hosts` entry, `host:port`.
pub fn parse_grant_host(s: &str) -> Result<(HostName, u16), String> {
    let (host, port) = s
        .rsplit_once(':')
        .filter(|(_, p)| !p.contains(']'))
        .ok_or_else(|| format!("{s:?} must be host:port"))?;
    let port = parse_port(port).map_err(|e| format!("{s:?}: {e}"))?;
    Ok((parse_host(host)?, port))
}

/// A URL taken apart: what the host connects to, and what it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    pub tls: bool,
    pub host: HostName,
    pub port: u16,
    /// Path and query, such as `/v1/secret/data/ci`.
    pub path: String,
}

impl HttpUrl {
    /// `host:port`, as errors and logs name it.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The `Host` header and TLS name: the host, with the port unless default.
    pub fn authority(&self) -> String {
        let default = if self.tls { 443 } else { 80 };
        if self.port == default {
            self.host.to_string()
        } else {
            self.address()
        }
    }
}

/// Why a URL was refused: `URL <the URL, its query redacted>: <why>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("URL {url}: {why}")]
pub struct UrlError {
    url: String,
    why: String,
}

/// Parse an absolute `http://` or `https://` URL without user info.
pub fn parse_url(url: &str) -> Result<HttpUrl, UrlError> {
    let bad = |why: &str| UrlError {
        url: redact_query(url),
        why: why.to_owned(),
    };
    if url.len() > 8192 {
        return Err(bad("longer than 8192 bytes"));
    }
    let uri: http::Uri = url.parse().map_err(|_| bad("not a valid absolute URL"))?;
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(bad("the scheme must be http or https")),
    };
    let auth = uri.authority().ok_or_else(|| bad("no host"))?;
    if auth.as_str().contains('@') {
        return Err(bad("user info is not allowed"));
    }
    let host = parse_host(auth.host()).map_err(|e| bad(&e))?;
    // The port as written: `auth.port()` is `None` both for no port and for
    // one over 65535, and the second must not become the default port.
    let written = auth
        .as_str()
        .rsplit_once(':')
        .map(|(_, p)| p)
        .filter(|p| !p.contains(']'));
    let port = match written {
        Some("") => return Err(bad("empty port")),
        Some(p) => parse_port(p).map_err(|e| bad(&e))?,
        None if tls => 443,
        None => 80,
    };
    // The request target: never empty, and never a bare query
    // (`http://h?a=b` has the path "" and the query "a=b": send `/?a=b`).
    let path = match (uri.path(), uri.query()) {
        ("", None) => "/".to_owned(),
        ("", Some(q)) => format!("/?{q}"),
        (p, None) => p.to_owned(),
        (p, Some(q)) => format!("{p}?{q}"),
    };
    Ok(HttpUrl {
        tls,
        host,
        port,
        path,
    })
}

/// A URL with its query replaced by `?…`: queries may carry tokens.
pub fn redact_query(url: &str) -> String {
    let url = url.split('#').next().unwrap_or("");
    match url.split_once('?') {
        Some((base, _)) => format!("{}?…", one_line(base, 300)),
        None => one_line(url, 300),
    }
}

/// One `grant.hosts` entry, parsed: the text as written (what `config
/// check` and `plugin list` print) and what it means.
#[derive(Clone, PartialEq, Eq)]
pub struct HostPort {
    text: String,
    host: HostName,
    port: u16,
}

impl HostPort {
    pub fn host(&self) -> &HostName {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The entry as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether this entry grants exactly `url`'s host and port.
    pub fn grants(&self, url: &HttpUrl) -> bool {
        self.port == url.port && self.host == url.host
    }
}

impl std::str::FromStr for HostPort {
    type Err = String;

    /// [`parse_grant_host`]'s grammar and errors.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (host, port) = parse_grant_host(s)?;
        Ok(HostPort {
            text: s.to_owned(),
            host,
            port,
        })
    }
}

/// A `HostPort` reads as the text it was parsed from, so code that takes a
/// `&str` (and a test that formats it) sees the entry as written.
impl std::ops::Deref for HostPort {
    type Target = str;

    fn deref(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Debug for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.text, f)
    }
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl serde::Serialize for HostPort {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for HostPort {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_port_keeps_its_text_and_grants_only_its_authority() {
        let h: HostPort = "Vault.Example.:8200".parse().unwrap();
        assert_eq!(h.as_str(), "Vault.Example.:8200");
        assert_eq!(format!("{h:?}"), "\"Vault.Example.:8200\"");
        assert!(h.grants(&parse_url("https://vault.example:8200/x").unwrap()));
        assert!(!h.grants(&parse_url("https://vault.example/x").unwrap()));
        assert!("nohost".parse::<HostPort>().is_err());
    }

    #[test]
    fn url_errors_name_the_url_without_its_query() {
        let e = parse_url("ftp://h/x?token=s3cr3t").unwrap_err().to_string();
        assert_eq!(e, "URL ftp://h/x?…: the scheme must be http or https");
    }
}
