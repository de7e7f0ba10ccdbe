//! Where WebSocket meets a connection: the upgrade (server and client handshakes),
//! feeding frames to the session, sending, closing, keepalive, broadcast.

use super::core::Core;
use super::http::{finish_upgrade, reply};
use crate::conn::{Conn, Proto, State, WsClient, WsConn};
use crate::error::{code, Error, Result};
use crate::event::{Event, EventKind, Payload, FLAG_BY_PEER};
use crate::ws::handshake::{self, ClientHandshake, ServerOptions};
use crate::ws::session::{
    Failure, Incoming, Role, SendError, Session, SessionConfig, Spares, State as WsState,
};
use crate::ws::OpCode;

/// Event flags of message events (the C enum `wss_flag`).
const FLAG_TEXT: u32 = 1;
const FLAG_BINARY: u32 = 2;
const FLAG_FIN: u32 = 4;
const FLAG_FIRST: u32 = 8;

/// Close code reported when a WebSocket ends without a closing handshake (RFC 6455 §7.1.5).
const ABNORMAL: u16 = 1006;

fn session_config(
    c: &Conn,
    role: Role,
    deflate: Option<crate::ws::deflate::DeflateParams>,
) -> SessionConfig {
    let mut sc = SessionConfig::new(role);
    sc.max_frame_size = c.cfg.max_frame_bytes;
    sc.max_message_size = c.cfg.max_message_bytes;
    sc.stream_fragments = c.cfg.ws.stream;
    match (deflate, &c.cfg.ws.deflate) {
        (Some(p), Some(dc)) => sc.with_deflate(p, dc),
        (Some(p), None) => sc.with_deflate(p, &Default::default()),
        (None, _) => sc,
    }
}

/// Answers the HTTP request waiting on `c` with 101 and turns the connection into a
/// WebSocket; or answers with the handshake's refusal and returns `Error::Protocol`.
pub fn upgrade(core: &mut Core, c: &mut Conn, extra: &[u8], protocol: Option<&str>) -> Result<()> {
    if !c.can_send() {
        return Err(Error::Closed(c.id));
    }
    let id = c.id;
    let Proto::Http(h) = &mut c.proto else {
        return Err(Error::WrongKind("only an HTTP connection can be upgraded"));
    };
    let Some(req) = h.request() else {
        return Err(Error::InvalidState(format!(
            "connection {id} has no request waiting"
        )));
    };
    if h.reply != crate::http::server::Reply::None {
        return Err(Error::InvalidState(
            "a reply to this request is already under way".into(),
        ));
    }
    let mut extra_norm = Vec::new();
    let provided = crate::http::response::normalize_headers(extra, &mut extra_norm)
        .map_err(Error::InvalidArgument)?;
    if provided.length {
        return Err(Error::InvalidArgument(
            "Content-Length or Transfer-Encoding in the extra headers of a 101 reply, \
             which has no body"
                .into(),
        ));
    }
    let headers: Vec<(&str, &[u8])> = req
        .headers
        .iter()
        .map(|(n, v)| {
            (
                std::str::from_utf8(n.get(&req.head)).unwrap_or(""),
                v.get(&req.head),
            )
        })
        .collect();
    let ws = &c.cfg.ws;
    let origins: Option<Vec<&str>> = ws
        .origins
        .as_ref()
        .map(|o| o.iter().map(String::as_str).collect());
    let protocols: Vec<&str> = ws.protocols.iter().map(String::as_str).collect();
    let opts = ServerOptions {
        allowed_origins: origins.as_deref(),
        protocols: &protocols,
        chosen_protocol: protocol,
        deflate: ws.deflate.as_ref(),
    };
    let method = std::str::from_utf8(req.method()).unwrap_or("");
    let target = String::from_utf8_lossy(req.target.get(&req.head)).into_owned();
    match handshake::accept(method, req.minor_version, &headers, &opts) {
        Ok(acc) => {
            let mut head = acc.response_head.into_bytes();
            head.extend_from_slice(&extra_norm);
            head.extend_from_slice(b"\r\n");
            core.send(c, &[&head])?;
            let session = Session::new(session_config(c, Role::Server, acc.deflate));
            finish_upgrade(core, c);
            c.proto = Proto::Ws(Box::new(WsConn::new(session)));
            let mut ev = Event::new(EventKind::WsOpen, c.id)
                .with_data(acc.protocol.unwrap_or_default().into_bytes());
            ev.parent = c.parent;
            ev.meta = Payload::from(target);
            core.push_for(c, ev);
            core.schedule(c);
            // Frames the client sent right behind its request.
            super::resume_input(core, c);
            Ok(())
        }
        Err(rej) => {
            if protocol.is_some() && rej.status == 400 && rej.reason.contains("protocol") {
                // The application's choice is the problem, not the request: let it answer.
                return Err(Error::InvalidArgument(format!(
                    "subprotocol {}: {}",
                    crate::error::excerpt(protocol.unwrap_or_default().as_bytes()),
                    rej.reason
                )));
            }
            let body = format!("{} {}\n", rej.status, rej.reason);
            let mut headers = rej.headers.into_bytes();
            headers.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\n");
            reply(core, c, rej.status, &headers, body.as_bytes())?;
            Err(Error::Protocol(format!(
                "not a valid WebSocket upgrade ({} {}): {}",
                rej.status,
                status_text(rej.status),
                rej.reason
            )))
        }
    }
}

