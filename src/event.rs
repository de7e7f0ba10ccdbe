//! Events: what the manager hands to the application, one at a time or in batches.

/// Kinds of events, in the order of the C enum `wss_event_kind` (numbers are assigned
/// there, in `ffi/event.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A listener is open.
    Listen,
    /// A listener accepted a connection.
    Accept,
    /// An outbound connection is established.
    Connect,
    /// Bytes arrived on a raw tcp or udp socket.
    Read,
    /// A whole HTTP request (or response, for clients) arrived.
    HttpMsg,
    /// A WebSocket handshake completed.
    WsOpen,
    /// A whole WebSocket message arrived.
    WsMsg,
    /// One piece of a WebSocket message (streaming mode).
    WsFragment,
    /// A WebSocket ping or pong arrived.
    WsCtl,
    /// The send buffer fell to its low-water mark.
    Drain,
    /// A timer fired.
    Timer,
    /// A wakeup sent from another thread.
    Wakeup,
    /// Something failed on this connection; text in `data`.
    Error,
    /// The connection or listener is closed; its id goes stale once this is drained.
    Close,
    /// A TLS handshake completed.
    TlsReady,
}

/// Bytes carried by an event.
#[derive(Debug, Default)]
pub enum Payload {
    /// Nothing.
    #[default]
    Empty,
    /// Bytes owned by the event.
    Owned(Vec<u8>),
    /// Static text.
    Static(&'static str),
    /// A view into memory the manager keeps alive at least as long as the event
    /// (the body of a request parked in the connection, see `http::server`).
    Borrowed(*const u8, usize),
}

impl Payload {
    /// Pointer and length for the C view; never a null pointer.
    pub fn as_raw(&self) -> (*const u8, usize) {
        match self {
            Payload::Empty => (b"".as_ptr(), 0),
            Payload::Owned(v) => (v.as_ptr(), v.len()),
            Payload::Static(s) => (s.as_ptr(), s.len()),
            Payload::Borrowed(p, n) => (*p, *n),
        }
    }

    /// Byte length.
    pub fn len(&self) -> usize {
        self.as_raw().1
    }

    /// Whether the payload holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes, for Rust callers and tests.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Payload::Empty => &[],
            Payload::Owned(v) => v,
            Payload::Static(s) => s.as_bytes(),
            // SAFETY: a Borrowed payload points into memory that outlives the event
            // (the manager parks it until the event has been drained and released).
            Payload::Borrowed(p, n) => unsafe { std::slice::from_raw_parts(*p, *n) },
        }
    }
}

impl From<String> for Payload {
    fn from(s: String) -> Self {
        Payload::Owned(s.into_bytes())
    }
}

/// Flags of close events: the peer started the close (or vanished).
pub(crate) const FLAG_BY_PEER: u32 = 16;

/// One event.
#[derive(Debug)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// Kind-specific flags (`FLAG_*`; for `WsCtl`, the opcode).
    pub flags: u32,
    /// The connection, listener or timer it happened to (0 for manager-wide wakeups).
    pub conn: u64,
    /// The listener of an accepted connection, else 0.
    pub parent: u64,
    /// Kind-specific number: close code, error code, HTTP status for client responses.
    pub code: i32,
    /// Main bytes: data read, message, body, error text, close reason.
    pub data: Payload,
    /// Secondary bytes: the peer address of a UDP datagram.
    pub meta: Payload,
}

impl Event {
    /// An event with no flags, code or payload.
    pub fn new(kind: EventKind, conn: u64) -> Event {
        Event {
            kind,
            flags: 0,
            conn,
            parent: 0,
            code: 0,
            data: Payload::Empty,
            meta: Payload::Empty,
        }
    }

    /// Sets the data payload.
    pub fn with_data(mut self, data: impl Into<Payload>) -> Event {
        self.data = data.into();
        self
    }
}

impl From<Vec<u8>> for Payload {
    fn from(v: Vec<u8>) -> Self {
        Payload::Owned(v)
    }
}

impl From<&'static str> for Payload {
    fn from(s: &'static str) -> Self {
        Payload::Static(s)
    }
}
