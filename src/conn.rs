//! One connection: its socket, buffers, protocol state and bookkeeping. The manager
//! (`mgr/`) drives it; this file holds the state and the rules that need no I/O.

use crate::config::ConnConfig;
use crate::http::server::HttpConn;
use crate::net::stream::Stream;
use crate::url::Scheme;
use std::sync::Arc;
use std::time::Instant;

/// Life of a connection's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Outbound connect in progress.
    Connecting,
    /// Open for reading and writing.
    Open,
    /// Flushing its send buffer; closes when it is empty.
    Closing,
    /// Write side shut down; input is discarded until EOF or the linger timeout.
    Lingering,
    /// The socket is gone; the entry waits for its close event to be drained.
    Closed,
}

/// The protocol spoken over the stream.
#[derive(Debug)]
pub enum Proto {
    /// Raw bytes (`tcp://`, `tls://`).
    Raw,
    /// HTTP/1.1 server side.
    Http(Box<HttpConn>),
    /// WebSocket, after the handshake.
    Ws(Box<WsConn>),
    /// WebSocket client waiting for the server's handshake response.
    WsClient(Box<WsClient>),
}

/// A WebSocket connection's state beyond the codec.
///
/// Kept small: every idle connection carries one (the budget is 0.5 KiB of server memory
/// per idle WebSocket, measured by `bench/loadgen idle`), so what only a closing
/// connection needs lives in a box allocated when the closing starts.
#[derive(Debug)]
pub struct WsConn {
    /// The sans-IO protocol state.
    pub session: crate::ws::Session,
    /// When a keepalive ping went out without an answer yet.
    pub ping_sent_at: u64,
    /// The closing handshake's state; `None` while the connection is open.
    pub closing: Option<Box<Closing>>,
}

/// What a WebSocket carries once its closing starts (a close frame sent or received, or
/// a protocol failure).
#[derive(Debug, Default)]
pub struct Closing {
    /// Close code for the close event (0: none yet).
    pub code: u16,
    /// Close reason for the close event.
    pub reason: Vec<u8>,
    /// When we sent a close frame and started waiting for the peer's (0: not sent).
    pub sent_at: u64,
    /// The peer's close frame came before we sent one.
    pub peer_first: bool,
    /// A protocol failure whose close frame waits until the application has answered
    /// the messages that arrived before the bad frame (Autobahn 3.2, 4.1.3, 5.15...).
    pub deferred_frame: Option<Vec<u8>>,
}

impl WsConn {
    /// A connection whose handshake just completed.
    pub fn new(session: crate::ws::Session) -> WsConn {
        WsConn {
            session,
            ping_sent_at: 0,
            closing: None,
        }
    }

    /// The closing state, created on first use.
    pub fn closing_mut(&mut self) -> &mut Closing {
        self.closing.get_or_insert_with(Box::default)
    }

    /// Close code recorded for the close event (0: none yet).
    pub fn close_code(&self) -> u16 {
        self.closing.as_ref().map_or(0, |c| c.code)
    }

    /// When we sent our close frame (0: not sent).
    pub fn close_sent_at(&self) -> u64 {
        self.closing.as_ref().map_or(0, |c| c.sent_at)
    }

    /// The peer's close frame came before we sent one.
    pub fn peer_closed_first(&self) -> bool {
        self.closing.as_ref().is_some_and(|c| c.peer_first)
    }

    /// A close frame waits for the application to answer earlier messages.
    pub fn has_deferred_close(&self) -> bool {
        self.closing
            .as_ref()
            .is_some_and(|c| c.deferred_frame.is_some())
    }
}

/// A WebSocket client between its request and the server's 101.
#[derive(Debug)]
pub struct WsClient {
    /// The handshake (key, offers).
    pub handshake: crate::ws::handshake::ClientHandshake,
    /// The request has been queued for sending.
    pub sent: bool,
}

