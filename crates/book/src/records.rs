//! `Records<T>`: records with dense ids (1, 2, 3 ...) of which only some are still held.
//!
//! The book assigns ids in order and keeps a record only while a decision may still need it
//! (an open bet, a market within its resettlement window). Lookups are by id, iteration is in
//! id order (no hash order reaches the output), a record that left costs nothing for long,
//! and `issued` counts every id ever assigned, so a new record gets the next id and a
//! forgotten one is told apart from one that never existed (`is_forgotten`).
//!
//! Most held records are recent, and the recent ones are dense: the open bets of the last
//! minutes, the transfers of the resettlement window. Those are slots of a ring
//! (`recent`, one per id from `base` to the last issued), found by subtraction: a settlement
//! looks up each of a market's bets several times, and a B-tree walk for each took about half
//! of its time (`cargo run --release -p book --example command_cost`). The few that stay much
//! longer than the rest (an outright bet open for a season) move to a `BTreeMap` (`old`) once
//! the ring would hold more than [`RING_SLACK`] empty slots per record in it, so the ring never
//! costs more than a few pointers per held record however old the oldest one is.
//!
//! Each record is boxed: a slot (or a B-tree entry) then costs a pointer, and a record of a
//! bet's full size (over 200 bytes) is not copied when the ring grows.

use std::collections::{BTreeMap, VecDeque};
use std::ops::{Index, IndexMut};

/// Empty ring slots allowed per record held in the ring (past [`RING_SLOTS_MIN`]) before the
/// oldest records move to the B-tree: memory per held record stays under `8 * (1 + RING_SLACK)`
/// bytes of slots.
pub const RING_SLACK: usize = 8;

/// Slots the ring may always hold, however few records are in it. Small in this crate's unit
/// tests, so that their few thousand records also move to the B-tree.
pub const RING_SLOTS_MIN: usize = if cfg!(test) { 8 } else { 1024 };

/// Oldest records moved from the ring to the B-tree by one change at most: the move is spread
/// over the changes that follow, so no single command pays for a long run of them.
const RING_MOVES_PER_CHANGE: usize = 16;

#[derive(Clone, Debug)]
pub struct Records<T> {
    /// Held records with indexes below `base`, by index.
    old: BTreeMap<usize, Box<T>>,
    /// One slot per index from `base` to `issued - 1`, held or not.
    recent: VecDeque<Option<Box<T>>>,
    /// Index of `recent`'s first slot.
    base: usize,
    /// Records held in `recent`.
    recent_held: usize,
    issued: usize,
}

impl<T> Default for Records<T> {
    fn default() -> Records<T> {
        Records { old: BTreeMap::new(), recent: VecDeque::new(), base: 0, recent_held: 0, issued: 0 }
    }
}

/// Equal when the same records are held under the same ids and as many ids were issued,
/// however they are laid out (a book and its copy restored from a snapshot compare equal).
impl<T: PartialEq> PartialEq for Records<T> {
    fn eq(&self, other: &Records<T>) -> bool {
        self.issued == other.issued && self.len() == other.len() && self.entries().eq(other.entries())
    }
}

impl<T: Eq> Eq for Records<T> {}

impl<T> Records<T> {
    /// Rebuilds records from the held ones and the count of ids ever issued. `index_of` gives
    /// each record's index (`id - 1`); the caller checks the result (`BookParts::check_structure`).
    pub fn from_parts(issued: u64, items: Vec<T>, index_of: impl Fn(&T) -> usize) -> Records<T> {
        let items = items.into_iter().map(|item| (index_of(&item), item)).collect();
        Records::from_indexed(issued as usize, items)
    }

    /// [`Records::from_parts`] from the records with their indexes.
    fn from_indexed(issued: usize, mut items: Vec<(usize, T)>) -> Records<T> {
        items.sort_by_key(|(index, _)| *index);
        // The ring starts at the lowest held index from which it stays dense enough; records
        // below it go to the B-tree.
        let mut base = issued;
        for (held, (index, _)) in items.iter().rev().enumerate() {
            if *index < issued && issued - index <= ring_allowance(held + 1) {
                base = *index;
            }
        }
        let mut records = Records { base, issued, ..Records::default() };
        records.recent.resize_with(issued.saturating_sub(base), || None);
        for (index, item) in items {
            records.insert(index, item);
        }
        records
    }

