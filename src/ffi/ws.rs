//! WebSocket: upgrade, send, fragments, close, broadcast.

use super::boundary::{boundary, cstr, slice};
use super::opts::{read_opts, text_field};
use super::result::wss_result;
use super::{call, wss_id, wss_mgr};
use crate::error::Error;
use std::ffi::c_char;

/// WebSocket opcodes, as used by `wss_ws_send` and friends.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum wss_opcode {
    /// A continuation frame (`wss_ws_send_fragment` after the first piece).
    WSS_OP_CONTINUATION = 0,
    /// A text message (must be UTF-8).
    WSS_OP_TEXT = 1,
    /// A binary message.
    WSS_OP_BINARY = 2,
    /// A close frame (use `wss_ws_close`).
    WSS_OP_CLOSE = 8,
    /// A ping (payload at most 125 bytes).
    WSS_OP_PING = 9,
    /// A pong (payload at most 125 bytes; pings are answered automatically).
    WSS_OP_PONG = 10,
}

/// Options of `wss_ws_upgrade`. Zero-initialise and set `struct_size`; NULL for none.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct wss_upgrade_opts {
    /// `sizeof(wss_upgrade_opts)`.
    pub struct_size: u32,
    /// Header lines added to the 101 response ("Set-Cookie: a=b\r\n").
    pub extra_headers: *const c_char,
    /// The subprotocol to agree on; it must be one the client offered. NULL: the
    /// listener's `ws_protocols`, in its order of preference, or none.
    pub protocol: *const c_char,
}

/// Upgrades the HTTP request waiting on `conn` to a WebSocket: checks it (GET, HTTP/1.1,
/// `Upgrade: websocket`, `Connection: upgrade`, a 16-byte `Sec-WebSocket-Key`, version 13,
/// the listener's origin allow-list), negotiates the subprotocol and permessage-deflate
/// (when the listener offers it), and answers 101. `WSS_EV_WS_OPEN` follows; from then on
/// the connection carries WebSocket messages. `opts` may be NULL.
///
/// A request that is not a valid upgrade is answered by the library (400; 426 with
/// `Sec-WebSocket-Version: 13` for another version; 403 for a refused origin) and the
/// call returns `WSS_RESULT_PROTOCOL` with the reason in the last error.
///
/// Returns: `WSS_RESULT_OK`; `WSS_RESULT_PROTOCOL` (answered as above);
/// `WSS_RESULT_INVALID_ARGUMENT` (a protocol the client did not offer, bad headers);
/// `WSS_RESULT_INVALID_STATE` (no request waiting); `WSS_RESULT_WRONG_KIND`; `WSS_RESULT_NOT_FOUND`.
#[no_mangle]
pub unsafe extern "C" fn wss_ws_upgrade(
    mgr: *mut wss_mgr,
    conn: wss_id,
    opts: *const wss_upgrade_opts,
) -> wss_result {
    boundary(|| {
        call(mgr, |m| {
            // SAFETY: NULL or a valid options struct whose strings are NUL-terminated.
            let o = unsafe { read_opts(opts, "wss_upgrade_opts") }?;
            let (extra, protocol) = match o {
                None => (None, None),
                Some(o) => unsafe {
                    (
                        text_field(o.extra_headers, "extra_headers")?,
                        text_field(o.protocol, "protocol")?,
                    )
                },
            };
            m.ws_upgrade(
                conn,
                extra.as_deref().unwrap_or("").as_bytes(),
                protocol.as_deref(),
            )
        })
    })
}

fn opcode_arg(opcode: u32) -> Result<crate::ws::OpCode, Error> {
    use crate::ws::OpCode;
    match opcode {
        1 => Ok(OpCode::Text),
        2 => Ok(OpCode::Binary),
        9 => Ok(OpCode::Ping),
        10 => Ok(OpCode::Pong),
        0 => Ok(OpCode::Continuation),
        8 => Err(Error::InvalidArgument(
            "use wss_ws_close to send a close frame".into(),
        )),
        n => Err(Error::InvalidArgument(format!(
            "opcode {n} (WSS_OP_TEXT, WSS_OP_BINARY, WSS_OP_PING, WSS_OP_PONG)"
        ))),
    }
}

