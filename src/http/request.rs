//! A parsed HTTP request head, kept as one byte buffer plus spans into it, so that a
//! request costs two allocations (which are recycled) and hands out zero-copy views.

use crate::http::response::Status;

/// Most header lines in a request; more gives 431.
pub(crate) const MAX_HEADERS: usize = 100;

/// A half-open byte range into [`Request::head`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    /// First byte.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
}

impl Span {
    fn of(base: &[u8], part: &[u8]) -> Span {
        let start = part.as_ptr() as usize - base.as_ptr() as usize;
        Span {
            start: start as u32,
            end: (start + part.len()) as u32,
        }
    }

    /// The bytes this span covers in `buf`.
    pub fn get(self, buf: &[u8]) -> &[u8] {
        &buf[self.start as usize..self.end as usize]
    }
}

/// How the body of a request is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body.
    None,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A request: head bytes, spans into them, and the body.
#[derive(Debug, Default)]
pub struct Request {
    /// The raw head, request line to the blank line.
    pub head: Vec<u8>,
    /// Method token.
    pub method: Span,
    /// Path part of the target (before `?`), still percent-encoded.
    pub path: Span,
    /// Query part of the target (after `?`), empty when absent.
    pub query: Span,
    /// Whole request target.
    pub target: Span,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Header (name, value) spans in arrival order.
    pub headers: Vec<(Span, Span)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// Whether the connection stays open after the reply.
    pub keep_alive: bool,
    /// Whether the client sent `Expect: 100-continue`.
    pub expect_continue: bool,
}

impl Request {
    /// The method, e.g. `GET`.
    pub fn method(&self) -> &[u8] {
        self.method.get(&self.head)
    }

    /// The path, percent-encoded, e.g. `/a%20b`.
    pub fn path(&self) -> &[u8] {
        self.path.get(&self.head)
    }

    /// The raw query string without `?`.
    pub fn query(&self) -> &[u8] {
        self.query.get(&self.head)
    }

    /// Whether the method is HEAD.
    pub fn is_head(&self) -> bool {
        self.method() == b"HEAD"
    }

    /// First value of a header, by case-insensitive name.
    pub fn header(&self, name: &[u8]) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.get(&self.head).eq_ignore_ascii_case(name))
            .map(|(_, v)| v.get(&self.head))
    }

    /// Every value of a header, by case-insensitive name.
    pub fn header_all<'a>(&'a self, name: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.get(&self.head).eq_ignore_ascii_case(name))
            .map(|(_, v)| v.get(&self.head))
    }

    /// Header `i` as (name, value).
    pub fn header_at(&self, i: usize) -> Option<(&[u8], &[u8])> {
        self.headers
            .get(i)
            .map(|(n, v)| (n.get(&self.head), v.get(&self.head)))
    }

    /// Whether any comma-separated element of any `name` header equals `token`
    /// (case-insensitive), e.g. `Connection: keep-alive, Upgrade`.
    pub fn has_token(&self, name: &[u8], token: &[u8]) -> bool {
        self.header_all(name)
            .flat_map(|v| v.split(|&b| b == b','))
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
    }

    /// Empties the request, keeping its allocations for the next one.
    pub fn clear(&mut self) {
        self.head.clear();
        self.headers.clear();
        self.body.clear();
        self.keep_alive = false;
        self.expect_continue = false;
    }

    /// [`clear`](Self::clear), also giving back buffers larger than a typical request
    /// needs, so that a pool of kept requests stays small whatever came through it.
    pub fn clear_for_reuse(&mut self) {
        self.clear();
        if self.head.capacity() > KEEP_HEAD_BYTES {
            self.head = Vec::new();
        }
        if self.headers.capacity() > KEEP_HEADERS {
            self.headers = Vec::new();
        }
        if self.body.capacity() > KEEP_BODY_BYTES {
            self.body = Vec::new();
        }
    }
}

/// Capacities a reused request keeps (see [`Request::clear_for_reuse`]).
const KEEP_HEAD_BYTES: usize = 8 << 10;
const KEEP_HEADERS: usize = 64;
const KEEP_BODY_BYTES: usize = 16 << 10;

/// Limits the parser enforces.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// Largest head; over it: 431.
    pub max_header_bytes: usize,
    /// Longest request target; over it: 414.
    pub max_uri_bytes: usize,
    /// Largest body; over it: 413.
    pub max_body_bytes: u64,
}

/// A request head that cannot be served, with the status to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// The HTTP status: 400, 413, 414, 417, 431, 501 or 505.
    pub status: Status,
    /// Why, for the error event.
    pub reason: &'static str,
}

fn reject(status: Status, reason: &'static str) -> Reject {
    Reject { status, reason }
}

