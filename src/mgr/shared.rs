//! The part of a manager that other threads may touch: a lock-free queue and a waker.

use crossbeam_queue::SegQueue;
use mio::Waker;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

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

/// Shared between the polling thread and any other thread.
#[derive(Debug)]
pub struct Shared {
    queue: SegQueue<Cross>,
    waker: Waker,
    /// Set once a wake is in flight, so a burst of pushes costs one eventfd write.
    signaled: AtomicBool,
}

impl Shared {
    /// Wraps a waker.
    pub fn new(waker: Waker) -> Shared {
        Shared {
            queue: SegQueue::new(),
            waker,
            signaled: AtomicBool::new(false),
        }
    }

    /// Queues work and wakes the poller. Callable from any thread.
    pub fn push(&self, item: Cross) -> io::Result<()> {
        self.queue.push(item);
        if !self.signaled.swap(true, Ordering::AcqRel) {
            self.waker.wake()?;
        }
        Ok(())
    }

    /// Wakes the poller without queuing anything.
    pub fn wake(&self) -> io::Result<()> {
        if !self.signaled.swap(true, Ordering::AcqRel) {
            self.waker.wake()?;
        }
        Ok(())
    }

    /// Takes everything queued. Clears the signal first, so a push racing with this
    /// call either is taken now or wakes the poller again.
    pub fn drain(&self, mut f: impl FnMut(Cross)) {
        self.signaled.store(false, Ordering::Release);
        while let Some(item) = self.queue.pop() {
            f(item);
        }
    }
}
