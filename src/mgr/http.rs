//! Where HTTP meets a connection: feeding input to the parser, queuing request
//! events, writing replies, and moving on to the next pipelined request.

use super::core::Core;
use crate::conn::{Conn, Proto};
use crate::error::{Error, Result};
use crate::event::{Event, EventKind, Payload};
use crate::http::request::HeadLimits;
use crate::http::response::{write_head, Framing, Provided, Status, Writer};
use crate::http::server::{Feed, HttpConn, Reply};
use std::fmt::Write as _;

fn limits(c: &Conn) -> HeadLimits {
    HeadLimits {
        max_header_bytes: c.cfg.max_header_bytes,
        max_uri_bytes: c.cfg.max_uri_bytes,
        max_body_bytes: c.cfg.max_body_bytes,
    }
}

/// Feeds input to the HTTP parser; returns the bytes consumed.
pub fn input(core: &mut Core, c: &mut Conn, input: &mut [u8]) -> usize {
    let lim = limits(c);
    let mut pos = 0;
    loop {
        let Proto::Http(h) = &mut c.proto else {
            return pos;
        };
        let (n, feed) = h.feed(&input[pos..], &lim, core.now, &mut core.request_pool);
        pos += n;
        match feed {
            Feed::More => return pos,
            Feed::Continue => {
                let _ = core.send(c, &[b"HTTP/1.1 100 Continue\r\n\r\n"]);
            }
            Feed::Request if c.scheme.is_ws() => {
                // ws:// and wss:// listeners upgrade every request (or refuse it).
                let _ = super::ws::upgrade(core, c, b"", None);
                return pos;
            }
            Feed::Request => {
                let req = h.request().expect("Feed::Request leaves a request waiting");
                // The body stays in the request until it is answered and the events that
                // point into it are released (see Manager::release).
                let body = Payload::Borrowed(req.body.as_ptr(), req.body.len());
                let mut ev = Event::new(EventKind::HttpMsg, c.id);
                ev.parent = c.parent;
                ev.data = body;
                core.push_for(c, ev);
                core.schedule(c);
                return pos;
            }
            Feed::Reject(r) => {
                refuse(core, c, r.status, r.reason);
                return input.len();
            }
        }
    }
}

/// Answers with an error status and closes after it; reports the reason as an error event.
pub fn refuse(core: &mut Core, c: &mut Conn, status: Status, reason: &'static str) {
    let mut ev = Event::new(EventKind::Error, c.id).with_data(Payload::Static(reason));
    ev.code = i32::from(status.0);
    ev.parent = c.parent;
    core.push(ev);
    if let Proto::Http(h) = &mut c.proto {
        if let Some(r) = h.take_request() {
            core.parked.push(r);
        }
        h.head_started = None;
        h.body_started = None;
    }
    let mut out = core.take_buf(256);
    let body = format!("{} {}\n", status.0, reason);
    let date = core.date.now().to_string();
    write_head(
        &mut out,
        status,
        &date,
        Framing::Length(body.len() as u64),
        Some(false),
        b"",
    );
    out.extend_from_slice(body.as_bytes());
    let _ = core.send(c, &[&out]);
    core.give_buf(out);
    core.close_graceful(c);
}

fn waiting_http(c: &mut Conn) -> Result<&mut HttpConn> {
    if !c.can_send() {
        return Err(Error::Closed(c.id));
    }
    let id = c.id;
    let h = c
        .http_mut()
        .ok_or(Error::WrongKind("not an HTTP connection"))?;
    if !h.is_waiting() {
        return Err(Error::InvalidState(format!(
            "connection {id} has no request waiting for a reply"
        )));
    }
    Ok(h)
}

/// What a reply head needs to know about its request.
struct ReplyPlan {
    head: Vec<u8>,
    is_head_request: bool,
    keep_alive: bool,
}

/// The body a reply will have, for checking the application's framing headers.
#[derive(Clone, Copy)]
enum Body {
    /// Exactly this many bytes (`wss_http_reply`, files).
    Length(u64),
    /// Pieces of unknown total (`wss_http_chunked_begin`): the library frames it.
    Streamed,
}

/// Refuses `Content-Length` / `Transfer-Encoding` headers that would contradict the
/// body the library sends: a peer would then read the wrong number of bytes as the
/// reply, and the next reply as part of it (RFC 9110 §8.6, RFC 9112 §6).
fn check_framing(provided: &Provided, status: Status, body: Body, head: bool) -> Result<()> {
    let bad = |why: String| Err(Error::InvalidArgument(why));
    if provided.transfer_encoding {
        return bad(
            "Transfer-Encoding in extra headers: the library frames bodies itself              (wss_http_chunked_begin streams one)"
                .into(),
        );
    }
    let Some(n) = provided.content_length else {
        return Ok(());
    };
    if status.0 < 200 || status.0 == 204 {
        return bad(format!(
            "Content-Length in a {} reply, which has no body",
            status.0
        ));
    }
    match body {
        Body::Streamed => bad(
            "Content-Length with wss_http_chunked_begin, whose body is chunked:              use wss_http_reply for a body of known length"
                .into(),
        ),
        // A HEAD or 304 reply announces the length a GET would have had.
        Body::Length(_) if head || status == Status::NOT_MODIFIED => Ok(()),
        Body::Length(len) if len != n => bad(format!(
            "Content-Length: {n} in extra headers, but the body is {len} bytes"
        )),
        Body::Length(_) => Ok(()),
    }
}

