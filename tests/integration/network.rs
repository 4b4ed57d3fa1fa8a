//! The `privy:source/http` host import against real loopback servers: the
//! hostile fixture asks for what its grant does not cover, directly and
//! through a redirect, and the host refuses before any connection is made
//! (L5). Timeouts and size caps hold whatever the server does.

use privy::config::{Grant, Limits};
use privy::plugin::{PluginError, RawFile};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::util;

use util::hostile;

fn limits(timeout_ms: u64) -> Limits {
    Limits {
        plugin_timeout_ms: timeout_ms,
        ..Limits::default()
    }
}

fn ask(
    mode: &str,
    url: &str,
    hosts: &[String],
    limits: &Limits,
) -> Result<Vec<RawFile>, PluginError> {
    let grant = Grant {
        hosts: hosts.iter().map(|h| h.parse().unwrap()).collect(),
        ..Grant::default()
    };
    let config: BTreeMap<String, String> = [("mode", mode), ("url", url)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    util::call_plugin(
        util::plugin_host(),
        hostile(),
        "hostile",
        &grant,
        &config,
        limits,
    )
}

/// A loopback server that answers every connection with `response` and
/// counts the connections.
pub struct Canned {
    pub port: u16,
    pub hits: Arc<AtomicU32>,
}

impl Canned {
    pub fn new(response: Vec<u8>) -> Canned {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let hits = Arc::new(AtomicU32::new(0));
        let h = hits.clone();
        std::thread::spawn(move || {
            for mut s in l.incoming().flatten() {
                h.fetch_add(1, Ordering::SeqCst);
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !util::contains(&buf, b"\r\n\r\n") {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = s.write_all(&response);
            }
        });
        Canned { port, hits }
    }

    pub fn ok(body: &[u8]) -> Canned {
        let mut r = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body);
        Canned::new(r)
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

/// A listener nobody accepts on: the kernel completes a connection into
/// its backlog, so `touched` proves whether anything connected.
struct Untouched(TcpListener);

impl Untouched {
    fn new() -> Untouched {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        Untouched(l)
    }
    fn port(&self) -> u16 {
        self.0.local_addr().unwrap().port()
    }
    fn touched(&self) -> bool {
        self.0.accept().is_ok()
    }
}

fn denied(r: Result<Vec<RawFile>, PluginError>) -> String {
    let e = r.expect_err("the host let the request through");
    let msg = e.to_string();
    // hostile reports every http-error as `denied`, naming its kind.
    assert!(
        matches!(&e, PluginError::Source { kind: "denied", .. }) && msg.contains("Denied("),
        "{msg}"
    );
    msg
}

#[test]
fn l5_hostile_plugin_asking_for_a_host_not_granted_is_refused_by_the_host() {
    let granted = Canned::ok(b"hello");
    let other = Untouched::new();
    let url = format!("http://127.0.0.1:{}/", other.port());
    let msg = denied(ask("http", &url, &[granted.host()], &limits(5000)));
    assert!(
        msg.contains(&format!("127.0.0.1:{} is not in grant.hosts", other.port())),
        "{msg}"
    );
    assert!(!other.touched(), "the un-granted listener saw a connection");
    // With no grant at all, nothing is reachable, the granted server neither.
    denied(ask("http", &granted.url(), &[], &limits(5000)));
    assert_eq!(granted.hits.load(Ordering::SeqCst), 0);
    // The granted one is reachable, so the refusals above are the grant's doing.
    let files = ask("http", &granted.url(), &[granted.host()], &limits(5000)).unwrap();
    assert_eq!(files[0].data.expose(), b"hello");
}

#[test]
fn hostile_plugin_following_a_redirect_to_a_host_not_granted_is_refused() {
    let other = Untouched::new();
    let redirect = Canned::new(
        format!(
            "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:{}/steal\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            other.port()
        )
        .into_bytes(),
    );
    let msg = denied(ask(
        "http-follow",
        &redirect.url(),
        &[redirect.host()],
        &limits(5000),
    ));
    assert!(msg.contains("is not in grant.hosts"), "{msg}");
    assert_eq!(redirect.hits.load(Ordering::SeqCst), 1);
    assert!(
        !other.touched(),
        "a redirect reached an un-granted listener"
    );
    // The host itself never follows: without following, the plugin sees the 302.
    let files = ask("http", &redirect.url(), &[redirect.host()], &limits(5000)).unwrap();
    assert!(files[0].data.expose().is_empty());
    assert!(!other.touched());
}

#[test]
fn a_granted_name_does_not_grant_its_address_nor_an_address_its_name() {
    let s = Canned::ok(b"by-name");
    let by_name = format!("localhost:{}", s.port);
    let by_ip = s.host();
    denied(ask(
        "http",
        &s.url(),
        std::slice::from_ref(&by_name),
        &limits(5000),
    ));
    denied(ask(
        "http",
        &format!("http://localhost:{}/", s.port),
        std::slice::from_ref(&by_ip),
        &limits(5000),
    ));
    assert_eq!(s.hits.load(Ordering::SeqCst), 0);
    // The name, granted and asked for as such, is resolved by the host.
    let files = ask(
        "http",
        &format!("http://LOCALHOST:{}/x", s.port),
        &[by_name],
        &limits(5000),
    )
    .unwrap();
    assert_eq!(files[0].data.expose(), b"by-name");
}

#[test]
fn user_info_tricks_and_other_schemes_are_refused() {
    let s = Canned::ok(b"x");
    let other = Untouched::new();
    for url in [
        format!("http://127.0.0.1:{}@127.0.0.1:{}/", s.port, other.port()),
        "file:///etc/passwd".to_string(),
        format!("gopher://127.0.0.1:{}/", s.port),
    ] {
        let e = ask("http", &url, &[s.host()], &limits(5000)).unwrap_err();
        assert!(e.to_string().contains("InvalidRequest"), "{url}: {e}");
    }
    assert!(!other.touched());
    assert_eq!(s.hits.load(Ordering::SeqCst), 0);
}

#[test]
fn a_server_that_never_answers_fails_within_the_budget_naming_the_address() {
    // Accepted (by the kernel) but never answered. The network budget is 90%
    // of the plugin's wall-clock limit, so the error names the address
    // instead of the plugin being cut off.
    let silent = Untouched::new();
    let url = format!("http://127.0.0.1:{}/", silent.port());
    hostile(); // compiled before the clock starts
    let start = Instant::now();
    let e = ask(
        "http",
        &url,
        &[format!("127.0.0.1:{}", silent.port())],
        &limits(3000),
    )
    .unwrap_err()
    .to_string();
    let took = start.elapsed();
    assert!(
        e.contains("Unavailable")
            && e.contains(&format!("127.0.0.1:{}", silent.port()))
            && e.contains("network budget of 2700 ms"),
        "{e}"
    );
    assert!(took >= Duration::from_millis(2650), "took {took:?}");
    assert!(took < Duration::from_millis(3500), "took {took:?}");
}

#[test]
fn a_response_over_the_size_cap_is_refused() {
    let big = vec![b'z'; 300 << 10];
    let s = Canned::ok(&big);
    let small = Limits {
        max_file_bytes: 64 << 10,
        max_total_bytes: 256 << 10,
        ..limits(5000)
    };
    let e = ask("http", &s.url(), &[s.host()], &small)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("BadResponse") && e.contains("larger than 262144 bytes"),
        "{e}"
    );
}

#[test]
fn url_port_over_65535_is_refused_not_taken_as_the_default_port() {
    // `http::Uri` reads "127.0.0.1:65616" as having no port, which used to
    // mean 80: a grant of port 80 then covered a URL that names another.
    // Port 80 is bound here (the tests run as root) so a connection shows.
    let l = TcpListener::bind("127.0.0.1:80").expect("port 80 is free for this test");
    l.set_nonblocking(true).unwrap();
    for url in [
        "http://127.0.0.1:65616/x",
        "http://127.0.0.1:99999/",
        "http://127.0.0.1:4294967376/",
    ] {
        let e = ask("http", url, &["127.0.0.1:80".to_string()], &limits(5000)).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("InvalidRequest") && msg.contains("is over 65535"),
            "{url}: {msg}"
        );
        assert!(!msg.contains('\n'), "{msg}");
    }
    assert!(
        l.accept().is_err(),
        "a URL with another port reached port 80"
    );
}