fn status_text(s: u16) -> &'static str {
    crate::http::response::Status(s).reason()
}

/// Feeds received bytes to the session; returns the bytes consumed.
pub fn input(core: &mut Core, c: &mut Conn, input: &mut [u8]) -> usize {
    let Proto::Ws(w) = &mut c.proto else { return 0 };
    w.ping_sent_at = 0; // any byte proves the peer is alive
    let mut items = std::mem::take(&mut core.ws_items);
    let mut out = core.take_ws_out();
    let spares = Spares {
        large: &mut core.big_pool,
        small: &mut core.buf_pool,
    };
    let r = w.session.read_pooled(input, &mut items, &mut out, spares);
    let all = input.len();
    deliver(core, c, items, out, r.map_err(|f| (f, all)))
}

/// Reads the rest of a large incoming frame straight into its message buffer when
/// the session wants that ([`Session::wants_bulk`]; plain TCP, nothing buffered
/// before it), and delivers what it completes. `None` when this read is not for it;
/// otherwise the read's outcome: bytes read (0 at end of stream) and bytes asked.
pub fn read_bulk(core: &mut Core, c: &mut Conn) -> Option<std::io::Result<(usize, usize)>> {
    let Proto::Ws(w) = &mut c.proto else {
        return None;
    };
    let stream = c.stream.as_mut()?;
    if stream.is_tls() || !c.rbuf.is_empty() || !w.session.wants_bulk() {
        return None;
    }
    let mut items = std::mem::take(&mut core.ws_items);
    let mut out = core.take_ws_out();
    let spares = Spares {
        large: &mut core.big_pool,
        small: &mut core.buf_pool,
    };
    let mut asked = 0;
    let read = w.session.read_bulk(
        |buf, max| {
            asked = max;
            stream.read_append(buf, max)
        },
        &mut items,
        &mut out,
        spares,
    );
    let (n, r) = match read {
        Ok((n, r)) if n > 0 => (n, r),
        other => {
            core.ws_items = items;
            core.ws_out = out;
            // Not read at all (asked 0): not an end of stream, just not a bulk read.
            return (asked > 0).then(|| other.map(|(n, _)| (n, asked)));
        }
    };
    w.ping_sent_at = 0; // any byte proves the peer is alive
    deliver(core, c, items, out, r.map(|()| n).map_err(|f| (f, n)));
    Some(Ok((n, asked)))
}