/// Parses a request head from the start of `buf` into `req` (which must be clear).
///
/// Returns `Ok(None)` when the head is not complete yet (nothing is consumed),
/// `Ok(Some((head_len, body)))` when it is, or the status to answer.
pub fn parse_head(
    buf: &[u8],
    req: &mut Request,
    limits: &HeadLimits,
) -> Result<Option<(usize, BodyKind)>, Reject> {
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut raw);
    let status = httparse::ParserConfig::default().parse_request(&mut parsed, buf);
    let head_len = match status {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            // Tell an over-long target (414) from an over-long head (431) before the
            // head is complete, so that neither can grow without bound.
            let line_end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
            if target_len(&buf[..line_end]) > limits.max_uri_bytes {
                return Err(reject(Status::URI_TOO_LONG, "request target too long"));
            }
            if buf.len() > limits.max_header_bytes {
                return Err(reject(Status::HEADER_TOO_LARGE, "request head too large"));
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(reject(Status::HEADER_TOO_LARGE, "too many header lines"))
        }
        Err(httparse::Error::Version) => {
            return Err(reject(
                Status::VERSION_NOT_SUPPORTED,
                "unsupported HTTP version",
            ))
        }
        Err(_) => return Err(reject(Status::BAD_REQUEST, "malformed request head")),
    };
    if head_len > limits.max_header_bytes {
        return Err(reject(Status::HEADER_TOO_LARGE, "request head too large"));
    }
    let target = parsed.path.unwrap_or("");
    if target.len() > limits.max_uri_bytes {
        return Err(reject(Status::URI_TOO_LONG, "request target too long"));
    }
    if !(target.starts_with('/') || target == "*" || target.contains("://")) {
        return Err(reject(Status::BAD_REQUEST, "malformed request target"));
    }
    let minor = parsed.version.unwrap_or(1);
    let base = &buf[..head_len];
    req.head.extend_from_slice(base);
    let method = parsed.method.unwrap_or("").as_bytes();
    req.method = Span::of(base, method);
    req.minor_version = minor;
    let target_bytes = target.as_bytes();
    req.target = Span::of(base, target_bytes);
    match target_bytes.iter().position(|&b| b == b'?') {
        Some(q) => {
            req.path = Span::of(base, &target_bytes[..q]);
            req.query = Span::of(base, &target_bytes[q + 1..]);
        }
        None => {
            req.path = req.target;
            req.query = Span {
                start: req.target.end,
                end: req.target.end,
            };
        }
    }
    for h in parsed.headers.iter() {
        req.headers
            .push((Span::of(base, h.name.as_bytes()), Span::of(base, h.value)));
    }

    // Body framing, RFC 9112 §6. Both Transfer-Encoding and Content-Length is a
    // smuggling vector: refuse it rather than guess.
    let te: Vec<&[u8]> = req.header_all(b"transfer-encoding").collect();
    let mut body = BodyKind::None;
    if !te.is_empty() {
        if req.header(b"content-length").is_some() {
            return Err(reject(
                Status::BAD_REQUEST,
                "both Content-Length and Transfer-Encoding",
            ));
        }
        if minor == 0 {
            return Err(reject(
                Status::BAD_REQUEST,
                "Transfer-Encoding in an HTTP/1.0 request",
            ));
        }
        let codings: Vec<&[u8]> = te
            .iter()
            .flat_map(|v| v.split(|&b| b == b','))
            .map(|t| t.trim_ascii())
            .filter(|t| !t.is_empty())
            .collect();
        match codings.as_slice() {
            [c] if c.eq_ignore_ascii_case(b"chunked") => body = BodyKind::Chunked,
            _ => {
                return Err(reject(
                    Status::NOT_IMPLEMENTED,
                    "unsupported Transfer-Encoding",
                ))
            }
        }
    } else {
        let mut length: Option<u64> = None;
        for v in req.header_all(b"content-length") {
            for part in v.split(|&b| b == b',') {
                let n = parse_decimal(part.trim_ascii())
                    .ok_or(reject(Status::BAD_REQUEST, "invalid Content-Length"))?;
                if length.is_some_and(|l| l != n) {
                    return Err(reject(Status::BAD_REQUEST, "conflicting Content-Length"));
                }
                length = Some(n);
            }
        }
        if let Some(n) = length {
            if n > limits.max_body_bytes {
                return Err(reject(Status::PAYLOAD_TOO_LARGE, "request body too large"));
            }
            if n > 0 {
                body = BodyKind::Length(n);
            }
        }
    }

    if minor == 1 && req.header(b"host").is_none() {
        return Err(reject(Status::BAD_REQUEST, "missing Host header"));
    }
    req.keep_alive = if minor == 0 {
        req.has_token(b"connection", b"keep-alive")
    } else {
        !req.has_token(b"connection", b"close")
    };
    if let Some(e) = req.header(b"expect") {
        if e.trim_ascii().eq_ignore_ascii_case(b"100-continue") {
            req.expect_continue = minor == 1;
        } else {
            return Err(reject(Status::EXPECTATION_FAILED, "unsupported Expect"));
        }
    }
    Ok(Some((head_len, body)))
}

/// Length of the target in a (possibly incomplete) request line.
fn target_len(line: &[u8]) -> usize {
    let mut parts = line.split(|&b| b == b' ').filter(|p| !p.is_empty());
    parts.next();
    parts.next().map_or(0, <[u8]>::len)
}

