//! State the manager shares across connections (event queue, buffers, clock, deadline
//! heap), and the operations on one connection that need it: queue an event, send,
//! flush, close. Kept apart from the connection table so that a connection and the
//! core can be borrowed at the same time.

use crate::bufpool::BufPool;
use crate::conn::{Conn, State};
use crate::error::{Error, Result};
use crate::event::{Event, EventKind, Payload, FLAG_BY_PEER};
use crate::http::date::DateCache;
use crate::http::request::Request;
use crate::timers::Deadlines;
use mio::Registry;
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::time::Instant;

/// Size of the shared receive buffer: every read lands here first, so idle
/// connections need no buffer of their own.
pub(crate) const SCRATCH_SIZE: usize = 64 << 10;
/// Largest buffer kept for reuse.
const BIG_BUFFER_MAX: usize = 16 << 20;
/// Most bytes kept in large buffers for reuse, per manager.
const BIG_POOL_BYTES: usize = 32 << 20;
/// Most large buffers kept per size class (the byte bound is the one that matters).
const BIG_POOL_MAX: usize = 64;
/// Sends up to this size are gathered per connection and written at the next flush
/// point; larger ones are written at once (gathering would only add a copy).
const COALESCE_MAX: usize = 16 << 10;
/// The least capacity of a connection's send buffer when a send starts one. Smaller
/// sends would take a buffer of their own size (often a just-delivered message's, from
/// the pool's smallest class) and grow it by reallocation as a batch of replies is
/// appended; from this size up they come from a class no message buffer under 1 KiB
/// lands in, and a batch of small replies fits without growing. The buffer goes back
/// to the pool when a flush empties it, so idle connections do not hold it.
const SEND_BUFFER_START: usize = 1 << 10;
/// Write buffers up to this capacity are kept for reuse.
const POOLED_BUFFER_MAX: usize = 64 << 10;
/// Most small buffers kept for reuse per size class: enough for a burst of thousands
/// of messages in flight (100 connections with 16 each, or 500 with 8), so that they
/// are not freed and allocated again at every poll.
const POOL_MAX: usize = 4096;
/// Most bytes kept in small buffers, as before the count was raised (256 of 64 KiB).
const POOL_BYTES: usize = 16 << 20;

/// An event plus whether it counts against its connection's queue limits.
pub struct Queued {
    /// The event.
    pub ev: Event,
    /// Counted in the connection's `queued_events`/`queued_bytes`.
    pub counted: bool,
}

/// Manager-wide state.
pub struct Core {
    /// Events not yet drained, in arrival order.
    pub queue: VecDeque<Queued>,
    /// Events handed out since the last drain call; their payloads live until then.
    pub delivered: Vec<Event>,
    /// Requests whose memory events may still point into; recycled at the next drain.
    pub parked: Vec<Box<Request>>,
    /// Recycled request buffers.
    pub request_pool: Vec<Box<Request>>,
    /// Recycled byte buffers.
    pub buf_pool: BufPool,
    /// The shared receive buffer (taken out while in use).
    pub scratch: Vec<u8>,
    /// Bytes read by the current poll (see `POLL_READ_BUDGET`).
    pub read_in_poll: usize,
    /// The last header block of a reply, normalised.
    pub header_cache: crate::http::response::HeaderCache,
    /// Clock of the current poll iteration.
    pub now: Instant,
    /// `now` as a clock tick, computed once per iteration for the per-read timestamps
    /// and deadlines (set with `now` by [`Core::set_now`]).
    pub now_tick: u64,
    /// The tick of the last poll that queued more than a small burst of events.
    pub last_burst: u64,
    /// Connection deadlines.
    pub deadlines: Deadlines,
    /// Connections (and listeners) to read again without waiting for readiness.
    pub retry: Vec<u64>,
    /// The earliest deadline moved: the timerfd must be re-armed.
    pub timer_dirty: bool,
    /// `Date` header cache.
    pub date: DateCache,
    /// Open connections (not listeners).
    pub conn_count: u32,
    /// Poll registry, to deregister sockets on close.
    pub registry: Registry,
    /// Set when work appeared that the host loop must see (read resumed): wake the fd.
    pub needs_wake: bool,
    /// Inside `Manager::poll`: events queued now are seen by the caller of poll.
    pub in_poll: bool,
    /// Reused by the WebSocket glue: decoded items.
    pub ws_items: Vec<crate::ws::Incoming>,
    /// Reused by the WebSocket glue: encoded frames to send.
    pub ws_out: Vec<u8>,
    /// WebSocket connections holding a close frame until their events are drained.
    pub deferred: Vec<u64>,
    /// Connections with gathered bytes to write at the next flush point.
    pub dirty: Vec<u64>,
    /// Large buffers kept for reuse (see `give_buf`).
    pub big_pool: BufPool,
}

