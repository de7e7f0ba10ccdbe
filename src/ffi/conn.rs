//! Connections and listeners: send, close, addresses, buffered bytes.

use super::boundary::{boundary, check_null, cstr_utf8, slice};
use super::event::wss_str;
use super::result::wss_result;
use super::{call, wss_id, wss_mgr};
use crate::error::Error;
use crate::mgr::{Entry, ListenSocket, Manager};
use crate::net::stream::Stream;
use std::ffi::c_char;
use std::net::SocketAddr;

/// Sends raw bytes on a `tcp://` or `tls://` connection, or a datagram to the last
/// sender on a `udp://` listener. The bytes are copied: written at once when the socket
/// takes them, else buffered and flushed as it drains.
///
/// Returns: `WSS_RESULT_OK`; `WSS_RESULT_NOT_FOUND` (stale id); `WSS_RESULT_CLOSED`;
/// `WSS_RESULT_WRONG_KIND` (an HTTP or WebSocket connection: use their functions);
/// `WSS_RESULT_LIMIT` when more than `max_send_buffer` bytes were already waiting (the
/// connection is then closed: the peer does not read); `WSS_RESULT_NULL_PARAMETER` if
/// `data` is NULL with `len` > 0; `WSS_RESULT_INVALID_STATE` on a udp listener that has
/// received no datagram yet (there is no sender to answer); `WSS_RESULT_WRONG_KIND` on a
/// tcp listener.
#[no_mangle]
pub unsafe extern "C" fn wss_conn_send(
    mgr: *mut wss_mgr,
    conn: wss_id,
    data: *const u8,
    len: usize,
) -> wss_result {
    boundary(|| {
        // SAFETY: `len` readable bytes at `data` (or len 0).
        let Some(data) = (unsafe { slice(data, len) }) else {
            return wss_result::WSS_RESULT_NULL_PARAMETER;
        };
        call(mgr, |m| m.send(conn, data))
    })
}

/// Sends a datagram from a `udp://` listener to `addr` ("ip:port", "[v6]:port").
/// Returns: `WSS_RESULT_OK`; `WSS_RESULT_INVALID_ARGUMENT` for a bad address;
/// `WSS_RESULT_WRONG_KIND` if `listener` is not a udp listener; `WSS_RESULT_LIMIT` if
/// the socket buffer is full (the datagram is dropped); `WSS_RESULT_IO`.
#[no_mangle]
pub unsafe extern "C" fn wss_udp_send_to(
    mgr: *mut wss_mgr,
    listener: wss_id,
    addr: *const c_char,
    data: *const u8,
    len: usize,
) -> wss_result {
    boundary(|| {
        check_null!(addr);
        // SAFETY: `len` readable bytes at `data` (or len 0).
        let Some(data) = (unsafe { slice(data, len) }) else {
            return wss_result::WSS_RESULT_NULL_PARAMETER;
        };
        call(mgr, |m| {
            // SAFETY: non-null, NUL-terminated.
            let addr = match unsafe { cstr_utf8(addr) } {
                Some(Ok(a)) => a,
                _ => return Err(Error::InvalidArgument("address is not UTF-8".into())),
            };
            m.udp_send_to(listener, addr, data)
        })
    })
}

/// Closes a connection or a listener. With `flush_first`, buffered bytes are sent
/// first, then the write side is shut down and input is discarded until the peer closes
/// (at most 2 s); otherwise the socket closes at once. `WSS_EV_CLOSE` follows either way.
///
/// Returns: `WSS_RESULT_OK`; `WSS_RESULT_NOT_FOUND`; `WSS_RESULT_CLOSED` if already closed.
#[no_mangle]
pub unsafe extern "C" fn wss_conn_close(
    mgr: *mut wss_mgr,
    conn: wss_id,
    flush_first: bool,
) -> wss_result {
    boundary(|| call(mgr, |m| m.close(conn, flush_first)))
}

