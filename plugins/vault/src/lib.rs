//! `vault`: private files from HashiCorp Vault or OpenBao.
//!
//! A container asks with the annotation `io.privy.vault=path[,path...]`,
//! each `path` optionally pinned to a version (`ci/deploy-key@3`) or
//! narrowed to one key (`ci/deploy-key#id_ed25519`). Every key of each
//! secret becomes the file `<path>/<key>`. Every path must match one of the
//! `allow` globs, or the source answers `denied` and the container does not
//! start: a container never chooses what the source may read.
//!
//! The source talks to the server only through the host's `privy:source/http`
//! import, which allows only `grant.hosts` and bounds the time. It reads the
//! token (or the AppRole `secret_id`) from a file in `grant.files`. Nothing
//! is cached: each container start reads the current data. The token and
//! the values never appear in a log line or an error message.
//!
//! Expiry (`privy:source/expiry`): the source tells privy when what it read
//! expires, so the container is refreshed before then. A response's
//! `lease_duration`, when not zero, counts from now (dynamic secrets read
//! with `kv_version = 1` from their mount, such as `database/creds/app`; a
//! KV v1 secret's TTL hint, 768 hours unless its `ttl` key says other). On
//! a KV v2 mount, `expires_key` names a `custom_metadata` key holding the
//! time, RFC 3339 (`2027-01-31T00:00:00Z`) or unix seconds; a secret
//! without that key does not expire, one whose value is not a time is
//! named (key and path, never the value) in a warning and does not expire
//! either. Of several secrets the earliest counts.
//!
//! Config keys (`[source.config]`):
//!
//! | key | meaning |
//! |---|---|
//! | `address` | `http://127.0.0.1:8200` or `https://vault.example:8200` (required) |
//! | `allow` | comma-separated globs of paths containers may ask for (required); `*` is any run within one segment, `**` any run across segments |
//! | `mount` | the KV mount, default `secret` |
//! | `kv_version` | `2` (default) or `1` |
//! | `token_file` | a file holding the token |
//! | `role_id`, `secret_id_file` | AppRole instead of a token; `approle_mount` defaults to `approle` |
//! | `ca_file` | PEM CA certificates for `https://`, itself in `grant.files` (default: the system bundle) |
//! | `namespace` | sent as `X-Vault-Namespace` |
//! | `annotation` | the annotation to read, default `io.privy.vault` |
//! | `paths` | what to fetch for a container without that annotation (a build step, say), in the same syntax; still subject to `allow` |
//! | `expires_key` | KV v2 only: the `custom_metadata` key whose value (RFC 3339 or unix seconds) says when the secret expires |

use privy_plugin::{
    Header, HttpError, HttpRequest, HttpResponse, PrivateFile, Request, Source, SourceError,
};
use serde_json::Value;

/// Redirects followed per request; each hop is checked again by the host.
const MAX_REDIRECTS: u32 = 3;

struct Vault;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kv {
    V1,
    V2,
}

enum Auth {
    Token {
        file: String,
    },
    AppRole {
        role_id: String,
        secret_id_file: String,
        mount: String,
    },
}

struct Settings {
    address: String,
    mount: String,
    kv: Kv,
    allow: Vec<String>,
    auth: Auth,
    ca_file: Option<String>,
    namespace: Option<String>,
    annotation: String,
    expires_key: Option<String>,
}

/// One path a container asked for.
#[derive(Debug, PartialEq)]
struct Wanted {
    path: String,
    version: Option<u64>,
    key: Option<String>,
}

fn cfg(key: &str) -> Option<String> {
    privy_plugin::config(key).filter(|v| !v.trim().is_empty())
}

fn invalid(msg: impl Into<String>) -> SourceError {
    SourceError::InvalidConfig(msg.into())
}