/// Sends a whole WebSocket message (`WSS_OP_TEXT`, `WSS_OP_BINARY`) or a control frame
/// (`WSS_OP_PING`, `WSS_OP_PONG`, payload at most 125 bytes) on `conn`. The bytes are
/// copied; with permessage-deflate agreed, messages above a small threshold are
/// compressed. Server frames are unmasked; client frames masked with a fresh key.
///
/// Returns: `WSS_RESULT_OK`; `WSS_RESULT_INVALID_ARGUMENT` (bad opcode, text that is not
/// UTF-8, control payload over 125 bytes); `WSS_RESULT_INVALID_STATE` (a fragmented
/// message is being sent); `WSS_RESULT_WRONG_KIND` (not a WebSocket); `WSS_RESULT_CLOSED`
/// (a close frame was sent or received); `WSS_RESULT_LIMIT` (send buffer full: the
/// connection is closed); `WSS_RESULT_NOT_FOUND`.
#[no_mangle]
pub unsafe extern "C" fn wss_ws_send(
    mgr: *mut wss_mgr,
    conn: wss_id,
    data: *const u8,
    len: usize,
    opcode: u32,
) -> wss_result {
    boundary(|| {
        // SAFETY: `len` readable bytes at `data` (or len 0).
        let Some(data) = (unsafe { slice(data, len) }) else {
            return wss_result::WSS_RESULT_NULL_PARAMETER;
        };
        call(mgr, |m| {
            let op = opcode_arg(opcode)?;
            if op == crate::ws::OpCode::Continuation {
                return Err(Error::InvalidArgument(
                    "WSS_OP_CONTINUATION is for wss_ws_send_fragment".into(),
                ));
            }
            m.ws_send_op(conn, data, op)
        })
    })
}

/// Sends one piece of a message produced piece by piece: the first with `WSS_OP_TEXT` or
/// `WSS_OP_BINARY`, the following ones with `WSS_OP_CONTINUATION`; `fin` on the last.
/// Frames of other data messages may not come between the pieces (the call that tries
/// gets `WSS_RESULT_INVALID_STATE`; broadcasts skip the connection meanwhile); control
/// frames (pings, pongs) may, as RFC 6455 §5.4 allows.
/// Returns: as `wss_ws_send`; `WSS_RESULT_INVALID_STATE` for a continuation without a
/// start, or a new message while one is open.
#[no_mangle]
pub unsafe extern "C" fn wss_ws_send_fragment(
    mgr: *mut wss_mgr,
    conn: wss_id,
    data: *const u8,
    len: usize,
    opcode: u32,
    fin: bool,
) -> wss_result {
    boundary(|| {
        // SAFETY: `len` readable bytes at `data` (or len 0).
        let Some(data) = (unsafe { slice(data, len) }) else {
            return wss_result::WSS_RESULT_NULL_PARAMETER;
        };
        call(mgr, |m| {
            let op = opcode_arg(opcode)?;
            m.ws_send_fragment(conn, data, op, fin)
        })
    })
}

/// Starts the closing handshake: sends a close frame with `code` (1000-1003, 1007-1014,
/// 3000-4999) and `reason` (NULL or UTF-8, at most 123 bytes), then waits for the peer's
/// close frame (at most `close_timeout_ms`) and closes the connection. Messages that
/// arrive meanwhile are dropped. `WSS_EV_CLOSE` follows with the code.
/// Returns: `WSS_RESULT_OK`; `WSS_RESULT_INVALID_ARGUMENT` (code or reason);
/// `WSS_RESULT_CLOSED` (already closing); `WSS_RESULT_WRONG_KIND`; `WSS_RESULT_NOT_FOUND`.
#[no_mangle]
pub unsafe extern "C" fn wss_ws_close(
    mgr: *mut wss_mgr,
    conn: wss_id,
    code: u16,
    reason: *const c_char,
) -> wss_result {
    boundary(|| {
        // SAFETY: NULL or NUL-terminated.
        let reason = unsafe { cstr(reason) }.unwrap_or_default();
        call(mgr, |m| m.ws_close(conn, code, reason))
    })
}

/// Sends one message to every open WebSocket connection accepted by `listener` (0: every
/// WebSocket connection of the manager). The frame is encoded once (uncompressed) and
/// copied to each connection. Connections whose send buffer is over its limit are
/// skipped and closed, as with `wss_ws_send`.
///
/// `sent_out` (may be NULL) receives the number of connections that got the message.
/// Returns: `WSS_RESULT_OK`; `WSS_RESULT_INVALID_ARGUMENT` (opcode, text not UTF-8);
/// `WSS_RESULT_NOT_FOUND`/`WSS_RESULT_WRONG_KIND` for a `listener` that is not a listener.
#[no_mangle]
pub unsafe extern "C" fn wss_ws_broadcast(
    mgr: *mut wss_mgr,
    listener: wss_id,
    data: *const u8,
    len: usize,
    opcode: u32,
    sent_out: *mut usize,
) -> wss_result {
    boundary(|| {
        // SAFETY: `len` readable bytes at `data` (or len 0).
        let Some(data) = (unsafe { slice(data, len) }) else {
            return wss_result::WSS_RESULT_NULL_PARAMETER;
        };
        let mut sent = 0;
        let r = call(mgr, |m| {
            let op = opcode_arg(opcode)?;
            sent = m.ws_broadcast(listener, data, op)?;
            Ok(())
        });
        if r == wss_result::WSS_RESULT_OK && !sent_out.is_null() {
            // SAFETY: non-null out-parameter.
            unsafe { *sent_out = sent };
        }
        r
    })
}
