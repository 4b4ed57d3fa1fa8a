//! The daemon's side of HTTP/1.1, and no more of it than the API needs:
//! one request per connection, a bounded head, a body framed by
//! `Content-Length` or `chunked`, and an answer that closes the connection.
//!
//! It is written here rather than taken from a server framework because
//! the daemon's limits have to act *inside* the protocol (B2, B3): a body
//! is counted against its uid's cap before a byte of it is buffered (a
//! declared length at once, a chunked body chunk by chunk), a head must fit
//! in [`MAX_HEAD_BYTES`], and every refusal, malformed framing included, is
//! answered as the API answers everything else: one JSON line that never
//! repeats what was sent. The request head is parsed by `httparse` (the
//! parser hyper uses); the rest is small enough to read in one sitting.
//!
//! Everything that holds request bytes (the read buffer, the body) is
//! zeroized when dropped, and neither grows by reallocation, which would
//! leave copies of an upload in freed memory.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use zeroize::Zeroizing;

/// The largest request head (request line and headers) the daemon reads.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// The most header fields in one request.
pub const MAX_HEADERS: usize = 64;
/// The longest chunk-size line (with extensions) or trailer line.
const MAX_LINE: usize = 1024;

/// Why a request could not be read. Every message is fixed text or numbers:
/// nothing the client sent is repeated.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("the request head is larger than {MAX_HEAD_BYTES} bytes or has more than {MAX_HEADERS} header fields")]
    HeadTooLarge,
    #[error("malformed request head: {0}")]
    BadHead(String),
    #[error("the connection ended before the request head was complete")]
    HeadCut,
    #[error("malformed Content-Length header")]
    BadLength,
    #[error("unsupported Transfer-Encoding (only chunked is accepted)")]
    BadEncoding,
    #[error("a request may not have both Content-Length and Transfer-Encoding")]
    Ambiguous,
    #[error("unsupported Expect header (only 100-continue is accepted)")]
    Expect,
    #[error("the request body is larger than the {max} bytes this endpoint accepts")]
    BodyTooLarge { max: u64 },
    #[error("malformed chunked body: {0}")]
    BadChunk(&'static str),
    #[error("the connection ended before the request body was complete")]
    BodyCut,
    #[error("reading the request: {0}")]
    Io(std::io::Error),
}

impl HttpError {
    /// The status the daemon answers with.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::HeadTooLarge => 431,
            HttpError::Expect => 417,
            HttpError::BadEncoding => 501,
            HttpError::BodyTooLarge { .. } => 413,
            _ => 400,
        }
    }
}

/// How the body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    /// The request target as sent (origin form: path and query).
    pub target: String,
    pub framing: Framing,
    /// The client waits for `100 Continue` before it sends the body.
    pub expect_continue: bool,
}

/// One client connection: a fixed read buffer over the socket.
pub struct Conn<S> {
    io: S,
    buf: Zeroizing<Vec<u8>>,
    /// Unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
}

/// The reason phrase for a status the daemon sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Content Too Large",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// A whole answer: status line, headers and `body` (JSON, or nothing for
/// 204). The connection closes after it.
pub fn response(status: u16, body: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(body.len() + 128));
    out.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", reason(status)).as_bytes());
    if status != 204 {
        out.extend_from_slice(
            format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            )
            .as_bytes(),
        );
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    if status != 204 {
        out.extend_from_slice(body);
    }
    out
}

/// Parse a complete head; `Ok(None)` while more bytes are needed.
pub fn parse_head(bytes: &[u8]) -> Result<Option<(Head, usize)>, HttpError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut fields);
    let used = match req.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadTooLarge),
        Err(e) => return Err(HttpError::BadHead(e.to_string())),
    };
    let method = req.method.unwrap_or_default().to_owned();
    let target = req.path.unwrap_or_default().to_owned();
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut encodings = 0;
    let mut expect_continue = false;
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value).ok().map(str::trim);
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = value.ok_or(HttpError::BadLength)?;
            if v.is_empty() || v.len() > 19 || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(HttpError::BadLength);
            }
            let n: u64 = v.parse().map_err(|_| HttpError::BadLength)?;
            // Repeated, the values must agree (RFC 9112, 6.3).
            if length.is_some_and(|l| l != n) {
                return Err(HttpError::BadLength);
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            encodings += 1;
            chunked = value.is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
            if !chunked || encodings > 1 {
                return Err(HttpError::BadEncoding);
            }
        } else if h.name.eq_ignore_ascii_case("expect") {
            if !value.is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
                return Err(HttpError::Expect);
            }
            expect_continue = true;
        }
    }
    let framing = match (length, chunked) {
        // Both is how requests are smuggled past a proxy: refuse rather
        // than pick one.
        (Some(_), true) => return Err(HttpError::Ambiguous),
        (Some(0), false) | (None, false) => Framing::None,
        (Some(n), false) => Framing::Length(n),
        (None, true) => Framing::Chunked,
    };
    Ok(Some((
        Head {
            method,
            target,
            framing,
            expect_continue,
        },
        used,
    )))
}

