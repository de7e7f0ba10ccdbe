//! The manager: a mio poll, the table of listeners and connections, timers, and the
//! event queue the application drains. Nothing here calls into foreign code: protocol
//! handlers run inside `poll` and queue events.

mod core;
mod http;
mod shared;
mod ws;

pub use self::core::{Core, Queued};
pub use self::http::{
    chunk as http_chunk, chunked_begin as http_chunked_begin, reply as http_reply,
    serve as http_serve, ServeSpec,
};
pub use self::shared::{Cross, PushError, Shared};

use crate::config::{ListenConfig, MgrConfig};
use crate::conn::{Conn, Expiry, Proto, State};
use crate::error::{code, Error, Result};
use crate::event::{Event, EventKind, Payload};
use crate::net::socket;
use crate::net::stream::{Stream, TlsConn};
use crate::slots::Slots;
use crate::timerfd::TimerFd;
use crate::timers::Timers;
use crate::url::{Scheme, Url};
use mio::net::{TcpListener, UdpSocket};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAKER: Token = Token(usize::MAX - 1);
/// Event queue capacity kept after a burst has drained.
const QUEUE_KEEP: usize = 256;
/// A larger queue is kept until this many milliseconds (ticks) pass without a burst:
/// steady traffic with thousands of messages in flight fills it at every poll, and
/// giving it back then cost a reallocation and its page faults each time.
const QUEUE_SHRINK_AFTER_TICKS: u64 = 1000;
/// Requests kept for reuse. One batch of keep-alive requests from as many connections
/// (a load balancer's pool, a benchmark's hundred) is answered and parked at once; a
/// pool smaller than the batch allocates the rest anew in every round. Each kept request
/// holds at most its trimmed buffers (see `Request::clear_for_reuse`).
const REQUEST_POOL_MAX: usize = 256;
const TIMER: Token = Token(usize::MAX - 2);
/// A poll stops handling readiness once it has read this much (see `poll_inner`).
const POLL_READ_BUDGET: usize = 256 << 10;

/// A listening socket.
#[derive(Debug)]
pub enum ListenSocket {
    /// Stream listener.
    Tcp(TcpListener),
    /// Datagram socket; its datagrams are read events of the listener itself.
    Udp(UdpSocket),
}

/// A listener entry.
#[derive(Debug)]
pub struct Listener {
    /// Its id.
    pub id: u64,
    /// What accepted connections speak.
    pub scheme: Scheme,
    /// The socket; `None` once closed.
    pub socket: Option<ListenSocket>,
    /// Settings for accepted connections.
    pub cfg: Arc<ListenConfig>,
    /// Limits shared by accepted connections.
    pub conn_cfg: Arc<crate::config::ConnConfig>,
    /// Open accepted connections.
    pub open: u32,
    /// The address it is bound to.
    pub local: SocketAddr,
    /// UDP: the peer of the last datagram, where `wss_conn_send` answers.
    pub last_peer: Option<SocketAddr>,
    /// TLS settings of accepted connections (https, wss, tls listeners).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Undrained events of a UDP listener.
    pub queued_events: u32,
    /// Reading stopped until events are drained.
    pub read_paused: bool,
}

/// A table entry: a listener or a connection.
#[derive(Debug)]
pub enum Entry {
    /// A listener (boxed: the table's slots stay small for connections).
    Listener(Box<Listener>),
    /// A connection.
    Conn(Box<Conn>),
}

/// The event manager.
pub struct Manager {
    poll: Poll,
    events: Events,
    ready: Vec<(Token, bool, bool, bool)>,
    /// The first entry of `ready` not handled yet: a poll that reached its read budget
    /// leaves the rest to the next one.
    ready_pos: usize,
    /// Listeners and connections.
    pub entries: Slots<Entry>,
    /// Manager-wide state.
    pub core: Core,
    timers: Timers,
    timerfd: TimerFd,
    fired: Vec<u64>,
    shared: Arc<Shared>,
    cfg: MgrConfig,
    /// Client TLS configurations by their settings: loading CA bundles is costly.
    client_tls:
        std::collections::HashMap<(crate::config::TlsClientSpec, bool), Arc<rustls::ClientConfig>>,
    /// A descriptor kept open to be given back when accept runs out of descriptors.
    reserve_fd: Option<std::fs::File>,
    /// An fd-exhaustion error event went out and no accept has succeeded since.
    fd_exhaustion_reported: bool,
    /// Text behind the views `wss_conn_tls_info` hands out.
    pub info_text: Vec<u8>,
    /// Entries the last poll looked at (readiness events plus retried reads): it grows
    /// with the connections that had something to do, not with the open ones.
    pub last_poll_visits: usize,
}

impl Manager {
    /// Creates a manager.
    pub fn new(cfg: MgrConfig) -> io::Result<Manager> {
        crate::clock::epoch();
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let timerfd = TimerFd::new()?;
        poll.registry()
            .register(&mut SourceFd(&timerfd.raw_fd()), TIMER, Interest::READABLE)?;
        let registry = poll.registry().try_clone()?;
        Ok(Manager {
            poll,
            events: Events::with_capacity(1024),
            ready: Vec::new(),
            ready_pos: 0,
            entries: Slots::new(0),
            core: Core::new(registry),
            timers: Timers::default(),
            timerfd,
            fired: Vec::new(),
            shared: Arc::new(Shared::new(waker, cfg.max_threadsafe_bytes)),
            cfg,
            last_poll_visits: 0,
            info_text: Vec::new(),
            reserve_fd: open_reserve(),
            fd_exhaustion_reported: false,
            client_tls: std::collections::HashMap::new(),
        })
    }

