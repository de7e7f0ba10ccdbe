//! A node's link to Redis, as a sans-IO state machine: it owns no socket, no thread and no
//! clock. The manager opens the connections it asks for, feeds it what they receive,
//! writes what it has to send, and passes the time.
//!
//! Two Redis connections make one link ([`Link`]): a connection in SUBSCRIBE mode accepts
//! only (UN)SUBSCRIBE, PING and QUIT, so publishes go over a second one.
//!
//! - **`Link::Sub`** subscribes to `prefix + topic` for every topic with local subscribers
//!   ([`Session::add_topic`] when a topic gains its first, [`Session::remove_topic`] when
//!   it loses its last). Changes made between two [`Session::outgoing`] calls go out as
//!   one SUBSCRIBE and one UNSUBSCRIBE (a topic added and removed in between sends
//!   nothing). After a reconnect every topic is subscribed again. Messages that come back
//!   are [`Output::Deliver`]ed, except this node's own.
//! - **`Link::Pub`** carries [`Session::publish`]: `PUBLISH prefix+topic envelope`.
//!
//! On connect each connection sends `AUTH user password` (ACL) or `AUTH password`
//! (legacy) when a password is configured, then `SELECT db` when a database is, else a
//! `PING`; it is up once every reply is positive. Commands are pipelined and replies are
//! matched to them in order. Failures:
//!
//! | what | effect |
//! |---|---|
//! | connect fails, connection lost | link down, reconnect after backoff |
//! | AUTH, SELECT or handshake PING refused (wrong password, NOAUTH...) | link down with the server's words as the reason, reconnect after backoff |
//! | an error reply to PUBLISH, SUBSCRIBE, UNSUBSCRIBE (NOPERM...) | [`Output::ServerError`], counted; the link stays up |
//! | a reply that breaks RESP, a [`Limits`] bound, or the command order | link reset ([`Output::Close`]), reconnect after backoff |
//! | no reply within `reply_timeout` (also to the keepalive PING sent after `ping_interval` of silence) | link reset |
//!
//! Reconnects wait `backoff_min * 2^(failures - 1)`, capped at `backoff_max`, with equal
//! jitter (a uniformly random delay between half of that and all of it), so that nodes
//! restarted together do not reconnect together. The failure count starts again once a
//! connection completes its handshake.
//!
//! # Wiring
//!
//! ```no_run
//! use std::time::Instant;
//! use wsserver::broker::{Config, Kind, Link, Output, RedisUrl, Session};
//!
//! let url = RedisUrl::parse("redis://:secret@127.0.0.1:6379").unwrap();
//! let mut cfg = Config::from_url(&url);
//! cfg.prefix = b"app:".to_vec();
//! let mut s = Session::new(cfg, Instant::now());
//!
//! // Local events:
//! s.add_topic(b"room1"); // first local subscriber of "room1"
//! s.publish(b"room1", b"hello", Kind::Text, Instant::now()); // after local delivery
//!
//! // After every input (bytes received, connected, disconnected, tick, local events):
//! while let Some(out) = s.poll_output() {
//!     match out {
//!         Output::Connect(link) => { /* open a socket to url.host_port(); later
//!                                       s.connected(link, now) or s.disconnected(...) */ }
//!         Output::Close(link) => { /* close that socket; report nothing about it */ }
//!         Output::Deliver(d) => { /* send d.payload as d.kind to d.topic's subscribers */ }
//!         Output::Status(st) => { /* an event for the application: st.link, st.state, st.reason */ }
//!         Output::ServerError(e) => { /* an event: e.command, e.message */ }
//!     }
//! }
//! for link in Link::ALL {
//!     let bytes = s.outgoing(link); // write as much as the socket takes, then:
//!     let n = bytes.len();
//!     s.written(link, n);
//! }
//! // Timer: call s.tick(now) at s.next_deadline().
//! ```

use super::envelope::{self, Decoded, Kind, NodeId, HEADER_LEN};
use super::resp::{self, Decoder, Limits, Value};
use super::url::RedisUrl;
use std::collections::{BTreeSet, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// One of the two Redis connections of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Link {
    /// The connection in SUBSCRIBE mode: receives the messages of the node's topics.
    Sub,
    /// The connection that publishes the node's messages.
    Pub,
}

impl Link {
    /// Both links.
    pub const ALL: [Link; 2] = [Link::Sub, Link::Pub];

    fn idx(self) -> usize {
        match self {
            Link::Sub => 0,
            Link::Pub => 1,
        }
    }

    /// `"sub"` or `"pub"`.
    pub fn name(self) -> &'static str {
        match self {
            Link::Sub => "sub",
            Link::Pub => "pub",
        }
    }
}

