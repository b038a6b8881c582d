//! The idempotency keys' map, grown without a pause. A `HashMap` grows by moving every entry
//! into a table twice the size in one insert: at a million keys that one insert took about
//! 170 ms of the sequencer, at two million 340 ms (`examples/command_cost.rs`), and a book at
//! the default window holds millions. `KeyMap` instead starts the larger table beside the full
//! one and moves [`KEYS_MOVED_PER_INSERT`] keys into it on every insert, in the order the keys
//! were stored (`Book::idempotency_order`, which holds every key), so that no insert moves
//! more than a few. Lookups look in both tables while a move is under way. Which table holds a
//! key never changes an answer, so decisions (and replay) are the same as with one map.

use std::collections::{HashMap, VecDeque};

use crate::book::Kept;

/// Keys moved from the old table into the new one by each insert while the map grows: the
/// old table is empty after an eighth as many inserts as it held, long before the new one
/// (twice the size) fills.
pub(crate) const KEYS_MOVED_PER_INSERT: usize = 8;

#[derive(Clone, Debug, Default)]
pub(crate) struct KeyMap {
    map: HashMap<u128, Kept>,
    /// The full table being emptied into `map` (empty when no growth is under way).
    old: HashMap<u128, Kept>,
    /// The position in the key order of the next key to move, and the end of the keys that
    /// were stored before the growth began (later keys went into `map` directly). Both move
    /// down when the oldest key is dropped from the front of the order.
    cursor: usize,
    end: usize,
}

impl KeyMap {
    pub(crate) fn get(&self, hash: &u128) -> Option<&Kept> {
        self.map.get(hash).or_else(|| self.old.get(hash))
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len() + self.old.len()
    }

    /// Stores a key that `order` does not hold yet (the caller pushes it to `order` after).
    pub(crate) fn insert(&mut self, hash: u128, kept: Kept, order: &VecDeque<u128>) {
        if self.old.is_empty() && self.map.len() >= self.map.capacity() && self.map.capacity() >= 1024 {
            // Begin a growth: the full table becomes the old one, and a table twice its size
            // (allocated, not filled: its memory is touched as keys arrive) takes every key
            // from now on.
            let capacity = self.map.capacity().saturating_mul(2);
            self.old = std::mem::replace(&mut self.map, HashMap::with_capacity(capacity));
            self.cursor = 0;
            self.end = order.len();
        }
        self.move_some(order);
        self.map.insert(hash, kept);
    }

    /// Moves up to [`KEYS_MOVED_PER_INSERT`] keys of the old table into the new one.
    fn move_some(&mut self, order: &VecDeque<u128>) {
        if self.old.is_empty() {
            return;
        }
        let stop = self.end.min(self.cursor + KEYS_MOVED_PER_INSERT).min(order.len());
        while self.cursor < stop {
            let hash = order[self.cursor];
            self.cursor += 1;
            if let Some(kept) = self.old.remove(&hash) {
                self.map.insert(hash, kept);
            }
        }
        if self.cursor >= self.end || self.old.is_empty() {
            // Every key stored before the growth was moved (or dropped): free the old table.
            self.old = HashMap::new();
            self.cursor = 0;
            self.end = 0;
        }
    }

    /// Drops the oldest key, just taken from the front of the order.
    pub(crate) fn remove_oldest(&mut self, hash: &u128) {
        if self.map.remove(hash).is_none() {
            self.old.remove(hash);
        }
        self.cursor = self.cursor.saturating_sub(1);
        self.end = self.end.saturating_sub(1);
    }
}

impl FromIterator<(u128, Kept)> for KeyMap {
    fn from_iter<I: IntoIterator<Item = (u128, Kept)>>(iter: I) -> KeyMap {
        KeyMap { map: iter.into_iter().collect(), ..KeyMap::default() }
    }
}

impl PartialEq for KeyMap {
    /// The same keys with the same replies, wherever each is held.
    fn eq(&self, other: &KeyMap) -> bool {
        self.len() == other.len() && self.map.iter().chain(&self.old).all(|(hash, kept)| other.get(hash) == Some(kept))
    }
}

impl Eq for KeyMap {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::book::Kept;

    fn kept(at: u64) -> Kept {
        Kept::new(at, at, Ok(crate::Ack::Done))
    }

    /// Keys stored and expired (oldest first) across several growths: every key held is found
    /// with its own value, every expired one is gone, and each growth ends with the old table
    /// emptied and freed.
    #[test]
    fn grows_a_few_keys_at_a_time_and_keeps_every_key() {
        let mut map = KeyMap::default();
        let mut order = VecDeque::new();
        let mut growths = 0;
        for key in 0..200_000u128 {
            let before = map.old.is_empty();
            map.insert(key, kept(key as u64), &order);
            order.push_back(key);
            if before && !map.old.is_empty() {
                growths += 1;
            }
            assert!(map.old.len() <= map.end, "moving, never adding to the old table");
            // Expire one key in three, from the front, as book time passes.
            if key % 3 == 0 {
                if let Some(oldest) = order.pop_front() {
                    map.remove_oldest(&oldest);
                }
            }
            assert_eq!(map.len(), order.len());
        }
        assert!(growths >= 5, "{growths} growths");
        for key in &order {
            assert_eq!(map.get(key), Some(&kept(*key as u64)), "key {key}");
        }
        assert!(map.get(&0).is_none(), "an expired key is gone");
        let mut rebuilt: KeyMap = order.iter().map(|key| (*key, kept(*key as u64))).collect();
        assert!(rebuilt == map, "the same keys, wherever held");
        rebuilt.remove_oldest(&order[0]);
        assert!(rebuilt != map);
    }
}