fn plan_reply(
    core: &mut Core,
    c: &mut Conn,
    status: u16,
    extra: &[u8],
    body: Body,
    framing: impl FnOnce(bool) -> Framing,
) -> Result<ReplyPlan> {
    if !(100..=599).contains(&status) || status == 101 {
        return Err(Error::InvalidArgument(format!(
            "status {status} (100-599; use wss_ws_upgrade for 101)"
        )));
    }
    let status = Status(status);
    let peer_eof = c.peer_eof;
    let h = waiting_http(c)?;
    if h.reply != Reply::None {
        return Err(Error::InvalidState(
            "a reply to this request is already under way".into(),
        ));
    }
    let req = h.request().expect("waiting_http checked it");
    let (is_head_request, http10, req_keep_alive) =
        (req.is_head(), req.minor_version == 0, req.keep_alive);
    let mut head = core.take_buf(256);
    let (extra_norm, provided) = match core.header_cache.normalize(extra) {
        Ok(n) => n,
        Err(e) => {
            core.give_buf(head);
            return Err(Error::InvalidArgument(e));
        }
    };
    if provided.length {
        if let Err(e) = check_framing(&provided, status, body, is_head_request) {
            core.give_buf(head);
            return Err(e);
        }
    }
    let mut framing = if status.forbids_body() || provided.length {
        Framing::None
    } else {
        framing(http10)
    };
    let keep_alive =
        req_keep_alive && !provided.close && !peer_eof && framing != Framing::UntilClose;
    if framing == Framing::UntilClose && is_head_request {
        framing = Framing::None;
    }
    let conn_header = if provided.connection {
        None
    } else if !keep_alive {
        Some(false)
    } else if http10 {
        Some(true)
    } else {
        None
    };
    let date = if provided.date { "" } else { core.date.now() };
    write_head(&mut head, status, date, framing, conn_header, extra_norm);
    h.close_after_reply = !keep_alive;
    Ok(ReplyPlan {
        head,
        is_head_request,
        keep_alive,
    })
}

/// `wss_http_reply`: a whole reply with an automatic `Content-Length` and `Date`.
pub fn reply(core: &mut Core, c: &mut Conn, status: u16, extra: &[u8], body: &[u8]) -> Result<()> {
    let len = body.len() as u64;
    let plan = plan_reply(core, c, status, extra, Body::Length(len), |_| {
        Framing::Length(len)
    })?;
    let body = if plan.is_head_request || Status(status).forbids_body() {
        &[][..]
    } else {
        body
    };
    let r = core.send(c, &[&plan.head, body]);
    core.give_buf(plan.head);
    r?;
    finish(core, c, plan.keep_alive);
    Ok(())
}

/// `wss_http_chunked_begin`: starts a reply whose body comes in pieces.
pub fn chunked_begin(core: &mut Core, c: &mut Conn, status: u16, extra: &[u8]) -> Result<()> {
    let plan = plan_reply(core, c, status, extra, Body::Streamed, |http10| {
        if http10 {
            Framing::UntilClose
        } else {
            Framing::Chunked
        }
    })?;
    let r = core.send(c, &[&plan.head]);
    core.give_buf(plan.head);
    r?;
    let http10 = c
        .http_mut()
        .and_then(|h| h.request().map(|r| r.minor_version == 0))
        .unwrap_or(false);
    let h = c.http_mut().expect("plan_reply checked it");
    h.reply = if http10 && !plan.is_head_request {
        Reply::UntilClose
    } else {
        Reply::Chunked
    };
    if plan.is_head_request {
        // No body will be sent; remember that chunks are to be dropped.
        h.close_after_reply = !plan.keep_alive;
    }
    Ok(())
}