/// Turns what the session took from a read into events and replies. `r` is the
/// session's outcome: bytes consumed, or the failure and the bytes to report consumed.
fn deliver(
    core: &mut Core,
    c: &mut Conn,
    mut items: Vec<Incoming>,
    mut out: Vec<u8>,
    r: std::result::Result<usize, (Failure, usize)>,
) -> usize {
    let Proto::Ws(w) = &mut c.proto else {
        return 0;
    };
    let state = w.session.state();
    // Messages that came in the same read as a protocol failure or the peer's close must
    // be answerable before our close frame goes out (Autobahn 3.2, 5.15, 7.1.1 strict):
    // hold that frame back until the application has drained these events.
    let mut deferred = None;
    let n = match (&r, state) {
        (Err(_), _) => w.session.failure_frame_len(),
        (Ok(_), WsState::CloseReceived) => w.session.close_reply_len(),
        _ => 0,
    };
    if n > 0
        && n <= out.len()
        && w.session.role() == Role::Server
        && items.iter().any(|i| !matches!(i, Incoming::Close { .. }))
    {
        deferred = Some(out.split_off(out.len() - n));
    }
    let mut closing = None;
    for item in items.drain(..) {
        let (kind, flags, data) = match item {
            Incoming::Message { text, data } => (EventKind::WsMsg, data_flag(text), data),
            Incoming::Fragment {
                text,
                data,
                first,
                fin,
            } => {
                let mut flags = data_flag(text);
                if first {
                    flags |= FLAG_FIRST;
                }
                if fin {
                    flags |= FLAG_FIN;
                }
                (EventKind::WsFragment, flags, data)
            }
            Incoming::Ping(p) => (EventKind::WsCtl, u32::from(OpCode::Ping.as_u8()), p),
            Incoming::Pong(p) => (EventKind::WsCtl, u32::from(OpCode::Pong.as_u8()), p),
            Incoming::Close { code, reason } => {
                closing = Some((code, reason));
                continue;
            }
        };
        let ev = Event {
            kind,
            flags,
            conn: c.id,
            parent: c.parent,
            code: 0,
            data: Payload::Owned(data),
            meta: Payload::Empty,
        };
        core.push_for(c, ev);
    }
    core.ws_items = items;
    if let Proto::Ws(w) = &mut c.proto {
        if let Some((code, reason)) = closing {
            let cl = w.closing_mut();
            if cl.sent_at == 0 {
                cl.peer_first = true;
            }
            if cl.code == 0 || cl.sent_at == 0 {
                cl.code = code;
                cl.reason = reason;
            }
        }
    }
    if !out.is_empty() {
        let _ = core.send(c, &[&out]);
        out.clear();
    }
    core.ws_out = out;
    match r {
        Ok(n) => {
            if matches!(state, WsState::CloseReceived | WsState::Closed) {
                // Peer's close answered (or ours answered): RFC 6455 §7.1.1, the server
                // closes the TCP connection first; the client shuts down its side too.
                match (deferred, &mut c.proto) {
                    (Some(frame), Proto::Ws(w)) => {
                        w.closing_mut().deferred_frame = Some(frame);
                        core.deferred.push(c.id);
                    }
                    _ => core.close_graceful(c),
                }
            }
            n
        }
        Err((f, consumed)) => {
            if let Proto::Ws(w) = &mut c.proto {
                let cl = w.closing_mut();
                cl.code = f.code;
                cl.reason = f.reason.as_bytes().to_vec();
            }
            let mut ev = Event::new(EventKind::Error, c.id).with_data(Payload::Static(f.reason));
            ev.code = i32::from(f.code);
            ev.parent = c.parent;
            core.push(ev);
            match (deferred, &mut c.proto) {
                (Some(frame), Proto::Ws(w)) => {
                    w.closing_mut().deferred_frame = Some(frame);
                    core.deferred.push(c.id);
                }
                _ => core.close_graceful(c),
            }
            consumed
        }
    }
}

/// The event flag of a data message's type.
fn data_flag(text: bool) -> u32 {
    if text {
        FLAG_TEXT
    } else {
        FLAG_BINARY
    }
}

fn send_error(e: SendError) -> Error {
    match e {
        SendError::NotOpen => Error::InvalidState("the WebSocket is closing".into()),
        SendError::ControlTooLong => {
            Error::InvalidArgument("control frame payload over 125 bytes".into())
        }
        SendError::WrongOpcode => Error::InvalidArgument("opcode not allowed here".into()),
        SendError::MessageInProgress => {
            Error::InvalidState("a fragmented message is being sent: finish it first".into())
        }
        SendError::NoMessageInProgress => Error::InvalidState(
            "a continuation without a first fragment (use WSS_OP_TEXT or WSS_OP_BINARY)".into(),
        ),
        SendError::InvalidUtf8 => Error::InvalidArgument("text message is not valid UTF-8".into()),
        SendError::InvalidClose(e) => Error::InvalidArgument(format!("close frame: {e:?}")),
    }
}

