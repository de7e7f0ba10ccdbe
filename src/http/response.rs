//! Writing response heads: status line, automatic headers, validated extra headers.

/// An HTTP status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u16);

#[allow(missing_docs)]
impl Status {
    pub const CONTINUE: Status = Status(100);
    pub const SWITCHING_PROTOCOLS: Status = Status(101);
    pub const OK: Status = Status(200);
    pub const NO_CONTENT: Status = Status(204);
    pub const PARTIAL_CONTENT: Status = Status(206);
    pub const MOVED_PERMANENTLY: Status = Status(301);
    pub const NOT_MODIFIED: Status = Status(304);
    pub const BAD_REQUEST: Status = Status(400);
    pub const FORBIDDEN: Status = Status(403);
    pub const NOT_FOUND: Status = Status(404);
    pub const METHOD_NOT_ALLOWED: Status = Status(405);
    pub const REQUEST_TIMEOUT: Status = Status(408);
    pub const PAYLOAD_TOO_LARGE: Status = Status(413);
    pub const URI_TOO_LONG: Status = Status(414);
    pub const RANGE_NOT_SATISFIABLE: Status = Status(416);
    pub const EXPECTATION_FAILED: Status = Status(417);
    pub const UPGRADE_REQUIRED: Status = Status(426);
    pub const HEADER_TOO_LARGE: Status = Status(431);
    pub const INTERNAL_ERROR: Status = Status(500);
    pub const NOT_IMPLEMENTED: Status = Status(501);
    pub const SERVICE_UNAVAILABLE: Status = Status(503);
    pub const VERSION_NOT_SUPPORTED: Status = Status(505);
}

impl Status {
    /// Whether a response with this status carries no body (RFC 9110 §6.4.1).
    pub fn forbids_body(self) -> bool {
        self.0 < 200 || self.0 == 204 || self.0 == 304
    }

    /// The reason phrase.
    pub fn reason(self) -> &'static str {
        match self.0 {
            100 => "Continue",
            101 => "Switching Protocols",
            200 => "OK",
            201 => "Created",
            202 => "Accepted",
            204 => "No Content",
            206 => "Partial Content",
            301 => "Moved Permanently",
            302 => "Found",
            303 => "See Other",
            304 => "Not Modified",
            307 => "Temporary Redirect",
            308 => "Permanent Redirect",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            406 => "Not Acceptable",
            408 => "Request Timeout",
            409 => "Conflict",
            410 => "Gone",
            411 => "Length Required",
            412 => "Precondition Failed",
            413 => "Content Too Large",
            414 => "URI Too Long",
            415 => "Unsupported Media Type",
            416 => "Range Not Satisfiable",
            417 => "Expectation Failed",
            422 => "Unprocessable Content",
            426 => "Upgrade Required",
            429 => "Too Many Requests",
            431 => "Request Header Fields Too Large",
            500 => "Internal Server Error",
            501 => "Not Implemented",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            504 => "Gateway Timeout",
            505 => "HTTP Version Not Supported",
            _ => "",
        }
    }
}

/// Which automatic headers the application's extra headers already provide.
#[derive(Debug, Default, Clone, Copy)]
pub struct Provided {
    /// `Content-Length` or `Transfer-Encoding` present.
    pub length: bool,
    /// The value of `Content-Length`, when present (several must agree).
    pub content_length: Option<u64>,
    /// `Transfer-Encoding` present.
    pub transfer_encoding: bool,
    /// `Date` present.
    pub date: bool,
    /// `Connection: close` present: the connection closes after this reply.
    pub close: bool,
    /// `Connection` present at all.
    pub connection: bool,
}

