//! A small blocking client for the daemon's API, used by `privy run`,
//! `privy upload` and the hook's `tickets.claim`. One request per
//! connection (`Connection: close`); bodies that carry file contents are
//! kept in zeroizing buffers.
//!
//! Every call is bounded by the client's timeout as a whole (connect, send,
//! answer), so a daemon that is stopped (SIGSTOP), wedged or flooded gives
//! one line that says so, `privy daemon at SOCKET did not answer within
//! N s`, never a bare `Resource temporarily unavailable`. Connecting does
//! not block either: a full listen queue is retried until the deadline.

use super::proto::{ClaimBody, Created, HookBody, Scope, TicketInfo, B64};
use crate::secret::{RelPath, Secret};
use base64::Engine as _;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("privy daemon is not running (no one listens on {0}); start it with `privy daemon` or `systemctl start privy.socket`")]
    NotRunning(PathBuf),
    #[error("privy daemon at {socket} did not answer within {}", seconds(*.waited))]
    Timeout { socket: PathBuf, waited: Duration },
    #[error("privy daemon at {socket}: {error}")]
    Io {
        socket: PathBuf,
        error: std::io::Error,
    },
    #[error("privy daemon at {socket} answered something that is not its API: {msg}")]
    Protocol { socket: PathBuf, msg: String },
    /// The daemon refused: `message` is its one-line reason.
    #[error("{message}")]
    Api { status: u16, message: String },
}

/// One file to upload.
pub struct OutFile {
    pub path: RelPath,
    pub data: Secret,
    pub mode: u32,
}

impl std::fmt::Debug for OutFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutFile")
            .field("path", &self.path)
            .field("size", &self.data.len())
            .field("mode", &format_args!("{:o}", self.mode))
            .finish()
    }
}

/// A file a claim returned.
#[derive(Debug)]
pub struct ClaimedFile {
    pub path: String,
    pub data: Secret,
    pub mode: u32,
}

pub struct Client {
    socket: PathBuf,
    timeout: Duration,
}

