//! Option structs of the C API. Each starts with its own size, so fields can be added
//! at the end without breaking programs built against an older header: the library
//! reads only the bytes the caller says it has. A zero field means "the default".

use super::boundary::cstr_utf8;
use crate::config::{
    ConnConfig, ConnectConfig, ListenConfig, MgrConfig, TlsClientSpec, TlsServerSpec, WsSettings,
};
use crate::error::{Error, Result};
use crate::ws::deflate::DeflateConfig;
use std::ffi::c_char;
use std::time::Duration;

/// Put in a `*_timeout_ms` or `*_interval_ms` field to turn that timeout off
/// (0 means "the default").
pub const WSS_NO_TIMEOUT: u32 = u32::MAX;

/// Options of `wss_mgr_new`. Zero-initialise, set `struct_size = sizeof(wss_mgr_opts)`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct wss_mgr_opts {
    /// `sizeof(wss_mgr_opts)`.
    pub struct_size: u32,
    /// Most connections open at once, listeners excluded (default 100000). Accepts
    /// beyond it are closed at once; existing connections are not affected.
    pub max_connections: u32,
    /// Most bytes other threads may have queued for the polling thread through
    /// `wss_mgr_wakeup` and `wss_send_threadsafe` (default 64 MiB). Each queued call
    /// counts its payload plus 64 bytes, so empty wakeups are bounded too. A call that
    /// would pass it returns `WSS_RESULT_LIMIT` and queues nothing.
    pub max_threadsafe_bytes: u64,
}

/// A certificate and its key, for SNI (each a path to a PEM file, or PEM text).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct wss_tls_cert {
    /// Certificate chain, leaf first: a PEM file path or PEM text.
    pub cert: *const c_char,
    /// Private key: a PEM file path or PEM text.
    pub key: *const c_char,
}

/// Options of `wss_mgr_listen`. Zero-initialise, set `struct_size =
/// sizeof(wss_listen_opts)`, then set what differs from the defaults. Sizes are bytes.
/// Timeouts are milliseconds; 0 is the default and `WSS_NO_TIMEOUT` turns one off.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct wss_listen_opts {
    /// `sizeof(wss_listen_opts)`.
    pub struct_size: u32,
    /// Most connections of this listener open at once (default: no per-listener limit).
    pub max_connections: u32,
    /// listen(2) backlog (default 1024).
    pub backlog: u32,
    /// Largest request head, request line and headers (default 16 KiB): 431 beyond.
    pub max_header_bytes: u32,
    /// Longest request target (default 8 KiB): 414 beyond.
    pub max_uri_bytes: u32,
    /// Undrained events per connection after which its socket is not read (default 1024).
    pub max_queued_events: u32,
    /// Largest request body (default 16 MiB): 413 beyond.
    pub max_body_bytes: u64,
    /// Largest WebSocket frame payload (default 16 MiB): close 1009 beyond.
    pub max_frame_bytes: u64,
    /// Largest WebSocket message (default 64 MiB): close 1009 beyond.
    pub max_message_bytes: u64,
    /// Bytes that may wait in a connection's send buffer (default 16 MiB). A send that
    /// finds more than this waiting fails with WSS_RESULT_LIMIT and closes the connection.
    pub max_send_buffer: u64,
    /// A WSS_EV_DRAIN event fires when the send buffer falls to this many bytes (default 0).
    pub send_low_water: u64,
    /// Undrained event bytes per connection after which its socket is not read (default 4 MiB).
    pub max_queued_bytes: u64,
    /// From the first byte of a request to the end of its head (default 10000): 408.
    pub header_timeout_ms: u32,
    /// From the end of a request head to the end of its body (default 60000): 408.
    pub body_timeout_ms: u32,
    /// Nothing received for this long closes the connection (default 120000).
    pub idle_timeout_ms: u32,
    /// WebSocket keepalive: a ping goes out when nothing was received for this long, and
    /// the connection closes when no answer comes within `pong_timeout_ms` (default
    /// 60000; `WSS_NO_TIMEOUT` turns pings off).
    pub ping_interval_ms: u32,
    /// Time to wait for a pong after a keepalive ping (default 30000).
    pub pong_timeout_ms: u32,
    /// Time to wait for the peer's close frame after sending ours (default 5000).
    pub close_timeout_ms: u32,
    /// Time allowed for a TLS handshake (default 10000).
    pub tls_handshake_timeout_ms: u32,
    /// Set SO_REUSEPORT: several processes or threads may listen on the same port.
    pub reuse_port: bool,
    /// Offer permessage-deflate (RFC 7692) to WebSocket clients.
    pub ws_deflate: bool,
    /// Deliver WebSocket messages piece by piece (WSS_EV_WS_FRAGMENT) instead of whole.
    pub ws_stream: bool,
    /// With `tls_client_ca`: let clients without a certificate in.
    pub tls_client_cert_optional: bool,
    /// Certificate chain for https/wss/tls listeners: a PEM file path or PEM text.
    pub tls_cert: *const c_char,
    /// Private key: a PEM file path or PEM text.
    pub tls_key: *const c_char,
    /// Mutual TLS: CA bundle (path or PEM) that client certificates must chain to.
    pub tls_client_ca: *const c_char,
    /// More certificates, chosen by the SNI name a client asks for.
    pub tls_sni: *const wss_tls_cert,
    /// Number of entries in `tls_sni`.
    pub tls_sni_count: usize,
    /// Comma-separated WebSocket origins accepted (default: any); other origins get 403.
    /// A handshake without an Origin header (a non-browser client) is accepted: browsers
    /// always send one, and the allow-list guards against pages on other sites.
    pub ws_origins: *const c_char,
    /// Comma-separated WebSocket subprotocols supported, in order of preference.
    pub ws_protocols: *const c_char,
}