/// Checks application-supplied header lines and normalises them to `Name: value\r\n`.
///
/// Lines may end in CRLF or LF; the last one may omit it. Each must be a valid
/// `token: value` with no control characters, so a reply can never be split by
/// header injection.
pub fn normalize_headers(extra: &[u8], out: &mut Vec<u8>) -> Result<Provided, String> {
    let mut provided = Provided::default();
    for raw in extra.split(|&b| b == b'\n') {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.is_empty() {
            continue;
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(|| format!("header line without ':': {}", crate::error::excerpt(line)))?;
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.is_empty() || !name.iter().all(|&b| is_token_byte(b)) {
            return Err(format!(
                "invalid header name: {}",
                crate::error::excerpt(name)
            ));
        }
        if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(format!(
                "control character in header {}",
                crate::error::excerpt(name)
            ));
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_length(value).ok_or_else(|| {
                format!("invalid Content-Length {}", crate::error::excerpt(value))
            })?;
            if provided.content_length.is_some_and(|m| m != n) {
                return Err("two Content-Length headers that differ".into());
            }
            provided.content_length = Some(n);
            provided.length = true;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            provided.transfer_encoding = true;
            provided.length = true;
        } else if name.eq_ignore_ascii_case(b"date") {
            provided.date = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            provided.connection = true;
            provided.close |= value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    Ok(provided)
}

/// A `Content-Length` value: decimal digits only (no sign, no spaces, no list), at most
/// 19 of them so it fits a u64.
fn parse_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// The last header block an application passed with a reply, normalised. A server
/// answers with the same few headers again and again; comparing them with the last block
/// costs a fraction of checking them byte by byte, the largest cost of a small reply's
/// head otherwise.
#[derive(Debug, Default)]
pub struct HeaderCache {
    input: Vec<u8>,
    normalized: Vec<u8>,
    provided: Provided,
}

/// Capacity the cache keeps across a change of block (a one-off long block is not held).
const HEADER_CACHE_KEEP: usize = 1024;

impl HeaderCache {
    /// `extra` normalised (see [`normalize_headers`]), from the cache when it is the same
    /// block as last time. The empty block is the initial state, and correct as it is.
    pub fn normalize(&mut self, extra: &[u8]) -> Result<(&[u8], Provided), String> {
        if extra != self.input.as_slice() {
            self.input.clear();
            self.normalized.clear();
            self.provided = Provided::default();
            self.input.shrink_to(HEADER_CACHE_KEEP);
            self.normalized.shrink_to(HEADER_CACHE_KEEP);
            match normalize_headers(extra, &mut self.normalized) {
                Ok(provided) => {
                    self.provided = provided;
                    self.input.extend_from_slice(extra);
                }
                Err(e) => {
                    // Back to the empty block's state.
                    self.normalized.clear();
                    return Err(e);
                }
            }
        }
        Ok((&self.normalized, self.provided))
    }
}

/// RFC 9110 `tchar`.
pub fn is_token_byte(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

/// [`is_token_byte`] as a table: header names of every reply are checked byte by byte.
static TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    t
};

/// How the body length of a reply is announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// No length: the body ends when the connection closes (HTTP/1.0 streaming).
    UntilClose,
    /// No body and no length header (1xx, 204, 304, or the application set one).
    None,
}

/// Writes a status line and headers (with the blank line) into `out`.
pub fn write_head(
    out: &mut Vec<u8>,
    status: Status,
    date: &str,
    framing: Framing,
    keep_alive: Option<bool>,
    extra_normalized: &[u8],
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(status.0));
    out.push(b' ');
    out.extend_from_slice(status.reason().as_bytes());
    out.extend_from_slice(b"\r\n");
    if !date.is_empty() {
        out.extend_from_slice(b"Date: ");
        out.extend_from_slice(date.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        Framing::Length(n) => {
            out.extend_from_slice(b"Content-Length: ");
            push_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        Framing::UntilClose | Framing::None => {}
    }
    match keep_alive {
        Some(true) => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        Some(false) => out.extend_from_slice(b"Connection: close\r\n"),
        None => {}
    }
    out.extend_from_slice(extra_normalized);
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal. The head of every reply carries two numbers; `write!` spends
/// more on its formatting machinery than on the digits.
pub fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// `fmt::Write` into a byte vector.
pub struct Writer<'a>(pub &'a mut Vec<u8>);

impl std::fmt::Write for Writer<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_and_token_tables_match_their_definitions() {
        for n in [0u64, 7, 10, 99, 100, 404, 65_535, 1 << 40, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
        for b in 0..=255u8 {
            let tchar = b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            assert_eq!(is_token_byte(b), tchar, "byte {b:#x}");
        }
    }

    #[test]
    fn normalizes_and_detects_automatic_headers() {
        let mut out = Vec::new();
        let p = normalize_headers(
            b"Content-Type: text/plain\nX-A:  b \r\nConnection: keep-alive, close",
            &mut out,
        )
        .unwrap();
        assert_eq!(
            out,
            b"Content-Type: text/plain\r\nX-A: b\r\nConnection: keep-alive, close\r\n"
        );
        assert!(p.close && p.connection && !p.length && !p.date);
    }

    #[test]
    fn header_cache_answers_like_normalize_headers() {
        let mut cache = HeaderCache::default();
        let blocks: [&[u8]; 7] = [
            b"",
            b"Content-Type: text/plain\r\n",
            b"Content-Type: text/plain\r\n",
            b"X: \x01",
            b"",
            b"Connection: close\nDate: x",
            b"Content-Type: text/plain\r\n",
        ];
        for block in blocks {
            let mut expected = Vec::new();
            match (
                cache.normalize(block),
                normalize_headers(block, &mut expected),
            ) {
                (Ok((got, p)), Ok(q)) => {
                    assert_eq!(got, expected.as_slice());
                    assert_eq!(
                        (p.length, p.date, p.close, p.connection),
                        (q.length, q.date, q.close, q.connection)
                    );
                }
                (Err(a), Err(b)) => assert_eq!(a, b),
                (a, b) => panic!("{block:?}: cache {a:?}, direct {b:?}"),
            }
        }
    }

    #[test]
    fn refuses_injection() {
        for bad in [
            &b"X: a\rSet-Cookie: x"[..],
            b"Bad Name: x",
            b"NoColon",
            b": empty",
            b"X: \x01",
        ] {
            assert!(
                normalize_headers(bad, &mut Vec::new()).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn writes_a_head() {
        let mut out = Vec::new();
        write_head(
            &mut out,
            Status::NOT_FOUND,
            "D",
            Framing::Length(3),
            Some(false),
            b"X: y\r\n",
        );
        assert_eq!(out, b"HTTP/1.1 404 Not Found\r\nDate: D\r\nContent-Length: 3\r\nConnection: close\r\nX: y\r\n\r\n");
    }
}