/// Where a link stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Not connected; a reconnect is scheduled.
    Down,
    /// A connection was asked for ([`Output::Connect`]) and is not there yet.
    Connecting,
    /// Connected; AUTH / SELECT / PING are waiting for their replies.
    Handshake,
    /// Ready.
    Up,
}

/// Settings of a session. `Default` has no credentials, no database, no prefix.
#[derive(Clone)]
pub struct Config {
    /// ACL user name (Redis 6+): `AUTH user password`. Needs `password`.
    pub username: Option<Vec<u8>>,
    /// Password: `AUTH password` alone when there is no user name.
    pub password: Option<Vec<u8>>,
    /// Database to `SELECT` on connect. Pub/sub channels are shared by all databases.
    pub db: Option<u32>,
    /// Prepended to every topic to make its channel name (`"app:"` + `"room1"`).
    pub prefix: Vec<u8>,
    /// The node's id; `None` draws a random one.
    pub node_id: Option<NodeId>,
    /// Deliver messages that carry no envelope (published by other programs), as text
    /// when they are UTF-8, else binary. When false they are dropped and counted.
    pub accept_foreign: bool,
    /// First reconnect delay (before jitter). Default 200 ms.
    pub backoff_min: Duration,
    /// Longest reconnect delay. Default 10 s.
    pub backoff_max: Duration,
    /// How long a connection may take to be reported connected. Default 5 s.
    pub connect_timeout: Duration,
    /// How long a command may wait for its reply before the link is reset. Default 10 s.
    pub reply_timeout: Duration,
    /// After this long with nothing received, a link sends PING. Default 15 s.
    pub ping_interval: Duration,
    /// Most bytes waiting to be written on the pub link; publishes beyond are dropped and
    /// counted (a single larger one goes through when nothing waits). Default 8 MiB.
    pub max_write_buffer: usize,
    /// Most bytes of publishes held while the pub link connects, sent once it is up.
    /// Default 1 MiB; 0 drops every publish made while the link is not up.
    pub connect_buffer: usize,
    /// Bounds on replies; publishes that a receiving node with the same bounds could not
    /// take are refused.
    pub limits: Limits,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            username: None,
            password: None,
            db: None,
            prefix: Vec::new(),
            node_id: None,
            accept_foreign: true,
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            reply_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(15),
            max_write_buffer: 8 << 20,
            connect_buffer: 1 << 20,
            limits: Limits::default(),
        }
    }
}

impl Config {
    /// Defaults with the URL's credentials and database.
    pub fn from_url(url: &RedisUrl) -> Config {
        Config {
            username: url.username.clone(),
            password: url.password.clone(),
            db: url.db,
            ..Config::default()
        }
    }
}

/// The password never appears.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field(
                "username",
                &self.username.as_deref().map(String::from_utf8_lossy),
            )
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("db", &self.db)
            .field("prefix", &String::from_utf8_lossy(&self.prefix))
            .field("node_id", &self.node_id)
            .field("accept_foreign", &self.accept_foreign)
            .field("backoff_min", &self.backoff_min)
            .field("backoff_max", &self.backoff_max)
            .field("connect_timeout", &self.connect_timeout)
            .field("reply_timeout", &self.reply_timeout)
            .field("ping_interval", &self.ping_interval)
            .field("max_write_buffer", &self.max_write_buffer)
            .field("connect_buffer", &self.connect_buffer)
            .field("limits", &self.limits)
            .finish()
    }
}

/// A message from Redis for the local subscribers of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The topic, without the prefix.
    pub topic: Vec<u8>,
    /// The application's bytes (envelope removed).
    pub payload: Vec<u8>,
    /// Text (valid UTF-8, checked) or binary.
    pub kind: Kind,
    /// The publishing node; `None` for a message published by another program.
    pub origin: Option<NodeId>,
}

/// A link changed state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Which link.
    pub link: Link,
    /// [`LinkState::Up`] or [`LinkState::Down`].
    pub state: LinkState,
    /// Why it went down (empty when up).
    pub reason: String,
    /// When down: the delay before the next connection attempt.
    pub retry_in: Option<Duration>,
}

/// An error reply that does not take the link down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    /// The link it came on.
    pub link: Link,
    /// The command refused: `"PUBLISH"`, `"SUBSCRIBE"`, `"UNSUBSCRIBE"`.
    pub command: &'static str,
    /// The server's message (`NOPERM ...`), at most 256 bytes of it.
    pub message: String,
}

/// What the session asks of the manager, in order; see [`Session::poll_output`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Open a connection for this link (to the URL's host and port, with TLS for
    /// `rediss://`), then report [`Session::connected`] or [`Session::disconnected`].
    Connect(Link),
    /// Close this link's connection, and report nothing more about it: the session has
    /// already counted it down and will ask for a new one.
    Close(Link),
    /// Deliver a message to the local subscribers of its topic.
    Deliver(Delivery),
    /// A link went up or down.
    Status(Status),
    /// The server refused a command; the link stays up.
    ServerError(ServerError),
}

