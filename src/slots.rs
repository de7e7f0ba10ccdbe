//! A table of values addressed by generational ids.
//!
//! An id packs a slot index and the generation of that slot: `gen << 24 | index`,
//! with bit 52 free for a kind tag (see [`TIMER_TAG`]). Each time a slot is vacated its
//! generation goes up, so an id is never handed out twice in the life of a table. A slot
//! whose generation would wrap is retired instead of reused. Ids stay below 2^53, so
//! they are exact in a double (Lua numbers, JavaScript numbers).

/// Bits of an id that hold the slot index: at most 16M live entries per table.
const INDEX_BITS: u32 = 24;
/// Bits of an id that hold the generation.
const GEN_BITS: u32 = 28;
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;
const GEN_MAX: u32 = (1 << GEN_BITS) - 1;

/// Bits an id may use: index, generation and the tag bit (ids stay below 2^53).
const ID_BITS: u32 = INDEX_BITS + GEN_BITS + 1;

/// Tag bit set in timer ids so that a timer id never names a connection and vice versa.
pub(crate) const TIMER_TAG: u64 = 1 << (INDEX_BITS + GEN_BITS);

struct Slot<T> {
    gen: u32,
    value: Option<T>,
}

/// A slab whose keys are generational ids.
pub struct Slots<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    tag: u64,
    len: usize,
}

impl<T> Slots<T> {
    /// An empty table whose ids carry `tag` (0 or [`TIMER_TAG`]).
    pub fn new(tag: u64) -> Self {
        Slots {
            slots: Vec::new(),
            free: Vec::new(),
            tag,
            len: 0,
        }
    }

    /// Number of occupied slots.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no slot is occupied.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The id the next [`Slots::insert`] will return, or `None` when the table is full.
    pub fn next_id(&self) -> Option<u64> {
        match self.free.last() {
            Some(&i) => Some(self.make_id(i, self.slots[i as usize].gen)),
            None if self.slots.len() as u64 <= INDEX_MASK => {
                Some(self.make_id(self.slots.len() as u32, 1))
            }
            None => None,
        }
    }

    /// Stores `value` (built from its own id) and returns the id, or gives the
    /// closure back unused (`None`) when all 16M slots are taken.
    pub fn insert_with(&mut self, make: impl FnOnce(u64) -> T) -> Option<u64> {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                if self.slots.len() as u64 > INDEX_MASK {
                    return None;
                }
                self.slots.push(Slot {
                    gen: 1,
                    value: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let id = self.make_id(index, self.slots[index as usize].gen);
        self.slots[index as usize].value = Some(make(id));
        self.len += 1;
        Some(id)
    }

    fn make_id(&self, index: u32, gen: u32) -> u64 {
        self.tag | (u64::from(gen) << INDEX_BITS) | u64::from(index)
    }

    /// Slot index of an id (whether or not it is live): the mio token of a socket.
    pub fn index_of(id: u64) -> usize {
        (id & INDEX_MASK) as usize
    }

    fn locate(&self, id: u64) -> Option<usize> {
        // Only ids this table could have issued: below 2^53, with its own tag. Masking
        // the high bits away instead would let a forged id alias a live entry.
        if id >> ID_BITS != 0 || id & TIMER_TAG != self.tag {
            return None;
        }
        let index = (id & INDEX_MASK) as usize;
        let gen = ((id >> INDEX_BITS) & u64::from(GEN_MAX)) as u32;
        let slot = self.slots.get(index)?;
        (slot.gen == gen && slot.value.is_some()).then_some(index)
    }

    /// The value behind a live id.
    pub fn get(&self, id: u64) -> Option<&T> {
        let i = self.locate(id)?;
        self.slots[i].value.as_ref()
    }

    /// The value behind a live id, mutably.
    pub fn get_mut(&mut self, id: u64) -> Option<&mut T> {
        let i = self.locate(id)?;
        self.slots[i].value.as_mut()
    }

    /// The value in a slot, by index (for mio tokens), whatever its generation.
    pub fn at_mut(&mut self, index: usize) -> Option<&mut T> {
        self.slots.get_mut(index)?.value.as_mut()
    }

    /// Takes the value out; the id is dead from now on.
    pub fn remove(&mut self, id: u64) -> Option<T> {
        let i = self.locate(id)?;
        let slot = &mut self.slots[i];
        let value = slot.value.take();
        self.len -= 1;
        if slot.gen < GEN_MAX {
            slot.gen += 1;
            self.free.push(i as u32);
        }
        value
    }

    /// Ids of every live entry (a snapshot).
    pub fn ids(&self) -> Vec<u64> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.value.is_some())
            .map(|(i, s)| self.make_id(i as u32, s.gen))
            .collect()
    }

    /// Iterates over live values.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.slots.iter_mut().filter_map(|s| s.value.as_mut())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_not_reused_and_stale_ids_miss() {
        let mut t = Slots::new(0);
        let a = t.insert_with(|_| "a").unwrap();
        assert_eq!(t.get(a), Some(&"a"));
        assert_eq!(t.remove(a), Some("a"));
        assert_eq!(t.get(a), None);
        let b = t.insert_with(|_| "b").unwrap();
        assert_ne!(a, b, "same slot, new generation");
        assert_eq!(Slots::<()>::index_of(a), Slots::<()>::index_of(b));
        assert_eq!(t.get(a), None);
        assert_eq!(t.remove(a), None);
        assert_eq!(t.get(b), Some(&"b"));
        assert!(b < (1 << 53));
    }

    #[test]
    fn tags_separate_tables_and_zero_is_never_an_id() {
        let mut conns = Slots::new(0);
        let mut timers = Slots::new(TIMER_TAG);
        let c = conns.insert_with(|_| 1).unwrap();
        let t = timers.insert_with(|_| 2).unwrap();
        assert_ne!(c, 0);
        assert_eq!(Slots::<u8>::index_of(c), Slots::<u8>::index_of(t));
        assert_eq!(conns.get(t), None);
        assert_eq!(timers.get(c), None);
        assert_eq!(conns.next_id(), Some(conns.make_id(1, 1)));
    }

    #[test]
    fn ids_with_bits_above_52_name_nothing() {
        let mut conns = Slots::new(0);
        let mut timers = Slots::new(TIMER_TAG);
        let c = conns.insert_with(|_| 1).unwrap();
        let t = timers.insert_with(|_| 2).unwrap();
        for bit in 53..64 {
            let forged = c | (1 << bit);
            assert_eq!(conns.get(forged), None, "bit {bit}");
            assert_eq!(conns.get_mut(forged), None, "bit {bit}");
            assert_eq!(conns.remove(forged), None, "bit {bit}");
            assert_eq!(timers.get(t | (1 << bit)), None, "bit {bit}");
        }
        assert_eq!(conns.get(c | (0x7ff << 53)), None);
        assert_eq!(conns.get(u64::MAX), None);
        assert_eq!(conns.get(c), Some(&1));
        assert_eq!(timers.get(t), Some(&2));
    }

    #[test]
    fn a_slot_retires_when_its_generation_is_spent() {
        let mut t = Slots::new(0);
        let id = t.insert_with(|_| ()).unwrap();
        t.slots[0].gen = GEN_MAX;
        let last = t.make_id(0, GEN_MAX);
        t.slots[0].value = Some(());
        let _ = id;
        assert!(t.remove(last).is_some());
        let next = t.insert_with(|_| ()).unwrap();
        assert_eq!(
            Slots::<()>::index_of(next),
            1,
            "retired slot 0 is not reused"
        );
    }
}