struct Reply {
    status: u16,
    body: Zeroizing<Vec<u8>>,
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>, timeout: Duration) -> Self {
        Client {
            socket: socket.into(),
            timeout,
        }
    }

    /// A client for the daemon `cfg` names (or `socket`, given on the
    /// command line), waiting `daemon.client_timeout_secs` for answers.
    pub fn for_config(cfg: &crate::config::Config, socket: Option<&Path>) -> Self {
        let socket = socket
            .map(Path::to_path_buf)
            .unwrap_or_else(|| cfg.daemon.socket_path());
        Client::new(socket, Duration::from_secs(cfg.daemon.client_timeout_secs))
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// An I/O error, or the timeout it stands for.
    fn io(&self, error: std::io::Error) -> ClientError {
        if matches!(
            error.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ) {
            return self.timed_out();
        }
        ClientError::Io {
            socket: self.socket.clone(),
            error,
        }
    }

    fn timed_out(&self) -> ClientError {
        ClientError::Timeout {
            socket: self.socket.clone(),
            waited: self.timeout,
        }
    }

    /// Connect without blocking past `deadline`: a daemon that does not
    /// accept (stopped, or its queue full) makes `connect` fail with
    /// EAGAIN on a non-blocking socket, and it is retried until then.
    fn connect(&self, deadline: Instant) -> Result<UnixStream, ClientError> {
        use std::os::fd::{FromRawFd, OwnedFd};
        use std::os::unix::ffi::OsStrExt;
        let path = self.socket.as_os_str().as_bytes();
        // SAFETY: a zeroed sockaddr_un is a valid value.
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        if path.len() >= addr.sun_path.len() {
            return Err(self.io(std::io::Error::from_raw_os_error(libc::ENAMETOOLONG)));
        }
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (d, s) in addr.sun_path.iter_mut().zip(path) {
            *d = *s as libc::c_char;
        }
        // SAFETY: socket(2) with constant arguments; the fd is owned below.
        let fd = unsafe {
            libc::socket(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if fd < 0 {
            return Err(self.io(std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut pause = Duration::from_millis(2);
        loop {
            use std::os::fd::AsRawFd;
            // SAFETY: `addr` is a valid sockaddr_un of the given size.
            let r = unsafe {
                libc::connect(
                    fd.as_raw_fd(),
                    (&addr as *const libc::sockaddr_un).cast(),
                    std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
                )
            };
            if r == 0 {
                break;
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(self.timed_out());
                    }
                    std::thread::sleep(pause.min(deadline - now));
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Some(libc::ENOENT) | Some(libc::ECONNREFUSED) => {
                    return Err(ClientError::NotRunning(self.socket.clone()))
                }
                _ => return Err(self.io(e)),
            }
        }
        let s = UnixStream::from(fd);
        s.set_nonblocking(false).map_err(|e| self.io(e))?;
        Ok(s)
    }

    /// Time left until `deadline`, or the timeout error.
    fn left(&self, deadline: Instant) -> Result<Duration, ClientError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.timed_out());
        }
        Ok(left)
    }

    fn write_by(
        &self,
        s: &mut UnixStream,
        mut b: &[u8],
        deadline: Instant,
    ) -> Result<(), ClientError> {
        while !b.is_empty() {
            s.set_write_timeout(Some(self.left(deadline)?))
                .map_err(|e| self.io(e))?;
            match s.write(b) {
                Ok(0) => return Err(self.io(std::io::ErrorKind::WriteZero.into())),
                Ok(n) => b = &b[n..],
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io(e)),
            }
        }
        Ok(())
    }

    fn read_by(
        &self,
        s: &mut UnixStream,
        out: &mut Zeroizing<Vec<u8>>,
        deadline: Instant,
    ) -> Result<(), ClientError> {
        let mut chunk = Zeroizing::new(vec![0u8; 64 * 1024]);
        loop {
            s.set_read_timeout(Some(self.left(deadline)?))
                .map_err(|e| self.io(e))?;
            match s.read(&mut chunk) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    if out.len() + n > out.capacity() {
                        // Grow into a fresh buffer so no copy of an answer
                        // (which may carry files) is left in freed memory.
                        let mut bigger = Zeroizing::new(Vec::with_capacity(
                            (out.len() + n).max(2 * out.capacity()),
                        ));
                        bigger.extend_from_slice(out);
                        *out = bigger;
                    }
                    out.extend_from_slice(&chunk[..n]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io(e)),
            }
        }
    }

    fn proto(&self, msg: impl Into<String>) -> ClientError {
        ClientError::Protocol {
            socket: self.socket.clone(),
            msg: msg.into(),
        }
    }

    fn send(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<Reply, ClientError> {
        let deadline = Instant::now() + self.timeout;
        let mut s = self.connect(deadline)?;
        let body = body.unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: privy\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let wrote = self
            .write_by(&mut s, head.as_bytes(), deadline)
            .and_then(|()| self.write_by(&mut s, body, deadline));
        // A daemon that refuses early (a limit, too many connections)
        // answers and closes before reading everything: the write then
        // fails, but its answer is there to read.
        let mut raw = Zeroizing::new(Vec::new());
        let read = self.read_by(&mut s, &mut raw, deadline);
        match (wrote, read) {
            (Err(ClientError::Timeout { .. }), _) | (_, Err(ClientError::Timeout { .. })) => {
                Err(self.timed_out())
            }
            (_, Ok(())) if !raw.is_empty() => self.parse(&raw),
            (Err(e), _) | (Ok(()), Err(e)) => Err(e),
            (Ok(()), Ok(())) => self.parse(&raw),
        }
    }

    fn parse(&self, mut raw: &[u8]) -> Result<Reply, ClientError> {
        let mut end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| self.proto("no end of headers"))?;
        // Interim answers (100 Continue) come before the real one.
        while raw.starts_with(b"HTTP/1.1 1") {
            raw = &raw[end + 4..];
            end = raw
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .ok_or_else(|| self.proto("no end of headers"))?;
        }
        let head =
            std::str::from_utf8(&raw[..end]).map_err(|_| self.proto("headers are not UTF-8"))?;
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.strip_prefix("HTTP/1.1 "))
            .and_then(|l| l.get(..3))
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| self.proto("no HTTP/1.1 status line"))?;
        let mut chunked = false;
        let mut length = None;
        for l in lines {
            let Some((k, v)) = l.split_once(':') else {
                continue;
            };
            let v = v.trim();
            if k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked") {
                chunked = true;
            } else if k.eq_ignore_ascii_case("content-length") {
                length = v.parse::<usize>().ok();
            }
        }
        let rest = &raw[end + 4..];
        let body = if chunked {
            dechunk(rest).ok_or_else(|| self.proto("bad chunked body"))?
        } else {
            let n = length.unwrap_or(rest.len());
            if rest.len() < n {
                return Err(self.proto("body shorter than its Content-Length"));
            }
            Zeroizing::new(rest[..n].to_vec())
        };
        Ok(Reply { status, body })
    }

    /// Turn a non-2xx reply into the daemon's one-line reason.
    fn check(&self, r: Reply) -> Result<Reply, ClientError> {
        if (200..300).contains(&r.status) {
            return Ok(r);
        }
        #[derive(serde::Deserialize)]
        struct E {
            error: String,
        }
        let message = serde_json::from_slice::<E>(&r.body)
            .map(|e| e.error)
            .unwrap_or_else(|_| format!("HTTP {}", r.status));
        Err(ClientError::Api {
            status: r.status,
            message,
        })
    }

    /// `GET /v1/health`.
    pub fn health(&self) -> Result<serde_json::Value, ClientError> {
        let r = self.check(self.send("GET", "/v1/health", None)?)?;
        serde_json::from_slice(&r.body).map_err(|e| self.proto(e.to_string()))
    }

    /// Upload `files`; the daemon answers with a ticket.
    pub fn upload(
        &self,
        files: &[OutFile],
        scope: Scope,
        ttl_secs: Option<u64>,
    ) -> Result<Created, ClientError> {
        let mut body = Zeroizing::new(Vec::with_capacity(
            files
                .iter()
                .map(|f| f.data.len() * 4 / 3 + 128)
                .sum::<usize>()
                + 64,
        ));
        body.extend_from_slice(b"{\"files\":[");
        for (i, f) in files.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(b"{\"path\":");
            serde_json::to_writer(&mut *body, f.path.as_str()).expect("string");
            body.extend_from_slice(format!(",\"mode\":{},\"data\":\"", f.mode).as_bytes());
            let at = body.len();
            body.resize(
                at + base64::encoded_len(f.data.len(), true).expect("small"),
                0,
            );
            B64.encode_slice(f.data.expose(), &mut body[at..])
                .expect("sized");
            body.extend_from_slice(b"\"}");
        }
        let scope = match scope {
            Scope::Run => "run",
            Scope::Build => "build",
        };
        body.extend_from_slice(format!("],\"scope\":\"{scope}\"").as_bytes());
        if let Some(t) = ttl_secs {
            body.extend_from_slice(format!(",\"ttl_secs\":{t}").as_bytes());
        }
        body.push(b'}');
        let r = self.check(self.send("POST", "/v1/tickets", Some(&body))?)?;
        serde_json::from_slice(&r.body).map_err(|e| self.proto(e.to_string()))
    }

    /// `GET /v1/tickets/{ticket}`.
    pub fn info(&self, ticket: &str) -> Result<TicketInfo, ClientError> {
        let r = self.check(self.send("GET", &ticket_path(ticket, ""), None)?)?;
        serde_json::from_slice(&r.body).map_err(|e| self.proto(e.to_string()))
    }

    /// `DELETE /v1/tickets/{ticket}`.
    pub fn delete(&self, ticket: &str) -> Result<(), ClientError> {
        self.check(self.send("DELETE", &ticket_path(ticket, ""), None)?)
            .map(drop)
    }

    /// `POST /v1/tickets/{ticket}/claim`: the files, for the hook.
    pub fn claim(
        &self,
        ticket: &str,
        container_id: &str,
        bundle: &Path,
    ) -> Result<Vec<ClaimedFile>, ClientError> {
        self.claim_for(ticket, container_id, bundle, None)
    }

    /// [`Client::claim`] for host uid `for_uid`'s container: the daemon
    /// gives only that uid's tickets (root may claim for any uid; anyone
    /// else only for itself).
    pub fn claim_for(
        &self,
        ticket: &str,
        container_id: &str,
        bundle: &Path,
        for_uid: Option<u32>,
    ) -> Result<Vec<ClaimedFile>, ClientError> {
        let body = serde_json::to_vec(&ClaimBody {
            container_id: container_id.to_owned(),
            bundle: bundle.to_owned(),
            for_uid,
        })
        .expect("serializes");
        let r = self.check(self.send("POST", &ticket_path(ticket, "/claim"), Some(&body))?)?;
        #[derive(serde::Deserialize)]
        struct F<'a> {
            path: String,
            mode: u32,
            #[serde(borrow)]
            data: &'a str,
        }
        #[derive(serde::Deserialize)]
        struct Files<'a> {
            #[serde(borrow)]
            files: Vec<F<'a>>,
        }
        let parsed: Files<'_> =
            serde_json::from_slice(&r.body).map_err(|e| self.proto(e.to_string()))?;
        parsed
            .files
            .into_iter()
            .map(|f| {
                let data = B64
                    .decode(f.data)
                    .map_err(|_| self.proto("file data is not base64"))?;
                Ok(ClaimedFile {
                    path: f.path,
                    data: Secret::new(data),
                    mode: f.mode,
                })
            })
            .collect()
    }
}

