//! The server side of one HTTP/1.1 connection: reads requests one at a time, and
//! holds each until the application has answered it. Requests that arrive meanwhile
//! (pipelining) wait in the connection's input buffer, so replies go out in order.

use crate::http::chunked::{ChunkError, ChunkedDecoder};
use crate::http::request::{parse_head, BodyKind, HeadLimits, Reject, Request};
use crate::http::response::Status;
use std::time::Instant;

#[derive(Debug)]
enum Phase {
    /// Between requests: nothing received yet.
    Idle,
    /// Some bytes of a head have arrived.
    Head,
    /// Reading a `Content-Length` body: bytes left.
    Length(u64),
    /// Reading a chunked body.
    Chunked(ChunkedDecoder),
    /// The request is with the application; input waits.
    Waiting,
}

/// How the reply to the current request is being sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Not started.
    None,
    /// Streaming `Transfer-Encoding: chunked`.
    Chunked,
    /// Streaming with no length; the connection closes at the end (HTTP/1.0 peers).
    UntilClose,
    /// A file is being streamed from the connection's file source.
    File,
}

/// What [`HttpConn::feed`] found.
#[derive(Debug)]
pub enum Feed {
    /// Everything given was consumed or must wait for more bytes.
    More,
    /// A whole request is ready: see [`HttpConn::request`].
    Request,
    /// The client waits for `100 Continue` before it sends the body.
    Continue,
    /// The request cannot be served: answer with this status, then close.
    Reject(Reject),
}

/// State of one server-side HTTP connection.
#[derive(Debug)]
pub struct HttpConn {
    phase: Phase,
    req: Option<Box<Request>>,
    /// When the first byte of the current head arrived.
    pub head_started: Option<Instant>,
    /// When the current head was complete (its body is being read).
    pub body_started: Option<Instant>,
    /// The reply in progress.
    pub reply: Reply,
    /// Whether the connection closes after the current reply.
    pub close_after_reply: bool,
}

impl Default for HttpConn {
    fn default() -> Self {
        HttpConn {
            phase: Phase::Idle,
            req: None,
            head_started: None,
            body_started: None,
            reply: Reply::None,
            close_after_reply: false,
        }
    }
}

impl HttpConn {
    /// The request waiting for its reply, if any.
    pub fn request(&self) -> Option<&Request> {
        match self.phase {
            Phase::Waiting => self.req.as_deref(),
            _ => None,
        }
    }

    /// Whether a request is with the application.
    pub fn is_waiting(&self) -> bool {
        matches!(self.phase, Phase::Waiting)
    }

    /// Whether the connection is between requests with no byte of the next one read.
    pub fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::Idle)
    }

    /// Whether a head is partly read.
    pub fn in_head(&self) -> bool {
        matches!(self.phase, Phase::Head)
    }

    /// Whether a body is being read.
    pub fn in_body(&self) -> bool {
        matches!(self.phase, Phase::Length(_) | Phase::Chunked(_))
    }

    /// Parses from `input`; returns the bytes consumed and what happened.
    /// `pool` provides recycled request buffers.
    pub fn feed(
        &mut self,
        input: &[u8],
        limits: &HeadLimits,
        now: Instant,
        pool: &mut Vec<Box<Request>>,
    ) -> (usize, Feed) {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            match &mut self.phase {
                Phase::Waiting => return (pos, Feed::More),
                Phase::Idle | Phase::Head => {
                    if rest.is_empty() {
                        return (pos, Feed::More);
                    }
                    // RFC 9112 §2.2: ignore at least one empty line before a request.
                    if matches!(self.phase, Phase::Idle) {
                        let blank = rest
                            .iter()
                            .take_while(|&&b| b == b'\r' || b == b'\n')
                            .count();
                        pos += blank;
                        if blank == rest.len() {
                            return (pos, Feed::More);
                        }
                        self.phase = Phase::Head;
                        self.head_started = Some(now);
                        continue;
                    }
                    let req = self
                        .req
                        .get_or_insert_with(|| pool.pop().unwrap_or_default());
                    match parse_head(rest, req, limits) {
                        // A partial head consumes nothing: it is parsed again, whole, when more arrives.
                        Ok(None) => return (pos, Feed::More),
                        Err(r) => return (pos, Feed::Reject(r)),
                        Ok(Some((head_len, body))) => {
                            pos += head_len;
                            self.head_started = None;
                            let expect = req.expect_continue;
                            self.phase = match body {
                                BodyKind::None => Phase::Waiting,
                                BodyKind::Length(n) => Phase::Length(n),
                                BodyKind::Chunked => Phase::Chunked(ChunkedDecoder::default()),
                            };
                            if matches!(self.phase, Phase::Waiting) {
                                return (pos, self.deliver());
                            }
                            self.body_started = Some(now);
                            if let Phase::Length(n) = self.phase {
                                if let Some(req) = self.req.as_mut() {
                                    // Reserve what is announced, within the limit that
                                    // parse_head enforced, but not more than what a few
                                    // reads bring: memory follows the bytes that arrive.
                                    req.body.reserve(n.min(1 << 20) as usize);
                                }
                            }
                            let body_here = match self.phase {
                                Phase::Length(n) => (input.len() - pos) as u64 >= n,
                                _ => false,
                            };
                            if expect && !body_here {
                                return (pos, Feed::Continue);
                            }
                        }
                    }
                }
                Phase::Length(left) => {
                    if rest.is_empty() {
                        return (pos, Feed::More);
                    }
                    let n = (rest.len() as u64).min(*left) as usize;
                    let req = self.req.as_mut().expect("a body is read into a request");
                    req.body.extend_from_slice(&rest[..n]);
                    pos += n;
                    *left -= n as u64;
                    if *left == 0 {
                        return (pos, self.deliver());
                    }
                }
                Phase::Chunked(dec) => {
                    let req = self.req.as_mut().expect("a body is read into a request");
                    match dec.feed(rest, &mut req.body, limits.max_body_bytes) {
                        Ok(n) => {
                            pos += n;
                            if dec.is_done() {
                                return (pos, self.deliver());
                            }
                            return (pos, Feed::More);
                        }
                        Err(ChunkError::TooLarge) => {
                            return (
                                pos,
                                reject(Status::PAYLOAD_TOO_LARGE, "request body too large"),
                            )
                        }
                        Err(ChunkError::Syntax(why)) => {
                            return (pos, reject(Status::BAD_REQUEST, why))
                        }
                    }
                }
            }
        }
    }

    fn deliver(&mut self) -> Feed {
        self.phase = Phase::Waiting;
        self.body_started = None;
        self.reply = Reply::None;
        self.close_after_reply = !self.req.as_ref().is_some_and(|r| r.keep_alive);
        Feed::Request
    }

    /// Ends the current request after its reply is complete, handing its buffers back.
    /// The caller parks them until events that point into them have been released.
    pub fn finish(&mut self) -> Option<Box<Request>> {
        self.phase = Phase::Idle;
        self.reply = Reply::None;
        self.req.take()
    }

    /// Takes the request buffers out for good (the connection is closing or upgrading).
    pub fn take_request(&mut self) -> Option<Box<Request>> {
        self.req.take()
    }
}