/// Parse a chunk-size line (without its CRLF): hex digits, then optional
/// extensions after `;`, which are ignored.
pub fn parse_chunk_size(line: &[u8]) -> Result<u64, HttpError> {
    let digits = line.split(|b| *b == b';').next().unwrap_or_default();
    // Whitespace before the extensions is tolerated ("BWS", RFC 9112 7.1.1).
    let digits = digits
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(&digits[..0], |i| &digits[..=i]);
    if digits.is_empty() || digits.len() > 15 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return Err(HttpError::BadChunk("bad chunk size"));
    }
    let text = std::str::from_utf8(digits).expect("hex digits are ASCII");
    u64::from_str_radix(text, 16).map_err(|_| HttpError::BadChunk("bad chunk size"))
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub fn new(io: S) -> Self {
        Conn {
            io,
            buf: Zeroizing::new(vec![0; MAX_HEAD_BYTES]),
            start: 0,
            end: 0,
        }
    }

    /// Read more into the buffer; `false` at end of stream. Unread bytes
    /// move to the front when the buffer's end is reached.
    async fn fill(&mut self) -> Result<bool, HttpError> {
        if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let end = self.end;
        if end == self.buf.len() {
            return Err(HttpError::HeadTooLarge);
        }
        let n = self
            .io
            .read(&mut self.buf[end..])
            .await
            .map_err(HttpError::Io)?;
        self.end += n;
        Ok(n > 0)
    }

    /// Read and parse the request head.
    pub async fn read_head(&mut self) -> Result<Head, HttpError> {
        loop {
            if let Some((head, used)) = parse_head(&self.buf[self.start..self.end])? {
                self.start += used;
                return Ok(head);
            }
            if self.end - self.start == self.buf.len() {
                return Err(HttpError::HeadTooLarge);
            }
            if !self.fill().await? {
                return Err(HttpError::HeadCut);
            }
        }
    }

    /// One CRLF-terminated line of at most [`MAX_LINE`] bytes, without the CRLF.
    async fn line(&mut self) -> Result<std::ops::Range<usize>, HttpError> {
        let mut searched = 0;
        loop {
            let unread = &self.buf[self.start..self.end];
            if let Some(i) = unread[searched..].windows(2).position(|w| w == b"\r\n") {
                let at = self.start;
                self.start += searched + i + 2;
                return Ok(at..at + searched + i);
            }
            if unread.len() > MAX_LINE {
                return Err(HttpError::BadChunk("line too long"));
            }
            // Offsets are relative to `start`, which fill() may move.
            searched = unread.len().saturating_sub(1);
            if !self.fill().await? {
                return Err(HttpError::BodyCut);
            }
        }
    }

    /// Append exactly `want` buffered or fresh bytes to `out`, whose
    /// capacity the caller reserved (and counted): no reallocation.
    async fn take_into(&mut self, out: &mut Vec<u8>, want: usize) -> Result<(), HttpError> {
        let from = out.len();
        out.resize(from + want, 0);
        let buffered = (self.end - self.start).min(want);
        out[from..from + buffered].copy_from_slice(&self.buf[self.start..self.start + buffered]);
        self.start += buffered;
        let mut filled = from + buffered;
        while filled < from + want {
            let n = match self.io.read(&mut out[filled..from + want]).await {
                Ok(n) => n,
                Err(e) => {
                    out.truncate(filled);
                    return Err(HttpError::Io(e));
                }
            };
            if n == 0 {
                out.truncate(filled);
                return Err(HttpError::BodyCut);
            }
            filled += n;
        }
        Ok(())
    }

    /// Tell a client that waits for it to send its body.
    async fn go_on(&mut self, head: &Head) -> Result<(), HttpError> {
        if head.expect_continue {
            self.io
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .map_err(HttpError::Io)?;
        }
        Ok(())
    }

    /// Read the body `head` announces, at most `max` bytes. `charge` is
    /// called with each amount of memory before it is allocated for the
    /// body (the whole declared length at once; for a chunked body, each
    /// growth of the buffer), and its error stops the read.
    pub async fn read_body<E: From<HttpError>>(
        &mut self,
        head: &Head,
        max: u64,
        mut charge: impl FnMut(u64) -> Result<(), E>,
    ) -> Result<Zeroizing<Vec<u8>>, E> {
        match head.framing {
            Framing::None => Ok(Zeroizing::new(Vec::new())),
            Framing::Length(n) => {
                if n > max {
                    return Err(HttpError::BodyTooLarge { max }.into());
                }
                charge(n)?;
                self.go_on(head).await?;
                let mut out = Zeroizing::new(Vec::with_capacity(n as usize));
                self.take_into(&mut out, n as usize).await?;
                Ok(out)
            }
            Framing::Chunked => {
                self.go_on(head).await?;
                let mut out = Zeroizing::new(Vec::new());
                loop {
                    let line = self.line().await?;
                    let size = parse_chunk_size(&self.buf[line])?;
                    if size == 0 {
                        break;
                    }
                    let need = out.len() as u64 + size;
                    if need > max {
                        return Err(HttpError::BodyTooLarge { max }.into());
                    }
                    if need > out.capacity() as u64 {
                        // Grow geometrically (bounded by `max`) into a fresh
                        // buffer and zeroize the old one, so many small
                        // chunks cost neither quadratic copying nor stray
                        // copies of the body. The growth is what is charged.
                        let cap = need.max(2 * out.capacity() as u64).max(4096).min(max);
                        charge(cap - out.capacity() as u64)?;
                        let mut bigger = Zeroizing::new(Vec::with_capacity(cap as usize));
                        bigger.extend_from_slice(&out);
                        out = bigger;
                    }
                    self.take_into(&mut out, size as usize).await?;
                    let end = self.line().await?;
                    if !end.is_empty() {
                        return Err(HttpError::BadChunk("chunk data not followed by CRLF").into());
                    }
                }
                // Trailer fields, ignored; an empty line ends them.
                let mut trailer = 0;
                loop {
                    let l = self.line().await?;
                    if l.is_empty() {
                        break;
                    }
                    trailer += l.len();
                    if trailer > MAX_HEAD_BYTES {
                        return Err(HttpError::BadChunk("trailer too large").into());
                    }
                }
                Ok(out)
            }
        }
    }

    /// Send `bytes` (a whole [`response`]) and close our side.
    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.io.write_all(bytes).await?;
        self.io.flush().await?;
        self.io.shutdown().await
    }

    /// The socket.
    pub fn get_ref(&self) -> &S {
        &self.io
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's bytes in, the daemon's bytes out.
    fn conn(input: &[u8]) -> Conn<tokio::io::Join<&[u8], tokio::io::Sink>> {
        Conn::new(tokio::io::join(input, tokio::io::sink()))
    }

    fn block<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn body(input: &[u8], max: u64) -> Result<Vec<u8>, HttpError> {
        block(async {
            let mut c = conn(input);
            let h = c.read_head().await?;
            c.read_body(&h, max, |_| Ok::<_, HttpError>(()))
                .await
                .map(|b| b.to_vec())
        })
    }

    #[test]
    fn heads_parse_and_frame_their_bodies() {
        let raw = b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\nrest";
        let (h, n) = parse_head(raw).unwrap().unwrap();
        assert_eq!(
            (h.method.as_str(), h.target.as_str()),
            ("GET", "/v1/health")
        );
        assert_eq!((h.framing, n), (Framing::None, raw.len() - 4));
        assert!(parse_head(b"GET / HTTP/1.1\r\nHost").unwrap().is_none());
        let h = |s: &str| parse_head(s.as_bytes()).map(|o| o.unwrap().0.framing);
        assert_eq!(
            h("POST / HTTP/1.1\r\ncontent-length: 12\r\n\r\n").unwrap(),
            Framing::Length(12)
        );
        assert_eq!(
            h("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n").unwrap(),
            Framing::Chunked
        );
        for bad in [
            "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nExpect: 200-ok\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
            "GET / HTTP/9.9\r\n\r\n",
        ] {
            assert!(h(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn chunked_and_sized_bodies_are_read_within_their_limit() {
        let chunked =
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: v\r\n\r\n";
        assert_eq!(body(chunked, 5).unwrap(), b"abcde");
        assert!(matches!(
            body(chunked, 4),
            Err(HttpError::BodyTooLarge { max: 4 })
        ));
        let sized = b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcdeXYZ";
        assert_eq!(body(sized, 5).unwrap(), b"abcde");
        assert!(matches!(
            body(sized, 4),
            Err(HttpError::BodyTooLarge { .. })
        ));
        for cut in [
            &b"POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\nabc"[..],
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert!(matches!(body(cut, 100), Err(HttpError::BodyCut)), "{cut:?}");
        }
        for bad in [
            &b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"[..],
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
        ] {
            assert!(
                matches!(body(bad, 100), Err(HttpError::BadChunk(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn b2_a_declared_body_is_charged_before_it_is_buffered() {
        let charged = std::cell::Cell::new(0u64);
        let r = block(async {
            let mut c = conn(b"POST / HTTP/1.1\r\nContent-Length: 1000000\r\n\r\nab");
            let h = c.read_head().await.unwrap();
            c.read_body(&h, 2_000_000, |n| {
                charged.set(charged.get() + n);
                Err(HttpError::BodyTooLarge { max: 0 })
            })
            .await
        });
        assert!(r.is_err());
        assert_eq!(charged.get(), 1_000_000);
        // A chunked body is charged as its buffer grows, never past `max`.
        let mut input = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..100 {
            input.extend_from_slice(b"3e8\r\n");
            input.extend_from_slice(&[b'a'; 1000]);
            input.extend_from_slice(b"\r\n");
        }
        input.extend_from_slice(b"0\r\n\r\n");
        let charged = std::cell::Cell::new(0u64);
        let got = block(async {
            let mut c = conn(&input);
            let h = c.read_head().await.unwrap();
            c.read_body(&h, 150_000, |n| {
                charged.set(charged.get() + n);
                Ok::<_, HttpError>(())
            })
            .await
            .unwrap()
        });
        assert_eq!(got.len(), 100_000);
        assert!(charged.get() >= 100_000 && charged.get() <= 150_000);
    }

    #[test]
    fn a_head_larger_than_the_buffer_is_refused() {
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES));
        big.extend_from_slice(b"\r\n\r\n");
        let r = block(async { conn(&big).read_head().await });
        assert!(matches!(r, Err(HttpError::HeadTooLarge)));
        let r = block(async { conn(b"GET / HT").read_head().await });
        assert!(matches!(r, Err(HttpError::HeadCut)));
    }

    #[test]
    fn fuzz_any_bytes_give_a_request_or_an_error_and_bodies_stay_within_max() {
        use proptest::prelude::*;
        let heads = proptest::sample::select(vec![
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 40\r\n\r\n",
            "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
            "GET / HTTP/1.1\r\n",
            "",
        ]);
        let chunky = proptest::collection::vec(
            (
                0usize..300,
                proptest::sample::select(vec!["", ";e", ";e=\"v\""]),
                any::<bool>(),
            ),
            0..6,
        )
        .prop_map(|chunks| {
            let mut b = Vec::new();
            for (n, ext, good) in chunks {
                b.extend(format!("{n:x}{ext}\r\n").as_bytes());
                b.extend(std::iter::repeat_n(b'x', if good { n } else { n / 2 }));
                b.extend_from_slice(b"\r\n");
            }
            b.extend_from_slice(b"0\r\n\r\n");
            b
        });
        let tail = prop_oneof![chunky, proptest::collection::vec(any::<u8>(), 0..600)];
        let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
            cases: 3000,
            failure_persistence: None,
            ..Default::default()
        });
        runner
            .run(&(heads, tail, 0u64..2000), |(head, tail, max)| {
                let mut input = head.as_bytes().to_vec();
                input.extend(tail);
                let charged = std::cell::Cell::new(0u64);
                let got = block(async {
                    let mut c = conn(&input);
                    let h = c.read_head().await?;
                    c.read_body(&h, max, |n| {
                        charged.set(charged.get() + n);
                        Ok::<_, HttpError>(())
                    })
                    .await
                });
                match got {
                    Ok(body) => {
                        prop_assert!(body.len() as u64 <= max);
                        prop_assert!(charged.get() >= body.len() as u64);
                    }
                    Err(e) => prop_assert!(!e.to_string().contains('\n')),
                }
                // Never more memory counted than the endpoint allows.
                prop_assert!(charged.get() <= max);
                Ok(())
            })
            .unwrap();
    }
}