impl Client {
    /// `POST /v1/hook`: the checked files the agent gathered for the
    /// container `state` names. Every path is checked again here (the hook
    /// trusts no peer with what it mounts), modes are cleaned again.
    pub fn hook(
        &self,
        state: &[u8],
        hook_annotations: Option<&str>,
        config: Option<&Path>,
    ) -> Result<crate::pipeline::check::Checked, ClientError> {
        self.hook_body(&HookBody {
            state: String::from_utf8_lossy(state).into_owned(),
            hook_annotations: hook_annotations.map(str::to_owned),
            config: config.map(Path::to_path_buf),
            refresh: false,
        })
    }

    /// The checked files for a refresh of running container (its OCI
    /// `state`): as [`Client::hook`], with every source required.
    pub fn refresh_files(
        &self,
        state: &[u8],
        config: Option<&Path>,
    ) -> Result<crate::pipeline::check::Checked, ClientError> {
        self.hook_body(&HookBody {
            state: String::from_utf8_lossy(state).into_owned(),
            hook_annotations: None,
            config: config.map(Path::to_path_buf),
            refresh: true,
        })
    }

    fn hook_body(&self, b: &HookBody) -> Result<crate::pipeline::check::Checked, ClientError> {
        use crate::pipeline::check::{clean_mode, Checked, CheckedFile, Dropped, Override};
        let body = serde_json::to_vec(b).expect("serializes");
        let r = self.check(self.send("POST", "/v1/hook", Some(&body))?)?;
        #[derive(serde::Deserialize)]
        struct F<'a> {
            path: String,
            mode: u32,
            source: String,
            #[serde(borrow)]
            data: &'a str,
        }
        #[derive(serde::Deserialize)]
        struct O {
            path: String,
            winner: String,
            loser: String,
        }
        #[derive(serde::Deserialize)]
        struct D {
            path: String,
            source: String,
        }
        #[derive(serde::Deserialize)]
        struct Answer<'a> {
            #[serde(borrow)]
            files: Vec<F<'a>>,
            #[serde(default)]
            overrides: Vec<O>,
            #[serde(default)]
            dropped: Vec<D>,
            /// Absent from an older agent's answer: no expiry known.
            #[serde(default)]
            expires: Option<u64>,
        }
        let parsed: Answer<'_> = serde_json::from_slice(&r.body).map_err(|e| {
            self.proto(format!(
                "hook answer: line {} column {}",
                e.line(),
                e.column()
            ))
        })?;
        let mut files = Vec::with_capacity(parsed.files.len());
        for f in parsed.files {
            let path = crate::secret::RelPath::new(&f.path)
                .map_err(|e| self.proto(format!("hook answer: {e}")))?;
            let data = B64
                .decode(f.data)
                .map_err(|_| self.proto("file data is not base64"))?;
            files.push(CheckedFile {
                path,
                data: Secret::new(data),
                mode: clean_mode(Some(f.mode)),
                source: f.source,
            });
        }
        Ok(Checked {
            files,
            overrides: parsed
                .overrides
                .into_iter()
                .map(|o| Override {
                    path: o.path,
                    winner: o.winner,
                    loser: o.loser,
                })
                .collect(),
            dropped: parsed
                .dropped
                .into_iter()
                .map(|d| Dropped {
                    path: d.path,
                    source: d.source,
                })
                .collect(),
            expires: parsed.expires,
        })
    }
}