fn ws_of(c: &mut Conn) -> Result<&mut WsConn> {
    if c.state == State::Closed || c.stream.is_none() {
        return Err(Error::Closed(c.id));
    }
    match &mut c.proto {
        Proto::Ws(w) => Ok(w),
        Proto::WsClient(_) => Err(Error::InvalidState(
            "the WebSocket handshake is not finished (wait for WSS_EV_WS_OPEN)".into(),
        )),
        _ => Err(Error::WrongKind("not a WebSocket connection")),
    }
}

/// Sends the close frame of a deferred failure once the application has drained the
/// connection's events (and so answered them); false while events are still waiting.
pub fn fire_deferred(core: &mut Core, c: &mut Conn) -> bool {
    if c.queued_events > 0 {
        return false;
    }
    if let Proto::Ws(w) = &mut c.proto {
        if let Some(frame) = w.closing.as_mut().and_then(|cl| cl.deferred_frame.take()) {
            let _ = core.send(c, &[&frame]);
            core.close_graceful(c);
        }
    }
    true
}

/// Sends a whole message or a control frame.
pub fn send(core: &mut Core, c: &mut Conn, data: &[u8], op: OpCode) -> Result<()> {
    let w = ws_of(c)?;
    if w.has_deferred_close() && !op.is_control() {
        // Answering a message that came before a protocol failure (see `input`): the
        // session no longer sends, so frame it here (server frames are unmasked, and an
        // uncompressed frame is valid with or without permessage-deflate).
        if op == OpCode::Text && simdutf8::basic::from_utf8(data).is_err() {
            return Err(Error::InvalidArgument(
                "text message is not valid UTF-8".into(),
            ));
        }
        let mut out = core.take_ws_out();
        crate::ws::encode_server_frame(op, data, &mut out);
        let r = core.send(c, &[&out]);
        core.ws_out = out;
        return r;
    }
    if w.session.state() != WsState::Open {
        return Err(Error::Closed(c.id));
    }
    // The scratch Vec is used in place, not taken out and put back as elsewhere: this
    // is every message's path, and the two moves cost 2% of its instructions (callgrind,
    // 100 x 16 B depth 16). It is moved out only when a whole frame was built in it.
    core.ws_out.clear();
    match w.session.send_header(op, data, &mut core.ws_out) {
        // Header and payload go out as two parts: one copy of the payload at most.
        Ok(Some(header)) => core.send(c, &[header.as_bytes(), data]),
        Ok(None) => {
            let mut out = std::mem::take(&mut core.ws_out);
            let r = core.send(c, &[&out]);
            out.clear();
            core.ws_out = out;
            r
        }
        Err(e) => Err(send_error(e)),
    }
}

/// Sends one piece of a fragmented message.
pub fn send_fragment(
    core: &mut Core,
    c: &mut Conn,
    data: &[u8],
    op: OpCode,
    fin: bool,
) -> Result<()> {
    let w = ws_of(c)?;
    if w.session.state() != WsState::Open {
        return Err(Error::Closed(c.id));
    }
    let mut out = core.take_ws_out();
    let r = w
        .session
        .send_fragment(op, data, fin, &mut out)
        .map_err(send_error);
    let r = r.and_then(|()| core.send(c, &[&out]));
    out.clear();
    core.ws_out = out;
    r
}

/// Starts the closing handshake.
pub fn close(core: &mut Core, c: &mut Conn, code: u16, reason: &[u8]) -> Result<()> {
    let w = ws_of(c)?;
    if w.session.state() != WsState::Open {
        return Err(Error::Closed(c.id));
    }
    let mut out = core.take_ws_out();
    let r = w.session.close(code, reason, &mut out).map_err(send_error);
    if r.is_ok() {
        let cl = w.closing_mut();
        cl.code = code;
        cl.reason = reason.to_vec();
        cl.sent_at = crate::clock::tick(std::time::Instant::now());
    }
    let r = r.and_then(|()| core.send(c, &[&out]));
    out.clear();
    core.ws_out = out;
    core.schedule(c);
    r
}

/// A keepalive ping is due: send it and wait for any answer.
pub fn keepalive(core: &mut Core, c: &mut Conn) {
    let Proto::Ws(w) = &mut c.proto else { return };
    if w.session.state() != WsState::Open {
        return;
    }
    w.ping_sent_at = core.now_tick;
    let _ = send(core, c, b"", OpCode::Ping);
}

