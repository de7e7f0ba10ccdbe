//! Creating, polling and freeing managers; listeners, clients; cross-thread calls.

use super::boundary::{boundary, check_null, cstr_utf8, slice};
use super::opts::{read_opts, wss_connect_opts, wss_listen_opts, wss_mgr_opts};
use super::result::wss_result;
use super::{call, enter, shared, wss_id, wss_mgr, Handle};
use crate::error::Error;
use crate::mgr::{Cross, Manager, PushError};
use std::ffi::c_char;

/// The library version, e.g. "0.1.0": static, NUL-terminated. Thread-safe.
#[no_mangle]
pub extern "C" fn wss_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// Creates an event manager.
///
/// `opts` may be NULL for the defaults; otherwise its `struct_size` must be set.
///
/// Returns: a new manager, owned by the caller, to be freed with `wss_mgr_free`; or NULL
/// when the options are invalid or the system refuses the poll, eventfd or timerfd
/// descriptors (e.g. out of file descriptors).
///
/// Example:
/// ```c
/// wss_mgr *mgr = wss_mgr_new(NULL);
/// ```
/// Related: `wss_mgr_free`, `wss_mgr_poll`.
#[no_mangle]
pub unsafe extern "C" fn wss_mgr_new(opts: *const wss_mgr_opts) -> *mut wss_mgr {
    boundary(|| {
        // SAFETY: the caller passes NULL or a valid options struct.
        let Ok(opts) = (unsafe { read_opts(opts, "wss_mgr_opts") }) else {
            return std::ptr::null_mut();
        };
        match Manager::new(wss_mgr_opts::to_config(opts.as_ref())) {
            Ok(m) => Handle::new_raw(m),
            Err(_) => std::ptr::null_mut(),
        }
    })
}

/// Frees a manager: closes every listener and connection at once (no close events),
/// releases all memory. Every id and every event pointer of this manager is
/// meaningless afterwards.
///
/// NULL is fine. Calling it twice with the same pointer is harmless (the second call
/// does nothing), as is any later call on the freed manager, which returns
/// `WSS_RESULT_FREED`: a small tombstone stays behind for that. Thread-safe calls
/// (`wss_mgr_wakeup`, `wss_send_threadsafe`) racing with it on other threads are safe:
/// the free waits for those already inside to return, and later ones get
/// `WSS_RESULT_FREED`.
///
/// Returns: `WSS_RESULT_OK` when freed (or `mgr` is NULL); `WSS_RESULT_FREED` when it
/// was freed before; `WSS_RESULT_CONCURRENT_USE` when another thread is inside a call
/// that is not thread-safe on this manager: nothing is freed then (the manager is
/// still live and must be freed again once that call has returned).
#[no_mangle]
pub unsafe extern "C" fn wss_mgr_free(mgr: *mut wss_mgr) -> wss_result {
    boundary(|| match super::free(mgr) {
        Ok(()) | Err(super::Denied::Null) => wss_result::WSS_RESULT_OK,
        Err(d) => d.result(),
    })
}

/// Waits up to `timeout_ms` milliseconds (0: do not wait; negative: no limit) for
/// network activity, timers or wakeups, runs the protocol handlers, and queues events.
/// Returns at once when events are already queued. Releases the payloads of events
/// drained before.
///
/// `queued_out` (may be NULL) receives the number of events waiting to be drained.
///
/// Returns: `WSS_RESULT_OK`; `WSS_RESULT_IO` if the poll itself failed (see the last
/// error); `WSS_RESULT_NULL_PARAMETER`, `WSS_RESULT_FREED`, `WSS_RESULT_CONCURRENT_USE`.
/// Failures of single connections are events, never results of this call.
///
/// Example:
/// ```c
/// for (;;) {
///   wss_mgr_poll(mgr, 1000, NULL);
///   wss_event ev;
///   while (wss_mgr_next_event(mgr, &ev)) { ... }
/// }
/// ```
#[no_mangle]
pub unsafe extern "C" fn wss_mgr_poll(
    mgr: *mut wss_mgr,
    timeout_ms: i32,
    queued_out: *mut usize,
) -> wss_result {
    boundary(|| {
        let mut queued = 0;
        let r = call(mgr, |m| {
            queued = m.poll(timeout_ms)?;
            Ok(())
        });
        if r == wss_result::WSS_RESULT_OK && !queued_out.is_null() {
            // SAFETY: non-null out-parameter supplied by the caller.
            unsafe { *queued_out = queued };
        }
        r
    })
}

