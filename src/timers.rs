//! Application timers and per-connection deadlines, both kept in binary heaps with
//! lazy deletion: cancelling or moving a deadline costs nothing; a stale heap entry is
//! recognised and skipped when it reaches the top.

use crate::slots::{Slots, TIMER_TAG};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

struct Timer {
    due: Instant,
    interval: Duration,
    repeat: bool,
}

/// The furthest a timer can be: a period that would reach past it (up to `u64::MAX` ms,
/// half a billion years) waits this long instead, which is "never" for any process.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `at + d`, saturating at [`FOREVER`] from `at` instead of overflowing.
fn later(at: Instant, d: Duration) -> Instant {
    at + d.min(FOREVER)
}

/// Application timers (`wss_timer_add`).
pub struct Timers {
    slots: Slots<Timer>,
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            slots: Slots::new(TIMER_TAG),
            heap: BinaryHeap::new(),
        }
    }
}

impl Timers {
    /// Adds a timer due `after` from `now`; repeating timers fire every `after`.
    pub fn add(&mut self, now: Instant, after: Duration, repeat: bool) -> Option<u64> {
        let due = later(now, after);
        let id = self.slots.insert_with(|_| Timer {
            due,
            interval: after,
            repeat,
        })?;
        self.heap.push(Reverse((due, id)));
        Some(id)
    }

    /// Cancels a timer; false when the id is not a live timer.
    pub fn cancel(&mut self, id: u64) -> bool {
        self.slots.remove(id).is_some()
    }

    /// When the next live timer is due.
    pub fn next_due(&mut self) -> Option<Instant> {
        while let Some(&Reverse((due, id))) = self.heap.peek() {
            match self.slots.get(id) {
                Some(t) if t.due == due => return Some(due),
                _ => {
                    self.heap.pop();
                }
            }
        }
        None
    }

    /// Pops every timer due at `now`, re-arming repeating ones, and appends their ids.
    pub fn pop_due(&mut self, now: Instant, fired: &mut Vec<u64>) {
        while let Some(due) = self.next_due() {
            if due > now {
                break;
            }
            let Reverse((_, id)) = self.heap.pop().expect("peeked");
            fired.push(id);
            let t = self.slots.get_mut(id).expect("next_due checked it");
            if t.repeat {
                // Skip missed periods rather than firing a burst after a stall.
                let mut next = later(t.due, t.interval);
                if next <= now {
                    next = later(now, t.interval);
                }
                t.due = next;
                self.heap.push(Reverse((next, id)));
            } else {
                self.slots.remove(id);
            }
        }
    }
}

/// Deadlines of connections: one heap entry per connection at most, re-checked when due.
/// Entries are (tick, id) pairs (see `crate::clock`): 16 bytes each.
#[derive(Default)]
pub struct Deadlines {
    heap: BinaryHeap<Reverse<(u64, u64)>>,
}

impl Deadlines {
    /// Schedules a check of connection `id` at tick `at`.
    pub fn push(&mut self, at: u64, id: u64) {
        self.heap.push(Reverse((at, id)));
    }

    /// The earliest scheduled check (may be stale).
    pub fn next(&self) -> Option<Instant> {
        self.heap
            .peek()
            .map(|Reverse((at, _))| crate::clock::instant(*at))
    }

    /// Pops one entry due at tick `now`: its tick and connection id.
    pub fn pop_due(&mut self, now: u64) -> Option<(u64, u64)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shot_repeat_and_cancel() {
        let mut t = Timers::default();
        let now = Instant::now();
        let a = t.add(now, Duration::from_millis(10), false).unwrap();
        let b = t.add(now, Duration::from_millis(5), true).unwrap();
        let c = t.add(now, Duration::from_millis(1), false).unwrap();
        assert!(t.cancel(c));
        assert!(!t.cancel(c));
        assert_eq!(t.next_due(), Some(now + Duration::from_millis(5)));
        let mut fired = Vec::new();
        t.pop_due(now + Duration::from_millis(10), &mut fired);
        assert_eq!(fired, vec![b, a]);
        fired.clear();
        t.pop_due(now + Duration::from_millis(16), &mut fired);
        assert_eq!(fired, vec![b], "repeat re-armed; one-shot gone");
        assert!(!t.cancel(a));
        assert!(t.cancel(b));
        assert_eq!(t.next_due(), None);
    }

    #[test]
    fn the_longest_periods_saturate_instead_of_overflowing() {
        let mut t = Timers::default();
        let now = Instant::now();
        t.add(now, Duration::from_millis(u64::MAX), true).unwrap();
        t.add(now, Duration::MAX, true).unwrap();
        assert_eq!(t.next_due(), Some(now + FOREVER));
        let mut fired = Vec::new();
        t.pop_due(now + FOREVER, &mut fired);
        assert_eq!(fired.len(), 2, "due at the saturated time");
        assert_eq!(
            t.next_due(),
            Some(now + FOREVER + FOREVER),
            "re-armed, no overflow"
        );
    }
}