/// What became of a [`Session::publish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// Written to the pub link's send buffer.
    Sent,
    /// Held while the pub link connects; sent once it is up, dropped if it fails.
    Queued,
    /// Not forwarded, and counted in [`Counters::not_forwarded`].
    Dropped(DropReason),
}

/// Why a publish was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The pub link is down (waiting to reconnect).
    LinkDown,
    /// The send buffer (or the buffer held while connecting) is full.
    BufferFull,
    /// Larger than what a node with the same limits accepts from Redis.
    TooLarge,
}

/// What a session has counted since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Connections asked for ([`Output::Connect`]).
    pub connects: u64,
    /// Handshakes completed (a link came up).
    pub link_ups: u64,
    /// Links lost or reset, for any reason, including failed connection attempts.
    pub link_downs: u64,
    /// Links reset because a reply broke RESP, a limit, or the command order.
    pub protocol_errors: u64,
    /// PUBLISH commands written to the pub link.
    pub published: u64,
    /// PUBLISH commands the server acknowledged.
    pub publish_confirmed: u64,
    /// PUBLISH commands the server refused.
    pub publish_errors: u64,
    /// Local publishes dropped: pub link down, buffer full, too large, or held while
    /// connecting when the connection failed.
    pub not_forwarded: u64,
    /// PUBLISH commands still unacknowledged when their link went down: they may or may
    /// not have reached Redis.
    pub unconfirmed: u64,
    /// Messages received on the sub link.
    pub received: u64,
    /// Messages delivered to local subscribers ([`Output::Deliver`]).
    pub delivered: u64,
    /// This node's own messages coming back, dropped (they were delivered locally).
    pub own_suppressed: u64,
    /// Messages without an envelope (delivered, or dropped when `accept_foreign` is off).
    pub foreign: u64,
    /// Messages with a damaged, unknown-version or non-UTF-8 text envelope, dropped.
    pub bad_envelope: u64,
    /// Messages for a topic that has no local subscriber any more (they raced the
    /// UNSUBSCRIBE), dropped.
    pub unwanted: u64,
    /// Error replies of any command, fatal or not.
    pub server_errors: u64,
}

/// A command waiting for its reply.
#[derive(Debug)]
enum Cmd {
    Auth,
    Select,
    Ping,
    Publish,
    /// One reply per topic, in order.
    Subscribe {
        topics: Vec<Vec<u8>>,
        acked: usize,
    },
    Unsubscribe {
        topics: Vec<Vec<u8>>,
        acked: usize,
    },
}

impl Cmd {
    fn name(&self) -> &'static str {
        match self {
            Cmd::Auth => "AUTH",
            Cmd::Select => "SELECT",
            Cmd::Ping => "PING",
            Cmd::Publish => "PUBLISH",
            Cmd::Subscribe { .. } => "SUBSCRIBE",
            Cmd::Unsubscribe { .. } => "UNSUBSCRIBE",
        }
    }
}

/// Matches `[kind, channel, count]` to the next topic of a (UN)SUBSCRIBE; `Ok(true)` when
/// that was the command's last confirmation.
fn ack(
    kind: &[u8],
    topics: &[Vec<u8>],
    acked: &mut usize,
    v: &Value,
    prefix: &[u8],
    confirmed: impl FnOnce(&[u8]),
) -> Result<bool, String> {
    let topic = &topics[*acked];
    let items = v.as_items().unwrap_or_default();
    let fits = items.len() == 3
        && items[0]
            .as_bytes()
            .is_some_and(|k| k.eq_ignore_ascii_case(kind))
        && matches!(items[2], Value::Integer(_))
        && items[1].as_bytes().is_some_and(|c| {
            c.len() == prefix.len() + topic.len() && c.starts_with(prefix) && c.ends_with(topic)
        });
    if !fits {
        return Err(format!(
            "expected the {} confirmation of {}, got {}",
            String::from_utf8_lossy(kind),
            crate::error::excerpt(topic),
            describe(v)
        ));
    }
    confirmed(topic);
    *acked += 1;
    Ok(*acked == topics.len())
}

#[derive(Debug)]
struct Pending {
    cmd: Cmd,
    sent: Instant,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Down { retry_at: Instant },
    Connecting { since: Instant },
    Handshake,
    Up,
}

struct LinkCore {
    phase: Phase,
    decoder: Decoder,
    out: Vec<u8>,
    pending: VecDeque<Pending>,
    /// Handshake replies still due.
    handshake_left: usize,
    /// Consecutive failed attempts: sets the backoff.
    failures: u32,
    last_rx: Instant,
}