    /// How many ids were ever assigned: the next record gets id `issued + 1`.
    pub fn issued(&self) -> u64 {
        self.issued as u64
    }

    /// How many records are held now.
    pub fn len(&self) -> usize {
        self.old.len() + self.recent_held
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The record at `index` (`id.index()`), if it is held.
    pub fn get(&self, index: usize) -> Option<&T> {
        match index.checked_sub(self.base) {
            Some(slot) => self.recent.get(slot)?.as_deref(),
            None => self.old.get(&index).map(|item| &**item),
        }
    }

    pub fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        match index.checked_sub(self.base) {
            Some(slot) => self.recent.get_mut(slot)?.as_deref_mut(),
            None => self.old.get_mut(&index).map(|item| &mut **item),
        }
    }

    pub fn contains(&self, index: usize) -> bool {
        self.get(index).is_some()
    }

    /// True when the id was issued but its record has left.
    pub fn is_forgotten(&self, index: usize) -> bool {
        index < self.issued && !self.contains(index)
    }

    /// Stores `item` under the next index and returns that index.
    pub fn push(&mut self, item: T) -> usize {
        let index = self.issued;
        self.recent.push_back(Some(Box::new(item)));
        self.recent_held += 1;
        self.issued += 1;
        self.tidy();
        index
    }

    /// Stores `item` under an index already issued (a record moved out and back: a closed bet
    /// unpacked, `Bets`).
    pub(crate) fn put(&mut self, index: usize, item: T) {
        debug_assert!(index < self.issued, "record {} was never issued", index + 1);
        self.insert(index, item);
        self.tidy();
    }

    pub fn remove(&mut self, index: usize) -> Option<T> {
        let removed = match index.checked_sub(self.base) {
            Some(slot) => {
                let removed = self.recent.get_mut(slot)?.take()?;
                self.recent_held -= 1;
                removed
            }
            None => self.old.remove(&index)?,
        };
        self.tidy();
        Some(*removed)
    }

    /// Held records in id order.
    pub fn iter(&self) -> Iter<'_, T> {
        self.into_iter()
    }

    pub fn iter_mut(&mut self) -> impl DoubleEndedIterator<Item = &mut T> + '_ {
        self.old.values_mut().map(|item| &mut **item).chain(self.recent.iter_mut().flatten().map(|item| &mut **item))
    }

    /// Held records from `index` on, in id order.
    pub fn range_from(&self, index: usize) -> impl DoubleEndedIterator<Item = &T> + '_ {
        self.entries_from(index).map(|(_, item)| item)
    }

    /// Held records with their indexes (`id - 1`), in id order.
    pub fn entries(&self) -> impl DoubleEndedIterator<Item = (usize, &T)> + '_ {
        self.entries_from(0)
    }

    /// Held records from index `from` on, with their indexes, in id order.
    pub fn entries_from(&self, from: usize) -> impl DoubleEndedIterator<Item = (usize, &T)> + '_ {
        self.entries_in(from..usize::MAX)
    }

    /// Held records with indexes in `range`, in id order.
    pub fn range(&self, range: std::ops::Range<usize>) -> impl DoubleEndedIterator<Item = &T> + '_ {
        self.entries_in(range).map(|(_, item)| item)
    }

    /// The held record with the lowest id.
    pub fn first(&self) -> Option<&T> {
        self.iter().next()
    }

    /// Held records, cloned into a vector in id order.
    pub fn to_vec(&self) -> Vec<T>
    where
        T: Clone,
    {
        self.iter().cloned().collect()
    }

    /// Held records with indexes in `range`, with their indexes, in id order.
    fn entries_in(&self, range: std::ops::Range<usize>) -> impl DoubleEndedIterator<Item = (usize, &T)> + '_ {
        let old = self.old.range(range.start..range.end.min(self.base).max(range.start));
        // Slots of the ring in `range`: from the later of its start and `base`, to its end.
        let first = range.start.saturating_sub(self.base).min(self.recent.len());
        let last = range.end.saturating_sub(self.base).clamp(first, self.recent.len());
        let base = self.base;
        old.map(|(index, item)| (*index, &**item)).chain(
            self.recent
                .range(first..last)
                .enumerate()
                .filter_map(move |(offset, slot)| slot.as_deref().map(|item| (base + first + offset, item))),
        )
    }

    /// Stores `item` at an issued `index` (in the ring from `base` on, below it in the B-tree).
    fn insert(&mut self, index: usize, item: T) {
        match index.checked_sub(self.base).and_then(|slot| self.recent.get_mut(slot)) {
            Some(found) => {
                if found.is_none() {
                    self.recent_held += 1;
                }
                *found = Some(Box::new(item));
            }
            // Below the ring; or past the ids issued, which the caller's checks refuse
            // (`from_parts`): kept, never a panic.
            None => {
                self.old.insert(index, Box::new(item));
            }
        }
    }

    /// Drops the ring's empty slots at its front, and moves its oldest records to the B-tree
    /// while it holds more empty slots than [`RING_SLACK`] per record (a few per change).
    fn tidy(&mut self) {
        let mut moves = 0;
        loop {
            match self.recent.front() {
                Some(None) => {
                    self.recent.pop_front();
                    self.base += 1;
                }
                Some(Some(_))
                    if moves < RING_MOVES_PER_CHANGE && self.recent.len() > ring_allowance(self.recent_held) =>
                {
                    if let Some(Some(item)) = self.recent.pop_front() {
                        self.old.insert(self.base, item);
                        self.recent_held -= 1;
                    }
                    self.base += 1;
                    moves += 1;
                }
                _ => return,
            }
        }
    }
}

