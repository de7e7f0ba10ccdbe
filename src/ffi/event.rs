//! Draining events.

use super::boundary::boundary;
use super::{enter, wss_id, wss_mgr};
use crate::event::{Event, EventKind, Payload};

/// Kinds of events (`wss_event.kind`). For each: what `conn`, `parent`, `code`, `flags`,
/// `data` and `meta` hold.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum wss_event_kind {
    /// No event (never delivered).
    WSS_EV_NONE = 0,
    /// A listener is open. conn: the listener.
    WSS_EV_LISTEN = 1,
    /// A connection was accepted. conn: the new connection; parent: its listener.
    WSS_EV_ACCEPT = 2,
    /// An outbound connection is established. conn: the connection.
    WSS_EV_CONNECT = 3,
    /// Bytes arrived on a tcp/tls connection (conn) or a udp listener (conn = the
    /// listener; meta: the sender's address as "ip:port"). data: the bytes.
    WSS_EV_READ = 4,
    /// A whole HTTP request arrived. conn: the connection; parent: its listener;
    /// data: the body. Read the rest with `wss_http_request_get`/`wss_http_header`;
    /// answer with `wss_http_reply`, `wss_http_chunked_begin`, `wss_http_serve_*` or
    /// `wss_ws_upgrade`. The next request on the connection waits for the answer.
    WSS_EV_HTTP_MSG = 5,
    /// A WebSocket handshake completed. conn: the connection; parent: its listener (0 for
    /// clients); data: the agreed subprotocol (empty if none); meta (server side): the
    /// request target of the upgrade, "/path?query".
    WSS_EV_WS_OPEN = 6,
    /// A whole WebSocket message. flags: WSS_FLAG_TEXT or WSS_FLAG_BINARY; data: it.
    WSS_EV_WS_MSG = 7,
    /// A piece of a WebSocket message (streaming mode). flags: TEXT/BINARY, FIRST, FIN.
    WSS_EV_WS_FRAGMENT = 8,
    /// A ping or pong arrived (pongs are sent automatically). flags: the opcode; data: payload.
    WSS_EV_WS_CTL = 9,
    /// The send buffer fell to its low-water mark after having been above it.
    WSS_EV_DRAIN = 10,
    /// A timer fired. conn: the timer id.
    WSS_EV_TIMER = 11,
    /// A wakeup from `wss_mgr_wakeup`. conn: as passed; data: the bytes passed.
    WSS_EV_WAKEUP = 12,
    /// Something failed. conn: the connection or listener; data: text; code: a
    /// `wss_result`, an HTTP status (a request was refused) or a WebSocket close code.
    WSS_EV_ERROR = 13,
    /// A connection or listener closed; always its last event. The id stays valid
    /// (calls return WSS_RESULT_CLOSED) until this event is drained, then goes stale.
    /// flags: WSS_FLAG_BY_PEER when the peer closed or vanished; code: the WebSocket
    /// close code, if any; data: the close reason.
    WSS_EV_CLOSE = 14,
    /// A TLS handshake completed. conn: the connection.
    WSS_EV_TLS_READY = 15,
}

/// Bits of `wss_event.flags`.
#[repr(u32)]
#[derive(Debug, Clone, Copy)]
pub enum wss_flag {
    /// A text message (valid UTF-8).
    WSS_FLAG_TEXT = 1,
    /// A binary message.
    WSS_FLAG_BINARY = 2,
    /// The last piece of a fragmented message.
    WSS_FLAG_FIN = 4,
    /// The first piece of a fragmented message.
    WSS_FLAG_FIRST = 8,
    /// On close events: the peer closed (or vanished).
    WSS_FLAG_BY_PEER = 16,
}

/// A non-owning view of bytes. Not NUL-terminated. `ptr` is never NULL (an empty view
/// points at a static empty string).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct wss_str {
    /// First byte.
    pub ptr: *const u8,
    /// Number of bytes.
    pub len: usize,
}

impl wss_str {
    /// A view of bytes that outlive it.
    pub fn of(b: &[u8]) -> wss_str {
        if b.is_empty() {
            return wss_str::empty();
        }
        wss_str {
            ptr: b.as_ptr(),
            len: b.len(),
        }
    }

    /// The empty view.
    pub fn empty() -> wss_str {
        wss_str {
            ptr: c"".as_ptr().cast(),
            len: 0,
        }
    }
}

/// One event. LIFETIME: `data` and `meta` point into memory owned by the manager. They
/// stay valid until the next call of `wss_mgr_poll`, `wss_mgr_next_event`,
/// `wss_mgr_next_events` or `wss_conn_next_event` on the same manager (or its free).
/// Copy what you keep (LuaJIT: `ffi.string(ev.data.ptr, ev.data.len)` at once).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct wss_event {
    /// A `wss_event_kind`.
    pub kind: u32,
    /// Kind-specific bits (`wss_flag`; for WSS_EV_WS_CTL the opcode).
    pub flags: u32,
    /// The connection, listener or timer the event is about.
    pub conn: wss_id,
    /// The listener of an accepted connection, on every event of that connection; 0 for
    /// clients, listeners and timers.
    pub parent: wss_id,
    /// Kind-specific number (see `wss_event_kind`).
    pub code: i32,
    /// Main bytes (see `wss_event_kind`).
    pub data: wss_str,
    /// Secondary bytes: the peer address of a UDP datagram.
    pub meta: wss_str,
}