/// Options of `wss_mgr_connect`. Zero-initialise and set `struct_size`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct wss_connect_opts {
    /// `sizeof(wss_connect_opts)`.
    pub struct_size: u32,
    /// Connect timeout, then idle timeout (default 120000).
    pub idle_timeout_ms: u32,
    /// Bytes that may wait in the send buffer (default 16 MiB).
    pub max_send_buffer: u64,
    /// Largest WebSocket frame accepted (default 16 MiB).
    pub max_frame_bytes: u64,
    /// Largest WebSocket message accepted (default 64 MiB).
    pub max_message_bytes: u64,
    /// Skip verification of the server's certificate (tests only!).
    pub tls_insecure_skip_verify: bool,
    /// Offer permessage-deflate to the server.
    pub ws_deflate: bool,
    /// Deliver WebSocket messages piece by piece.
    pub ws_stream: bool,
    /// CA bundle (path or PEM) to verify the server with (default: the system's roots).
    pub tls_ca: *const c_char,
    /// Client certificate (path or PEM) for mutual TLS.
    pub tls_cert: *const c_char,
    /// Client key (path or PEM) for mutual TLS.
    pub tls_key: *const c_char,
    /// Name to send as SNI and to verify (default: the URL's host).
    pub tls_server_name: *const c_char,
    /// Comma-separated WebSocket subprotocols to offer.
    pub ws_protocols: *const c_char,
    /// `Origin` header for the WebSocket handshake.
    pub ws_origin: *const c_char,
    /// Extra handshake header lines ("Name: value\r\n"...).
    pub ws_headers: *const c_char,
}

