//! Empty buffers kept for reuse, bounded in count and in bytes.
//!
//! A manager hands out a buffer for every message it delivers and every send it
//! queues. Freeing them and allocating again costs more than the malloc call: with
//! thousands of messages in flight (100 connections, 16 in flight each) glibc gives
//! the freed top of its heap back to the kernel and then faults it in again, page
//! by page: a fifth of the server's CPU at 4 KiB messages, 16 in flight. Keeping
//! them here avoids that, within bounds of count and bytes.

/// A stack of cleared buffers; the most recently returned is handed out first.
#[derive(Debug)]
pub struct BufPool {
    bufs: Vec<Vec<u8>>,
    bytes: usize,
    max_count: usize,
    max_bytes: usize,
}

impl BufPool {
    /// An empty pool that keeps at most `max_count` buffers and `max_bytes` of capacity.
    pub const fn new(max_count: usize, max_bytes: usize) -> Self {
        Self {
            bufs: Vec::new(),
            bytes: 0,
            max_count,
            max_bytes,
        }
    }

    /// An empty pool that keeps nothing: every `push` drops its buffer.
    pub const fn none() -> Self {
        Self::new(0, 0)
    }

    /// The most recently returned buffer (empty), if any.
    pub fn pop(&mut self) -> Option<Vec<u8>> {
        let b = self.bufs.pop()?;
        self.bytes -= b.capacity();
        Some(b)
    }

    /// The capacity of the buffer `pop` would return.
    pub fn top_capacity(&self) -> Option<usize> {
        self.bufs.last().map(Vec::capacity)
    }

    /// Keeps `b` (cleared) when there is room; otherwise frees it. True when kept.
    pub fn push(&mut self, mut b: Vec<u8>) -> bool {
        let cap = b.capacity();
        if cap == 0 || self.bufs.len() >= self.max_count || self.bytes + cap > self.max_bytes {
            return false;
        }
        b.clear();
        self.bytes += cap;
        self.bufs.push(b);
        true
    }

    /// Buffers kept.
    pub fn len(&self) -> usize {
        self.bufs.len()
    }

    /// Whether no buffer is kept.
    pub fn is_empty(&self) -> bool {
        self.bufs.is_empty()
    }

    /// Capacity kept, in bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_by_count_and_bytes() {
        let mut pool = BufPool::new(3, 10_000);
        assert!(pool.push(Vec::with_capacity(4000)));
        assert!(pool.push(Vec::with_capacity(4000)));
        // Over the byte bound.
        assert!(!pool.push(Vec::with_capacity(4000)));
        assert!(pool.push(Vec::with_capacity(100)));
        // Over the count bound.
        assert!(!pool.push(Vec::with_capacity(1)));
        assert_eq!(pool.len(), 3);
        assert!(pool.bytes() >= 8100);
        let top = pool.top_capacity().unwrap();
        let b = pool.pop().unwrap();
        assert_eq!(b.capacity(), top);
        assert!(b.is_empty());
        assert_eq!(pool.len(), 2);
        assert!(pool.bytes() >= 8000 && pool.bytes() < 8100);
        // Empty buffers are not kept; a kept buffer comes back cleared.
        assert!(!pool.push(Vec::new()));
        assert!(pool.push(vec![1, 2, 3]));
        assert_eq!(pool.pop().unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn none_keeps_nothing() {
        let mut pool = BufPool::none();
        assert!(!pool.push(Vec::with_capacity(10)));
        assert!(pool.pop().is_none() && pool.is_empty());
    }
}
