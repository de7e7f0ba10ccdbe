//! Empty buffers kept for reuse, sorted by size, bounded in count and in bytes.
//!
//! A manager hands out a buffer for every message it delivers and every send it
//! queues. Freeing them and allocating again costs more than the malloc call: with
//! thousands of messages in flight (100 connections, 16 in flight each) glibc gives
//! the freed top of its heap back to the kernel and then faults it in again, page
//! by page: a fifth of the server's CPU at 4 KiB messages, 16 in flight. Keeping
//! them here avoids that, within bounds of count and bytes.
//!
//! Buffers are kept by size class (capacities from 2^k to 2^(k+1)), each class
//! bounded in count on its own, so that a burst of small messages cannot fill the
//! pool and leave no room for the next burst of larger ones; and when the bytes
//! bound is reached, a buffer returned to a class in use evicts buffers of a class
//! nobody has asked for since (traffic that changed size).

/// Classes: capacities below 1 KiB, then one per power of two up to 16 MiB and above.
const CLASSES: usize = 16;
/// The first class boundary is 2^MIN_SHIFT (1 KiB).
const MIN_SHIFT: u32 = 10;

/// The class of a capacity (or of a size asked for).
fn class_of(cap: usize) -> usize {
    let bits = usize::BITS - cap.leading_zeros(); // 2^(bits-1) <= cap < 2^bits
    (bits.saturating_sub(MIN_SHIFT) as usize).min(CLASSES - 1)
}

/// Stacks of cleared buffers by size class; the most recently returned is handed out
/// first.
#[derive(Debug)]
pub struct BufPool {
    classes: [Vec<Vec<u8>>; CLASSES],
    /// When each class was last asked for (a count of requests, not a time).
    last_use: [u64; CLASSES],
    draws: u64,
    bytes: usize,
    max_per_class: usize,
    max_bytes: usize,
}

impl BufPool {
    /// An empty pool that keeps at most `max_per_class` buffers of each size class and
    /// `max_bytes` of capacity in all.
    pub fn new(max_per_class: usize, max_bytes: usize) -> Self {
        Self {
            classes: Default::default(),
            last_use: [0; CLASSES],
            draws: 0,
            bytes: 0,
            max_per_class,
            max_bytes,
        }
    }

    /// An empty pool that keeps nothing: every `push` drops its buffer.
    pub fn none() -> Self {
        Self::new(0, 0)
    }

    /// A kept buffer (empty) with a capacity of at least `n`, the smallest class first.
    #[inline]
    pub fn pop_at_least(&mut self, n: usize) -> Option<Vec<u8>> {
        let first = self.note_demand(n);
        let class = (first..CLASSES).find(|&k| {
            self.classes[k]
                .last()
                .is_some_and(|b| b.capacity() >= n.max(1))
        })?;
        self.take_from(class)
    }

    /// A kept buffer (empty) with a capacity from `n` to `max_cap`, if one is at hand.
    #[inline]
    pub fn pop_fit(&mut self, n: usize, max_cap: usize) -> Option<Vec<u8>> {
        let first = self.note_demand(n);
        let class = (first..CLASSES.min(first + 2)).find(|&k| {
            self.classes[k]
                .last()
                .is_some_and(|b| b.capacity() >= n && b.capacity() <= max_cap)
        })?;
        self.take_from(class)
    }

    /// Marks the class of a request for `n` bytes as in use, found or not; returns it.
    #[inline]
    fn note_demand(&mut self, n: usize) -> usize {
        let class = class_of(n);
        self.draws += 1;
        self.last_use[class] = self.draws;
        class
    }

    #[inline]
    fn take_from(&mut self, class: usize) -> Option<Vec<u8>> {
        let b = self.classes[class].pop()?;
        self.bytes -= b.capacity();
        Some(b)
    }

    /// Whether `need` more bytes fit, after freeing buffers of staler classes if need be.
    #[inline]
    fn make_room(&mut self, class: usize, need: usize) -> bool {
        self.bytes + need <= self.max_bytes || self.evict_for(class, need)
    }

    /// Frees buffers of classes asked for less recently than `class` until `need`
    /// more bytes fit; false when they do not.
    #[cold]
    fn evict_for(&mut self, class: usize, need: usize) -> bool {
        while self.bytes + need > self.max_bytes {
            let stalest = (0..CLASSES)
                .filter(|&k| k != class && !self.classes[k].is_empty())
                .min_by_key(|&k| self.last_use[k]);
            let Some(k) = stalest.filter(|&k| self.last_use[k] < self.last_use[class]) else {
                return false;
            };
            let b = self.classes[k].pop().expect("not empty");
            self.bytes -= b.capacity();
        }
        true
    }