/// A wait as people read it: `30 s`, `2.5 s`.
pub fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// The URL path for a ticket; anything that is not a ticket's characters is
/// refused by the daemon, so only keep those here.
fn ticket_path(ticket: &str, suffix: &str) -> String {
    let clean: String = ticket
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    format!("/v1/tickets/{clean}{suffix}")
}

fn dechunk(mut b: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let mut out = Zeroizing::new(Vec::new());
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&b[..eol]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        b = &b[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_daemon_that_does_not_answer_is_named_with_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s.sock");
        // Listening, never accepting: what a stopped daemon looks like.
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let c = Client::new(&sock, Duration::from_millis(300));
        let started = Instant::now();
        let e = c.health().unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(
            e.to_string(),
            format!(
                "privy daemon at {} did not answer within 0.3 s",
                sock.display()
            )
        );
        // Nobody listening at all is another line.
        drop(_l);
        let e = c.health().unwrap_err();
        assert!(matches!(e, ClientError::NotRunning(_)), "{e}");
        assert_eq!(seconds(Duration::from_secs(30)), "30 s");
    }

    #[test]
    fn chunked_bodies_decode() {
        let b = super::dechunk(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!(&b[..], b"abcde");
        assert!(super::dechunk(b"5\r\nab").is_none());
    }
}