/// Parses a non-empty run of ASCII digits without overflow.
pub fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u64::from(b - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits {
        max_header_bytes: 1024,
        max_uri_bytes: 64,
        max_body_bytes: 1000,
    };

    fn parse(s: &str) -> Result<Option<(usize, BodyKind, Request)>, Reject> {
        let mut r = Request::default();
        parse_head(s.as_bytes(), &mut r, &LIMITS).map(|o| o.map(|(n, b)| (n, b, r)))
    }

    #[test]
    fn parses_a_simple_request() {
        let s = "GET /a/b?x=1&y=%20 HTTP/1.1\r\nHost: h\r\nX-Two: a\r\nx-two: b\r\n\r\nrest";
        let (n, body, r) = parse(s).unwrap().unwrap();
        assert_eq!(n, s.len() - 4);
        assert_eq!(body, BodyKind::None);
        assert_eq!(r.method(), b"GET");
        assert_eq!(r.path(), b"/a/b");
        assert_eq!(r.query(), b"x=1&y=%20");
        assert_eq!(r.header(b"HOST"), Some(&b"h"[..]));
        assert_eq!(
            r.header_all(b"x-two").collect::<Vec<_>>(),
            vec![&b"a"[..], &b"b"[..]]
        );
        assert!(r.keep_alive);
        assert_eq!(r.header_at(1), Some((&b"X-Two"[..], &b"a"[..])));
    }

    #[test]
    fn incomplete_input_consumes_nothing_at_every_split() {
        let s = "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n";
        for i in 0..s.len() {
            assert!(parse(&s[..i]).unwrap().is_none(), "split at {i}");
        }
        let (n, body, _) = parse(s).unwrap().unwrap();
        assert_eq!((n, body), (s.len(), BodyKind::Length(3)));
    }

    #[test]
    fn keep_alive_rules() {
        let ka = |s: &str| parse(s).unwrap().unwrap().2.keep_alive;
        assert!(!ka("GET / HTTP/1.0\r\n\r\n"));
        assert!(ka("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
        assert!(!ka(
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: foo, close\r\n\r\n"
        ));
    }

    #[test]
    fn body_framing() {
        let b = |s: &str| parse(s).map(|o| o.unwrap().1);
        assert_eq!(
            b("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Ok(BodyKind::Chunked)
        );
        assert_eq!(
            b("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n"),
            Ok(BodyKind::Length(5))
        );
        assert_eq!(
            b("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"),
            Ok(BodyKind::None)
        );
        let st = |s: &str| parse(s).unwrap_err().status;
        assert_eq!(
            st("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
            Status::BAD_REQUEST
        );
        assert_eq!(
            st("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n"),
            Status::BAD_REQUEST
        );
        assert_eq!(
            st("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000000000000\r\n\r\n"),
            Status::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            st("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
            Status::BAD_REQUEST
        );
        assert_eq!(st("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"), Status::BAD_REQUEST);
        assert_eq!(
            st("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Status::NOT_IMPLEMENTED
        );
        assert_eq!(
            st("POST / HTTP/1.1\r\nHost: h\r\nExpect: teapot\r\n\r\n"),
            Status::EXPECTATION_FAILED
        );
    }

    #[test]
    fn limits_and_syntax() {
        let st = |s: &str| parse(s).unwrap_err().status;
        assert_eq!(st("GET / HTTP/1.1\r\n\r\n"), Status::BAD_REQUEST, "no Host");
        assert_eq!(
            st("GET / HTTP/1.1\r\nHost: h\r\nBad Header: x\r\n\r\n"),
            Status::BAD_REQUEST
        );
        assert_eq!(
            st("GET nopath HTTP/1.1\r\nHost: h\r\n\r\n"),
            Status::BAD_REQUEST
        );
        assert_eq!(
            st("GET / HTTP/2.0\r\nHost: h\r\n\r\n"),
            Status::VERSION_NOT_SUPPORTED
        );
        let long = format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(100));
        assert_eq!(st(&long), Status::URI_TOO_LONG);
        assert_eq!(
            st(&long[..80]),
            Status::URI_TOO_LONG,
            "detected before the head ends"
        );
        let big = format!(
            "GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n",
            "a".repeat(2000)
        );
        assert_eq!(st(&big), Status::HEADER_TOO_LARGE);
        assert_eq!(
            st(&big[..1500]),
            Status::HEADER_TOO_LARGE,
            "detected before the head ends"
        );
        let many: String = (0..150).map(|i| format!("H{i}: v\r\n")).collect();
        assert_eq!(
            st(&format!("GET / HTTP/1.1\r\nHost: h\r\n{many}\r\n")),
            Status::HEADER_TOO_LARGE
        );
    }

    #[test]
    fn decimal_parsing() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(
            parse_decimal(b"18446744073709551615"),
            None,
            "20 digits refused"
        );
        assert_eq!(
            parse_decimal(b"9999999999999999999"),
            Some(9_999_999_999_999_999_999)
        );
        assert_eq!(parse_decimal(b""), None);
        assert_eq!(parse_decimal(b"+1"), None);
    }
}
