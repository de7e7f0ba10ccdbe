//! Randomness for masking keys and handshake nonces.
//!
//! RFC 6455 §5.3: "The masking key needs to be unpredictable; thus, the
//! masking key MUST be derived from a strong source of entropy, and the
//! masking key for a given frame MUST NOT make it simple for a server or
//! proxy to predict the masking key for a subsequent frame."

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// Fills `buf` from the operating system's CSPRNG.
///
/// Should the OS source ever fail, falls back to SipHash keyed by std's
/// per-process random keys over a counter and the clock: still unpredictable
/// to the peer, and a client must not stop working (or panic) over it.
pub(super) fn fill(buf: &mut [u8]) {
    if getrandom::fill(buf).is_ok() {
        return;
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    for (i, chunk) in buf.chunks_mut(8).enumerate() {
        // Each RandomState::new() gets fresh keys (the thread's keys plus a
        // counter), so consecutive outputs are unrelated.
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u128(nanos);
        hasher.write_usize(i);
        let word = hasher.finish().to_ne_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
}

/// Masking keys drawn from a buffer refilled in bulk, so that a client
/// sending many small frames does not make one system call per frame.
#[derive(Clone)]
pub(super) struct MaskKeys {
    buf: [u8; 256],
    used: usize,
}

/// Hides the buffer: it holds the keys of frames not sent yet, which must
/// stay unpredictable and so out of logs.
impl std::fmt::Debug for MaskKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaskKeys").finish_non_exhaustive()
    }
}

impl MaskKeys {
    pub(super) fn new() -> Self {
        Self {
            buf: [0; 256],
            used: 256,
        }
    }

    /// A fresh key for the next frame.
    pub(super) fn next_key(&mut self) -> [u8; 4] {
        if self.used + 4 > self.buf.len() {
            fill(&mut self.buf);
            self.used = 0;
        }
        let mut key = [0; 4];
        key.copy_from_slice(&self.buf[self.used..self.used + 4]);
        self.used += 4;
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_across_refills() {
        let mut keys = MaskKeys::new();
        let all: Vec<[u8; 4]> = (0..1000).map(|_| keys.next_key()).collect();
        let mut distinct = all.clone();
        distinct.sort_unstable();
        distinct.dedup();
        // 1000 draws from 2^32: a collision is possible but vanishingly rare.
        assert!(distinct.len() >= 998);
    }

    #[test]
    fn fill_covers_odd_lengths() {
        let mut a = [0u8; 13];
        let mut b = [0u8; 13];
        fill(&mut a);
        fill(&mut b);
        assert_ne!(a, b);
    }
}