/// A file descriptor that turns readable when the manager has work: network activity,
/// a due timer or deadline, a wakeup from another thread, or events queued by a call
/// made outside `wss_mgr_poll`. Watch it with epoll/select/libuv (`uv.new_poll(fd)`)
/// instead of polling on a timer: an idle manager then costs no CPU.
///
/// It is edge-style: after it fires, call `wss_mgr_poll(mgr, 0, NULL)` and drain every
/// event before sleeping on it again. The fd belongs to the manager: do not read or
/// close it. Returns -1 for a NULL or freed manager.
#[no_mangle]
pub unsafe extern "C" fn wss_mgr_fd(mgr: *const wss_mgr) -> i32 {
    boundary(|| match enter(mgr) {
        Ok(mut g) => g.mgr().fd(),
        Err(_) => -1,
    })
}

/// Milliseconds until the next timer or internal deadline (rounded up), 0 when events
/// are waiting, -1 when nothing is scheduled (or the manager is NULL or freed). For host
/// loops that arm their own timer; `wss_mgr_fd` already covers timers.
#[no_mangle]
pub unsafe extern "C" fn wss_mgr_next_timeout_ms(mgr: *const wss_mgr) -> i64 {
    boundary(|| match enter(mgr) {
        Ok(mut g) => g.mgr().next_timeout_ms(),
        Err(_) => -1,
    })
}

/// Text of the last error a call on this manager returned (a call that succeeds does
/// not clear it). Owned by the manager, NUL-terminated, valid until the next call on
/// this manager. Empty when there was none; a static text for a NULL or freed manager.
#[no_mangle]
pub unsafe extern "C" fn wss_mgr_last_error(mgr: *const wss_mgr) -> *const c_char {
    boundary(|| match enter(mgr) {
        Ok(g) => g.last_error(),
        Err(super::Denied::Null) => c"manager is NULL".as_ptr(),
        Err(super::Denied::Freed) => c"manager was freed".as_ptr(),
        Err(super::Denied::Busy) => c"manager is in use by another thread".as_ptr(),
    })
}

fn url_arg<'a>(url: *const c_char) -> Result<&'a str, Error> {
    // SAFETY: the caller passes a NUL-terminated string (NULL was checked).
    match unsafe { cstr_utf8(url) } {
        Some(Ok(s)) => Ok(s),
        _ => Err(Error::BadUrl("the URL is not UTF-8".into())),
    }
}

/// Opens a listener.
///
/// `url`: `http://`, `https://`, `ws://`, `wss://`, `tcp://`, `tls://` or `udp://`,
/// then an address and port: `http://0.0.0.0:8000`, `ws://[::1]:0`, `tcp://127.0.0.1:0`.
/// Port 0 picks a free port (see `wss_listener_port`). `[::]` listens on IPv6 only.
/// On `ws://` listeners every request must be a WebSocket upgrade and is upgraded
/// automatically; on `http://` the application decides (`wss_ws_upgrade`).
/// `opts` may be NULL for the defaults.
///
/// TLS listeners need `opts->tls_cert` and `opts->tls_key`.
///
/// Returns: `WSS_RESULT_OK` and the listener id in `*id_out`; `WSS_RESULT_BAD_URL`,
/// `WSS_RESULT_ADDRESS_IN_USE`, `WSS_RESULT_IO`; `WSS_RESULT_TLS_CONFIG` for a
/// certificate or key that cannot be used (the last error names the file and why);
/// `WSS_RESULT_INVALID_ARGUMENT` for options that do not fit (a TLS scheme without
/// certificates, certificates on a plain scheme). A `WSS_EV_LISTEN` event follows.
#[no_mangle]
pub unsafe extern "C" fn wss_mgr_listen(
    mgr: *mut wss_mgr,
    url: *const c_char,
    opts: *const wss_listen_opts,
    id_out: *mut wss_id,
) -> wss_result {
    boundary(|| {
        check_null!(mgr, url, id_out);
        let mut id = 0;
        let r = call(mgr, |m| {
            let url = url_arg(url)?;
            // SAFETY: NULL or a valid options struct.
            let opts = unsafe { read_opts(opts, "wss_listen_opts") }?;
            id = m.listen(url, wss_listen_opts::to_config(opts.as_ref())?)?;
            Ok(())
        });
        if r == wss_result::WSS_RESULT_OK {
            // SAFETY: checked non-null above.
            unsafe { *id_out = id };
        }
        r
    })
}