fn reject(status: Status, reason: &'static str) -> Feed {
    Feed::Reject(Reject { status, reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits {
        max_header_bytes: 4096,
        max_uri_bytes: 1024,
        max_body_bytes: 100,
    };

    /// Feeds `input` in pieces of `piece` bytes, as a connection would, answering each
    /// request at once; returns (method+body of each request, statuses refused).
    fn run(input: &[u8], piece: usize) -> (Vec<String>, Vec<u16>, usize) {
        let mut h = HttpConn::default();
        let mut pool = Vec::new();
        let (mut reqs, mut rejects, mut continues) = (Vec::new(), Vec::new(), 0);
        let mut buf: Vec<u8> = Vec::new();
        let now = Instant::now();
        for chunk in input.chunks(piece) {
            buf.extend_from_slice(chunk);
            loop {
                let (n, f) = h.feed(&buf, &LIMITS, now, &mut pool);
                buf.drain(..n);
                match f {
                    Feed::More => break,
                    Feed::Continue => continues += 1,
                    Feed::Request => {
                        let r = h.request().unwrap();
                        reqs.push(format!(
                            "{} {}",
                            String::from_utf8_lossy(r.method()),
                            String::from_utf8_lossy(&r.body)
                        ));
                        let mut done = h.finish().unwrap();
                        done.clear();
                        pool.push(done);
                    }
                    Feed::Reject(r) => {
                        rejects.push(r.status.0);
                        return (reqs, rejects, continues);
                    }
                }
            }
        }
        (reqs, rejects, continues)
    }

    #[test]
    fn pipelined_requests_at_every_piece_size() {
        let input = b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\n\
            POST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello\
            \r\nPUT /3 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
            HEAD /4 HTTP/1.0\r\n\r\n";
        for piece in 1..=input.len() {
            let (reqs, rejects, _) = run(input, piece);
            assert_eq!(
                reqs,
                ["GET ", "POST hello", "PUT abc", "HEAD "],
                "piece {piece}"
            );
            assert!(rejects.is_empty());
        }
    }

    #[test]
    fn expect_continue_only_when_the_body_is_missing() {
        let head =
            b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
        let (reqs, _, c) = run(head, head.len());
        assert_eq!((reqs.len(), c), (0, 1));
        let mut whole = head.to_vec();
        whole.extend_from_slice(b"ok");
        let (reqs, _, c) = run(&whole, whole.len());
        assert_eq!((reqs, c), (vec!["POST ok".to_string()], 0));
    }

    #[test]
    fn body_limits() {
        let (_, rejects, _) = run(
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 101\r\n\r\n",
            1000,
        );
        assert_eq!(rejects, [413]);
        let chunked = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n";
        let mut big = chunked.to_vec();
        big.extend_from_slice(&[b'x'; 64]);
        big.extend_from_slice(b"\r\n40\r\n");
        assert_eq!(run(&big, 7).1, [413]);
        let overflow = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n";
        assert_eq!(run(overflow, 1000).1, [400]);
    }
}