/// A connection table entry.
#[derive(Debug)]
pub struct Conn {
    /// This connection's id.
    pub id: u64,
    /// Id of the listener that accepted it (0 for outbound connections).
    pub parent: u64,
    /// What the listener or client URL said.
    pub scheme: Scheme,
    /// The socket; `None` once closed.
    pub stream: Option<Stream>,
    /// Protocol state.
    pub proto: Proto,
    /// Limits and timeouts.
    pub cfg: Arc<ConnConfig>,
    /// Received bytes not yet consumed by the protocol. Empty (no allocation) when idle.
    pub rbuf: Vec<u8>,
    /// Bytes waiting to be written, from `wpos`. Empty (no allocation) when idle.
    pub wbuf: Vec<u8>,
    /// How much of `wbuf` is already written.
    pub wpos: usize,
    /// More bytes waiting behind `wbuf`, in chunks (only while a backlog exists).
    pub wmore: Option<Box<WriteQueue>>,
    /// Socket life.
    pub state: State,
    /// Events queued for this connection and not yet drained.
    pub queued_events: u32,
    /// Payload bytes of those events.
    pub queued_bytes: usize,
    /// Reading stopped because of the limits above; resumes when events are drained.
    pub read_paused: bool,
    /// The send buffer went above its low-water mark: a drain event is owed.
    pub drain_armed: bool,
    /// The peer closed its write side.
    pub peer_eof: bool,
    /// Time of the last byte received (or of the connection's start).
    pub last_read: u64,
    /// When this connection's entry in the deadline heap is due, if it has one.
    pub deadline_at: u64,
    /// The socket is registered for writability too (only once a write had to wait:
    /// an always-writable registration would wake the host loop for nothing).
    pub want_write: bool,
    /// The TLS handshake completed (and was reported).
    pub tls_ready: bool,
    /// Gathered bytes wait for the next flush point (the id is in `Core::dirty`).
    pub dirty: bool,
    /// A file being streamed as the body of the current reply.
    pub file: Option<Box<FileBody>>,
}

/// Send chunks queued behind a connection's head buffer.
#[derive(Debug, Default)]
pub struct WriteQueue {
    /// The chunks, oldest first.
    pub chunks: std::collections::VecDeque<Vec<u8>>,
    /// Their total length.
    pub bytes: usize,
}

/// The rest of a file to send.
#[derive(Debug)]
pub struct FileBody {
    /// The open file, positioned at the next byte to send.
    pub file: std::fs::File,
    /// Bytes still to send.
    pub remaining: u64,
    /// Whether the connection stays open after the reply.
    pub keep_alive: bool,
}

impl Conn {
    /// A new connection in `state`.
    pub fn new(
        id: u64,
        parent: u64,
        scheme: Scheme,
        stream: Stream,
        cfg: Arc<ConnConfig>,
        state: State,
        now: Instant,
    ) -> Conn {
        let proto = if scheme.is_http() {
            Proto::Http(Box::default())
        } else {
            Proto::Raw
        };
        Conn {
            id,
            parent,
            scheme,
            stream: Some(stream),
            proto,
            cfg,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            wpos: 0,
            wmore: None,
            state,
            queued_events: 0,
            queued_bytes: 0,
            read_paused: false,
            drain_armed: false,
            peer_eof: false,
            last_read: crate::clock::tick(now),
            deadline_at: 0,
            want_write: state == State::Connecting,

            tls_ready: false,
            dirty: false,
            file: None,
        }
    }

    /// Bytes waiting in the send buffer.
    pub fn buffered(&self) -> usize {
        self.wbuf.len() - self.wpos + self.wmore.as_ref().map_or(0, |q| q.bytes)
    }

    /// Whether the application may still send.
    pub fn can_send(&self) -> bool {
        matches!(self.state, State::Open | State::Connecting) && self.stream.is_some()
    }