/// Opens an outbound connection: `tcp://host:port` (raw bytes), `tls://host:port` (raw
/// bytes over TLS), `ws://host:port/path` or `wss://host:port/path` (a WebSocket client).
/// The connect runs in the background: `WSS_EV_CONNECT` follows when TCP is up, then
/// `WSS_EV_TLS_READY` (TLS) and `WSS_EV_WS_OPEN` (WebSocket) when their handshakes are
/// done; on failure `WSS_EV_ERROR` then `WSS_EV_CLOSE`. Bytes sent before the handshakes
/// end are buffered. TLS verifies the server against `opts->tls_ca` or the system's
/// roots. Host names are resolved before the call returns (numeric hosts need no
/// lookup). `opts` may be NULL.
///
/// Returns: `WSS_RESULT_OK` and the connection id in `*id_out`; `WSS_RESULT_BAD_URL`,
/// `WSS_RESULT_IO`, `WSS_RESULT_TLS_CONFIG` (a CA or client certificate that cannot be
/// used), `WSS_RESULT_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn wss_mgr_connect(
    mgr: *mut wss_mgr,
    url: *const c_char,
    opts: *const wss_connect_opts,
    id_out: *mut wss_id,
) -> wss_result {
    boundary(|| {
        check_null!(mgr, url, id_out);
        let mut id = 0;
        let r = call(mgr, |m| {
            let url = url_arg(url)?;
            // SAFETY: NULL or a valid options struct.
            let opts = unsafe { read_opts(opts, "wss_connect_opts") }?;
            id = m.connect(url, wss_connect_opts::to_config(opts.as_ref())?)?;
            Ok(())
        });
        if r == wss_result::WSS_RESULT_OK {
            // SAFETY: checked non-null above.
            unsafe { *id_out = id };
        }
        r
    })
}

/// Wakes the manager from any thread: a `WSS_EV_WAKEUP` event with `conn` and a copy of
/// `data` (`len` bytes; NULL is fine when `len` is 0) surfaces on the polling thread.
/// `conn` is passed through as is (0 is fine); it is not checked.
///
/// THREAD-SAFE: may be called from any thread, concurrently, while the manager is
/// polled, and concurrently with `wss_mgr_free` (a call that loses that race returns
/// `WSS_RESULT_FREED`; the manager pointer must stay one that `wss_mgr_new` returned).
///
/// What other threads queue is bounded (`wss_mgr_opts.max_threadsafe_bytes`), and each
/// `wss_mgr_poll` takes at most a batch of it (4096 items or 4 MiB) and leaves the rest
/// for the next poll, which then does not wait: producers that never stop cannot keep a
/// poll from returning, and everything accepted is delivered in order.
///
/// Returns: `WSS_RESULT_OK` once queued; `WSS_RESULT_NULL_PARAMETER`; `WSS_RESULT_FREED`;
/// `WSS_RESULT_LIMIT` when the queue is full (the polling thread is behind: nothing was
/// queued; retry later); `WSS_RESULT_IO` if the eventfd write failed.
#[no_mangle]
pub unsafe extern "C" fn wss_mgr_wakeup(
    mgr: *const wss_mgr,
    conn: wss_id,
    data: *const u8,
    len: usize,
) -> wss_result {
    boundary(|| {
        check_null!(mgr);
        // SAFETY: `len` readable bytes at `data` (or len 0).
        let Some(data) = (unsafe { slice(data, len) }) else {
            return wss_result::WSS_RESULT_NULL_PARAMETER;
        };
        push_cross(
            mgr,
            Cross::Wakeup {
                conn,
                data: data.to_vec(),
            },
        )
    })
}