/// `wss_http_chunk`: one piece of a chunked reply; an empty piece ends it.
pub fn chunk(core: &mut Core, c: &mut Conn, data: &[u8]) -> Result<()> {
    let h = waiting_http(c)?;
    let mode = h.reply;
    let keep_alive = !h.close_after_reply;
    let is_head_request = h.request().is_some_and(|r| r.is_head());
    match mode {
        Reply::Chunked => {
            if data.is_empty() {
                if !is_head_request {
                    core.send(c, &[b"0\r\n\r\n"])?;
                }
                finish(core, c, keep_alive);
            } else if !is_head_request {
                let mut size = Vec::with_capacity(20);
                let _ = write!(Writer(&mut size), "{:x}\r\n", data.len());
                core.send(c, &[&size, data, b"\r\n"])?;
            }
            Ok(())
        }
        Reply::UntilClose => {
            if data.is_empty() {
                finish(core, c, false);
            } else {
                core.send(c, &[data])?;
            }
            Ok(())
        }
        Reply::None | Reply::File => Err(Error::InvalidState(
            "no chunked reply under way (call wss_http_chunked_begin)".into(),
        )),
    }
}

/// Hands the upgrade request's memory to the parking lot; the caller switches protocols.
pub fn finish_upgrade(core: &mut Core, c: &mut Conn) {
    if let Proto::Http(h) = &mut c.proto {
        if let Some(r) = h.finish() {
            core.parked.push(r);
        }
    }
}

/// Ends the current request: park its memory, then close or go on with the next one.
pub fn finish(core: &mut Core, c: &mut Conn, keep_alive: bool) {
    let Proto::Http(h) = &mut c.proto else { return };
    if let Some(r) = h.finish() {
        core.parked.push(r);
    }
    if !keep_alive || c.peer_eof {
        core.close_graceful(c);
        return;
    }
    core.schedule(c);
    if c.read_paused && !c.input_blocked() {
        c.read_paused = false;
        core.retry.push(c.id);
        core.needs_wake = true;
    }
    super::resume_input(core, c);
}

/// How to serve files (from `wss_serve_opts`).
#[derive(Debug, Default)]
pub struct ServeSpec {
    /// Directory to serve (serve_dir).
    pub root: Option<std::path::PathBuf>,
    /// Index file of directories (default "index.html").
    pub index: String,
    /// Headers added to every file reply.
    pub extra_headers: Vec<u8>,
    /// "ext=type,..." content type overrides.
    pub mime_types: String,
    /// A prefix of the URL path that maps to the root ("/static").
    pub url_prefix: String,
}

/// Chunk of a file read per step of streaming.
const FILE_CHUNK: usize = 64 << 10;
/// Files up to this size are sent with their head in one write.
const SMALL_FILE: u64 = 64 << 10;