impl Core {
    /// Sets the clock of this poll iteration (and its tick, so the two never disagree).
    pub fn set_now(&mut self, now: Instant) {
        self.now = now;
        self.now_tick = crate::clock::tick(now);
    }

    /// A core around a poll registry.
    pub fn new(registry: Registry) -> Core {
        let start = Instant::now();
        Core {
            queue: VecDeque::new(),
            delivered: Vec::new(),
            parked: Vec::new(),
            request_pool: Vec::new(),
            buf_pool: BufPool::new(POOL_MAX, POOL_BYTES),
            scratch: vec![0; SCRATCH_SIZE],
            read_in_poll: 0,
            header_cache: Default::default(),
            now: start,
            now_tick: crate::clock::tick(start),
            last_burst: 0,
            deadlines: Deadlines::default(),
            retry: Vec::new(),
            timer_dirty: false,
            date: DateCache::default(),
            conn_count: 0,
            registry,
            needs_wake: false,
            in_poll: false,
            ws_items: Vec::new(),
            ws_out: Vec::new(),
            deferred: Vec::new(),
            dirty: Vec::new(),
            big_pool: BufPool::new(BIG_POOL_MAX, BIG_POOL_BYTES),
        }
    }

    /// The reusable frame buffer, emptied (its owner puts it back when done).
    pub fn take_ws_out(&mut self) -> Vec<u8> {
        let mut v = std::mem::take(&mut self.ws_out);
        v.clear();
        v
    }

    /// An empty buffer for at least `n` bytes, from the pool when one is kept.
    pub fn take_buf(&mut self, n: usize) -> Vec<u8> {
        self.buf_pool
            .pop_at_least(n)
            .unwrap_or_else(|| Vec::with_capacity(n))
    }

    /// Gives a buffer back for reuse. Small ones go to the small pool; large ones (big
    /// messages, send buffers that held them) to a pool bounded in total bytes, because
    /// fresh large allocations come from mmap and cost a page fault per 4 KiB touched.
    pub fn give_buf(&mut self, b: Vec<u8>) {
        let cap = b.capacity();
        if cap <= POOLED_BUFFER_MAX {
            self.buf_pool.push(b);
        } else if cap <= BIG_BUFFER_MAX {
            self.big_pool.push(b);
        }
    }

    /// A large buffer from the pool, if one is kept.
    pub fn take_big_buf(&mut self, n: usize) -> Option<Vec<u8>> {
        self.big_pool.pop_at_least(n)
    }

    /// Queues an event that is not tied to a connection's limits.
    pub fn push(&mut self, ev: Event) {
        self.note_push();
        self.queue.push_back(Queued { ev, counted: false });
    }

    /// Queues an event for `conn`, counting it against the connection's queue limits.
    /// Every such event carries the connection's listener in `parent` (0 for clients).
    pub fn push_for(&mut self, conn: &mut Conn, mut ev: Event) {
        ev.parent = conn.parent;
        conn.queued_events += 1;
        conn.queued_bytes += ev.data.len();
        self.note_push();
        self.queue.push_back(Queued { ev, counted: true });
    }

    /// An event queued outside `poll` (by a call of the application) must wake a host
    /// loop that sleeps on the manager's fd, or it would wait for unrelated I/O.
    fn note_push(&mut self) {
        if !self.in_poll {
            self.needs_wake = true;
        }
    }

    /// Schedules the connection's next deadline check if it is earlier than the one
    /// already in the heap.
    pub fn schedule(&mut self, c: &mut Conn) {
        if let Some((at, _)) = c.next_deadline() {
            if c.deadline_at == 0 || at < c.deadline_at {
                c.deadline_at = at;
                self.deadlines.push(at, c.id);
                self.timer_dirty = true;
            }
        }
    }