fn kind_to_c(k: EventKind) -> wss_event_kind {
    use wss_event_kind::*;
    match k {
        EventKind::Listen => WSS_EV_LISTEN,
        EventKind::Accept => WSS_EV_ACCEPT,
        EventKind::Connect => WSS_EV_CONNECT,
        EventKind::Read => WSS_EV_READ,
        EventKind::HttpMsg => WSS_EV_HTTP_MSG,
        EventKind::WsOpen => WSS_EV_WS_OPEN,
        EventKind::WsMsg => WSS_EV_WS_MSG,
        EventKind::WsFragment => WSS_EV_WS_FRAGMENT,
        EventKind::WsCtl => WSS_EV_WS_CTL,
        EventKind::Drain => WSS_EV_DRAIN,
        EventKind::Timer => WSS_EV_TIMER,
        EventKind::Wakeup => WSS_EV_WAKEUP,
        EventKind::Error => WSS_EV_ERROR,
        EventKind::Close => WSS_EV_CLOSE,
        EventKind::TlsReady => WSS_EV_TLS_READY,
    }
}

fn view(p: &Payload) -> wss_str {
    let (ptr, len) = p.as_raw();
    wss_str { ptr, len }
}

fn to_c(ev: &Event) -> wss_event {
    wss_event {
        kind: kind_to_c(ev.kind) as u32,
        flags: ev.flags,
        conn: ev.conn,
        parent: ev.parent,
        code: ev.code,
        data: view(&ev.data),
        meta: view(&ev.meta),
    }
}

/// Takes the next event of any connection, in arrival order.
///
/// Returns: true and the event in `*ev_out`; false when none is queued (or `mgr`/`ev_out`
/// is NULL, or the manager is freed or in use by another thread). Releases the payloads
/// of events taken before.
///
/// Example:
/// ```c
/// wss_event ev;
/// while (wss_mgr_next_event(mgr, &ev)) {
///   if (ev.kind == WSS_EV_HTTP_MSG) wss_http_reply(mgr, ev.conn, 200, NULL, (const uint8_t *)"hi", 2);
/// }
/// ```
#[no_mangle]
pub unsafe extern "C" fn wss_mgr_next_event(mgr: *mut wss_mgr, ev_out: *mut wss_event) -> bool {
    boundary(|| {
        if ev_out.is_null() {
            return false;
        }
        let Ok(mut g) = enter(mgr) else { return false };
        let m = g.mgr();
        m.release();
        let got = m.pop_event(None).map(to_c);
        m.after_call();
        match got {
            Some(e) => {
                // SAFETY: non-null out-parameter.
                unsafe { *ev_out = e };
                true
            }
            None => false,
        }
    })
}

/// Takes up to `cap` events into `evs_out[0..n]`, in arrival order: one call for a
/// batch keeps FFI crossings low. Returns n (0 when none, or on a NULL argument).
/// The payloads of all n stay valid until the next drain or poll call.
#[no_mangle]
pub unsafe extern "C" fn wss_mgr_next_events(
    mgr: *mut wss_mgr,
    evs_out: *mut wss_event,
    cap: usize,
) -> usize {
    boundary(|| {
        if evs_out.is_null() || cap == 0 {
            return 0;
        }
        let Ok(mut g) = enter(mgr) else { return 0 };
        let m = g.mgr();
        m.release();
        let mut n = 0;
        while n < cap {
            let Some(e) = m.pop_event(None).map(to_c) else {
                break;
            };
            // SAFETY: the caller provides room for `cap` events.
            unsafe { *evs_out.add(n) = e };
            n += 1;
        }
        m.after_call();
        n
    })
}

/// Takes the next event of one connection (or listener, or timer), skipping others,
/// which stay queued in order. Costs a scan of the queue.
/// Returns true and the event in `*ev_out`, or false.
#[no_mangle]
pub unsafe extern "C" fn wss_conn_next_event(
    mgr: *mut wss_mgr,
    conn: wss_id,
    ev_out: *mut wss_event,
) -> bool {
    boundary(|| {
        if ev_out.is_null() {
            return false;
        }
        let Ok(mut g) = enter(mgr) else { return false };
        let m = g.mgr();
        m.release();
        let got = m.pop_event(Some(conn)).map(to_c);
        m.after_call();
        match got {
            Some(e) => {
                // SAFETY: non-null out-parameter.
                unsafe { *ev_out = e };
                true
            }
            None => false,
        }
    })
}