/// Bytes waiting in a connection's send buffer, in `*bytes_out`.
/// Returns: `WSS_RESULT_OK`; `WSS_RESULT_NOT_FOUND`; `WSS_RESULT_WRONG_KIND` for a listener.
#[no_mangle]
pub unsafe extern "C" fn wss_conn_buffered(
    mgr: *mut wss_mgr,
    conn: wss_id,
    bytes_out: *mut usize,
) -> wss_result {
    boundary(|| {
        check_null!(bytes_out);
        let mut n = 0;
        let r = call(mgr, |m| {
            n = m.conn_mut(conn)?.buffered();
            Ok(())
        });
        if r == wss_result::WSS_RESULT_OK {
            // SAFETY: non-null out-parameter.
            unsafe { *bytes_out = n };
        }
        r
    })
}

fn addr_of(m: &mut Manager, id: u64, local: bool) -> Result<SocketAddr, Error> {
    match m.entries.get_mut(id) {
        Some(Entry::Conn(c)) => {
            let s = c.stream.as_ref().ok_or(Error::Closed(id))?;
            let r = if local {
                s.tcp().local_addr()
            } else {
                s.tcp().peer_addr()
            };
            r.map_err(|e| Error::io("address", e))
        }
        Some(Entry::Listener(l)) => {
            if local {
                Ok(l.local)
            } else {
                match (&l.socket, l.last_peer) {
                    (Some(ListenSocket::Udp(_)), Some(p)) => Ok(p),
                    _ => Err(Error::InvalidState(
                        "a listener has no peer (udp: none received yet)".into(),
                    )),
                }
            }
        }
        None => Err(Error::NotFound(id)),
    }
}

fn write_text(text: &str, buf: *mut c_char, cap: usize, len_out: *mut usize) -> Result<(), Error> {
    let needed = text.len();
    // SAFETY: non-null out-parameter (checked by the caller).
    unsafe { *len_out = needed };
    if buf.is_null() || cap < needed + 1 {
        return Err(Error::InsufficientSize(needed + 1));
    }
    // SAFETY: `cap` writable bytes at `buf`, and needed + 1 <= cap.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), buf as *mut u8, needed);
        *buf.add(needed) = 0;
    }
    Ok(())
}

fn address_call(
    mgr: *mut wss_mgr,
    id: wss_id,
    local: bool,
    buf: *mut c_char,
    cap: usize,
    len_out: *mut usize,
) -> wss_result {
    check_null!(len_out);
    call(mgr, |m| {
        let a = addr_of(m, id, local)?;
        write_text(&a.to_string(), buf, cap, len_out)
    })
}

/// The peer's address as "ip:port" ("[v6]:port"), NUL-terminated, into `buf` of `cap`
/// bytes; its length (without the NUL) in `*len_out`. For a udp listener: the sender of
/// the last datagram.
///
/// Returns: `WSS_RESULT_OK`; `WSS_RESULT_INSUFFICIENT_SIZE` when `cap` is too small, with
/// the length needed (without the NUL) in `*len_out`; `WSS_RESULT_NOT_FOUND`; `WSS_RESULT_CLOSED`;
/// `WSS_RESULT_INVALID_STATE` on a udp listener before its first datagram and on other
/// listeners (they have no peer); `WSS_RESULT_NULL_PARAMETER`.
#[no_mangle]
pub unsafe extern "C" fn wss_conn_peer(
    mgr: *mut wss_mgr,
    conn: wss_id,
    buf: *mut c_char,
    cap: usize,
    len_out: *mut usize,
) -> wss_result {
    boundary(|| address_call(mgr, conn, false, buf, cap, len_out))
}

/// The local address of a connection or listener, like `wss_conn_peer`.
#[no_mangle]
pub unsafe extern "C" fn wss_conn_local(
    mgr: *mut wss_mgr,
    conn: wss_id,
    buf: *mut c_char,
    cap: usize,
    len_out: *mut usize,
) -> wss_result {
    boundary(|| address_call(mgr, conn, true, buf, cap, len_out))
}