    /// The part other threads may use.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The file descriptor that turns readable when the manager has work.
    pub fn fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.poll.as_raw_fd()
    }

    // ---- listeners and clients ----------------------------------------------------

    /// Opens a listener on `url`.
    pub fn listen(&mut self, url: &str, cfg: ListenConfig) -> Result<u64> {
        let url = Url::parse(url)?;
        let tls = match (&cfg.tls, url.scheme.is_tls()) {
            (Some(spec), true) => Some(server_tls(spec, url.scheme)?),
            (None, true) => {
                return Err(Error::InvalidArgument(format!(
                    "{}:// listeners need tls_cert and tls_key",
                    scheme_name(url.scheme)
                )))
            }
            (Some(_), false) => {
                return Err(Error::InvalidArgument(format!(
                    "TLS certificates given for a plain {}:// listener",
                    scheme_name(url.scheme)
                )))
            }
            (None, false) => None,
        };
        let addr = *url
            .socket_addrs()?
            .first()
            .expect("socket_addrs is never empty");
        let backlog = if cfg.backlog == 0 { 1024 } else { cfg.backlog };
        let (mut socket, local) = if url.scheme == Scheme::Udp {
            let s = socket::udp_socket(addr, cfg.reuse_port)
                .map_err(|e| Error::io(format!("bind udp {addr}"), e))?;
            let local = s.local_addr().map_err(|e| Error::io("local address", e))?;
            (ListenSocket::Udp(s), local)
        } else {
            let s = socket::tcp_listener(addr, backlog, cfg.reuse_port)
                .map_err(|e| Error::io(format!("listen on {addr}"), e))?;
            let local = s.local_addr().map_err(|e| Error::io("local address", e))?;
            (ListenSocket::Tcp(s), local)
        };
        let id = self
            .entries
            .next_id()
            .ok_or_else(|| Error::Limit("connection table full".into()))?;
        let token = Token(Slots::<Entry>::index_of(id));
        let reg = self.poll.registry();
        match &mut socket {
            ListenSocket::Tcp(s) => reg.register(s, token, Interest::READABLE),
            ListenSocket::Udp(s) => reg.register(s, token, Interest::READABLE),
        }
        .map_err(|e| Error::io("register listener", e))?;
        let conn_cfg = Arc::new(cfg.conn.clone());
        let listener = Listener {
            id,
            scheme: url.scheme,
            socket: Some(socket),
            cfg: Arc::new(cfg),
            conn_cfg,
            open: 0,
            local,
            last_peer: None,
            tls,
            queued_events: 0,
            read_paused: false,
        };
        let got = self
            .entries
            .insert_with(|_| Entry::Listener(Box::new(listener)));
        debug_assert_eq!(got, Some(id));
        self.core.push(Event::new(EventKind::Listen, id));
        Ok(id)
    }

    /// Opens an outbound connection to `url` (`tcp://`, `tls://`, `ws://`, `wss://`).
    pub fn connect(&mut self, url: &str, cfg: crate::config::ConnectConfig) -> Result<u64> {
        let url = Url::parse(url)?;
        if !matches!(
            url.scheme,
            Scheme::Tcp | Scheme::Tls | Scheme::Ws | Scheme::Wss
        ) {
            return Err(Error::InvalidArgument(format!(
                "connect supports tcp://, tls://, ws:// and wss:// URLs, not {}://",
                scheme_name(url.scheme)
            )));
        }
        let ws_client = if url.scheme.is_ws() {
            Some(ws::client_handshake(&url, &cfg.conn.ws)?)
        } else {
            None
        };
        let tls = if url.scheme.is_tls() {
            let server_name = cfg
                .tls
                .server_name
                .clone()
                .unwrap_or_else(|| url.host.clone());
            let config = self.client_tls(&cfg.tls, url.scheme.is_ws())?;
            Some(
                crate::net::tls::TlsStream::client(&config, &server_name).map_err(|e| {
                    Error::InvalidArgument(format!(
                        "TLS server name {}: {e}",
                        crate::error::excerpt(server_name.as_bytes())
                    ))
                })?,
            )
        } else {
            None
        };
        let addr = *url
            .socket_addrs()?
            .first()
            .expect("socket_addrs is never empty");
        let mut sock = mio::net::TcpStream::connect(addr)
            .map_err(|e| Error::io(format!("connect to {addr}"), e))?;
        let id = self
            .entries
            .next_id()
            .ok_or_else(|| Error::Limit("connection table full".into()))?;
        self.poll
            .registry()
            .register(
                &mut sock,
                Token(Slots::<Entry>::index_of(id)),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| Error::io("register connection", e))?;
        let _ = sock.set_nodelay(true);
        let stream = match tls {
            Some(tls) => Stream::Tls(Box::new(TlsConn {
                sock,
                tls,
                peer_identity: None,
                started: Instant::now(),
            })),
            None => Stream::Tcp(sock),
        };
        let now = Instant::now();
        let mut conn = Conn::new(
            id,
            0,
            url.scheme,
            stream,
            Arc::new(cfg.conn),
            State::Connecting,
            now,
        );
        conn.proto = match ws_client {
            Some(h) => Proto::WsClient(Box::new(h)),
            None => Proto::Raw,
        };
        self.entries.insert_with(|_| Entry::Conn(Box::new(conn)));
        self.core.conn_count += 1;
        if let Some(Entry::Conn(c)) = self.entries.get_mut(id) {
            self.core.schedule(c);
        }
        Ok(id)
    }

    /// A client TLS configuration for these settings (cached).
    pub fn client_tls(
        &mut self,
        spec: &crate::config::TlsClientSpec,
        http_alpn: bool,
    ) -> Result<Arc<rustls::ClientConfig>> {
        let key = (spec.clone(), http_alpn);
        if let Some(c) = self.client_tls.get(&key) {
            return Ok(c.clone());
        }
        let alpn: &[&[u8]] = if http_alpn { &[b"http/1.1"] } else { &[] };
        let opts = crate::net::tls::ClientOptions {
            ca: spec.ca.as_deref(),
            insecure_skip_verify: spec.insecure_skip_verify,
            cert: spec.cert.as_deref(),
            key: spec.key.as_deref(),
            alpn,
            versions: crate::net::tls::Versions::ALL,
        };
        let c =
            crate::net::tls::client_config(&opts).map_err(|e| Error::TlsConfig(e.to_string()))?;
        self.client_tls.insert(key, c.clone());
        Ok(c)
    }

    // ---- lookups ----------------------------------------------------------------------

    /// The connection behind `id`, or NotFound / WrongKind.
    pub fn conn_mut(&mut self, id: u64) -> Result<&mut Conn> {
        match self.entries.get_mut(id) {
            Some(Entry::Conn(c)) => Ok(c),
            Some(Entry::Listener(_)) => Err(Error::WrongKind("a listener, not a connection")),
            None => Err(Error::NotFound(id)),
        }
    }

    /// The listener behind `id`.
    pub fn listener(&self, id: u64) -> Result<&Listener> {
        match self.entries.get(id) {
            Some(Entry::Listener(l)) => Ok(l),
            Some(Entry::Conn(_)) => Err(Error::WrongKind("a connection, not a listener")),
            None => Err(Error::NotFound(id)),
        }
    }

    /// Borrows a connection and the core together.
    pub fn with_conn<T>(
        &mut self,
        id: u64,
        f: impl FnOnce(&mut Core, &mut Conn) -> Result<T>,
    ) -> Result<T> {
        match self.entries.get_mut(id) {
            Some(Entry::Conn(c)) => f(&mut self.core, c),
            Some(Entry::Listener(_)) => Err(Error::WrongKind("a listener, not a connection")),
            None => Err(Error::NotFound(id)),
        }
    }

    // ---- sending and closing ------------------------------------------------------------

    /// Sends raw bytes on a tcp connection, or a datagram to the last peer of a udp listener.
    pub fn send(&mut self, id: u64, data: &[u8]) -> Result<()> {
        match self.entries.get_mut(id) {
            Some(Entry::Conn(c)) => {
                if !matches!(c.proto, Proto::Raw) {
                    return Err(Error::WrongKind(
                        "raw sends need a tcp:// or tls:// connection",
                    ));
                }
                self.core.send(c, &[data])
            }
            Some(Entry::Listener(l)) => {
                if !matches!(l.socket, Some(ListenSocket::Udp(_))) {
                    return Err(Error::WrongKind("a tcp listener: send on its connections"));
                }
                let peer = l.last_peer.ok_or_else(|| {
                    Error::InvalidState("no datagram received yet: no peer to answer".into())
                })?;
                udp_send(l, peer, data)
            }
            None => Err(Error::NotFound(id)),
        }
    }

    /// Sends a datagram from a udp listener to `addr`.
    pub fn udp_send_to(&mut self, id: u64, addr: &str, data: &[u8]) -> Result<()> {
        let peer: SocketAddr = addr.parse().map_err(|_| {
            Error::InvalidArgument(format!(
                "not an ip:port address: {}",
                crate::error::excerpt(addr.as_bytes())
            ))
        })?;
        match self.entries.get_mut(id) {
            Some(Entry::Listener(l)) => udp_send(l, peer, data),
            Some(Entry::Conn(_)) => {
                Err(Error::WrongKind("a stream connection, not a udp listener"))
            }
            None => Err(Error::NotFound(id)),
        }
    }

    /// Closes a connection (gracefully or at once) or a listener.
    pub fn close(&mut self, id: u64, flush_first: bool) -> Result<()> {
        match self.entries.get_mut(id) {
            Some(Entry::Conn(c)) => {
                if c.state == State::Closed {
                    return Err(Error::Closed(id));
                }
                if flush_first {
                    self.core.close_graceful(c);
                } else {
                    self.core.close_now(c, false, None);
                }
                Ok(())
            }
            Some(Entry::Listener(l)) => {
                let Some(mut s) = l.socket.take() else {
                    return Err(Error::Closed(id));
                };
                let reg = self.poll.registry();
                let _ = match &mut s {
                    ListenSocket::Tcp(s) => reg.deregister(s),
                    ListenSocket::Udp(s) => reg.deregister(s),
                };
                // The stored id, never the caller's spelling of it.
                self.core.push(Event::new(EventKind::Close, l.id));
                Ok(())
            }
            None => Err(Error::NotFound(id)),
        }
    }

    // ---- timers and wakeups --------------------------------------------------------------

    /// Adds a timer.
    pub fn timer_add(&mut self, ms: u64, repeat: bool) -> Result<u64> {
        if repeat && ms == 0 {
            return Err(Error::InvalidArgument(
                "a repeating timer needs a period above 0 ms".into(),
            ));
        }
        let now = Instant::now();
        let id = self
            .timers
            .add(now, Duration::from_millis(ms), repeat)
            .ok_or_else(|| Error::Limit("timer table full".into()))?;
        self.core.timer_dirty = true;
        self.after_call();
        Ok(id)
    }

    /// Cancels a timer.
    pub fn timer_cancel(&mut self, id: u64) -> Result<()> {
        if self.timers.cancel(id) {
            Ok(())
        } else {
            Err(Error::NotFound(id))
        }
    }

    /// Milliseconds until the next timer or deadline (rounded up, at most `i64::MAX`),
    /// or -1 if none.
    pub fn next_timeout_ms(&mut self) -> i64 {
        let leftover = self.has_leftover_readiness();
        if !self.core.queue.is_empty() || !self.core.retry.is_empty() || leftover {
            return 0;
        }
        match self.next_deadline() {
            None => -1,
            Some(at) => {
                // Saturating: a far deadline must never read back as -1 ("nothing") or
                // any other negative number.
                let d = at.saturating_duration_since(Instant::now());
                let ms = d.as_millis() + u128::from(d.subsec_nanos() % 1_000_000 != 0);
                i64::try_from(ms).unwrap_or(i64::MAX)
            }
        }
    }

    /// Whether a poll stopped at its read budget with readiness still to handle.
    fn has_leftover_readiness(&self) -> bool {
        self.ready_pos < self.ready.len()
    }

    fn next_deadline(&mut self) -> Option<Instant> {
        match (self.timers.next_due(), self.core.deadlines.next()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Work to do at the end of every call from the application that may have moved a
    /// deadline or resumed a read: keep the fd truthful.
    pub fn after_call(&mut self) {
        if self.core.timer_dirty {
            self.core.timer_dirty = false;
            let next = self.next_deadline();
            self.timerfd.set(next, Instant::now());
        }
        if self.core.needs_wake {
            self.core.needs_wake = false;
            let _ = self.shared.wake();
        }
    }

    // ---- draining events ---------------------------------------------------------------------

    /// Writes what sends gathered since the last flush point.
    pub fn flush_dirty(&mut self) {
        if self.core.dirty.is_empty() {
            return;
        }
        let dirty = std::mem::take(&mut self.core.dirty);
        for &id in &dirty {
            if let Some(Entry::Conn(c)) = self.entries.get_mut(id) {
                c.dirty = false;
                self.core.flush(c);
            }
        }
        let mut dirty = dirty;
        dirty.clear();
        if self.core.dirty.is_empty() {
            self.core.dirty = dirty;
        }
    }

    /// Releases the payloads handed out by the previous drain call, and writes what the
    /// application sent while handling them.
    pub fn release(&mut self) {
        self.flush_dirty();
        let mut delivered = std::mem::take(&mut self.core.delivered);
        if delivered.len() > QUEUE_KEEP || self.core.queue.len() > QUEUE_KEEP {
            self.core.last_burst = self.core.now_tick;
        }
        for ev in delivered.drain(..) {
            if let Payload::Owned(v) = ev.data {
                self.core.give_buf(v);
            }
        }
        // A burst (thousands of connections at once) can leave these large; give the
        // memory back once bursts have stopped.
        let calm =
            self.core.now_tick.saturating_sub(self.core.last_burst) > QUEUE_SHRINK_AFTER_TICKS;
        if calm && delivered.capacity() > QUEUE_KEEP {
            delivered.shrink_to(QUEUE_KEEP);
        }
        if calm && self.core.queue.is_empty() && self.core.queue.capacity() > QUEUE_KEEP {
            self.core.queue.shrink_to(QUEUE_KEEP);
        }
        self.core.delivered = delivered;
        for mut r in self.core.parked.drain(..) {
            if self.core.request_pool.len() < REQUEST_POOL_MAX {
                r.clear_for_reuse();
                self.core.request_pool.push(r);
            }
        }
        if !self.core.deferred.is_empty() {
            let pending = std::mem::take(&mut self.core.deferred);
            for id in pending {
                if let Some(Entry::Conn(c)) = self.entries.get_mut(id) {
                    if !ws::fire_deferred(&mut self.core, c) {
                        self.core.deferred.push(id);
                    }
                }
            }
        }
    }

    /// Pops the next event (of any connection, or of `only` one) and keeps it in
    /// `delivered` until the next release. Does not release earlier events.
    pub fn pop_event(&mut self, only: Option<u64>) -> Option<&Event> {
        let q = match only {
            None => self.core.queue.pop_front()?,
            Some(id) => {
                let i = self.core.queue.iter().position(|q| q.ev.conn == id)?;
                self.core.queue.remove(i)?
            }
        };
        if q.counted {
            self.uncount(&q.ev);
        }
        if q.ev.kind == EventKind::Close {
            self.remove_entry(q.ev.conn);
        }
        self.core.delivered.push(q.ev);
        self.core.delivered.last()
    }

    fn uncount(&mut self, ev: &Event) {
        match self.entries.get_mut(ev.conn) {
            Some(Entry::Conn(c)) => {
                c.queued_events -= 1;
                c.queued_bytes -= ev.data.len();
                if c.read_paused && !c.input_blocked() {
                    c.read_paused = false;
                    self.core.retry.push(c.id);
                    self.core.needs_wake = true;
                }
            }
            Some(Entry::Listener(l)) => {
                l.queued_events -= 1;
                if l.read_paused && l.queued_events < l.conn_cfg.max_queued_events {
                    l.read_paused = false;
                    self.core.retry.push(l.id);
                    self.core.needs_wake = true;
                }
            }
            None => {}
        }
    }

    fn remove_entry(&mut self, id: u64) {
        if let Some(Entry::Conn(mut c)) = self.entries.remove(id) {
            if let Some(Entry::Listener(l)) = self.entries.get_mut(c.parent) {
                l.open = l.open.saturating_sub(1);
            }
            if let Proto::Http(h) = &mut c.proto {
                if let Some(r) = h.take_request() {
                    self.core.parked.push(r);
                }
            }
        }
    }

    /// Number of events waiting to be drained.
    pub fn queued(&self) -> usize {
        self.core.queue.len()
    }

    // ---- polling -------------------------------------------------------------------------------

    /// Waits up to `timeout_ms` (negative: no limit) for I/O, runs the protocol handlers
    /// and queues events. Returns at once when events are already queued.
    pub fn poll(&mut self, timeout_ms: i32) -> Result<usize> {
        self.release();
        self.core.in_poll = true;
        let r = self.poll_inner(timeout_ms);
        self.core.in_poll = false;
        self.core.timer_dirty = true;
        self.after_call();
        r
    }

    fn poll_inner(&mut self, timeout_ms: i32) -> Result<usize> {
        let mut timeout = if timeout_ms < 0 {
            None
        } else {
            Some(Duration::from_millis(timeout_ms as u64))
        };
        let leftover = self.has_leftover_readiness();
        if !self.core.queue.is_empty() || !self.core.retry.is_empty() || leftover {
            timeout = Some(Duration::ZERO);
        }
        let now = Instant::now();
        if let Some(at) = self.next_deadline() {
            let until = at.saturating_duration_since(now);
            timeout = Some(timeout.map_or(until, |t| t.min(until)));
        }
        if !leftover {
            match self.poll.poll(&mut self.events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("poll", e)),
            }
            self.ready.clear();
            self.ready_pos = 0;
            for ev in self.events.iter() {
                self.ready.push((
                    ev.token(),
                    ev.is_readable() || ev.is_read_closed() || ev.is_error(),
                    ev.is_writable() || ev.is_write_closed() || ev.is_error(),
                    ev.is_read_closed() || ev.is_error(),
                ));
            }
        }
        self.core.set_now(Instant::now());
        let ready = std::mem::take(&mut self.ready);
        self.last_poll_visits = ready.len() - self.ready_pos + self.core.retry.len();
        // Readiness is handled until this poll has read its budget; the rest waits for
        // the next poll (which does not wait for the kernel first). Bounding a batch keeps
        // the bytes it reads, the messages it queues and the replies to them in the
        // cache: with 500 connections x 16 messages of 512 B ready at once, a batch of
        // all of them is 4 MiB.
        self.core.read_in_poll = 0;
        let mut i = self.ready_pos;
        while let Some(&(token, readable, writable, closed)) = ready.get(i) {
            i += 1;
            match token {
                WAKER => {}
                TIMER => self.timerfd.clear(),
                Token(index) => self.on_ready(index, readable, writable, closed),
            }
            if self.core.read_in_poll >= POLL_READ_BUDGET {
                break;
            }
        }
        self.ready_pos = i;
        if i < ready.len() {
            // The kernel will not report these again: keep the manager's fd readable for
            // a host loop that sleeps on it until they are handled.
            self.core.needs_wake = true;
        }
        self.ready = ready;
        self.run_cross();
        let retry = std::mem::take(&mut self.core.retry);
        for id in retry {
            self.on_readable(id);
        }
        self.run_timers();
        self.flush_dirty();
        Ok(self.core.queue.len())
    }

    fn on_ready(&mut self, index: usize, readable: bool, writable: bool, closed: bool) {
        let id = match self.entries.at_mut(index) {
            Some(Entry::Listener(l)) => l.id,
            Some(Entry::Conn(c)) => c.id,
            None => return, // a spurious event for a slot freed meanwhile
        };
        if writable {
            self.on_writable(id);
        }
        if readable {
            match self.entries.get(id) {
                // A fresh readiness edge without a peer close: a short read means the
                // socket is empty, and new bytes bring a new edge, so the read that would
                // only say WouldBlock is spared (one system call per message at depth 1).
                Some(Entry::Conn(_)) => self.read_conn(id, !closed),
                _ => self.on_readable(id),
            }
        }
    }

    fn on_writable(&mut self, id: u64) {
        let Some(Entry::Conn(c)) = self.entries.get_mut(id) else {
            return;
        };
        if c.state == State::Connecting {
            let Some(stream) = c.stream.as_ref() else {
                return;
            };
            match stream.tcp().take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => {
                    let msg = format!("connect failed: {e}");
                    self.core.close_now(c, false, Some((code::IO, msg)));
                    return;
                }
            }
            match stream.tcp().peer_addr() {
                Ok(_) => {
                    c.state = State::Open;
                    c.last_read = self.core.now_tick;
                    if let Some(Stream::Tls(t)) = c.stream.as_mut() {
                        t.started = self.core.now;
                    }
                    let ev = Event::new(EventKind::Connect, c.id);
                    self.core.push_for(c, ev);
                    ws::client_start(&mut self.core, c);
                }
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => {
                    let msg = format!("connect failed: {e}");
                    self.core.close_now(c, false, Some((code::IO, msg)));
                    return;
                }
            }
        }
        self.core.flush(c);
    }

    /// Reads until the socket has nothing more or the connection must pause.
    pub fn on_readable(&mut self, id: u64) {
        match self.entries.get_mut(id) {
            Some(Entry::Listener(l)) => match l.socket {
                Some(ListenSocket::Tcp(_)) => self.accept_all(id),
                Some(ListenSocket::Udp(_)) => self.recv_datagrams(id),
                None => {}
            },
            Some(Entry::Conn(_)) => self.read_conn(id, false),
            None => {}
        }
    }

    fn read_conn(&mut self, id: u64, stop_on_short_read: bool) {
        let Some(Entry::Conn(c)) = self.entries.get_mut(id) else {
            return;
        };
        let core = &mut self.core;
        let mut scratch = std::mem::take(&mut core.scratch);
        loop {
            if c.stream.is_none() || c.state == State::Connecting {
                break;
            }
            let discard = matches!(c.state, State::Lingering | State::Closing);
            if !discard && c.input_blocked() {
                c.read_paused = true;
                break;
            }
            // The rest of a large frame goes straight into its message buffer.
            let bulk = if discard {
                None
            } else {
                ws::read_bulk(core, c)
            };
            let asked = bulk.as_ref().map_or(scratch.len(), |r| match r {
                Ok((_, asked)) => *asked,
                Err(_) => 0,
            });
            let was_bulk = bulk.is_some();
            let result = match (bulk, c.stream.as_mut()) {
                (Some(r), _) => r.map(|(n, _)| n),
                (None, Some(stream)) => stream.read(&mut scratch),
                (None, None) => break,
            };
            let n = match result {
                Ok(0) => {
                    c.peer_eof = true;
                    on_eof(core, c);
                    break;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let tls = c.stream.as_ref().is_some_and(Stream::is_tls);
                    let (code, msg) = if tls && e.kind() != io::ErrorKind::ConnectionReset {
                        (code::TLS, e.to_string())
                    } else {
                        (code::IO, format!("read failed: {e}"))
                    };
                    core.close_now(c, true, Some((code, msg)));
                    break;
                }
            };
            tls_progress(core, c);
            if discard {
                continue;
            }
            c.last_read = core.now_tick;
            core.read_in_poll += n;
            if was_bulk {
                // Already taken by the session.
            } else if c.rbuf.is_empty() {
                let used = process_input(core, c, &mut scratch[..n]);
                if used < n && c.state != State::Closed {
                    if c.rbuf.capacity() == 0 {
                        c.rbuf = core.take_buf(n - used);
                    }
                    c.rbuf.extend_from_slice(&scratch[used..n]);
                }
            } else {
                c.rbuf.extend_from_slice(&scratch[..n]);
                resume_input(core, c);
            }
            // TLS may hold decrypted bytes beyond a short read: only plain TCP stops here.
            if stop_on_short_read && n < asked && c.stream.as_ref().is_some_and(|s| !s.is_tls()) {
                break;
            }
        }
        core.scratch = scratch;
        tls_progress(core, c);
        if c.rbuf.is_empty() && c.rbuf.capacity() > 0 {
            let b = std::mem::take(&mut c.rbuf);
            core.give_buf(b);
        }
        core.schedule(c);
    }

    fn accept_all(&mut self, id: u64) {
        loop {
            let Some(Entry::Listener(l)) = self.entries.get_mut(id) else {
                return;
            };
            let Some(ListenSocket::Tcp(sock)) = &l.socket else {
                return;
            };
            let (mut stream, _peer) = match sock.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ECONNABORTED) | Some(libc::EPROTO)
                    ) =>
                {
                    continue
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) => {
                    // Out of file descriptors. With edge-triggered readiness, leaving the
                    // connection in the backlog would stall the listener until another
                    // client arrives. Give back the reserve descriptor, accept the
                    // connection and close it at once (the client sees a clean close),
                    // then take the reserve again (libev's and nginx's answer).
                    let shed = self.reserve_fd.take().is_some();
                    let accepted = sock.accept().is_ok();
                    self.reserve_fd = open_reserve();
                    if !self.fd_exhaustion_reported {
                        self.fd_exhaustion_reported = true;
                        let mut ev =
                            Event::new(EventKind::Error, id).with_data(Payload::from(format!(
                            "accept failed: {e}; refusing connections until descriptors are free"
                        )));
                        ev.code = code::LIMIT;
                        self.core.push(ev);
                    }
                    if !(shed && accepted) {
                        return;
                    }
                    continue;
                }
                Err(e) => {
                    // ENOBUFS/ENOMEM and the like: report; the connection stays in the
                    // backlog for the next readiness.
                    let mut ev = Event::new(EventKind::Error, id)
                        .with_data(Payload::from(format!("accept failed: {e}")));
                    ev.code = code::IO;
                    self.core.push(ev);
                    return;
                }
            };
            self.fd_exhaustion_reported = false;
            let over_listener = l.cfg.max_connections != 0 && l.open >= l.cfg.max_connections;
            if over_listener || self.core.conn_count >= self.cfg.max_connections {
                // Refuse cleanly: the socket closes at once; existing connections go on.
                drop(stream);
                continue;
            }
            let _ = stream.set_nodelay(true);
            // Counted until its close event is drained (see remove_entry).
            l.open += 1;
            let (scheme, cfg, tls) = (l.scheme, l.conn_cfg.clone(), l.tls.clone());
            let Some(new_id) = self.entries.next_id() else {
                drop(stream);
                return;
            };
            if let Err(e) = self.poll.registry().register(
                &mut stream,
                Token(Slots::<Entry>::index_of(new_id)),
                Interest::READABLE,
            ) {
                let mut ev = Event::new(EventKind::Error, id)
                    .with_data(Payload::from(format!("register failed: {e}")));
                ev.code = code::IO;
                self.core.push(ev);
                continue;
            }
            self.core.conn_count += 1;
            let now = self.core.now;
            let stream = match tls {
                None => Stream::Tcp(stream),
                Some(config) => match crate::net::tls::TlsStream::server(&config) {
                    Ok(tls) => Stream::Tls(Box::new(TlsConn {
                        sock: stream,
                        tls,
                        peer_identity: None,
                        started: Instant::now(),
                    })),
                    Err(e) => {
                        let mut ev = Event::new(EventKind::Error, id)
                            .with_data(Payload::from(format!("TLS setup: {e}")));
                        ev.code = code::IO;
                        self.core.push(ev);
                        continue;
                    }
                },
            };
            let conn = Conn::new(new_id, id, scheme, stream, cfg, State::Open, now);
            self.entries.insert_with(|_| Entry::Conn(Box::new(conn)));
            let Some(Entry::Conn(c)) = self.entries.get_mut(new_id) else {
                continue;
            };
            let mut ev = Event::new(EventKind::Accept, new_id);
            ev.parent = id;
            self.core.push_for(c, ev);
            self.core.schedule(c);
            // Data may already wait (the client spoke first): read it now, since the
            // edge for it may have come before registration.
            self.read_conn(new_id, false);
        }
    }

    fn recv_datagrams(&mut self, id: u64) {
        let Some(Entry::Listener(l)) = self.entries.get_mut(id) else {
            return;
        };
        let core = &mut self.core;
        loop {
            let Some(ListenSocket::Udp(sock)) = &l.socket else {
                return;
            };
            if l.queued_events >= l.conn_cfg.max_queued_events {
                l.read_paused = true;
                return;
            }
            match sock.recv_from(&mut core.scratch) {
                Ok((n, peer)) => {
                    l.last_peer = Some(peer);
                    let mut data = core.take_buf(n);
                    data.extend_from_slice(&core.scratch[..n]);
                    let mut ev = Event::new(EventKind::Read, id).with_data(data);
                    ev.meta = Payload::from(peer.to_string());
                    l.queued_events += 1;
                    core.queue.push_back(Queued { ev, counted: true });
                    core.needs_wake |= !core.in_poll;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // ICMP errors (port unreachable from an earlier send) surface here;
                    // they concern one peer, not the socket.
                    let mut ev = Event::new(EventKind::Error, id)
                        .with_data(Payload::from(format!("udp receive: {e}")));
                    ev.code = code::IO;
                    core.push(ev);
                }
            }
        }
    }

    fn run_cross(&mut self) {
        let shared = self.shared.clone();
        shared.drain(|item| match item {
            Cross::Wakeup { conn, data } => {
                self.core
                    .push(Event::new(EventKind::Wakeup, conn).with_data(data));
            }
            Cross::Send { conn, data, opcode } => {
                let r = if opcode == 0 {
                    self.send(conn, &data)
                } else {
                    self.ws_send(conn, &data, opcode)
                };
                let closed = matches!(
                    self.entries.get(conn),
                    Some(Entry::Conn(c)) if c.state == State::Closed
                );
                if let (Err(e), false) = (r, closed) {
                    // The sending thread got OK when it queued: its failure is an event
                    // here, even for an id that names nothing (any more). A connection
                    // that is closed has its ERROR and CLOSE queued already, and CLOSE
                    // stays its last event.
                    let mut ev = Event::new(EventKind::Error, conn)
                        .with_data(Payload::from(format!("thread-safe send: {e}")));
                    ev.code = crate::ffi::result::wss_result::from(&e) as i32;
                    self.core.push(ev);
                }
            }
        });
    }

    /// Sends a WebSocket message (until the WebSocket layer exists: wrong kind).
    pub fn ws_send(&mut self, id: u64, data: &[u8], opcode: u32) -> Result<()> {
        let op = match opcode {
            1 => crate::ws::OpCode::Text,
            2 => crate::ws::OpCode::Binary,
            n => return Err(Error::InvalidArgument(format!("opcode {n}"))),
        };
        self.ws_send_op(id, data, op)
    }

    /// Sends a WebSocket message or control frame.
    pub fn ws_send_op(&mut self, id: u64, data: &[u8], op: crate::ws::OpCode) -> Result<()> {
        self.with_conn(id, |core, c| ws::send(core, c, data, op))
    }

    /// Sends one piece of a fragmented WebSocket message.
    pub fn ws_send_fragment(
        &mut self,
        id: u64,
        data: &[u8],
        op: crate::ws::OpCode,
        fin: bool,
    ) -> Result<()> {
        self.with_conn(id, |core, c| ws::send_fragment(core, c, data, op, fin))
    }

    /// Starts a WebSocket closing handshake.
    pub fn ws_close(&mut self, id: u64, code: u16, reason: &[u8]) -> Result<()> {
        self.with_conn(id, |core, c| ws::close(core, c, code, reason))
    }

    /// Upgrades the waiting HTTP request of `id` to a WebSocket.
    pub fn ws_upgrade(&mut self, id: u64, extra: &[u8], protocol: Option<&str>) -> Result<()> {
        self.with_conn(id, |core, c| ws::upgrade(core, c, extra, protocol))
    }

    /// Sends one message to every open server-side WebSocket of `listener` (0: all);
    /// the frame is encoded once. Returns how many connections got it.
    pub fn ws_broadcast(
        &mut self,
        listener: u64,
        data: &[u8],
        op: crate::ws::OpCode,
    ) -> Result<usize> {
        use crate::ws::OpCode;
        if listener != 0 {
            self.listener(listener)?;
        }
        match op {
            OpCode::Text => {
                if simdutf8::basic::from_utf8(data).is_err() {
                    return Err(Error::InvalidArgument(
                        "text message is not valid UTF-8".into(),
                    ));
                }
            }
            OpCode::Binary => {}
            OpCode::Ping | OpCode::Pong if data.len() <= 125 => {}
            _ => {
                return Err(Error::InvalidArgument(
                    "broadcast sends text, binary, ping or pong".into(),
                ))
            }
        }
        let mut frame = self.core.take_ws_out();
        crate::ws::encode_server_frame(op, data, &mut frame);
        let mut sent = 0;
        for e in self.entries.values_mut() {
            let Entry::Conn(c) = e else { continue };
            if listener != 0 && c.parent != listener {
                continue;
            }
            let Proto::Ws(w) = &c.proto else { continue };
            let ok = w.session.role() == crate::ws::Role::Server
                && w.session.state() == crate::ws::State::Open
                // A frame must not land between the pieces of a fragmented message.
                && (op.is_control() || !w.session.is_sending_fragmented());
            if ok && c.can_send() && self.core.send(c, &[&frame]).is_ok() {
                sent += 1;
            }
        }
        self.core.ws_out = frame;
        Ok(sent)
    }

    fn run_timers(&mut self) {
        let now = self.core.now;
        self.fired.clear();
        self.timers.pop_due(now, &mut self.fired);
        for &id in &self.fired {
            self.core.push(Event::new(EventKind::Timer, id));
        }
        let now_tick = self.core.now_tick;
        while let Some((at, id)) = self.core.deadlines.pop_due(now_tick) {
            let Some(Entry::Conn(c)) = self.entries.get_mut(id) else {
                continue;
            };
            if c.deadline_at != at {
                continue; // superseded by an earlier entry
            }
            c.deadline_at = 0;
            if let Some((due, what)) = c.next_deadline() {
                // A tick no later than now's tick: its instant, which is never before
                // the deadline, is at or before now.
                if due <= now_tick {
                    expire(&mut self.core, c, what);
                }
            }
            self.core.schedule(c);
        }
    }
}

