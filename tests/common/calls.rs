//! The C calls handlers make, wrapped for Rust slices and strings, and the echo handler
//! most WebSocket tests serve with.

use super::server::{Ctx, Ev, FLAG_TEXT, OK};
use std::ffi::CString;
use wsserver::ffi::event::wss_event_kind;
use wsserver::ffi::result::wss_result;
use wsserver::ffi::ws::wss_opcode;

/// Replies to an HTTP request event.
pub fn reply(ctx: &Ctx, conn: u64, status: u16, headers: &str, body: &[u8]) -> wss_result {
    let h = CString::new(headers).unwrap();
    unsafe {
        wsserver::ffi::http::wss_http_reply(
            ctx.mgr,
            conn,
            status,
            h.as_ptr(),
            body.as_ptr(),
            body.len(),
        )
    }
}

pub fn ws_send(ctx: &Ctx, conn: u64, data: &[u8], op: wss_opcode) -> wss_result {
    unsafe { wsserver::ffi::ws::wss_ws_send(ctx.mgr, conn, data.as_ptr(), data.len(), op as u32) }
}

pub fn ws_fragment(ctx: &Ctx, conn: u64, data: &[u8], op: wss_opcode, fin: bool) -> wss_result {
    unsafe {
        wsserver::ffi::ws::wss_ws_send_fragment(
            ctx.mgr,
            conn,
            data.as_ptr(),
            data.len(),
            op as u32,
            fin,
        )
    }
}

pub fn ws_close(ctx: &Ctx, conn: u64, code: u16, reason: Option<&str>) -> wss_result {
    let r = reason.map(|r| CString::new(r).unwrap());
    unsafe {
        wsserver::ffi::ws::wss_ws_close(
            ctx.mgr,
            conn,
            code,
            r.as_ref().map_or(std::ptr::null(), |r| r.as_ptr()),
        )
    }
}

/// Echoes every WebSocket message with the same type.
pub fn echo(ctx: &mut Ctx, ev: &Ev) {
    if ev.is(wss_event_kind::WSS_EV_WS_MSG) {
        let op = if ev.flags & FLAG_TEXT != 0 {
            wss_opcode::WSS_OP_TEXT
        } else {
            wss_opcode::WSS_OP_BINARY
        };
        let r = ws_send(ctx, ev.conn, &ev.data, op);
        assert_eq!(r, OK, "echo send: {}", ctx.last_error());
    }
}