/// A set of indexes (`id - 1`) in index order, with lookups by subtraction: [`Records`] of
/// nothing (a `Box<()>` allocates nothing). Made for dense, mostly recent ids such as the
/// ledger's open holds. Unlike `Records`, an index may be inserted past the highest so far:
/// the slots between are empty, and past a long gap the ring restarts at the new index
/// instead (its few indexes moving to the B-tree, a move the gap's ids paid for).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexSet {
    records: Records<()>,
}

impl IndexSet {
    pub fn contains(&self, index: usize) -> bool {
        self.records.contains(index)
    }

    /// Adds `index`; false when it was in the set already.
    pub fn insert(&mut self, index: usize) -> bool {
        let records = &mut self.records;
        if records.contains(index) {
            return false;
        }
        // No id has the last index (`Id::index` of id 0, never issued): nothing to store.
        debug_assert!(index < usize::MAX, "index of id 0");
        if index >= records.issued && index < usize::MAX {
            let gap = index - records.issued;
            if gap > ring_allowance(records.recent_held + 1) {
                // Far past the ring's end (the first hold after a long time without one, a
                // set rebuilt from a long history): the ring restarts at `index`, its few
                // indexes moving to the B-tree, rather than growing by a slot per index skipped.
                let base = records.base;
                for (offset, slot) in records.recent.drain(..).enumerate() {
                    if let Some(item) = slot {
                        records.old.insert(base + offset, item);
                    }
                }
                records.recent_held = 0;
                records.base = index;
                records.issued = index;
            }
            while records.issued <= index {
                records.recent.push_back(None);
                records.issued += 1;
            }
        }
        records.insert(index, ());
        records.tidy();
        true
    }

    /// Removes `index`; false when it was not in the set.
    pub fn remove(&mut self, index: usize) -> bool {
        self.records.remove(index).is_some()
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// The indexes in the set, in order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = usize> + '_ {
        self.records.entries().map(|(index, ())| index)
    }
}

impl FromIterator<usize> for IndexSet {
    /// The set of `indexes`, laid out as [`Records::from_parts`] lays out records.
    fn from_iter<I: IntoIterator<Item = usize>>(indexes: I) -> IndexSet {
        let mut items: Vec<(usize, ())> = indexes.into_iter().map(|index| (index, ())).collect();
        items.sort_unstable_by_key(|(index, ())| *index);
        items.dedup_by_key(|(index, ())| *index);
        let issued = items.last().map_or(0, |(index, ())| index.saturating_add(1));
        IndexSet { records: Records::from_indexed(issued, items) }
    }
}

