//! Settings of listeners, connections and the manager, with their defaults.
//!
//! The C option structs (`ffi/opts.rs`) translate into these; a zero field there means
//! "the default below", so defaults live in one place.

use std::time::Duration;

/// Limits and timeouts that apply to every connection of a listener (or to a client).
#[derive(Debug, Clone)]
pub struct ConnConfig {
    /// Largest request head (request line + headers); over it: 431.
    pub max_header_bytes: usize,
    /// Longest request target; over it: 414.
    pub max_uri_bytes: usize,
    /// Largest request body; over it: 413.
    pub max_body_bytes: u64,
    /// Largest WebSocket frame payload; over it: close 1009.
    pub max_frame_bytes: u64,
    /// Largest WebSocket message (after inflation); over it: close 1009.
    pub max_message_bytes: u64,
    /// Bytes that may wait in a send buffer. A send that finds more than this already
    /// buffered is refused and the connection is closed (a peer that does not read
    /// must not grow memory without bound).
    pub max_send_buffer: usize,
    /// A drain event fires when the send buffer falls to this many bytes.
    pub send_low_water: usize,
    /// Bytes of undrained events after which the socket is no longer read.
    pub max_queued_bytes: usize,
    /// Undrained events after which the socket is no longer read.
    pub max_queued_events: u32,
    /// Time from the first byte of a request to the end of its head; then 408.
    pub header_timeout: Option<Duration>,
    /// Time from the end of a request head to the end of its body; then 408.
    pub body_timeout: Option<Duration>,
    /// Time without any byte received after which the connection is closed.
    pub idle_timeout: Option<Duration>,
    /// Interval of keepalive pings on WebSocket connections.
    pub ping_interval: Option<Duration>,
    /// Time to wait for a pong (or any frame) after a keepalive ping.
    pub pong_timeout: Option<Duration>,
    /// Time to wait for the peer's close frame after sending ours.
    pub close_timeout: Option<Duration>,
    /// Time allowed for a TLS handshake.
    pub tls_handshake_timeout: Option<Duration>,
    /// Time spent discarding input after a graceful close, before the socket is dropped.
    pub linger_timeout: Duration,
    /// WebSocket settings.
    pub ws: WsSettings,
}

/// WebSocket settings of a listener (server side) or a client connection.
#[derive(Debug, Clone, Default)]
pub struct WsSettings {
    /// Origins accepted (None: any).
    pub origins: Option<Vec<String>>,
    /// Subprotocols: supported, in order of preference (server), or offered (client).
    pub protocols: Vec<String>,
    /// permessage-deflate to offer or accept (None: off).
    pub deflate: Option<crate::ws::deflate::DeflateConfig>,
    /// Deliver messages piece by piece.
    pub stream: bool,
    /// Client: the Origin header to send.
    pub origin: Option<String>,
    /// Client: extra handshake header lines.
    pub headers: Vec<(String, String)>,
}

impl Default for ConnConfig {
    fn default() -> Self {
        ConnConfig {
            max_header_bytes: 16 << 10,
            max_uri_bytes: 8 << 10,
            max_body_bytes: 16 << 20,
            max_frame_bytes: 16 << 20,
            max_message_bytes: 64 << 20,
            max_send_buffer: 16 << 20,
            send_low_water: 0,
            max_queued_bytes: 4 << 20,
            max_queued_events: 1024,
            header_timeout: Some(Duration::from_secs(10)),
            body_timeout: Some(Duration::from_secs(60)),
            idle_timeout: Some(Duration::from_secs(120)),
            ping_interval: Some(Duration::from_secs(60)),
            pong_timeout: Some(Duration::from_secs(30)),
            close_timeout: Some(Duration::from_secs(5)),
            tls_handshake_timeout: Some(Duration::from_secs(10)),
            linger_timeout: Duration::from_secs(2),
            ws: WsSettings::default(),
        }
    }
}

/// Certificates of a TLS listener (each value a PEM file path or PEM text).
#[derive(Debug, Clone, Default)]
pub struct TlsServerSpec {
    /// Certificate chain, leaf first.
    pub cert: String,
    /// Private key.
    pub key: String,
    /// More (certificate, key) pairs, chosen by SNI.
    pub sni: Vec<(String, String)>,
    /// Mutual TLS: CA bundle client certificates must chain to.
    pub client_ca: Option<String>,
    /// With `client_ca`: let clients without a certificate in.
    pub client_cert_optional: bool,
}

/// TLS settings of a client connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TlsClientSpec {
    /// CA bundle (None: the system's roots).
    pub ca: Option<String>,
    /// Accept any server certificate (tests only).
    pub insecure_skip_verify: bool,
    /// Client certificate for mutual TLS.
    pub cert: Option<String>,
    /// Client key for mutual TLS.
    pub key: Option<String>,
    /// Name to send and verify instead of the URL's host.
    pub server_name: Option<String>,
}

/// Settings of a listener beyond the per-connection ones.
#[derive(Debug, Clone, Default)]
pub struct ListenConfig {
    /// Certificates, for https/wss/tls listeners.
    pub tls: Option<TlsServerSpec>,
    /// Per-connection limits of accepted connections.
    pub conn: ConnConfig,
    /// Most connections open at once on this listener (0: no per-listener limit).
    pub max_connections: u32,
    /// `listen(2)` backlog.
    pub backlog: u32,
    /// Set `SO_REUSEPORT` so several processes or threads can share the port.
    pub reuse_port: bool,
}

/// Settings of an outbound connection.
#[derive(Debug, Clone, Default)]
pub struct ConnectConfig {
    /// Limits and timeouts.
    pub conn: ConnConfig,
    /// TLS settings, for tls:// and wss:// URLs.
    pub tls: TlsClientSpec,
}

/// Settings of a manager.
#[derive(Debug, Clone)]
pub struct MgrConfig {
    /// Most connections open at once in the manager (listeners excluded).
    pub max_connections: u32,
    /// Bound on what other threads may queue for the polling thread (`wss_mgr_wakeup`,
    /// `wss_send_threadsafe`): payload bytes plus a fixed cost per item.
    pub max_threadsafe_bytes: usize,
}

impl Default for MgrConfig {
    fn default() -> Self {
        MgrConfig {
            max_connections: 100_000,
            max_threadsafe_bytes: 64 << 20,
        }
    }
}