/// Options of `wss_http_serve_dir` and `wss_http_serve_file`. Zero-initialise and set
/// `struct_size`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct wss_serve_opts {
    /// `sizeof(wss_serve_opts)`.
    pub struct_size: u32,
    /// Directory to serve (required by `wss_http_serve_dir`).
    pub root_dir: *const c_char,
    /// File served for a directory (default "index.html").
    pub index_file: *const c_char,
    /// Header lines added to every reply ("Cache-Control: max-age=60\r\n").
    pub extra_headers: *const c_char,
    /// Content types by extension that override the built-in table: "md=text/markdown,log=text/plain".
    pub mime_types: *const c_char,
    /// A URL path prefix that maps to `root_dir` (e.g. "/static"); requests outside it get 404.
    pub url_prefix: *const c_char,
}

/// Splits "a, b,c" into trimmed, non-empty items.
fn comma_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(String::from)
        .collect()
}

/// Reads a caller's options struct, honouring its `struct_size` (the first field).
///
/// # Safety
/// `p` is null or points to at least `struct_size` readable bytes.
pub unsafe fn read_opts<T: Copy>(p: *const T, name: &str) -> Result<Option<T>> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: every options struct starts with a u32 struct_size.
    let size = unsafe { *(p as *const u32) } as usize;
    if !(4..=1 << 16).contains(&size) {
        return Err(Error::InvalidArgument(format!(
            "{name}.struct_size is {size}: set it to sizeof({name})"
        )));
    }
    // SAFETY: all option structs are valid when zeroed (integers, bools, pointers).
    let mut out: T = unsafe { std::mem::zeroed() };
    let n = size.min(std::mem::size_of::<T>());
    // SAFETY: the caller vouches for `size` readable bytes; we copy at most that many
    // into a local of at least `n` bytes.
    unsafe { std::ptr::copy_nonoverlapping(p as *const u8, &mut out as *mut T as *mut u8, n) };
    Ok(Some(out))
}

fn timeout(ms: u32, default: Option<Duration>) -> Option<Duration> {
    match ms {
        0 => default,
        WSS_NO_TIMEOUT => None,
        n => Some(Duration::from_millis(u64::from(n))),
    }
}

fn or<T: PartialEq + Default>(v: T, default: T) -> T {
    if v == T::default() {
        default
    } else {
        v
    }
}

/// A C string field as UTF-8 text.
///
/// # Safety
/// `p` is null or a NUL-terminated string.
pub unsafe fn text_field(p: *const c_char, field: &str) -> Result<Option<String>> {
    // SAFETY: forwarded.
    match unsafe { cstr_utf8(p) } {
        None => Ok(None),
        Some(Ok(s)) => Ok(Some(s.to_string())),
        Some(Err(_)) => Err(Error::InvalidArgument(format!("{field} is not UTF-8"))),
    }
}

impl wss_mgr_opts {
    /// The manager settings these options describe.
    pub fn to_config(o: Option<&Self>) -> MgrConfig {
        let d = MgrConfig::default();
        match o {
            None => d,
            Some(o) => MgrConfig {
                max_connections: or(o.max_connections, d.max_connections),
                max_threadsafe_bytes: usize::try_from(o.max_threadsafe_bytes)
                    .map_or(usize::MAX, |b| or(b, d.max_threadsafe_bytes)),
            },
        }
    }
}