fn udp_send(l: &mut Listener, peer: SocketAddr, data: &[u8]) -> Result<()> {
    let Some(ListenSocket::Udp(s)) = &l.socket else {
        return Err(if l.socket.is_none() {
            Error::Closed(l.id)
        } else {
            Error::WrongKind("a tcp listener cannot send")
        });
    };
    match s.send_to(data, peer) {
        Ok(n) if n == data.len() => Ok(()),
        Ok(n) => Err(Error::Io(
            "udp send".into(),
            io::Error::other(format!("short datagram: {n} of {} bytes", data.len())),
        )),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            Err(Error::Limit("udp send buffer full".into()))
        }
        Err(e) => Err(Error::io(format!("udp send to {peer}"), e)),
    }
}

/// Feeds received bytes to the connection's protocol; returns how many it consumed.
fn process_input(core: &mut Core, c: &mut Conn, input: &mut [u8]) -> usize {
    // A protocol may hand over to another one mid-buffer (an upgrade, a client
    // handshake response followed by frames): go on while someone consumes bytes.
    let mut pos = 0;
    while pos < input.len() && c.state == State::Open {
        let rest = &mut input[pos..];
        let used = match c.proto {
            Proto::Raw => {
                let mut data = core.take_buf(rest.len());
                data.extend_from_slice(rest);
                let ev = Event::new(EventKind::Read, c.id).with_data(data);
                core.push_for(c, ev);
                rest.len()
            }
            Proto::Http(_) => http::input(core, c, rest),
            Proto::Ws(_) => ws::input(core, c, rest),
            Proto::WsClient(_) => ws::client_input(core, c, rest),
        };
        if used == 0 {
            break;
        }
        pos += used;
    }
    pos
}