fn settings() -> Result<Settings, SourceError> {
    let address = cfg("address").ok_or_else(|| invalid("config key `address` is required"))?;
    let address = address.trim().trim_end_matches('/').to_string();
    if !(address.starts_with("http://") || address.starts_with("https://"))
        || address.contains(['?', '#', ' '])
    {
        return Err(invalid(format!(
            "config key `address`: {address:?} must be an http:// or https:// URL without query"
        )));
    }
    let mount = cfg("mount").unwrap_or_else(|| "secret".into());
    let mount = mount.trim_matches('/').to_string();
    if !valid_path(&mount) {
        return Err(invalid(format!(
            "config key `mount`: {mount:?} is not a valid path"
        )));
    }
    let kv = match cfg("kv_version").as_deref().map(str::trim) {
        None | Some("2") => Kv::V2,
        Some("1") => Kv::V1,
        Some(v) => {
            return Err(invalid(format!(
                "config key `kv_version`: {v:?} must be 1 or 2"
            )))
        }
    };
    let allow: Vec<String> = cfg("allow")
        .ok_or_else(|| {
            invalid("config key `allow` is required: the paths containers may ask for, as globs")
        })?
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if allow.is_empty() {
        return Err(invalid("config key `allow` names no path"));
    }
    let auth = match (cfg("token_file"), cfg("role_id"), cfg("secret_id_file")) {
        (Some(file), None, None) => Auth::Token { file },
        (None, Some(role_id), Some(secret_id_file)) => Auth::AppRole {
            role_id,
            secret_id_file,
            mount: cfg("approle_mount")
                .map(|m| m.trim_matches('/').to_string())
                .unwrap_or_else(|| "approle".into()),
        },
        _ => {
            return Err(invalid(
                "set either `token_file`, or `role_id` with `secret_id_file`",
            ))
        }
    };
    if let Auth::AppRole { mount, .. } = &auth {
        if !valid_path(mount) {
            return Err(invalid("config key `approle_mount` is not a valid path"));
        }
    }
    let expires_key = cfg("expires_key").map(|k| k.trim().to_string());
    if expires_key.is_some() && kv == Kv::V1 {
        return Err(invalid(
            "config key `expires_key` reads KV v2 custom_metadata; this mount is KV v1",
        ));
    }
    Ok(Settings {
        address,
        mount,
        kv,
        allow,
        auth,
        ca_file: cfg("ca_file"),
        namespace: cfg("namespace"),
        annotation: cfg("annotation").unwrap_or_else(|| "io.privy.vault".into()),
        expires_key,
    })
}

/// A secret path: `/`-separated segments of letters, digits, `-`, `_`, `.`;
/// no empty, `.` or `..` segment. Safe to put in a URL as is.
fn valid_path(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 512
        && p.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
}

/// Parse the annotation value: `path[@version][#key]`, comma-separated.
/// `origin` names where the value came from, for errors.
fn parse_wanted(origin: &str, value: &str) -> Result<Vec<Wanted>, SourceError> {
    let items: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if items.is_empty() {
        return Err(SourceError::Denied(format!(
            "{origin} is empty: name at least one secret path"
        )));
    }
    items
        .into_iter()
        .map(|item| {
            let bad = || {
                SourceError::Denied(format!(
                    "{origin}: {:?} is not path[@version][#key]",
                    item.chars().take(100).collect::<String>()
                ))
            };
            let (rest, key) = match item.split_once('#') {
                Some((r, k)) if !k.is_empty() => (r, Some(k.to_string())),
                Some(_) => return Err(bad()),
                None => (item, None),
            };
            let (path, version) = match rest.rsplit_once('@') {
                Some((p, v)) => (
                    p,
                    Some(v.parse::<u64>().ok().filter(|v| *v > 0).ok_or_else(bad)?),
                ),
                None => (rest, None),
            };
            let path = path.trim_matches('/');
            if !valid_path(path) {
                return Err(bad());
            }
            Ok(Wanted {
                path: path.to_string(),
                version,
                key,
            })
        })
        .collect()
}

