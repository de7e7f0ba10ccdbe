//! Scale-out through Redis (or Valkey): the sans-IO core of a node's broker link.
//!
//! - [`resp`](crate::broker::resp): RESP parsing (incremental, bounded) and command encoding.
//! - [`url`](crate::broker::url): `redis://[user[:password]@]host[:port][/db]` and `rediss://` (TLS).
//! - [`envelope`](crate::broker::envelope): the header a node puts before each message it publishes.
//! - [`session`](crate::broker::session): the state machine of the two Redis connections (subscribe, publish) that
//!   the manager drives: no socket, no thread, no clock of its own.
//!
//! # Semantics
//!
//! **At-most-once.** Redis pub/sub delivers a message to the subscribers connected when it
//! is published, and keeps nothing. A message is delivered to a node at most once, and
//! may not be delivered at all:
//!
//! - while a node's sub link is down (Redis restarting, network cut, reconnect backoff),
//!   messages published by other nodes are not delivered to it, and are not recovered
//!   when it comes back;
//! - while a node's pub link is down, its publishes still reach its own local subscribers
//!   (local delivery never depends on Redis) but not the other nodes: they are dropped and
//!   counted (`Counters::not_forwarded`). Only while a connection attempt is in progress
//!   are publishes held, in a small bounded buffer (`Config::connect_buffer`, 1 MiB by
//!   default), and sent once it is up; if the attempt fails they are dropped and counted;
//! - publishes written to a connection that then breaks before Redis acknowledged them
//!   may or may not have been delivered (`Counters::unconfirmed`);
//! - a topic subscribed just now receives the messages published after Redis processed
//!   the SUBSCRIBE, not those before (`Session::is_subscribed` tells when that is);
//! - Redis disconnects subscribers that fall too far behind
//!   (`client-output-buffer-limit pubsub`): the link reconnects and resubscribes, and what
//!   was queued for it is lost.
//!
//! **Exactly once per node while nothing fails.** A node subscribes once per topic,
//! however many local subscribers the topic has, and delivers each message it receives
//! to all of them. A node's own publishes come back from Redis too; it recognises them by
//! the node id in their envelope and drops them, because the local delivery already
//! happened when the application published.
//!
//! **Ordering.** Messages from one node arrive at every other node in the order that node
//! published them (one connection publishes them in order; Redis forwards them in order
//! on each subscriber connection), across topics too. There is no order between the
//! messages of different nodes, and a node's local delivery of its own message happens
//! before the other nodes see it.
//!
//! **Envelope.** Each publish is `PUBLISH prefix+topic envelope`, where the envelope is a
//! versioned, binary-safe header (magic `FF 57 53`, version 1, kind, 16-byte node id)
//! followed by the payload: see [`envelope`](crate::broker::envelope). Messages published by other programs,
//! without an envelope, are delivered as they are (text when valid UTF-8).
//!
//! **Failures are outputs, never panics.** A refused AUTH, a lost connection, a broken
//! reply: the link goes down with a reason ([`Output::Status`](crate::broker::session::Output::Status)) and reconnects with
//! exponential backoff and jitter; a refused PUBLISH or SUBSCRIBE is reported
//! ([`Output::ServerError`](crate::broker::session::Output::ServerError)) and the link stays up.

pub mod envelope;
pub mod resp;
pub mod session;
pub mod url;

pub use envelope::{Kind, NodeId};
pub use session::{
    Config, Counters, Delivery, DropReason, Forward, Link, LinkState, Output, ServerError, Session,
    Status,
};
pub use url::RedisUrl;
