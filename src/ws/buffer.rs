//! Bounded buffer growth.
//!
//! `Vec`'s own growth doubles the capacity, so a buffer allowed to hold
//! `cap` bytes could end up holding an allocation of nearly `2 * cap`. Every
//! buffer that grows on a peer's behalf goes through [`reserve_capped`]
//! instead: amortised doubling, but never past the limit.

/// Makes room for `additional` more bytes in `buf`, growing geometrically but
/// never to a capacity above `max(cap, buf.len() + additional)`.
pub(super) fn reserve_capped(buf: &mut Vec<u8>, additional: usize, cap: usize) {
    let needed = buf.len().saturating_add(additional);
    if needed <= buf.capacity() {
        return;
    }
    let target = buf
        .capacity()
        .saturating_mul(2)
        .max(needed)
        .min(cap.max(needed));
    buf.reserve_exact(target - buf.len());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_is_geometric_but_capped() {
        let mut buf = Vec::new();
        let mut reallocations = 0;
        let mut last_cap = 0;
        for _ in 0..1000 {
            reserve_capped(&mut buf, 1000, 1_000_000);
            buf.extend_from_slice(&[0; 1000]);
            if buf.capacity() != last_cap {
                reallocations += 1;
                last_cap = buf.capacity();
            }
        }
        assert_eq!(buf.len(), 1_000_000);
        assert!(buf.capacity() <= 1_000_000 + 64, "{}", buf.capacity());
        assert!(reallocations < 20, "{reallocations}");
    }

    #[test]
    fn a_request_beyond_the_cap_is_still_honoured() {
        let mut buf = vec![0u8; 10];
        reserve_capped(&mut buf, 100, 50);
        assert!(buf.capacity() >= 110);
    }
}