/// The close code and reason for a WebSocket's close event (1006 without a handshake).
pub fn close_info(c: &mut Conn) -> Option<(u16, Vec<u8>)> {
    match &mut c.proto {
        Proto::WsClient(_) => Some((ABNORMAL, Vec::new())),
        Proto::Ws(w) => Some(match w.closing.as_mut() {
            Some(cl) if cl.code != 0 => (cl.code, std::mem::take(&mut cl.reason)),
            _ => (ABNORMAL, Vec::new()),
        }),
        _ => None,
    }
}

/// Starts a client handshake: the request goes out as soon as the connection allows.
pub fn client_start(core: &mut Core, c: &mut Conn) {
    if let Proto::WsClient(h) = &mut c.proto {
        if !h.sent {
            h.sent = true;
            let req = h.handshake.request().to_vec();
            let _ = core.send(c, &[&req]);
        }
    }
}

/// Reads the server's handshake response; returns the bytes consumed.
pub fn client_input(core: &mut Core, c: &mut Conn, input: &mut [u8]) -> usize {
    let Proto::WsClient(h) = &mut c.proto else {
        return 0;
    };
    let mut raw = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut raw);
    let head_len = match resp.parse(input) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if input.len() > c.cfg.max_header_bytes {
                fail_client(core, c, "handshake response head too large".into());
                return input.len();
            }
            return 0;
        }
        Err(e) => {
            fail_client(core, c, format!("malformed handshake response: {e}"));
            return input.len();
        }
    };
    let status = resp.code.unwrap_or(0);
    let headers: Vec<(&str, &[u8])> = resp.headers.iter().map(|h| (h.name, h.value)).collect();
    match h.handshake.check_response(status, &headers) {
        Ok(neg) => {
            let session = Session::new(session_config(c, Role::Client, neg.deflate));
            c.proto = Proto::Ws(Box::new(WsConn::new(session)));
            let ev = Event::new(EventKind::WsOpen, c.id)
                .with_data(neg.protocol.unwrap_or_default().into_bytes());
            core.push_for(c, ev);
            core.schedule(c);
            let rest = &mut input[head_len..];
            head_len
                + if rest.is_empty() {
                    0
                } else {
                    self::input(core, c, rest)
                }
        }
        Err(e) => {
            fail_client(
                core,
                c,
                format!("WebSocket handshake refused: {e:?} (status {status})"),
            );
            input.len()
        }
    }
}

fn fail_client(core: &mut Core, c: &mut Conn, text: String) {
    core.close_now(c, false, Some((code::PROTOCOL, text)));
}

/// Builds the client handshake for a ws:// or wss:// URL.
pub fn client_handshake(url: &crate::url::Url, ws: &crate::config::WsSettings) -> Result<WsClient> {
    let protocols: Vec<&str> = ws.protocols.iter().map(String::as_str).collect();
    let headers: Vec<(&str, &str)> = ws
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let hs = ClientHandshake::new(
        &url.host_header(),
        &url.path,
        ws.origin.as_deref(),
        &protocols,
        ws.deflate.clone(),
        &headers,
    )
    .map_err(|e| Error::InvalidArgument(format!("WebSocket handshake: {e:?}")))?;
    Ok(WsClient {
        handshake: hs,
        sent: false,
    })
}

/// Pushes the close event of a WebSocket (used by `Core::close_now`).
pub fn close_event(c: &mut Conn, ev: &mut Event) {
    // Who started the closing handshake decides BY_PEER; without a handshake (1006)
    // the socket-level answer the caller gave stands.
    let started = match &c.proto {
        Proto::Ws(w) if w.peer_closed_first() => Some(true),
        Proto::Ws(w) if w.close_sent_at() != 0 || w.close_code() != 0 => Some(false),
        _ => None,
    };
    if let Some((code, reason)) = close_info(c) {
        ev.code = i32::from(code);
        ev.data = Payload::Owned(reason);
        match started {
            Some(true) => ev.flags |= FLAG_BY_PEER,
            Some(false) => ev.flags &= !FLAG_BY_PEER,
            None => {}
        }
    }
}