/// The port a listener is bound to (useful after listening on port 0), in `*port_out`.
/// Returns: `WSS_RESULT_OK`; `WSS_RESULT_NOT_FOUND`; `WSS_RESULT_WRONG_KIND` for a connection.
#[no_mangle]
pub unsafe extern "C" fn wss_listener_port(
    mgr: *mut wss_mgr,
    listener: wss_id,
    port_out: *mut u16,
) -> wss_result {
    boundary(|| {
        check_null!(port_out);
        let mut port = 0;
        let r = call(mgr, |m| {
            port = m.listener(listener)?.local.port();
            Ok(())
        });
        if r == wss_result::WSS_RESULT_OK {
            // SAFETY: non-null out-parameter.
            unsafe { *port_out = port };
        }
        r
    })
}

/// What a TLS connection negotiated. Views into memory owned by the manager, valid until
/// the next `wss_conn_tls_info` call on the same manager (or its free).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct wss_tls_info {
    /// "TLSv1.2" or "TLSv1.3".
    pub version: wss_str,
    /// Cipher suite, e.g. "TLS13_AES_256_GCM_SHA384".
    pub cipher: wss_str,
    /// ALPN protocol agreed ("http/1.1"), empty if none.
    pub alpn: wss_str,
    /// Server side: the name the client asked for (SNI), empty if none.
    pub sni: wss_str,
    /// Mutual TLS: the verified client certificate's subject ("CN=alice,O=Org"), empty if
    /// the client sent none. Client side: the server certificate's subject.
    pub peer_identity: wss_str,
}

/// Fills `*out` with what the TLS connection `conn` negotiated (see `wss_tls_info`).
/// Returns: `WSS_RESULT_OK`; `WSS_RESULT_WRONG_KIND` for a connection without TLS;
/// `WSS_RESULT_INVALID_STATE` while the handshake runs (wait for `WSS_EV_TLS_READY`);
/// `WSS_RESULT_NOT_FOUND`; `WSS_RESULT_CLOSED`.
#[no_mangle]
pub unsafe extern "C" fn wss_conn_tls_info(
    mgr: *mut wss_mgr,
    conn: wss_id,
    out: *mut wss_tls_info,
) -> wss_result {
    boundary(|| {
        check_null!(out);
        let mut info = None;
        let r = call(mgr, |m| {
            let c = match m.entries.get(conn) {
                Some(Entry::Conn(c)) => c,
                Some(Entry::Listener(_)) => {
                    return Err(Error::WrongKind("a listener, not a connection"))
                }
                None => return Err(Error::NotFound(conn)),
            };
            let Some(stream) = c.stream.as_ref() else {
                return Err(Error::Closed(conn));
            };
            let Stream::Tls(t) = stream else {
                return Err(Error::WrongKind("not a TLS connection"));
            };
            if t.tls.is_handshaking() {
                return Err(Error::InvalidState(
                    "the TLS handshake is not finished".into(),
                ));
            }
            let parts: [&[u8]; 5] = [
                t.tls.protocol_version().unwrap_or("").as_bytes(),
                t.tls.cipher_suite().unwrap_or("").as_bytes(),
                t.tls.alpn_protocol().unwrap_or(b""),
                t.tls.sni_hostname().unwrap_or("").as_bytes(),
                t.peer_identity.as_deref().unwrap_or("").as_bytes(),
            ];
            let buf = &mut m.info_text;
            buf.clear();
            let mut spans = [(0usize, 0usize); 5];
            for (i, p) in parts.iter().enumerate() {
                spans[i] = (buf.len(), p.len());
                buf.extend_from_slice(p);
            }
            let view = |(start, len): (usize, usize)| wss_str::of(&buf[start..start + len]);
            info = Some(wss_tls_info {
                version: view(spans[0]),
                cipher: view(spans[1]),
                alpn: view(spans[2]),
                sni: view(spans[3]),
                peer_identity: view(spans[4]),
            });
            Ok(())
        });
        if let Some(i) = info {
            // SAFETY: non-null out-parameter.
            unsafe { *out = i };
        }
        r
    })
}