/// Glob match on `/`-separated paths: `*` is any run of characters within
/// one segment, `**` any run across segments, `?` one character but `/`.
fn glob(pattern: &[u8], path: &[u8]) -> bool {
    match pattern.first() {
        None => path.is_empty(),
        Some(b'*') if pattern.get(1) == Some(&b'*') => {
            let rest = &pattern[2..];
            (0..=path.len()).any(|i| glob(rest, &path[i..]))
        }
        Some(b'*') => {
            let rest = &pattern[1..];
            for i in 0..=path.len() {
                if glob(rest, &path[i..]) {
                    return true;
                }
                if path.get(i) == Some(&b'/') {
                    break;
                }
            }
            false
        }
        Some(b'?') => path.first().is_some_and(|c| *c != b'/') && glob(&pattern[1..], &path[1..]),
        Some(c) => path.first() == Some(c) && glob(&pattern[1..], &path[1..]),
    }
}

fn allowed(allow: &[String], path: &str) -> bool {
    allow.iter().any(|g| glob(g.as_bytes(), path.as_bytes()))
}

/// Talks to the server through the host; knows the strings that must never
/// reach a message.
struct Client<'a> {
    s: &'a Settings,
    token: String,
    /// The token and other credentials, scrubbed from any server text shown.
    hidden: Vec<String>,
}