/// Sends from any thread: a copy of `data` is handed to the polling thread, which
/// sends it on `conn` as raw bytes (`opcode` 0, tcp connections) or as a WebSocket
/// message (`WSS_OP_TEXT`, `WSS_OP_BINARY`). Failures that concern the connection
/// surface as events, not results: a send that finds the connection closing or closed
/// adds nothing (its `WSS_EV_CLOSE`, always its last event, tells); one to an id that
/// names nothing (any more) gives a `WSS_EV_ERROR` under that id, code
/// `WSS_RESULT_NOT_FOUND`; other failures (text that is not UTF-8, a full send buffer)
/// a `WSS_EV_ERROR` on the connection.
///
/// THREAD-SAFE, like `wss_mgr_wakeup`, and bounded by the same queue.
///
/// Returns: `WSS_RESULT_OK` once queued; `WSS_RESULT_NULL_PARAMETER`; `WSS_RESULT_FREED`;
/// `WSS_RESULT_INVALID_ARGUMENT` for an opcode other than 0, 1 or 2; `WSS_RESULT_LIMIT`
/// when the queue is full (nothing was queued); `WSS_RESULT_IO` if the eventfd write
/// failed.
#[no_mangle]
pub unsafe extern "C" fn wss_send_threadsafe(
    mgr: *const wss_mgr,
    conn: wss_id,
    data: *const u8,
    len: usize,
    opcode: u32,
) -> wss_result {
    boundary(|| {
        check_null!(mgr);
        if opcode > 2 {
            return wss_result::WSS_RESULT_INVALID_ARGUMENT;
        }
        // SAFETY: `len` readable bytes at `data` (or len 0).
        let Some(data) = (unsafe { slice(data, len) }) else {
            return wss_result::WSS_RESULT_NULL_PARAMETER;
        };
        push_cross(
            mgr,
            Cross::Send {
                conn,
                data: data.to_vec(),
                opcode,
            },
        )
    })
}

fn push_cross(mgr: *const wss_mgr, item: Cross) -> wss_result {
    match shared(mgr) {
        Ok(s) => match s.push(item) {
            Ok(()) => wss_result::WSS_RESULT_OK,
            Err(PushError::Full { .. }) => wss_result::WSS_RESULT_LIMIT,
            Err(PushError::Wake(_)) => wss_result::WSS_RESULT_IO,
        },
        Err(d) => d.result(),
    }
}

/// Writes at once what the sends since the last drain or poll call gathered. Small sends
/// (up to 16 KiB) made while handling events are gathered per connection and written
/// together at the next call into the manager — normally the drain call that finds the
/// queue empty — so a batch of replies costs one write per connection. A program that
/// sends outside its event loop and then waits elsewhere can call this; the manager's
/// fd is also signalled so a host loop sleeping on it comes back to write them.
///
/// Returns: `WSS_RESULT_OK`; `WSS_RESULT_NULL_PARAMETER`; `WSS_RESULT_FREED`;
/// `WSS_RESULT_CONCURRENT_USE`. Write failures are events on their connections.
#[no_mangle]
pub unsafe extern "C" fn wss_mgr_flush(mgr: *mut wss_mgr) -> wss_result {
    boundary(|| {
        call(mgr, |m| {
            m.flush_dirty();
            Ok(())
        })
    })
}