/// Processes what waits in the connection's input buffer (after more bytes arrived,
/// or after a reply let the next pipelined request through).
pub fn resume_input(core: &mut Core, c: &mut Conn) {
    if c.rbuf.is_empty() || c.state != State::Open {
        return;
    }
    let mut input = std::mem::take(&mut c.rbuf);
    let used = process_input(core, c, &mut input);
    input.drain(..used);
    if c.state == State::Closed || input.is_empty() {
        core.give_buf(input);
    } else {
        c.rbuf = input;
    }
}

fn on_eof(core: &mut Core, c: &mut Conn) {
    match c.state {
        State::Open => {
            if let Proto::Http(h) = &c.proto {
                if h.is_waiting() {
                    // Half-closed after its request: answer it, then close.
                    c.state = State::Open;
                    return;
                }
            }
            core.close_now(c, true, None);
        }
        // We had started closing (flushing or lingering): the peer only answered.
        State::Closing | State::Lingering => core.close_now(c, false, None),
        _ => core.close_now(c, true, None),
    }
}

fn expire(core: &mut Core, c: &mut Conn, what: Expiry) {
    match what {
        Expiry::Linger => core.close_now(c, false, None),
        Expiry::Idle => core.close_now(c, false, Some((code::TIMEOUT, "idle timeout".into()))),
        Expiry::TlsHandshake => {
            core.close_now(c, false, Some((code::TLS, "TLS handshake timeout".into())))
        }
        Expiry::Ping => ws::keepalive(core, c),
        Expiry::PongTimeout => core.close_now(
            c,
            false,
            Some((code::TIMEOUT, "no answer to a keepalive ping".into())),
        ),
        Expiry::CloseTimeout => core.close_now(c, false, None),
        Expiry::RequestTimeout => http::refuse(
            core,
            c,
            crate::http::response::Status::REQUEST_TIMEOUT,
            "request not received in time",
        ),
    }
}