impl Client<'_> {
    /// Remove credentials from text that came from the server.
    fn scrub(&self, text: &str) -> String {
        let mut t: String = text.chars().filter(|c| !c.is_control()).take(200).collect();
        for h in &self.hidden {
            if !h.is_empty() {
                t = t.replace(h.as_str(), "<redacted>");
            }
        }
        t
    }

    /// The server's `errors` list, if any, for a message.
    fn server_errors(&self, r: &HttpResponse) -> String {
        let errs = serde_json::from_slice::<Value>(&r.body)
            .ok()
            .and_then(|v| v.get("errors").cloned())
            .and_then(|e| e.as_array().cloned())
            .map(|a| {
                a.iter()
                    .filter_map(|e| e.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default();
        if errs.is_empty() {
            String::new()
        } else {
            format!(": {}", self.scrub(&errs))
        }
    }

    /// One API call, following at most [`MAX_REDIRECTS`] redirects (each a
    /// new, host-checked request). `what` names it in errors.
    fn call(
        &self,
        method: &str,
        api: &str,
        body: Vec<u8>,
        what: &str,
    ) -> Result<HttpResponse, SourceError> {
        let mut url = format!("{}/v1/{api}", self.s.address);
        let mut headers = vec![Header {
            name: "x-vault-request".into(),
            value: "true".into(),
        }];
        if !self.token.is_empty() {
            headers.push(Header {
                name: "x-vault-token".into(),
                value: self.token.clone(),
            });
        }
        if let Some(ns) = &self.s.namespace {
            headers.push(Header {
                name: "x-vault-namespace".into(),
                value: ns.clone(),
            });
        }
        if !body.is_empty() {
            headers.push(Header {
                name: "content-type".into(),
                value: "application/json".into(),
            });
        }
        for _ in 0..=MAX_REDIRECTS {
            let req = HttpRequest {
                method: method.into(),
                url: url.clone(),
                headers: headers.clone(),
                body: body.clone(),
                ca_file: self.s.ca_file.clone(),
            };
            let r = privy_plugin::http_send(&req).map_err(|e| match e {
                HttpError::Denied(m) => SourceError::Denied(format!("{what}: {m}")),
                HttpError::Unavailable(m) => SourceError::Unavailable(format!("{what}: {m}")),
                HttpError::InvalidRequest(m) => SourceError::InvalidConfig(format!("{what}: {m}")),
                HttpError::BadResponse(m) => {
                    SourceError::Other(format!("{what}: malformed response: {m}"))
                }
            })?;
            if matches!(r.status, 301 | 302 | 303 | 307 | 308) {
                let loc = r.header("location").unwrap_or_default();
                url = if loc.starts_with("http://") || loc.starts_with("https://") {
                    loc.to_string()
                } else if loc.starts_with('/') {
                    format!("{}{loc}", origin(&self.s.address))
                } else {
                    return Err(SourceError::Other(format!(
                        "{what}: malformed response: redirect {} without a usable location",
                        r.status
                    )));
                };
                continue;
            }
            return Ok(r);
        }
        Err(SourceError::Other(format!(
            "{what}: more than {MAX_REDIRECTS} redirects"
        )))
    }

    /// Map a non-2xx status to the error a container start reports.
    fn status_error(&self, r: &HttpResponse, what: &str) -> SourceError {
        let errs = self.server_errors(r);
        match r.status {
            401 | 403 if errs == ": permission denied" => {
                SourceError::Denied(format!("{what}: permission denied ({})", r.status))
            }
            401 | 403 => {
                SourceError::Denied(format!("{what}: permission denied ({}){errs}", r.status))
            }
            404 => SourceError::NotFound(format!("{what}: no such secret (404){errs}")),
            429 | 500..=599 => {
                SourceError::Unavailable(format!("{what}: server answered {}{errs}", r.status))
            }
            s => SourceError::Other(format!("{what}: server answered {s}{errs}")),
        }
    }

    /// AppRole login: the client token, which is then used like a token file's.
    fn login(&mut self, role_id: &str, secret_id: &str, mount: &str) -> Result<(), SourceError> {
        let what = format!("POST auth/{mount}/login");
        let body = serde_json::json!({"role_id": role_id, "secret_id": secret_id}).to_string();
        let r = self.call(
            "POST",
            &format!("auth/{mount}/login"),
            body.into_bytes(),
            &what,
        )?;
        if r.status == 400 {
            // Vault answers a wrong role or secret id with 400.
            return Err(SourceError::Denied(format!(
                "{what}: login refused (400){}",
                self.server_errors(&r)
            )));
        }
        if r.status != 200 {
            return Err(self.status_error(&r, &what));
        }
        let token = json(&r, &what)?
            .pointer("/auth/client_token")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| {
                SourceError::Other(format!("{what}: malformed response: no auth.client_token"))
            })?;
        self.hidden.push(token.clone());
        self.token = token;
        Ok(())
    }

    /// Read one secret: its keys and values.
    fn read(&self, w: &Wanted) -> Result<serde_json::Map<String, Value>, SourceError> {
        let mount = &self.s.mount;
        let (api, pointer) = match (self.s.kv, w.version) {
            (Kv::V2, None) => (format!("{mount}/data/{}", w.path), "/data/data"),
            (Kv::V2, Some(v)) => (format!("{mount}/data/{}?version={v}", w.path), "/data/data"),
            (Kv::V1, None) => (format!("{mount}/{}", w.path), "/data"),
            (Kv::V1, Some(_)) => {
                return Err(SourceError::Denied(format!(
                    "{}: a version pin (@N) needs a KV v2 mount; {mount} is KV v1",
                    w.path
                )))
            }
        };
        let what = format!("GET {api}");
        let r = self.call("GET", &api, Vec::new(), &what)?;
        if r.status != 200 {
            return Err(self.status_error(&r, &what));
        }
        let v = json(&r, &what)?;
        self.report_expiry(&v, &w.path);
        match v.pointer(pointer) {
            Some(Value::Object(m)) => Ok(m.clone()),
            // KV v2 answers a deleted or destroyed version with null data.
            Some(Value::Null) if self.s.kv == Kv::V2 => Err(SourceError::NotFound(format!(
                "{what}: this version is deleted or destroyed"
            ))),
            _ => Err(SourceError::Other(format!(
                "{what}: malformed response: no {} object",
                pointer.trim_start_matches('/').replace('/', ".")
            ))),
        }
    }

    /// Tell the host when what `v` (the response for `path`) says it
    /// expires: its lease, and the `expires_key` custom metadata.
    fn report_expiry(&self, v: &Value, path: &str) {
        if let Some(secs) = v
            .get("lease_duration")
            .and_then(Value::as_u64)
            .filter(|s| *s > 0)
        {
            privy_plugin::expires_in(secs);
        }
        let Some(key) = &self.s.expires_key else {
            return;
        };
        let Some(at) = v
            .pointer("/data/metadata/custom_metadata")
            .and_then(|m| m.get(key))
        else {
            return;
        };
        match at.as_str().and_then(parse_time) {
            Some(at) => privy_plugin::expires_at(at),
            None => privy_plugin::warn(&format!(
                "secret {path}: custom_metadata {key} is not an RFC 3339 time or unix seconds; no expiry taken"
            )),
        }
    }

    /// Give an AppRole token back; best effort, since it expires anyway.
    fn revoke(&self) {
        let what = "POST auth/token/revoke-self";
        match self.call("POST", "auth/token/revoke-self", Vec::new(), what) {
            Ok(r) if r.status < 300 => {}
            Ok(r) => privy_plugin::warn(&format!("{what}: server answered {}", r.status)),
            Err(e) => privy_plugin::warn(&format!("{what}: {}", error_text(&e))),
        }
    }
}

fn error_text(e: &SourceError) -> &str {
    match e {
        SourceError::NotFound(m)
        | SourceError::Denied(m)
        | SourceError::Unavailable(m)
        | SourceError::InvalidConfig(m)
        | SourceError::Other(m) => m,
    }
}

/// `scheme://host:port` of an address.
fn origin(address: &str) -> &str {
    let after = address.find("://").map(|i| i + 3).unwrap_or(0);
    match address[after..].find('/') {
        Some(i) => &address[..after + i],
        None => address,
    }
}

fn json(r: &HttpResponse, what: &str) -> Result<Value, SourceError> {
    serde_json::from_slice(&r.body)
        .map_err(|_| SourceError::Other(format!("{what}: malformed response: not JSON")))
}

/// A time as `expires_key` may give it: unix seconds, or RFC 3339
/// (`2027-01-31T12:00:00Z`, `2027-01-31T14:00:00.5+02:00`); the unix
/// second it names. Times before 1970 are not times here.
fn parse_time(s: &str) -> Option<u64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        rest = &frac[n..];
    }
    let offset = match rest.as_bytes() {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (oh, om): (i64, i64) = (rest[1..3].parse().ok()?, rest[4..6].parse().ok()?);
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    // Howard Hinnant's days_from_civil.
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + h * 3600 + mi * 60 + sec - offset).ok()
}

