//! The raw HTTP client: tests write exact request bytes to a plain socket and read the
//! response with these, so that nothing between the test and the server is guessed.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A response as read from the socket.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// The status line and headers, up to and including the empty line.
    pub head: String,
    /// The body (empty when only the head was read).
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers(name).into_iter().next()
    }

    /// Every value of a header.
    pub fn headers(&self, name: &str) -> Vec<String> {
        self.head
            .lines()
            .skip(1)
            .filter_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
            .collect()
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads a response head (up to the empty line) byte by byte, so that nothing after it
/// (a body, WebSocket frames) is consumed. The body is left empty.
pub fn read_head(r: &mut impl Read) -> io::Result<Response> {
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if r.read(&mut b)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "EOF inside a response head: {:?}",
                    String::from_utf8_lossy(&buf)
                ),
            ));
        }
        buf.push(b[0]);
        assert!(buf.len() < 65536, "response head too long");
    }
    let head = String::from_utf8(buf).unwrap();
    let status = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head:?}"));
    Ok(Response {
        status,
        head,
        body: Vec::new(),
    })
}

/// Reads one whole response: the head, then the body by `Content-Length`, chunked
/// encoding, or up to EOF. `head_request`: a reply to HEAD, which has no body.
pub fn read_response(s: &mut impl Read, head_request: bool) -> Response {
    let mut r = read_head(s).unwrap_or_else(|e| panic!("reading a response head: {e}"));
    let status = r.status;
    if head_request || status == 204 || status == 304 || status < 200 {
        return r;
    }
    if let Some(n) = r.header("content-length") {
        let mut body = vec![0; n.parse().unwrap()];
        s.read_exact(&mut body).unwrap();
        r.body = body;
    } else if r
        .header("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        let mut byte = [0u8; 1];
        loop {
            let mut line = Vec::new();
            while !line.ends_with(b"\r\n") {
                s.read_exact(&mut byte).unwrap();
                line.push(byte[0]);
            }
            let size =
                usize::from_str_radix(std::str::from_utf8(&line[..line.len() - 2]).unwrap(), 16)
                    .unwrap();
            let mut chunk = vec![0; size + 2];
            s.read_exact(&mut chunk).unwrap();
            if size == 0 {
                break;
            }
            r.body.extend_from_slice(&chunk[..size]);
        }
    } else {
        s.read_to_end(&mut r.body).unwrap();
    }
    r
}

/// Sends raw bytes and reads one response.
pub fn roundtrip(s: &mut TcpStream, request: &str) -> Response {
    s.write_all(request.as_bytes()).unwrap();
    read_response(s, request.starts_with("HEAD "))
}

/// Whether the peer closed the stream (EOF or reset) within the read timeout.
pub fn closed_by_peer(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = [0u8; 1024];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}