impl wss_listen_opts {
    /// The listener settings these options describe.
    pub fn to_config(o: Option<&Self>) -> Result<ListenConfig> {
        let Some(o) = o else {
            return Ok(ListenConfig::default());
        };
        let d = ConnConfig::default();
        let conn = ConnConfig {
            max_header_bytes: or(o.max_header_bytes as usize, d.max_header_bytes),
            max_uri_bytes: or(o.max_uri_bytes as usize, d.max_uri_bytes),
            max_body_bytes: or(o.max_body_bytes, d.max_body_bytes),
            max_frame_bytes: or(o.max_frame_bytes, d.max_frame_bytes),
            max_message_bytes: or(o.max_message_bytes, d.max_message_bytes),
            max_send_buffer: or(
                o.max_send_buffer.min(usize::MAX as u64) as usize,
                d.max_send_buffer,
            ),
            send_low_water: or(
                o.send_low_water.min(usize::MAX as u64) as usize,
                d.send_low_water,
            ),
            max_queued_bytes: or(
                o.max_queued_bytes.min(usize::MAX as u64) as usize,
                d.max_queued_bytes,
            ),
            max_queued_events: or(o.max_queued_events, d.max_queued_events),
            header_timeout: timeout(o.header_timeout_ms, d.header_timeout),
            body_timeout: timeout(o.body_timeout_ms, d.body_timeout),
            idle_timeout: timeout(o.idle_timeout_ms, d.idle_timeout),
            ping_interval: timeout(o.ping_interval_ms, d.ping_interval),
            pong_timeout: timeout(o.pong_timeout_ms, d.pong_timeout),
            close_timeout: timeout(o.close_timeout_ms, d.close_timeout),
            tls_handshake_timeout: timeout(o.tls_handshake_timeout_ms, d.tls_handshake_timeout),
            linger_timeout: d.linger_timeout,
            ws: Self::ws_settings(o)?,
        };
        Ok(ListenConfig {
            tls: Self::tls_spec(o)?,
            conn,
            max_connections: o.max_connections,
            backlog: o.backlog,
            reuse_port: o.reuse_port,
        })
    }

    fn ws_settings(o: &Self) -> Result<WsSettings> {
        // SAFETY: NULL or NUL-terminated, per the header.
        let origins = unsafe { text_field(o.ws_origins, "ws_origins") }?.map(|s| comma_list(&s));
        let protocols = unsafe { text_field(o.ws_protocols, "ws_protocols") }?
            .map_or_else(Vec::new, |s| comma_list(&s));
        Ok(WsSettings {
            origins,
            protocols,
            deflate: o.ws_deflate.then(DeflateConfig::default),
            stream: o.ws_stream,
            origin: None,
            headers: Vec::new(),
        })
    }