/// Slots a ring holding `held` records may have.
fn ring_allowance(held: usize) -> usize {
    held.saturating_mul(RING_SLACK + 1).saturating_add(RING_SLOTS_MIN)
}

impl<T> Index<usize> for Records<T> {
    type Output = T;

    /// The record at `index`. The book only indexes records it holds (a held record refers
    /// only to held ones, `check_invariants`); an absent one is a bug, not bad input.
    fn index(&self, index: usize) -> &T {
        match self.get(index) {
            Some(item) => item,
            None => panic!("record {} is not held", index + 1),
        }
    }
}

impl<T> IndexMut<usize> for Records<T> {
    fn index_mut(&mut self, index: usize) -> &mut T {
        match self.get_mut(index) {
            Some(item) => item,
            None => panic!("record {} is not held", index + 1),
        }
    }
}

impl<'a, T> IntoIterator for &'a Records<T> {
    type Item = &'a T;
    type IntoIter = Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        Iter { old: self.old.values(), recent: self.recent.iter(), remaining: self.len() }
    }
}

/// The held records in id order (`&Records` in a `for` loop).
#[derive(Debug)]
pub struct Iter<'a, T> {
    old: std::collections::btree_map::Values<'a, usize, Box<T>>,
    recent: std::collections::vec_deque::Iter<'a, Option<Box<T>>>,
    remaining: usize,
}

impl<'a, T> Iterator for Iter<'a, T> {
    type Item = &'a T;

    fn next(&mut self) -> Option<&'a T> {
        let item = match self.old.next() {
            Some(item) => item,
            None => self.recent.by_ref().flatten().next()?,
        };
        self.remaining -= 1;
        Some(&**item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<T> DoubleEndedIterator for Iter<'_, T> {
    fn next_back(&mut self) -> Option<Self::Item> {
        let item = match self.recent.by_ref().rev().flatten().next() {
            Some(item) => item,
            None => self.old.next_back()?,
        };
        self.remaining -= 1;
        Some(&**item)
    }
}

impl<T> ExactSizeIterator for Iter<'_, T> {}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;

    #[derive(Clone, Debug)]
    enum Op {
        Push(u32),
        /// Removes the held index at this fraction (per mille) of the held ones, in order.
        Remove(u16),
        /// Stores again at an issued index (held or not).
        Put(u32, u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            5 => any::<u32>().prop_map(Op::Push),
            4 => (0u16..1000).prop_map(Op::Remove),
            1 => (any::<u32>(), any::<u32>()).prop_map(|(at, value)| Op::Put(at, value)),
        ]
    }