    /// Whether reading must stop until the application drains events (or answers the
    /// request that holds the input).
    pub fn input_blocked(&self) -> bool {
        if self.queued_events >= self.cfg.max_queued_events
            || self.queued_bytes >= self.cfg.max_queued_bytes
        {
            return true;
        }
        match &self.proto {
            Proto::Http(h) => h.is_waiting() && self.rbuf.len() >= self.cfg.max_header_bytes,
            Proto::Raw | Proto::Ws(_) | Proto::WsClient(_) => false,
        }
    }

    /// The HTTP state, if this is an HTTP connection.
    pub fn http_mut(&mut self) -> Option<&mut HttpConn> {
        match &mut self.proto {
            Proto::Http(h) => Some(h),
            _ => None,
        }
    }

    /// When the next timeout of this connection is due, as a clock tick rounded up (the
    /// tick's instant is never before the deadline), and what it is. Computed in ticks:
    /// it runs after every read, and tick arithmetic is a few additions where instants
    /// cost a conversion each way.
    pub fn next_deadline(&self) -> Option<(u64, Expiry)> {
        use crate::clock::{tick_after, tick_ceil};
        let cfg = &self.cfg;
        let last_read = self.last_read;
        let idle = || {
            cfg.idle_timeout
                .map(|t| (tick_after(last_read, t), Expiry::Idle))
        };
        match self.state {
            State::Closed => None,
            // Lingering starts the clock anew in `last_read` and discarded input does not
            // move it.
            State::Lingering => Some((tick_after(last_read, cfg.linger_timeout), Expiry::Linger)),
            State::Closing => idle(),
            State::Connecting => idle(),
            State::Open if self.stream.as_ref().is_some_and(|s| s.is_handshaking()) => {
                let t = cfg.tls_handshake_timeout?;
                let at = match &self.stream {
                    Some(Stream::Tls(tls)) => tick_ceil(tls.started + t),
                    _ => tick_after(last_read, t),
                };
                Some((at, Expiry::TlsHandshake))
            }
            State::Open => match &self.proto {
                Proto::Http(h) => {
                    if let (Some(t), Some(at)) = (cfg.header_timeout, h.head_started) {
                        Some((tick_ceil(at + t), Expiry::RequestTimeout))
                    } else if let (Some(t), Some(at)) = (cfg.body_timeout, h.body_started) {
                        Some((tick_ceil(at + t), Expiry::RequestTimeout))
                    } else if h.is_waiting() || h.reply != crate::http::server::Reply::None {
                        None
                    } else {
                        idle()
                    }
                }
                Proto::Ws(w) => {
                    if let (true, Some(t)) = (w.close_sent_at() != 0, cfg.close_timeout) {
                        return Some((tick_after(w.close_sent_at(), t), Expiry::CloseTimeout));
                    }
                    let ping = match (w.ping_sent_at, cfg.ping_interval, cfg.pong_timeout) {
                        (0, Some(every), _) => Some((tick_after(last_read, every), Expiry::Ping)),
                        (0, None, _) => None,
                        (at, _, Some(t)) => Some((tick_after(at, t), Expiry::PongTimeout)),
                        (_, _, None) => None,
                    };
                    match (ping, idle()) {
                        (Some(p), Some(i)) => Some(if p.0 <= i.0 { p } else { i }),
                        (p, i) => p.or(i),
                    }
                }
                Proto::Raw | Proto::WsClient(_) => idle(),
            },
        }
    }
}

/// Which timeout fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Nothing received for the idle timeout.
    Idle,
    /// The linger after a graceful close ended.
    Linger,
    /// A request head or body took too long: 408.
    RequestTimeout,
    /// The TLS handshake took too long.
    TlsHandshake,
    /// Time for a keepalive ping.
    Ping,
    /// No answer to a keepalive ping.
    PongTimeout,
    /// The peer did not answer our close frame.
    CloseTimeout,
}
