//! The part of a manager that other threads may touch: a bounded lock-free queue and a
//! waker.
//!
//! Two bounds keep producers from hurting the polling thread:
//! * the queue holds at most `max_bytes` (payloads plus a fixed cost per item, so empty
//!   wakeups count too); a push beyond it is refused and the producer is told, rather
//!   than memory growing until the allocator gives up;
//! * a poll takes at most [`BATCH_ITEMS`] items or [`BATCH_BYTES`] bytes and leaves the
//!   rest signalled, so producers that never stop cannot keep `wss_mgr_poll` from
//!   returning: the next poll takes the next batch at once.

use crossbeam_queue::SegQueue;
use mio::Waker;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// What one queued item costs besides its payload: the queue slot, the `Vec` header and
/// the event it turns into. Counting it bounds a flood of empty wakeups as well.
pub const ITEM_COST: usize = 64;
/// Most items one poll takes from the queue.
pub const BATCH_ITEMS: usize = 4096;
/// Most payload bytes one poll takes from the queue (an item is never split; the batch
/// ends after the item that crosses this).
pub const BATCH_BYTES: usize = 4 << 20;

/// Work handed to the polling thread by other threads.
#[derive(Debug)]
pub enum Cross {
    /// Surfaces as a wakeup event with this connection id and data.
    Wakeup {
        /// Connection id the application passed (0 allowed).
        conn: u64,
        /// Bytes to hand over.
        data: Vec<u8>,
    },
    /// Sends bytes on a connection (raw bytes, or a WebSocket message of `opcode`).
    Send {
        /// Target connection.
        conn: u64,
        /// Bytes to send.
        data: Vec<u8>,
        /// WebSocket opcode, or 0 for raw bytes.
        opcode: u32,
    },
}

impl Cross {
    /// What the item counts against the queue's bound.
    fn cost(&self) -> usize {
        let len = match self {
            Cross::Wakeup { data, .. } | Cross::Send { data, .. } => data.len(),
        };
        len.saturating_add(ITEM_COST)
    }
}

/// Why a push was refused.
#[derive(Debug)]
pub enum PushError {
    /// The queue holds its most bytes already: the polling thread is behind.
    Full {
        /// The bound, in bytes.
        limit: usize,
    },
    /// Waking the poller failed (the eventfd write).
    Wake(io::Error),
}

/// Shared between the polling thread and any other thread.
#[derive(Debug)]
pub struct Shared {
    queue: SegQueue<Cross>,
    waker: Waker,
    /// Set once a wake is in flight, so a burst of pushes costs one eventfd write.
    signaled: AtomicBool,
    /// Cost of what is queued (see [`Cross::cost`]).
    bytes: AtomicUsize,
    /// Bound on `bytes`.
    max_bytes: usize,
}

impl Shared {
    /// Wraps a waker; the queue holds at most `max_bytes` (see [`ITEM_COST`]).
    pub fn new(waker: Waker, max_bytes: usize) -> Shared {
        Shared {
            queue: SegQueue::new(),
            waker,
            signaled: AtomicBool::new(false),
            bytes: AtomicUsize::new(0),
            max_bytes,
        }
    }

    /// Queues work and wakes the poller. Callable from any thread. Refused (nothing
    /// queued) when the queue is full.
    pub fn push(&self, item: Cross) -> Result<(), PushError> {
        let cost = item.cost();
        // Reserve first, so that concurrent producers cannot all pass the check.
        let before = self.bytes.fetch_add(cost, Ordering::AcqRel);
        if before.saturating_add(cost) > self.max_bytes {
            self.bytes.fetch_sub(cost, Ordering::AcqRel);
            return Err(PushError::Full {
                limit: self.max_bytes,
            });
        }
        self.queue.push(item);
        self.wake().map_err(PushError::Wake)
    }

    /// Wakes the poller without queuing anything.
    pub fn wake(&self) -> io::Result<()> {
        if !self.signaled.swap(true, Ordering::AcqRel) {
            self.waker.wake()?;
        }
        Ok(())
    }

    /// Takes one batch of what is queued (see [`BATCH_ITEMS`], [`BATCH_BYTES`]). Clears
    /// the signal first, so a push racing with this call either is taken now or wakes
    /// the poller again; when a batch leaves items behind, the poller is woken again
    /// for them. Returns how many items were taken.
    pub fn drain(&self, mut f: impl FnMut(Cross)) -> usize {
        self.signaled.store(false, Ordering::Release);
        let (mut items, mut bytes) = (0, 0);
        while items < BATCH_ITEMS && bytes < BATCH_BYTES {
            let Some(item) = self.queue.pop() else { break };
            let cost = item.cost();
            self.bytes.fetch_sub(cost, Ordering::AcqRel);
            items += 1;
            bytes += cost;
            f(item);
        }
        if !self.queue.is_empty() {
            let _ = self.wake();
        }
        items
    }

    /// Cost of what is queued now (for tests and diagnostics).
    pub fn queued_bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(max: usize) -> (mio::Poll, Shared) {
        let poll = mio::Poll::new().unwrap();
        let waker = Waker::new(poll.registry(), mio::Token(0)).unwrap();
        (poll, Shared::new(waker, max))
    }

    fn wakeup(n: usize) -> Cross {
        Cross::Wakeup {
            conn: 0,
            data: vec![0; n],
        }
    }

    #[test]
    fn refuses_beyond_its_bound_and_takes_again_once_drained() {
        let (_poll, s) = shared(10 * ITEM_COST);
        for _ in 0..10 {
            s.push(wakeup(0)).unwrap();
        }
        assert!(matches!(s.push(wakeup(0)), Err(PushError::Full { .. })));
        assert_eq!(s.queued_bytes(), 10 * ITEM_COST);
        assert_eq!(s.drain(|_| {}), 10);
        assert_eq!(s.queued_bytes(), 0);
        s.push(wakeup(0)).unwrap();
    }

    #[test]
    fn a_drain_takes_one_batch_and_leaves_the_rest_signalled() {
        let (mut poll, s) = shared(usize::MAX);
        for _ in 0..BATCH_ITEMS + 5 {
            s.push(wakeup(0)).unwrap();
        }
        let mut events = mio::Events::with_capacity(4);
        poll.poll(&mut events, Some(std::time::Duration::ZERO))
            .unwrap();
        assert_eq!(s.drain(|_| {}), BATCH_ITEMS);
        // The rest is signalled again: the next poll does not wait.
        poll.poll(&mut events, Some(std::time::Duration::from_secs(5)))
            .unwrap();
        assert!(!events.is_empty(), "the waker fired again for the rest");
        assert_eq!(s.drain(|_| {}), 5);
    }

    #[test]
    fn a_drain_stops_after_its_byte_budget() {
        let (_poll, s) = shared(usize::MAX);
        let big = BATCH_BYTES / 2;
        for _ in 0..4 {
            s.push(wakeup(big)).unwrap();
        }
        // The item that crosses the budget is the last of the batch.
        assert_eq!(s.drain(|_| {}), 2);
        assert_eq!(s.drain(|_| {}), 2);
    }
}