/// A key as a file name: one path segment.
fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 255
        && k != "."
        && k != ".."
        && !k.contains('/')
        && !k.chars().any(char::is_control)
}

fn read_credential(path: &str, key: &str) -> Result<String, SourceError> {
    let bytes =
        privy_plugin::read_file(path).map_err(|e| invalid(format!("config key `{key}`: {e}")))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| invalid(format!("config key `{key}`: {path} is not UTF-8")))?;
    let text = text.trim().to_string();
    if text.is_empty() {
        return Err(invalid(format!("config key `{key}`: {path} is empty")));
    }
    Ok(text)
}

impl Source for Vault {
    fn fetch(req: Request) -> Result<Vec<PrivateFile>, SourceError> {
        let s = settings()?;
        // The container's annotation; else the operator's `paths` (for
        // containers that cannot carry annotations, such as build steps).
        let (what, value) = match (req.annotation(&s.annotation), cfg("paths")) {
            (Some(v), _) => (format!("annotation {}", s.annotation), v.to_string()),
            (None, Some(p)) => ("config key `paths`".to_string(), p),
            (None, None) => {
                privy_plugin::debug(&format!("no {} annotation; nothing to fetch", s.annotation));
                return Ok(Vec::new());
            }
        };
        let wanted = parse_wanted(&what, &value)?;
        for w in &wanted {
            if !allowed(&s.allow, &w.path) {
                return Err(SourceError::Denied(format!(
                    "path {} is not allowed (allow: {})",
                    w.path,
                    s.allow.join(",")
                )));
            }
        }
        let mut client = Client {
            s: &s,
            token: String::new(),
            hidden: Vec::new(),
        };
        let approle = match &s.auth {
            Auth::Token { file } => {
                client.token = read_credential(file, "token_file")?;
                client.hidden.push(client.token.clone());
                false
            }
            Auth::AppRole {
                role_id,
                secret_id_file,
                mount,
            } => {
                let secret_id = read_credential(secret_id_file, "secret_id_file")?;
                client.hidden.push(secret_id.clone());
                client.hidden.push(role_id.clone());
                client.login(role_id, &secret_id, mount)?;
                true
            }
        };
        let result = collect(&client, &wanted);
        if approle {
            client.revoke();
        }
        let mut files = result?;
        if !req.names.is_empty() {
            files.retain(|f| req.names.contains(&f.path));
        }
        privy_plugin::debug(&format!(
            "{} files from {} paths",
            files.len(),
            wanted.len()
        ));
        Ok(files)
    }
}