/// Opens the descriptor kept in reserve for accepting under fd exhaustion.
fn open_reserve() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null").ok()
}

fn scheme_name(s: Scheme) -> &'static str {
    match s {
        Scheme::Http => "http",
        Scheme::Https => "https",
        Scheme::Ws => "ws",
        Scheme::Wss => "wss",
        Scheme::Tcp => "tcp",
        Scheme::Tls => "tls",
        Scheme::Udp => "udp",
    }
}

/// Builds the rustls server configuration of a TLS listener.
fn server_tls(
    spec: &crate::config::TlsServerSpec,
    scheme: Scheme,
) -> Result<Arc<rustls::ServerConfig>> {
    let sni: Vec<(&str, &str)> = spec
        .sni
        .iter()
        .map(|(c, k)| (c.as_str(), k.as_str()))
        .collect();
    // HTTP over TLS announces http/1.1; raw tls:// listeners negotiate no protocol.
    let alpn: &[&[u8]] = if scheme.is_http() {
        &[b"http/1.1"]
    } else {
        &[]
    };
    let opts = crate::net::tls::ServerOptions {
        cert: &spec.cert,
        key: &spec.key,
        sni: &sni,
        client_ca: spec.client_ca.as_deref(),
        client_cert_optional: spec.client_cert_optional,
        alpn,
        versions: crate::net::tls::Versions::ALL,
    };
    crate::net::tls::server_config(&opts).map_err(|e| Error::TlsConfig(e.to_string()))
}

/// After TLS input: report a finished handshake once, send what waited for it, and
/// make sure pending TLS records get a writable wakeup.
#[inline(always)]
fn tls_progress(core: &mut Core, c: &mut Conn) {
    if matches!(c.stream, Some(Stream::Tls(_))) {
        tls_progress_tls(core, c);
    }
}

/// The TLS part of [`tls_progress`], out of line: plain connections skip it.
fn tls_progress_tls(core: &mut Core, c: &mut Conn) {
    let Some(Stream::Tls(t)) = c.stream.as_mut() else {
        return;
    };
    if !c.tls_ready && !t.tls.is_handshaking() {
        c.tls_ready = true;
        t.peer_identity = t.tls.peer_identity();
        let ev = Event::new(EventKind::TlsReady, c.id);
        core.push_for(c, ev);
        core.flush(c);
        core.schedule(c);
    }
    if c.stream.as_ref().is_some_and(|s| s.wants_write()) {
        core.want_write(c);
    }
}
