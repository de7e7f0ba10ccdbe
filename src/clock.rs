//! Compact timestamps for per-connection state: milliseconds since the process first
//! used this clock, stored in a `u64` (8 bytes instead of an `Instant`'s 16, which
//! counts when every idle connection carries several).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// The clock's origin, fixed by its first use (a manager's creation).
pub fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

/// A point in time as a tick: milliseconds since the epoch, plus one, so that 0 can mean
/// "none" in fields that hold an optional time.
pub fn tick(t: Instant) -> u64 {
    t.saturating_duration_since(epoch()).as_millis() as u64 + 1
}

/// Like [`tick`] but rounded up: the tick's instant is never before `t`. Deadlines use
/// it, so that a deadline found due is really due (rounding down could make the check
/// find it a fraction of a millisecond early and schedule it again, forever).
pub fn tick_ceil(t: Instant) -> u64 {
    let d = t.saturating_duration_since(epoch());
    let ms = d.as_millis() as u64 + u64::from(d.subsec_nanos() % 1_000_000 != 0);
    ms + 1
}

/// The tick of `t + d`, rounded up like [`tick_ceil`] (0 reads as the epoch): the same
/// value as `tick_ceil(instant(t) + d)`, since a tick is a whole number of milliseconds.
pub fn tick_after(t: u64, d: Duration) -> u64 {
    let ms = d.as_millis() as u64 + u64::from(d.subsec_nanos() % 1_000_000 != 0);
    t.max(1).saturating_add(ms)
}

/// The instant of a tick (0 reads as the epoch).
pub fn instant(t: u64) -> Instant {
    epoch() + Duration::from_millis(t.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_round_trip_to_the_millisecond_and_are_never_zero() {
        epoch();
        let now = Instant::now();
        let t = tick(now);
        assert!(t >= 1);
        let back = instant(t);
        assert!(back <= now && now - back < Duration::from_millis(1));
        assert!(tick(now + Duration::from_secs(3)) - t >= 2999);
        assert!(instant(tick_ceil(now)) >= now);
        for d in [0, 1, 999_999, 1_000_000, 1_000_001, 2_500_000_000] {
            let d = Duration::from_nanos(d);
            assert_eq!(tick_after(t, d), tick_ceil(instant(t) + d), "{d:?}");
            assert_eq!(tick_after(0, d), tick_ceil(instant(0) + d), "{d:?}");
        }
    }
}