fn collect(client: &Client<'_>, wanted: &[Wanted]) -> Result<Vec<PrivateFile>, SourceError> {
    let mut files = Vec::new();
    for w in wanted {
        let data = client.read(w)?;
        let keys: Vec<(&String, &Value)> = match &w.key {
            Some(k) => vec![data.get_key_value(k).ok_or_else(|| {
                SourceError::NotFound(format!("secret {} has no key {k}", w.path))
            })?],
            None => data.iter().collect(),
        };
        if keys.is_empty() {
            return Err(SourceError::NotFound(format!(
                "secret {} has no keys",
                w.path
            )));
        }
        for (k, v) in keys {
            if !valid_key(k) {
                return Err(SourceError::Other(format!(
                    "secret {}: key {:?} cannot be a file name",
                    w.path,
                    k.chars().take(64).collect::<String>()
                )));
            }
            let data = match v {
                Value::String(s) => s.clone().into_bytes(),
                other => other.to_string().into_bytes(),
            };
            files.push(PrivateFile {
                path: format!("{}/{k}", w.path),
                data,
                mode: None,
            });
        }
    }
    Ok(files)
}

privy_plugin::export_source!(Vault);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_stay_within_segments_unless_doubled() {
        assert!(glob(b"ci/*", b"ci/deploy-key"));
        assert!(!glob(b"ci/*", b"ci/a/b"));
        assert!(glob(b"ci/**", b"ci/a/b"));
        assert!(!glob(b"ci/*", b"cid/x"));
        assert!(glob(b"ci/key?", b"ci/key1"));
        assert!(!glob(b"ci/key", b"ci/key2"));
        assert!(!glob(b"*", b"a/b"));
    }

    #[test]
    fn annotation_items_parse_versions_and_keys() {
        let w = parse_wanted("annotation a", " ci/x@3 , deploy/y#id ,").unwrap();
        assert_eq!(
            w,
            vec![
                Wanted {
                    path: "ci/x".into(),
                    version: Some(3),
                    key: None
                },
                Wanted {
                    path: "deploy/y".into(),
                    version: None,
                    key: Some("id".into())
                },
            ]
        );
        for bad in [
            "", " , ", "ci/../x", "ci/x@0", "ci/x@v", "ci x", "ci/x#", "a?b",
        ] {
            assert!(parse_wanted("a", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn expiry_times_parse_as_rfc3339_or_unix_seconds() {
        assert_eq!(parse_time("1800000000"), Some(1_800_000_000));
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_time("2026-12-02T04:39:35Z"), Some(1_796_186_375));
        assert_eq!(
            parse_time("2026-12-02t04:39:35.804991z"),
            Some(1_796_186_375)
        );
        assert_eq!(parse_time("2026-12-02T06:39:35+02:00"), Some(1_796_186_375));
        assert_eq!(parse_time("2026-12-01T23:39:35-05:00"), Some(1_796_186_375));
        assert_eq!(parse_time("2000-02-29T00:00:00Z"), Some(951_782_400));
        for bad in [
            "",
            "soon",
            "-5",
            "2026-12-02",
            "2026-12-02T04:39:35",
            "2026-13-02T04:39:35Z",
            "2026-12-02T24:00:00Z",
            "2026-12-02T04:39:35.Z",
            "2026-12-02T04:39:35+0200",
            "1969-12-31T23:59:59Z",
            "2026-12-02T04:39:35Zjunk",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn origin_drops_the_path() {
        assert_eq!(
            origin("https://v.example:8200/base"),
            "https://v.example:8200"
        );
        assert_eq!(origin("http://127.0.0.1:8200"), "http://127.0.0.1:8200");
    }
}