/// `wss_http_serve_dir` (with `file` None) and `wss_http_serve_file`.
pub fn serve(
    core: &mut Core,
    c: &mut Conn,
    spec: &ServeSpec,
    file: Option<&std::path::Path>,
) -> Result<()> {
    use crate::http::static_files::{content_type, plan, resolve, Conditions, Target};
    let h = waiting_http(c)?;
    if h.reply != Reply::None {
        return Err(Error::InvalidState(
            "a reply to this request is already under way".into(),
        ));
    }
    let req = h.request().expect("waiting_http checked it");
    let method = req.method().to_vec();
    if method != b"GET" && method != b"HEAD" {
        return reply(
            core,
            c,
            405,
            b"Allow: GET, HEAD\r\n",
            b"405 Method Not Allowed\n",
        );
    }
    let path = match file {
        Some(f) => f.to_path_buf(),
        None => {
            let root = spec
                .root
                .as_deref()
                .ok_or_else(|| Error::InvalidArgument("root_dir is required".into()))?;
            let raw = req.path();
            let prefix = spec.url_prefix.trim_end_matches('/').as_bytes();
            let rel: &[u8] = if prefix.is_empty() {
                raw
            } else if raw == prefix {
                b"/"
            } else if raw.starts_with(prefix) && raw.get(prefix.len()) == Some(&b'/') {
                &raw[prefix.len()..]
            } else {
                return reply_status(core, c, Status::NOT_FOUND, &spec.extra_headers);
            };
            let index = if spec.index.is_empty() {
                "index.html"
            } else {
                &spec.index
            };
            match resolve(root, rel, index) {
                Ok(Target::File(p)) => p,
                Ok(Target::Redirect(_)) => {
                    let mut location = String::from_utf8_lossy(req.path()).into_owned();
                    location.push('/');
                    if !req.query().is_empty() {
                        location.push('?');
                        location.push_str(&String::from_utf8_lossy(req.query()));
                    }
                    let mut headers = format!("Location: {location}\r\n").into_bytes();
                    headers.extend_from_slice(&spec.extra_headers);
                    return reply(core, c, 301, &headers, b"");
                }
                Err(status) => return reply_status(core, c, status, &spec.extra_headers),
            }
        }
    };
    // Opened without blocking and type-checked on the descriptor: a FIFO (or a file
    // swapped for one after `resolve` looked) gets 404, never a stalled poll thread.
    let (mut f, meta) = match crate::files::open_regular(&path) {
        Ok(opened) => opened,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return reply_status(core, c, Status::FORBIDDEN, &spec.extra_headers)
        }
        Err(_) => return reply_status(core, c, Status::NOT_FOUND, &spec.extra_headers),
    };
    let h = c.http_mut().expect("checked above");
    let req = h.request().expect("checked above");
    let cond = Conditions {
        if_none_match: req.header(b"if-none-match"),
        if_modified_since: req.header(b"if-modified-since"),
        range: req.header(b"range"),
        if_range: req.header(b"if-range"),
    };
    let mtime = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
    let p = plan(
        meta.len(),
        mtime,
        &content_type(&path, &spec.mime_types),
        &cond,
    );
    let mut headers = p.headers.into_bytes();
    headers.extend_from_slice(&spec.extra_headers);
    if p.status == Status::NOT_MODIFIED || p.status == Status::RANGE_NOT_SATISFIABLE {
        return reply(core, c, p.status.0, &headers, b"");
    }
    let is_head_request = req.is_head();
    if is_head_request || p.len <= SMALL_FILE {
        let mut body = vec![0u8; if is_head_request { 0 } else { p.len as usize }];
        if !is_head_request {
            use std::io::{Read, Seek, SeekFrom};
            if f.seek(SeekFrom::Start(p.start))
                .and_then(|_| f.read_exact(&mut body))
                .is_err()
            {
                return reply_status(core, c, Status::INTERNAL_ERROR, &spec.extra_headers);
            }
        }
        if is_head_request {
            // Announce the length of what a GET would send.
            headers.extend_from_slice(format!("Content-Length: {}\r\n", p.len).as_bytes());
        }
        return reply(core, c, p.status.0, &headers, &body);
    }
    {
        use std::io::{Seek, SeekFrom};
        if f.seek(SeekFrom::Start(p.start)).is_err() {
            return reply_status(core, c, Status::INTERNAL_ERROR, &spec.extra_headers);
        }
    }
    let len = p.len;
    let plan = plan_reply(core, c, p.status.0, &headers, Body::Length(len), |_| {
        Framing::Length(len)
    })?;
    let r = core.send(c, &[&plan.head]);
    core.give_buf(plan.head);
    r?;
    if let Some(h) = c.http_mut() {
        h.reply = Reply::File;
    }
    c.file = Some(Box::new(crate::conn::FileBody {
        file: f,
        remaining: len,
        keep_alive: plan.keep_alive,
    }));
    core.flush(c);
    Ok(())
}

/// A small reply with just a status line and its text.
fn reply_status(core: &mut Core, c: &mut Conn, status: Status, extra: &[u8]) -> Result<()> {
    let mut headers = b"Content-Type: text/plain; charset=utf-8\r\n".to_vec();
    headers.extend_from_slice(extra);
    let body = format!("{} {}\n", status.0, status.reason());
    reply(core, c, status.0, &headers, body.as_bytes())
}

/// Moves the next pieces of a file into the send buffer while the socket takes them;
/// ends the reply after the last byte.
pub fn pump_file(core: &mut Core, c: &mut Conn) {
    use std::io::Read;
    loop {
        let Some(fb) = c.file.as_mut() else { return };
        if fb.remaining == 0 {
            let keep_alive = fb.keep_alive;
            c.file = None;
            finish(core, c, keep_alive);
            return;
        }
        if c.wpos < c.wbuf.len() || c.wmore.is_some() {
            return; // the socket is full; the next writable event continues
        }
        if c.wbuf.capacity() == 0 {
            c.wbuf = core.take_buf(FILE_CHUNK);
        }
        c.wbuf.clear();
        c.wpos = 0;
        let n = (fb.remaining as usize).min(FILE_CHUNK);
        c.wbuf.resize(n, 0);
        match fb.file.read(&mut c.wbuf[..n]) {
            Ok(0) | Err(_) => {
                // The file shrank or failed under us: the length is already promised,
                // so the only honest end is to close the connection.
                c.wbuf.clear();
                c.file = None;
                core.close_now(
                    c,
                    false,
                    Some((
                        crate::error::code::IO,
                        "file read failed during a reply".into(),
                    )),
                );
                return;
            }
            Ok(got) => {
                c.wbuf.truncate(got);
                fb.remaining -= got as u64;
            }
        }
        let Some(stream) = c.stream.as_mut() else {
            return;
        };
        while c.wpos < c.wbuf.len() {
            match stream.write(&c.wbuf[c.wpos..]) {
                Ok(0) => break,
                Ok(n) => c.wpos += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    core.close_now(
                        c,
                        true,
                        Some((crate::error::code::IO, format!("write failed: {e}"))),
                    );
                    return;
                }
            }
        }
        if c.wpos < c.wbuf.len() {
            core.want_write(c);
            return;
        }
    }
}