/// Most topics in one SUBSCRIBE or UNSUBSCRIBE.
const BATCH_TOPICS: usize = 256;
/// Most channel bytes in one SUBSCRIBE or UNSUBSCRIBE.
const BATCH_BYTES: usize = 64 << 10;
/// Longest server message quoted in a status or error output.
const MESSAGE_MAX: usize = 256;

/// A node's broker link: see the module documentation.
pub struct Session {
    cfg: Config,
    node: NodeId,
    links: [LinkCore; 2],
    /// Topics with local subscribers.
    want: HashSet<Vec<u8>>,
    /// Topics subscribed (or asked for) on the current sub connection.
    on_server: HashSet<Vec<u8>>,
    /// Topics whose subscription the server has confirmed.
    confirmed: HashSet<Vec<u8>>,
    /// Topics added or removed since the last flush, while the sub link is up.
    dirty: BTreeSet<Vec<u8>>,
    /// Publishes encoded while the pub link connects, and their number.
    held: Vec<u8>,
    held_count: u64,
    outputs: VecDeque<Output>,
    counters: Counters,
    rng: u64,
    now: Instant,
}

/// Shows the state, not the buffers (an AUTH command with its password may be in one).
impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("node", &self.node)
            .field("sub", &self.link_state(Link::Sub))
            .field("pub", &self.link_state(Link::Pub))
            .field("topics", &self.want.len())
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

/// The reconnect delay after `failures` consecutive failures (at least 1):
/// `min * 2^(failures - 1)` capped at `max`, then a uniformly random point between half of
/// it and all of it, drawn from `rand`.
pub fn backoff_delay(min: Duration, max: Duration, failures: u32, rand: u64) -> Duration {
    let shift = failures.saturating_sub(1).min(32);
    let full = min
        .checked_mul(1u32 << shift.min(31))
        .unwrap_or(max)
        .min(max);
    let hi = full.as_nanos().min(u128::from(u64::MAX)) as u64;
    let lo = hi / 2;
    Duration::from_nanos(lo + rand % (hi - lo + 1))
}

fn quote(msg: &[u8]) -> String {
    let s = String::from_utf8_lossy(&msg[..msg.len().min(MESSAGE_MAX)]);
    if msg.len() > MESSAGE_MAX {
        format!("{s}...")
    } else {
        s.into_owned()
    }
}

/// A short description of a reply, for protocol errors.
fn describe(v: &Value) -> String {
    let mut out = Vec::new();
    resp::encode(&mut out, v);
    crate::error::excerpt(&out)
}

/// Whether `v` is an array or push frame whose first element is the string `kind`
/// (compared without regard to ASCII case).
fn is_frame(v: &Value, kind: &[u8]) -> bool {
    v.as_items()
        .and_then(|items| items.first())
        .and_then(Value::as_bytes)
        .is_some_and(|k| k.eq_ignore_ascii_case(kind))
}

impl Session {
    /// A session that asks at once for both connections ([`Output::Connect`]).
    pub fn new(cfg: Config, now: Instant) -> Session {
        let node = cfg.node_id.unwrap_or_else(NodeId::random);
        let seed = u64::from_le_bytes(node.0[..8].try_into().unwrap_or_default()) | 1;
        let link = || LinkCore {
            phase: Phase::Connecting { since: now },
            decoder: Decoder::new(cfg.limits),
            out: Vec::new(),
            pending: VecDeque::new(),
            handshake_left: 0,
            failures: 0,
            last_rx: now,
        };
        let links = [link(), link()];
        let mut s = Session {
            node,
            links,
            want: HashSet::new(),
            on_server: HashSet::new(),
            confirmed: HashSet::new(),
            dirty: BTreeSet::new(),
            held: Vec::new(),
            held_count: 0,
            outputs: VecDeque::new(),
            counters: Counters::default(),
            rng: seed,
            now,
            cfg,
        };
        for l in Link::ALL {
            s.outputs.push_back(Output::Connect(l));
            s.counters.connects += 1;
        }
        s
    }