    /// Everything a reader can ask, against a `BTreeMap` of the same records.
    fn check(records: &Records<u32>, model: &BTreeMap<usize, u32>, issued: usize, probe: usize) {
        assert_eq!(records.len(), model.len());
        assert_eq!(records.issued(), issued as u64);
        assert!(records.entries().map(|(index, value)| (index, *value)).eq(model.iter().map(|(k, v)| (*k, *v))));
        assert!(records.iter().rev().eq(records.entries().rev().map(|(_, value)| value)));
        assert_eq!(records.iter().len(), model.len());
        assert_eq!(records.first(), model.values().next());
        let from = probe % (issued + 2);
        assert!(records
            .entries_from(from)
            .map(|(index, value)| (index, *value))
            .eq(model.range(from..).map(|(k, v)| (*k, *v))));
        let until = from + probe % 97;
        assert!(records.range(from..until).copied().eq(model.range(from..until).map(|(_, v)| *v)));
        for index in [from, until, issued.saturating_sub(1), issued, records.base, records.base.saturating_sub(1)] {
            assert_eq!(records.get(index), model.get(&index), "index {index}");
            assert_eq!(records.is_forgotten(index), index < issued && !model.contains_key(&index));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Pushes, removals anywhere and stores again, in any order: the ring and the B-tree
        /// together answer every lookup and iteration as one ordered map would.
        #[test]
        fn answers_as_an_ordered_map(ops in proptest::collection::vec(op(), 1..3000), probe in any::<usize>()) {
            let mut records = Records::default();
            let mut model = BTreeMap::new();
            let mut issued = 0usize;
            for (step, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Push(value) => {
                        prop_assert_eq!(records.push(value), issued);
                        model.insert(issued, value);
                        issued += 1;
                    }
                    Op::Remove(at) => {
                        let index = model.keys().nth(model.len() * usize::from(at) / 1000).copied();
                        if let Some(index) = index {
                            prop_assert_eq!(records.remove(index), model.remove(&index));
                        }
                        prop_assert_eq!(records.remove(issued + 1), None);
                    }
                    Op::Put(at, value) if issued > 0 => {
                        let index = at as usize % issued;
                        records.put(index, value);
                        model.insert(index, value);
                    }
                    Op::Put(..) => {}
                }
                if step % 50 == 0 {
                    check(&records, &model, issued, probe.wrapping_add(step));
                }
            }
            check(&records, &model, issued, probe);
            // Rebuilt from its records (a snapshot), it is equal, however it is laid out.
            let values: Vec<(usize, u32)> = model.iter().map(|(k, v)| (*k, *v)).collect();
            let rebuilt = Records::from_parts(issued as u64, values, |(index, _)| *index);
            prop_assert!(rebuilt.entries().map(|(index, (_, value))| (index, *value)).eq(model.iter().map(|(k, v)| (*k, *v))));
            let mut set: IndexSet = model.keys().copied().collect();
            let keys: BTreeSet<usize> = model.keys().copied().collect();
            prop_assert!(set.iter().eq(keys.iter().copied()));
            for index in keys.iter().copied().step_by(3) {
                prop_assert!(set.remove(index) && !set.remove(index) && !set.contains(index));
            }
            prop_assert!(set.iter().eq(keys.iter().copied().enumerate().filter(|(at, _)| at % 3 != 0).map(|(_, k)| k)));
        }
    }

    /// Indexes far apart (a hold left open while billions of transfers passed, a set rebuilt
    /// from a long history) cost a slot each, not a slot per index between them.
    #[test]
    fn an_index_set_jumps_over_long_gaps() {
        let far = 5_000_000_000usize;
        let mut set: IndexSet = [far + 3, 7, far, far + 1].into_iter().collect();
        assert!(set.records.recent.len() <= 4, "{} slots", set.records.recent.len());
        assert!(set.iter().eq([7, far, far + 1, far + 3]));
        assert!(set.insert(2 * far) && !set.insert(2 * far) && set.insert(2 * far + 2));
        assert!(set.records.recent.len() <= 3, "{} slots", set.records.recent.len());
        assert!(set.iter().eq([7, far, far + 1, far + 3, 2 * far, 2 * far + 2]));
        assert!(set.contains(far + 1) && !set.contains(far + 2) && set.contains(2 * far));
        assert!(set.remove(7) && !set.remove(7));
        assert_eq!(set.len(), 5);
    }

    /// A record left far behind by the rest moves to the B-tree, and the ring stays as long as
    /// the records in it need: its memory follows what is held, not the oldest id.
    #[test]
    fn a_record_left_behind_moves_out_of_the_ring() {
        let mut records = Records::default();
        for value in 0..200_000u32 {
            records.push(value);
            // Keep one record in ten (index 0 among them) and the newest.
            if value > 0 && (value - 1) % 10 != 0 {
                records.remove(value as usize - 1);
            }
        }
        let held: Vec<usize> = records.entries().map(|(index, _)| index).collect();
        assert_eq!(held[0], 0);
        assert!(records.old.contains_key(&0), "the oldest record moved to the B-tree");
        assert!(records.recent.len() <= ring_allowance(records.recent_held) + RING_MOVES_PER_CHANGE);
        assert_eq!(records.get(0), Some(&0));
        assert_eq!(records.len(), held.len());
        let equal = Records::from_parts(records.issued(), records.to_vec(), |value| *value as usize);
        assert!(equal == records);
        let mut other = equal.clone();
        other.remove(0);
        assert!(other != records);
    }
}