    fn tls_spec(o: &Self) -> Result<Option<TlsServerSpec>> {
        // SAFETY (all text_field calls): each field is NULL or NUL-terminated, per the header.
        let cert = unsafe { text_field(o.tls_cert, "tls_cert") }?;
        let key = unsafe { text_field(o.tls_key, "tls_key") }?;
        let (cert, key) = match (cert, key) {
            (None, None) => {
                if !o.tls_client_ca.is_null() || o.tls_sni_count > 0 {
                    return Err(Error::InvalidArgument(
                        "tls_client_ca / tls_sni need tls_cert and tls_key".into(),
                    ));
                }
                return Ok(None);
            }
            (Some(c), Some(k)) => (c, k),
            (Some(_), None) => {
                return Err(Error::InvalidArgument(
                    "tls_cert given without tls_key".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(Error::InvalidArgument(
                    "tls_key given without tls_cert".into(),
                ))
            }
        };
        let mut sni = Vec::new();
        if o.tls_sni_count > 0 {
            if o.tls_sni.is_null() {
                return Err(Error::InvalidArgument(
                    "tls_sni is NULL but tls_sni_count is not 0".into(),
                ));
            }
            for i in 0..o.tls_sni_count {
                // SAFETY: the caller provides tls_sni_count entries.
                let e = unsafe { *o.tls_sni.add(i) };
                let c = unsafe { text_field(e.cert, "tls_sni[].cert") }?;
                let k = unsafe { text_field(e.key, "tls_sni[].key") }?;
                match (c, k) {
                    (Some(c), Some(k)) => sni.push((c, k)),
                    _ => {
                        return Err(Error::InvalidArgument(format!(
                            "tls_sni[{i}] needs both cert and key"
                        )))
                    }
                }
            }
        }
        Ok(Some(TlsServerSpec {
            cert,
            key,
            sni,
            client_ca: unsafe { text_field(o.tls_client_ca, "tls_client_ca") }?,
            client_cert_optional: o.tls_client_cert_optional,
        }))
    }
}

impl wss_connect_opts {
    /// The connection settings these options describe.
    pub fn to_config(o: Option<&Self>) -> Result<ConnectConfig> {
        let d = ConnConfig::default();
        let Some(o) = o else {
            return Ok(ConnectConfig::default());
        };
        let conn = ConnConfig {
            idle_timeout: timeout(o.idle_timeout_ms, d.idle_timeout),
            max_send_buffer: or(
                o.max_send_buffer.min(usize::MAX as u64) as usize,
                d.max_send_buffer,
            ),
            max_frame_bytes: or(o.max_frame_bytes, d.max_frame_bytes),
            max_message_bytes: or(o.max_message_bytes, d.max_message_bytes),
            ws: Self::ws_settings(o)?,
            ..d
        };
        // SAFETY (all text_field calls): each field is NULL or NUL-terminated, per the header.
        let tls = TlsClientSpec {
            ca: unsafe { text_field(o.tls_ca, "tls_ca") }?,
            insecure_skip_verify: o.tls_insecure_skip_verify,
            cert: unsafe { text_field(o.tls_cert, "tls_cert") }?,
            key: unsafe { text_field(o.tls_key, "tls_key") }?,
            server_name: unsafe { text_field(o.tls_server_name, "tls_server_name") }?,
        };
        Ok(ConnectConfig { conn, tls })
    }

    fn ws_settings(o: &Self) -> Result<WsSettings> {
        // SAFETY: NULL or NUL-terminated, per the header.
        let protocols = unsafe { text_field(o.ws_protocols, "ws_protocols") }?
            .map_or_else(Vec::new, |s| comma_list(&s));
        let origin = unsafe { text_field(o.ws_origin, "ws_origin") }?;
        let mut headers = Vec::new();
        if let Some(h) = unsafe { text_field(o.ws_headers, "ws_headers") }? {
            let mut norm = Vec::new();
            crate::http::response::normalize_headers(h.as_bytes(), &mut norm)
                .map_err(Error::InvalidArgument)?;
            for line in String::from_utf8_lossy(&norm)
                .split("\r\n")
                .filter(|l| !l.is_empty())
            {
                if let Some((n, v)) = line.split_once(": ") {
                    headers.push((n.to_string(), v.to_string()));
                }
            }
        }
        Ok(WsSettings {
            origins: None,
            protocols,
            deflate: o.ws_deflate.then(DeflateConfig::default),
            stream: o.ws_stream,
            origin,
            headers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_size_is_honoured() {
        // SAFETY: zeroed option structs are valid.
        let mut o: wss_listen_opts = unsafe { std::mem::zeroed() };
        o.struct_size = 8; // an old caller that only knew the first two fields
        o.max_connections = 7;
        o.backlog = 99; // beyond what that caller declared: must be ignored
        let read = unsafe { read_opts(&o, "wss_listen_opts") }
            .unwrap()
            .unwrap();
        assert_eq!((read.max_connections, read.backlog), (7, 0));
        o.struct_size = 0;
        assert!(unsafe { read_opts(&o, "wss_listen_opts") }.is_err());
        assert!(
            unsafe { read_opts::<wss_listen_opts>(std::ptr::null(), "x") }
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn zero_means_default_and_max_means_off() {
        let mut o: wss_listen_opts = unsafe { std::mem::zeroed() };
        o.struct_size = std::mem::size_of::<wss_listen_opts>() as u32;
        o.idle_timeout_ms = WSS_NO_TIMEOUT;
        o.header_timeout_ms = 250;
        let c = wss_listen_opts::to_config(Some(&o)).unwrap().conn;
        assert_eq!(c.idle_timeout, None);
        assert_eq!(c.header_timeout, Some(Duration::from_millis(250)));
        assert_eq!(c.body_timeout, ConnConfig::default().body_timeout);
        assert_eq!(c.max_header_bytes, 16 << 10);
    }
}
