//! Test fixture: a source that misbehaves as its `mode` config asks, so the
//! sandbox tests can prove each misbehaviour is contained. Never shipped.

use privy_plugin::{PrivateFile, Request, Source, SourceError};

struct Hostile;

fn file(path: &str, data: Vec<u8>) -> PrivateFile {
    PrivateFile {
        path: path.into(),
        data,
        mode: None,
    }
}

/// `count` files of `size` bytes, named f0, f1, ...
fn ok_files() -> Vec<PrivateFile> {
    let count: usize = privy_plugin::config("count")
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let size: usize = privy_plugin::config("size")
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    (0..count)
        .map(|i| file(&format!("f{i}"), vec![b'a' + (i % 26) as u8; size]))
        .collect()
}

#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(n: u64, pad: &mut [u8; 256]) -> u64 {
    pad[(n % 256) as usize] = n as u8;
    let mut local = [0u8; 256];
    local.copy_from_slice(pad);
    recurse(n + 1, &mut local) + local[0] as u64
}

impl Source for Hostile {
    fn fetch(_req: Request) -> Result<Vec<PrivateFile>, SourceError> {
        let mode = privy_plugin::config("mode").unwrap_or_default();
        match mode.as_str() {
            // Well-behaved: `count` files of `size` bytes, named f0, f1, ...
            "ok" => Ok(ok_files()),
            // As `ok`, saying its files expire: `expires_at` and
            // `expires_in` are comma-separated lists of seconds, each one
            // call (in that order).
            "expires" => {
                let each = |key: &str| -> Vec<u64> {
                    privy_plugin::config(key)
                        .unwrap_or_default()
                        .split(',')
                        .filter_map(|v| v.trim().parse().ok())
                        .collect()
                };
                each("expires_at")
                    .into_iter()
                    .for_each(privy_plugin::expires_at);
                each("expires_in")
                    .into_iter()
                    .for_each(privy_plugin::expires_in);
                Ok(ok_files())
            }
            "spin" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "membomb" => {
                let mut v: Vec<Vec<u8>> = Vec::new();
                loop {
                    v.push(vec![1u8; 16 << 20]);
                    std::hint::black_box(&v);
                }
            }
            "recursion" => {
                let mut pad = [0u8; 256];
                let n = recurse(0, &mut pad);
                Ok(vec![file("never", n.to_le_bytes().to_vec())])
            }
            "escape-read" => {
                let dir = privy_plugin::config("dir").unwrap_or_else(|| "/".into());
                for p in [
                    format!("{dir}/../../../../etc/passwd"),
                    "/etc/passwd".to_string(),
                ] {
                    if let Ok(data) = std::fs::read(&p) {
                        return Ok(vec![file("stolen", data)]);
                    }
                }
                Err(SourceError::Denied(
                    "could not read outside the grant".into(),
                ))
            }
            "symlink-read" => {
                // `link` in the granted dir points outside it.
                let dir = privy_plugin::config("dir").unwrap_or_default();
                match std::fs::read(format!("{dir}/link")) {
                    Ok(data) => Ok(vec![file("stolen", data)]),
                    Err(e) => Err(SourceError::Denied(format!("symlink read refused: {e}"))),
                }
            }
            "read-path" => {
                // Open and read `path` through WASI (a FIFO in a granted dir).
                let path = privy_plugin::config("path").unwrap_or_default();
                match std::fs::read(&path) {
                    Ok(data) => Ok(vec![file("read", data)]),
                    Err(e) => Err(SourceError::Denied(format!("read {path}: {e}"))),
                }
            }
            "read-file" => {
                // Read `path` through the `read-file` host import (grant.files).
                let path = privy_plugin::config("path").unwrap_or_default();
                match privy_plugin::read_file(&path) {
                    Ok(data) => Ok(vec![file("read", data)]),
                    Err(e) => Err(SourceError::Denied(format!("read-file: {e}"))),
                }
            }
            "connect" => {
                // No grant.hosts: the sandbox has no network at all.
                let to = privy_plugin::config("to").unwrap_or_else(|| "127.0.0.1:1".into());
                match std::net::TcpStream::connect(to.as_str()) {
                    Ok(_) => Ok(vec![file("connected", b"yes".to_vec())]),
                    Err(e) => Err(SourceError::Denied(format!("connect to {to} refused: {e}"))),
                }
            }
            "http" | "http-follow" => {
                // Ask the host for `url`, whatever the grant says; with
                // `http-follow`, also follow one redirect wherever it points.
                let mut url = privy_plugin::config("url").unwrap_or_default();
                for _ in 0..2 {
                    let req = privy_plugin::HttpRequest {
                        method: "GET".into(),
                        url: url.clone(),
                        headers: Vec::new(),
                        body: Vec::new(),
                        ca_file: None,
                    };
                    let r = privy_plugin::http_send(&req)
                        .map_err(|e| SourceError::Denied(format!("{e:?}")))?;
                    match r.header("location") {
                        Some(loc) if mode == "http-follow" && (300..400).contains(&r.status) => {
                            url = loc.to_string();
                        }
                        _ => return Ok(vec![file("reached", r.body)]),
                    }
                }
                Err(SourceError::Other("redirected twice".into()))
            }
            "bad-utf8" => {
                // SAFETY: deliberately invalid UTF-8, to prove the host refuses it.
                let path = unsafe { String::from_utf8_unchecked(vec![b'a', 0xff, 0xfe]) };
                Ok(vec![file(&path, b"x".to_vec())])
            }
            "big-output" => Ok((0..64)
                .map(|i| file(&format!("big{i}"), vec![7u8; 1 << 20]))
                .collect()),
            "many-files" => Ok((0..100_000)
                .map(|i| file(&format!("t{i}"), vec![1]))
                .collect()),
            "dotdot" => Ok(vec![file("../escape", b"x".to_vec())]),
            "absolute" => Ok(vec![file("/etc/escape", b"x".to_vec())]),
            "nul" => Ok(vec![file("a\0b", b"x".to_vec())]),
            "long" => Ok(vec![file(&"a/".repeat(2100), b"x".to_vec())]),
            "dup" => Ok(vec![
                file("same", b"1".to_vec()),
                file("same", b"2".to_vec()),
            ]),
            "log-flood" => {
                for i in 0..1_000_000u32 {
                    privy_plugin::info(&format!("line {i}"));
                }
                Ok(vec![])
            }
            "panic" => panic!("hostile plugin panicked on purpose"),
            "fail" => Err(SourceError::Unavailable(
                "backend is down (on purpose)".into(),
            )),
            other => Err(SourceError::InvalidConfig(format!(
                "unknown mode {other:?}"
            ))),
        }
    }
}

privy_plugin::export_source!(Hostile);