    /// This node's id, as its envelopes carry it.
    pub fn node_id(&self) -> NodeId {
        self.node
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Where a link stands.
    pub fn link_state(&self, link: Link) -> LinkState {
        match self.links[link.idx()].phase {
            Phase::Down { .. } => LinkState::Down,
            Phase::Connecting { .. } => LinkState::Connecting,
            Phase::Handshake => LinkState::Handshake,
            Phase::Up => LinkState::Up,
        }
    }

    /// Both links are up.
    pub fn is_up(&self) -> bool {
        Link::ALL
            .iter()
            .all(|&l| self.link_state(l) == LinkState::Up)
    }

    /// Topics with local subscribers.
    pub fn topic_count(&self) -> usize {
        self.want.len()
    }

    /// The server has confirmed the subscription to this topic on the current connection.
    pub fn is_subscribed(&self, topic: &[u8]) -> bool {
        self.confirmed.contains(topic)
    }

    /// A topic gained its first local subscriber: subscribe to its channel (at the next
    /// [`Session::outgoing`], with the other changes; at once on reconnect). Idempotent.
    pub fn add_topic(&mut self, topic: &[u8]) {
        if self.want.insert(topic.to_vec()) && matches!(self.links[0].phase, Phase::Up) {
            self.dirty.insert(topic.to_vec());
        }
    }

    /// A topic lost its last local subscriber: unsubscribe. Idempotent.
    pub fn remove_topic(&mut self, topic: &[u8]) {
        if self.want.remove(topic) && matches!(self.links[0].phase, Phase::Up) {
            self.dirty.insert(topic.to_vec());
        }
    }

    /// Forwards a local publish to the other nodes (call it after delivering locally:
    /// this node drops its own message when Redis sends it back).
    ///
    /// Sent at once while the pub link is up; held (up to `connect_buffer` bytes) while it
    /// connects or authenticates; dropped and counted while it is down. Redis pub/sub is
    /// at-most-once: nothing is kept for a later connection.
    pub fn publish(&mut self, topic: &[u8], payload: &[u8], kind: Kind, now: Instant) -> Forward {
        self.now = now;
        let channel_len = self.cfg.prefix.len() + topic.len();
        let body_len = HEADER_LEN + payload.len();
        let len = resp::command_len(&[7, channel_len, body_len]);
        let limits = &self.cfg.limits;
        // The message frame a receiver parses is the size of this command, give or take.
        if body_len > limits.max_bulk_len
            || channel_len > limits.max_bulk_len
            || len + 16 > limits.max_frame_len
        {
            return self.drop_publish(DropReason::TooLarge);
        }
        let header = envelope::header(&self.node, kind);
        let prefix = &self.cfg.prefix;
        let encode = |out: &mut Vec<u8>| {
            resp::push_array_header(out, 3);
            resp::push_bulk(out, &[b"PUBLISH"]);
            resp::push_bulk(out, &[prefix, topic]);
            resp::push_bulk(out, &[&header, payload]);
        };
        let l = &mut self.links[Link::Pub.idx()];
        match l.phase {
            Phase::Up => {
                if !l.out.is_empty() && l.out.len() + len > self.cfg.max_write_buffer {
                    return self.drop_publish(DropReason::BufferFull);
                }
                encode(&mut l.out);
                l.pending.push_back(Pending {
                    cmd: Cmd::Publish,
                    sent: now,
                });
                self.counters.published += 1;
                Forward::Sent
            }
            Phase::Connecting { .. } | Phase::Handshake => {
                if self.held.len() + len > self.cfg.connect_buffer {
                    return self.drop_publish(DropReason::BufferFull);
                }
                encode(&mut self.held);
                self.held_count += 1;
                Forward::Queued
            }
            Phase::Down { .. } => self.drop_publish(DropReason::LinkDown),
        }
    }

    fn drop_publish(&mut self, why: DropReason) -> Forward {
        self.counters.not_forwarded += 1;
        Forward::Dropped(why)
    }

    /// The connection asked for by [`Output::Connect`] is established (TCP, and TLS for
    /// `rediss://`): the handshake starts. Ignored unless the link is connecting.
    pub fn connected(&mut self, link: Link, now: Instant) {
        self.now = now;
        let cfg = &self.cfg;
        let l = &mut self.links[link.idx()];
        if !matches!(l.phase, Phase::Connecting { .. }) {
            return;
        }
        l.phase = Phase::Handshake;
        l.last_rx = now;
        l.decoder.clear();
        l.out.clear();
        l.pending.clear();
        let push = |l: &mut LinkCore, cmd: Cmd, args: &[&[u8]]| {
            resp::encode_command(&mut l.out, args);
            l.pending.push_back(Pending { cmd, sent: now });
        };
        if let Some(pass) = &cfg.password {
            match &cfg.username {
                Some(user) => push(l, Cmd::Auth, &[b"AUTH", user, pass]),
                None => push(l, Cmd::Auth, &[b"AUTH", pass]),
            }
        }
        if let Some(db) = cfg.db {
            push(l, Cmd::Select, &[b"SELECT", db.to_string().as_bytes()]);
        }
        if l.pending.is_empty() {
            push(l, Cmd::Ping, &[b"PING"]);
        }
        l.handshake_left = l.pending.len();
    }

    /// The link's connection failed to open, was closed by the server, or broke. Ignored
    /// when the link is already down (after [`Output::Close`], for instance).
    pub fn disconnected(&mut self, link: Link, reason: &str, now: Instant) {
        self.now = now;
        self.fail(link, reason.to_string(), false);
    }

    /// Bytes received on a link's connection. Ignored unless the link is connected.
    pub fn received(&mut self, link: Link, bytes: &[u8], now: Instant) {
        self.now = now;
        let i = link.idx();
        if !matches!(self.links[i].phase, Phase::Handshake | Phase::Up) {
            return;
        }
        self.links[i].last_rx = now;
        self.links[i].decoder.feed(bytes);
        while matches!(self.links[i].phase, Phase::Handshake | Phase::Up) {
            match self.links[i].decoder.next_value() {
                Ok(None) => break,
                Ok(Some(v)) => {
                    if let Err(why) = self.on_value(link, v) {
                        self.counters.protocol_errors += 1;
                        self.fail(link, format!("protocol error: {why}"), true);
                    }
                }
                Err(e) => {
                    self.counters.protocol_errors += 1;
                    self.fail(link, format!("protocol error: {e}"), true);
                }
            }
        }
    }

    /// Time passes: starts due reconnects, enforces the connect and reply timeouts, sends
    /// keepalive PINGs. Call it at [`Session::next_deadline`] (calling it more often is
    /// harmless).
    pub fn tick(&mut self, now: Instant) {
        self.now = now;
        for link in Link::ALL {
            let cfg = &self.cfg;
            let l = &mut self.links[link.idx()];
            match l.phase {
                Phase::Down { retry_at } if now >= retry_at => {
                    l.phase = Phase::Connecting { since: now };
                    self.counters.connects += 1;
                    self.outputs.push_back(Output::Connect(link));
                }
                Phase::Connecting { since } if now >= since + cfg.connect_timeout => {
                    let why = format!("connect timed out after {:?}", cfg.connect_timeout);
                    self.fail(link, why, true);
                }
                Phase::Handshake | Phase::Up => {
                    if let Some(p) = l.pending.front() {
                        if now >= p.sent + cfg.reply_timeout {
                            let why = format!("no reply within {:?}", cfg.reply_timeout);
                            self.fail(link, why, true);
                        }
                    } else if matches!(l.phase, Phase::Up) && now >= l.last_rx + cfg.ping_interval {
                        resp::encode_command(&mut l.out, &[b"PING"]);
                        l.pending.push_back(Pending {
                            cmd: Cmd::Ping,
                            sent: now,
                        });
                    }
                }
                _ => {}
            }
        }
    }

    /// When [`Session::tick`] has something to do next.
    pub fn next_deadline(&self) -> Option<Instant> {
        let cfg = &self.cfg;
        self.links
            .iter()
            .filter_map(|l| match l.phase {
                Phase::Down { retry_at } => Some(retry_at),
                Phase::Connecting { since } => Some(since + cfg.connect_timeout),
                Phase::Handshake | Phase::Up => match l.pending.front() {
                    Some(p) => Some(p.sent + cfg.reply_timeout),
                    None if matches!(l.phase, Phase::Up) => Some(l.last_rx + cfg.ping_interval),
                    None => None,
                },
            })
            .min()
    }

    /// The next thing to do, in order; drain them after every call into the session.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Bytes to write on a link's connection (subscription changes are batched into it
    /// here). Report what was written with [`Session::written`].
    pub fn outgoing(&mut self, link: Link) -> &[u8] {
        if link == Link::Sub {
            self.flush_topics();
        }
        &self.links[link.idx()].out
    }

    /// Whether [`Session::outgoing`] has bytes for this link.
    pub fn wants_write(&self, link: Link) -> bool {
        let l = &self.links[link.idx()];
        !l.out.is_empty() || (link == Link::Sub && !self.dirty.is_empty())
    }

    /// `n` bytes of [`Session::outgoing`] were written.
    pub fn written(&mut self, link: Link, n: usize) {
        let out = &mut self.links[link.idx()].out;
        let n = n.min(out.len());
        if n == out.len() {
            out.clear();
            if out.capacity() > (64 << 10) {
                *out = Vec::new();
            }
        } else {
            out.drain(..n);
        }
    }

    /// The link is lost: counts, forgets its connection state, schedules a reconnect.
    fn fail(&mut self, link: Link, reason: String, close: bool) {
        let l = &mut self.links[link.idx()];
        if matches!(l.phase, Phase::Down { .. }) {
            return;
        }
        if close {
            self.outputs.push_back(Output::Close(link));
        }
        match link {
            Link::Pub => {
                let unconfirmed = l
                    .pending
                    .iter()
                    .filter(|p| matches!(p.cmd, Cmd::Publish))
                    .count();
                self.counters.unconfirmed += unconfirmed as u64;
                self.counters.not_forwarded += self.held_count;
                self.held = Vec::new();
                self.held_count = 0;
            }
            Link::Sub => {
                self.on_server.clear();
                self.confirmed.clear();
                self.dirty.clear();
            }
        }
        l.pending.clear();
        l.decoder.clear();
        l.out = Vec::new();
        l.handshake_left = 0;
        l.failures = l.failures.saturating_add(1);
        // xorshift64*: jitter needs spread, not secrecy.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let rand = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d);
        let delay = backoff_delay(self.cfg.backoff_min, self.cfg.backoff_max, l.failures, rand);
        l.phase = Phase::Down {
            retry_at: self.now + delay,
        };
        self.counters.link_downs += 1;
        self.outputs.push_back(Output::Status(Status {
            link,
            state: LinkState::Down,
            reason,
            retry_in: Some(delay),
        }));
    }

    fn up(&mut self, link: Link) {
        let now = self.now;
        let l = &mut self.links[link.idx()];
        l.phase = Phase::Up;
        l.failures = 0;
        self.counters.link_ups += 1;
        self.outputs.push_back(Output::Status(Status {
            link,
            state: LinkState::Up,
            reason: String::new(),
            retry_in: None,
        }));
        match link {
            Link::Sub => {
                let mut all: Vec<Vec<u8>> = self.want.iter().cloned().collect();
                all.sort_unstable();
                self.dirty.clear();
                self.on_server.extend(all.iter().cloned());
                self.send_batches(all, true);
            }
            Link::Pub => {
                l.out.append(&mut self.held);
                for _ in 0..self.held_count {
                    l.pending.push_back(Pending {
                        cmd: Cmd::Publish,
                        sent: now,
                    });
                }
                self.counters.published += self.held_count;
                self.held_count = 0;
            }
        }
    }

    /// Turns the topics changed since the last flush into SUBSCRIBE / UNSUBSCRIBE.
    fn flush_topics(&mut self) {
        if self.dirty.is_empty() || !matches!(self.links[0].phase, Phase::Up) {
            return;
        }
        let mut subs = Vec::new();
        let mut unsubs = Vec::new();
        for t in std::mem::take(&mut self.dirty) {
            let wanted = self.want.contains(&t);
            let there = self.on_server.contains(&t);
            if wanted && !there {
                self.on_server.insert(t.clone());
                subs.push(t);
            } else if !wanted && there {
                self.on_server.remove(&t);
                self.confirmed.remove(&t);
                unsubs.push(t);
            }
        }
        self.send_batches(unsubs, false);
        self.send_batches(subs, true);
    }

    fn send_batches(&mut self, topics: Vec<Vec<u8>>, subscribe: bool) {
        let now = self.now;
        let prefix = &self.cfg.prefix;
        let l = &mut self.links[Link::Sub.idx()];
        let mut rest = topics.into_iter().peekable();
        while rest.peek().is_some() {
            let mut batch = Vec::new();
            let mut bytes = 0;
            while let Some(t) = rest.next_if(|t| {
                batch.is_empty() || (batch.len() < BATCH_TOPICS && bytes + t.len() <= BATCH_BYTES)
            }) {
                bytes += prefix.len() + t.len();
                batch.push(t);
            }
            resp::push_array_header(&mut l.out, batch.len() + 1);
            let name: &[u8] = if subscribe {
                b"SUBSCRIBE"
            } else {
                b"UNSUBSCRIBE"
            };
            resp::push_bulk(&mut l.out, &[name]);
            for t in &batch {
                resp::push_bulk(&mut l.out, &[prefix, t]);
            }
            let cmd = if subscribe {
                Cmd::Subscribe {
                    topics: batch,
                    acked: 0,
                }
            } else {
                Cmd::Unsubscribe {
                    topics: batch,
                    acked: 0,
                }
            };
            l.pending.push_back(Pending { cmd, sent: now });
        }
    }

    /// One reply or push. `Err` is a protocol violation (the caller resets the link);
    /// other failures are handled here.
    fn on_value(&mut self, link: Link, v: Value) -> Result<(), String> {
        if link == Link::Sub && is_frame(&v, b"message") {
            return self.on_message(v);
        }
        if let Value::Push(_) = v {
            // Out-of-band data we did not ask for (client tracking, pmessage...) is not a
            // reply; on the sub link the (un)subscribe confirmations and pongs are.
            let reply = [&b"subscribe"[..], b"unsubscribe", b"pong"]
                .iter()
                .any(|k| is_frame(&v, k));
            if link == Link::Pub || !reply {
                return Ok(());
            }
        }
        let i = link.idx();
        let prefix = &self.cfg.prefix;
        let l = &mut self.links[i];
        let Some(head) = l.pending.front_mut() else {
            return Err(format!("a reply with no command waiting: {}", describe(&v)));
        };
        if let Value::Error(msg) = &v {
            let p = l.pending.pop_front().map(|p| p.cmd);
            return self.on_error(link, p, msg);
        }
        let ok =
            |v: &Value, want: &[u8]| matches!(v, Value::Simple(s) if s.eq_ignore_ascii_case(want));
        let done = match &mut head.cmd {
            Cmd::Auth | Cmd::Select if ok(&v, b"OK") => true,
            // PING answers +PONG outside subscribe mode, ["pong", ""] inside it.
            Cmd::Ping if ok(&v, b"PONG") || is_frame(&v, b"pong") => true,
            Cmd::Publish if matches!(v, Value::Integer(_)) => {
                self.counters.publish_confirmed += 1;
                true
            }
            Cmd::Subscribe { topics, acked } => {
                let on_server = &self.on_server;
                let confirmed = &mut self.confirmed;
                ack(b"subscribe", topics, acked, &v, prefix, |t| {
                    if on_server.contains(t) {
                        confirmed.insert(t.to_vec());
                    }
                })?
            }
            Cmd::Unsubscribe { topics, acked } => {
                ack(b"unsubscribe", topics, acked, &v, prefix, |_| {})?
            }
            cmd => {
                return Err(format!(
                    "unexpected reply to {}: {}",
                    cmd.name(),
                    describe(&v)
                ))
            }
        };
        if done {
            l.pending.pop_front();
            if matches!(l.phase, Phase::Handshake) {
                l.handshake_left = l.handshake_left.saturating_sub(1);
                if l.handshake_left == 0 {
                    self.up(link);
                }
            }
        }
        Ok(())
    }

    fn on_error(&mut self, link: Link, cmd: Option<Cmd>, msg: &[u8]) -> Result<(), String> {
        self.counters.server_errors += 1;
        let text = quote(msg);
        let command = match cmd {
            Some(Cmd::Auth) => return self.fail_ok(link, format!("AUTH failed: {text}")),
            Some(Cmd::Select) => {
                let db = self.cfg.db.unwrap_or(0);
                return self.fail_ok(link, format!("SELECT {db} failed: {text}"));
            }
            Some(Cmd::Ping) => return self.fail_ok(link, format!("PING failed: {text}")),
            Some(Cmd::Publish) => {
                self.counters.publish_errors += 1;
                "PUBLISH"
            }
            Some(Cmd::Subscribe { topics, .. }) => {
                // Refused as a whole (ACL checks come before execution): not subscribed.
                for t in &topics {
                    self.on_server.remove(t.as_slice());
                }
                "SUBSCRIBE"
            }
            Some(Cmd::Unsubscribe { .. }) => "UNSUBSCRIBE",
            None => return Err(format!("an error with no command waiting: {text}")),
        };
        self.outputs.push_back(Output::ServerError(ServerError {
            link,
            command,
            message: text,
        }));
        Ok(())
    }

    fn fail_ok(&mut self, link: Link, reason: String) -> Result<(), String> {
        self.fail(link, reason, true);
        Ok(())
    }

    /// `["message", channel, payload]` on the sub link.
    fn on_message(&mut self, v: Value) -> Result<(), String> {
        let (Value::Array(items) | Value::Push(items)) = v else {
            return Err("a message that is not an array".into());
        };
        let [_, Value::Bulk(channel), Value::Bulk(mut payload)] = <[Value; 3]>::try_from(items)
            .map_err(|items| format!("a message of {} elements instead of 3", items.len()))?
        else {
            return Err("a message whose channel or payload is not a bulk string".into());
        };
        self.counters.received += 1;
        let topic = match channel.strip_prefix(self.cfg.prefix.as_slice()) {
            Some(t) if self.want.contains(t) => t,
            _ => {
                self.counters.unwanted += 1;
                return Ok(());
            }
        };
        let (kind, origin, start) = match envelope::decode(&payload) {
            Decoded::Envelope { node, .. } if node == self.node => {
                self.counters.own_suppressed += 1;
                return Ok(());
            }
            Decoded::Envelope { node, kind, .. } => (kind, Some(node), HEADER_LEN),
            Decoded::Foreign => {
                self.counters.foreign += 1;
                if !self.cfg.accept_foreign {
                    return Ok(());
                }
                let text = simdutf8::basic::from_utf8(&payload).is_ok();
                (if text { Kind::Text } else { Kind::Binary }, None, 0)
            }
            Decoded::Invalid(_) => {
                self.counters.bad_envelope += 1;
                return Ok(());
            }
        };
        if kind == Kind::Text
            && origin.is_some()
            && simdutf8::basic::from_utf8(&payload[start..]).is_err()
        {
            self.counters.bad_envelope += 1;
            return Ok(());
        }
        let topic = topic.to_vec();
        payload.drain(..start);
        self.counters.delivered += 1;
        self.outputs.push_back(Output::Deliver(Delivery {
            topic,
            payload,
            kind,
            origin,
        }));
        Ok(())
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