    /// Keeps `b` (cleared) when its class and the byte bound have room, making room
    /// from staler classes if need be; otherwise frees it. True when kept.
    #[inline]
    pub fn push(&mut self, mut b: Vec<u8>) -> bool {
        let cap = b.capacity();
        let class = class_of(cap);
        if cap == 0 || cap > self.max_bytes || self.classes[class].len() >= self.max_per_class {
            return false;
        }
        if !self.make_room(class, cap) {
            return false;
        }
        b.clear();
        self.bytes += cap;
        self.classes[class].push(b);
        true
    }

    /// Buffers kept.
    pub fn len(&self) -> usize {
        self.classes.iter().map(Vec::len).sum()
    }

    /// Whether no buffer is kept.
    pub fn is_empty(&self) -> bool {
        self.classes.iter().all(Vec::is_empty)
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
    fn classes_are_powers_of_two_from_1_kib() {
        assert_eq!(class_of(0), 0);
        assert_eq!(class_of(1023), 0);
        assert_eq!(class_of(1024), 1);
        assert_eq!(class_of(2047), 1);
        assert_eq!(class_of(4096), 3);
        assert_eq!(class_of(64 << 10), 7);
        assert_eq!(class_of(usize::MAX), CLASSES - 1);
    }

    #[test]
    fn bounded_by_count_per_class_and_by_bytes() {
        let mut pool = BufPool::new(2, 20_000);
        assert!(pool.push(Vec::with_capacity(4096)));
        assert!(pool.push(Vec::with_capacity(4096)));
        // That class is full; another class still has room.
        assert!(!pool.push(Vec::with_capacity(4096)));
        assert!(pool.push(Vec::with_capacity(100)));
        assert!(pool.push(Vec::with_capacity(200)));
        assert!(!pool.push(Vec::with_capacity(300)));
        // Over the byte bound.
        assert!(!pool.push(Vec::with_capacity(16_384)));
        assert_eq!(pool.len(), 4);
        assert!(pool.bytes() >= 2 * 4096 + 300);
        // Empty buffers are not kept; a kept buffer comes back cleared.
        assert!(!pool.push(Vec::new()));
        let mut b = pool.pop_at_least(4000).unwrap();
        assert!(b.capacity() >= 4000 && b.is_empty());
        b.extend_from_slice(b"abc");
        assert!(pool.push(b));
        assert_eq!(pool.pop_at_least(4096).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn a_burst_of_small_buffers_leaves_room_for_large_ones() {
        let mut pool = BufPool::new(100, 1 << 30);
        for _ in 0..100 {
            assert!(pool.push(Vec::with_capacity(16)));
        }
        assert!(!pool.push(Vec::with_capacity(16)));
        assert!(pool.push(Vec::with_capacity(4096)));
        assert_eq!(
            pool.pop_fit(4096, 8192).map(|b| b.capacity() >= 4096),
            Some(true)
        );
    }

    #[test]
    fn traffic_that_changes_size_takes_the_bytes_of_the_old_size() {
        let mut pool = BufPool::new(100, 10 * 4096);
        // A burst of 4 KiB messages fills the byte bound.
        for _ in 0..10 {
            assert!(pool.push(Vec::with_capacity(4096)));
        }
        assert!(!pool.push(Vec::with_capacity(4096)));
        // A class nobody asks for does not evict one that nobody asks for either.
        assert!(!pool.push(Vec::with_capacity(16_384)));
        // Traffic moves to 16 KiB messages: asked for (and missing), then returned: the
        // class in use takes the room of the stale 4 KiB class.
        assert!(pool.pop_fit(16_384, 32_768).is_none());
        assert!(pool.push(Vec::with_capacity(16_384)));
        assert!(pool.bytes() <= 10 * 4096);
        assert_eq!(pool.len(), 1 + 6);
        // The other way round: the 4 KiB class, drawn from now, takes room back.
        assert!(pool.pop_fit(4096, 8192).is_some());
        assert!(pool.push(Vec::with_capacity(4096)));
        assert!(pool.push(Vec::with_capacity(4096)));
        assert!(pool.bytes() <= 10 * 4096);
    }

    #[test]
    fn fit_and_at_least_respect_their_bounds() {
        let mut pool = BufPool::new(10, 1 << 30);
        assert!(pool.push(Vec::with_capacity(64 << 10)));
        // Too large to fit a 4 KiB message, but at least 4 KiB.
        assert!(pool.pop_fit(4096, 8192).is_none());
        assert!(pool.push(Vec::with_capacity(1000)));
        assert!(pool.pop_fit(4096, 8192).is_none());
        assert!(pool.pop_at_least(2000).unwrap().capacity() >= 64 << 10);
        assert!(pool.pop_at_least(2000).is_none());
        assert!(pool.pop_at_least(0).unwrap().capacity() >= 1000);
        assert!(pool.is_empty() && pool.bytes() == 0);
    }

    #[test]
    fn none_keeps_nothing() {
        let mut pool = BufPool::none();
        assert!(!pool.push(Vec::with_capacity(10)));
        assert!(pool.pop_at_least(0).is_none() && pool.is_empty());
    }
}