    /// Sends bytes (several parts, written with one system call when possible).
    ///
    /// Writes at once when nothing is buffered; what the socket does not take is
    /// buffered and flushed when it turns writable. A send that finds more than
    /// `max_send_buffer` bytes already waiting is refused and the connection closed.
    pub fn send(&mut self, c: &mut Conn, parts: &[&[u8]]) -> Result<()> {
        if !c.can_send() {
            return Err(Error::Closed(c.id));
        }
        if c.buffered() > c.cfg.max_send_buffer {
            let msg = format!(
                "send buffer over its limit of {} bytes: the peer is not reading",
                c.cfg.max_send_buffer
            );
            self.close_now(c, false, Some((crate::error::code::LIMIT, msg.clone())));
            return Err(Error::Limit(msg));
        }
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if total == 0 {
            return Ok(());
        }
        if total <= COALESCE_MAX && c.state == State::Open {
            // Small sends are gathered and written once per connection when the
            // application next calls into the manager (the drain call that follows its
            // replies, or the next poll): a batch of echoes costs one write, not one each.
            self.append(c, parts, 0);
            self.mark_dirty(c);
            return Ok(());
        }
        let mut written = 0;
        let idle = c.buffered() == 0;
        let stream = c.stream.as_mut().expect("can_send checked it");
        if idle && c.state == State::Open && !stream.is_handshaking() && !stream.wants_write() {
            let r = if parts.len() == 1 {
                stream.write(parts[0])
            } else {
                let slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
                stream.write_vectored(&slices)
            };
            match r {
                Ok(n) => written = n,
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // The peer is gone: that is the connection's ERROR and CLOSE events,
                    // and for the caller the connection is now closed (a documented
                    // result), not an I/O failure of the call.
                    let msg = format!("write failed: {e}");
                    self.close_now(c, true, Some((crate::error::code::IO, msg)));
                    return Err(Error::Closed(c.id));
                }
            }
        }
        if written < total {
            self.append(c, parts, written);
            if c.buffered() > c.cfg.send_low_water {
                c.drain_armed = true;
            }
            if c.stream
                .as_ref()
                .is_some_and(|s| s.is_tls() && !s.is_handshaking())
                && written > 0
            {
                // TLS takes at most its record buffer per write even when the socket has
                // room: keep writing until the socket itself is full, or no writable edge
                // would ever come for the rest.
                self.flush(c);
            }
            self.want_write(c);
        }
        Ok(())
    }

    /// Adds writability to the socket's registration, once output has to wait.
    pub fn want_write(&mut self, c: &mut Conn) {
        if c.want_write {
            return;
        }
        if let Some(s) = c.stream.as_mut() {
            let token = mio::Token(crate::slots::Slots::<()>::index_of(c.id));
            if self
                .registry
                .reregister(
                    s.tcp_mut(),
                    token,
                    mio::Interest::READABLE | mio::Interest::WRITABLE,
                )
                .is_ok()
            {
                c.want_write = true;
            }
        }
    }

    /// Appends `parts` (minus their first `skip` bytes) to the send queue. Small amounts
    /// go into the head buffer; a large one, or one behind a large backlog, becomes a
    /// chunk of its own, so that a backlog of big messages is never copied again as a
    /// single buffer grows.
    fn append(&mut self, c: &mut Conn, parts: &[&[u8]], mut skip: usize) {
        let add = parts.iter().map(|p| p.len()).sum::<usize>() - skip;
        if skip == 0 && c.wmore.is_none() && c.wbuf.capacity() - c.wbuf.len() >= add {
            // Room in the head buffer (the common case within a batch): appended as is.
            for p in parts {
                c.wbuf.extend_from_slice(p);
            }
            return;
        }
        let pending = c.wbuf.len() - c.wpos;
        let into_head = c.wmore.is_none() && (pending == 0 || pending + add <= POOLED_BUFFER_MAX);
        let buf = if into_head {
            if pending == 0 {
                c.wbuf.clear();
                c.wpos = 0;
            }
            if c.wbuf.capacity() == 0 {
                c.wbuf = self.buffer_for(add.max(SEND_BUFFER_START));
            }
            &mut c.wbuf
        } else {
            let room = c
                .wmore
                .as_ref()
                .and_then(|q| q.chunks.back())
                .map_or(0, |b| b.capacity() - b.len());
            let fresh = (room < add).then(|| self.buffer_for(add.max(POOLED_BUFFER_MAX / 2)));
            let q = c.wmore.get_or_insert_with(Default::default);
            if let Some(b) = fresh {
                q.chunks.push_back(b);
            }
            q.bytes += add;
            q.chunks.back_mut().expect("a chunk was pushed")
        };
        for p in parts {
            if skip >= p.len() {
                skip -= p.len();
                continue;
            }
            buf.extend_from_slice(&p[skip..]);
            skip = 0;
        }
    }

    /// An empty buffer for `n` bytes: a pooled large one when it is large.
    fn buffer_for(&mut self, n: usize) -> Vec<u8> {
        let mut b = if n > POOLED_BUFFER_MAX {
            self.take_big_buf(n).unwrap_or_default()
        } else {
            self.take_buf(n)
        };
        b.reserve(n);
        b
    }

    /// Queues the connection for the next flush point. When the event queue is empty the
    /// application may not call again before sleeping on the manager's fd: wake that fd
    /// so the bytes still go out at its next poll.
    pub fn mark_dirty(&mut self, c: &mut Conn) {
        if !c.dirty {
            c.dirty = true;
            self.dirty.push(c.id);
        }
        if !self.in_poll && self.queue.is_empty() {
            self.needs_wake = true;
        }
    }

    /// Writes buffered bytes until the socket stops taking them; then finishes a
    /// graceful close or emits a drain event as due.
    pub fn flush(&mut self, c: &mut Conn) {
        let Some(stream) = c.stream.as_mut() else {
            return;
        };
        if c.state == State::Connecting {
            return;
        }
        match stream.flush_pending() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) => {
                self.close_now(
                    c,
                    true,
                    Some((crate::error::code::IO, format!("write failed: {e}"))),
                );
                return;
            }
        }
        if stream.is_handshaking() {
            return;
        }
        loop {
            let mut blocked = false;
            while c.wpos < c.wbuf.len() {
                match stream.write(&c.wbuf[c.wpos..]) {
                    Ok(0) => {
                        blocked = true;
                        break;
                    }
                    Ok(n) => c.wpos += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        blocked = true;
                        break;
                    }
                    Err(e) => {
                        self.close_now(
                            c,
                            true,
                            Some((crate::error::code::IO, format!("write failed: {e}"))),
                        );
                        return;
                    }
                }
            }
            if blocked {
                break;
            }
            // The head is written: the next chunk of the queue takes its place.
            let Some(q) = c.wmore.as_mut() else { break };
            let Some(next) = q.chunks.pop_front() else {
                c.wmore = None;
                break;
            };
            q.bytes -= next.len();
            if q.chunks.is_empty() {
                c.wmore = None;
            }
            let done = std::mem::replace(&mut c.wbuf, next);
            c.wpos = 0;
            self.give_buf(done);
        }
        if c.buffered() > 0 {
            // The socket is full: the rest goes out on its writable edge.
            if c.buffered() > c.cfg.send_low_water {
                c.drain_armed = true;
            }
            self.want_write(c);
        }
        if c.buffered() == 0 && c.file.is_some() && c.state == State::Open {
            super::http::pump_file(self, c);
            if c.stream.is_none() {
                return;
            }
        }
        if c.wpos == c.wbuf.len() && c.wbuf.capacity() > 0 {
            let b = std::mem::take(&mut c.wbuf);
            self.give_buf(b);
            c.wpos = 0;
        }
        if c.drain_armed && c.buffered() <= c.cfg.send_low_water && c.state == State::Open {
            c.drain_armed = false;
            let ev = Event::new(EventKind::Drain, c.id);
            self.push_for(c, ev);
        }
        if c.state == State::Closing
            && c.buffered() == 0
            && !c.stream.as_ref().is_some_and(|s| s.wants_write())
        {
            self.start_linger(c);
        }
    }

    /// Closes gracefully: stop taking sends, flush, shut down the write side, discard
    /// input until the peer closes (so our last bytes are not lost to a reset).
    pub fn close_graceful(&mut self, c: &mut Conn) {
        match c.state {
            State::Open | State::Connecting if c.stream.is_some() => {
                c.state = State::Closing;
                self.flush(c);
                self.schedule(c);
            }
            _ => {}
        }
    }

    fn start_linger(&mut self, c: &mut Conn) {
        if c.peer_eof {
            // The peer had half-closed first (e.g. after its request): its close.
            self.close_now(c, true, None);
            return;
        }
        if let Some(s) = c.stream.as_mut() {
            s.shutdown_write();
        }
        c.state = State::Lingering;
        c.last_read = self.now_tick;
        self.schedule(c);
    }

    /// Closes at once: the socket goes, buffers are freed, an optional error event and
    /// then the close event are queued. The entry stays until the close event is drained.
    pub fn close_now(&mut self, c: &mut Conn, by_peer: bool, error: Option<(i32, String)>) {
        let Some(mut stream) = c.stream.take() else {
            return;
        };
        let _ = self.registry.deregister(stream.tcp_mut());
        drop(stream);
        self.conn_count = self.conn_count.saturating_sub(1);
        c.state = State::Closed;
        c.file = None;
        let r = std::mem::take(&mut c.rbuf);
        self.give_buf(r);
        if let Some(q) = c.wmore.take() {
            for b in q.chunks {
                self.give_buf(b);
            }
        }
        let w = std::mem::take(&mut c.wbuf);
        self.give_buf(w);
        c.wpos = 0;
        if let Some((code, text)) = error {
            let mut ev = Event::new(EventKind::Error, c.id).with_data(Payload::from(text));
            ev.code = code;
            ev.parent = c.parent;
            self.push(ev);
        }
        let mut ev = Event::new(EventKind::Close, c.id);
        ev.parent = c.parent;
        if by_peer {
            ev.flags |= FLAG_BY_PEER;
        }
        super::ws::close_event(c, &mut ev);
        self.push(ev);
    }
}
