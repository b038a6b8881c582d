//! `Records<T>`: records with dense ids (1, 2, 3 ...) of which only some are still held.
//!
//! The book assigns ids in order and keeps a record only while a decision may still need it
//! (an open bet, a market within its resettlement window). `Records` keeps the held ones by
//! index (`id - 1`) in a `BTreeMap`, so lookups stay by id, iteration stays in id order (no
//! hash order reaches the output), and a record that left costs nothing. `issued` counts every
//! id ever assigned, so a new record gets the next id and a forgotten one is told apart from
//! one that never existed (`is_forgotten`).
//!
//! Each record is boxed: a B-tree node holds eleven entries and, filled in id order, stays a
//! little over half full, so entries of a bet's full size (over 200 bytes) would leave nearly
//! as much again empty in every node. Boxed, the node holds 8-byte pointers and each record
//! costs its own size plus the allocator's few bytes (measured: `book it memory`).

use std::collections::BTreeMap;
use std::ops::{Index, IndexMut};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Records<T> {
    items: BTreeMap<usize, Box<T>>,
    issued: usize,
}

impl<T> Default for Records<T> {
    fn default() -> Records<T> {
        Records { items: BTreeMap::new(), issued: 0 }
    }
}

impl<T> Records<T> {
    /// Rebuilds records from the held ones and the count of ids ever issued. `index_of` gives
    /// each record's index (`id - 1`); the caller checks the result (`BookParts::check_structure`).
    pub fn from_parts(issued: u64, items: Vec<T>, index_of: impl Fn(&T) -> usize) -> Records<T> {
        Records {
            items: items.into_iter().map(|item| (index_of(&item), Box::new(item))).collect(),
            issued: issued as usize,
        }
    }

    /// How many ids were ever assigned: the next record gets id `issued + 1`.
    pub fn issued(&self) -> u64 {
        self.issued as u64
    }

    /// How many records are held now.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The record at `index` (`id.index()`), if it is held.
    pub fn get(&self, index: usize) -> Option<&T> {
        self.items.get(&index).map(|item| &**item)
    }

    pub fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        self.items.get_mut(&index).map(|item| &mut **item)
    }

    pub fn contains(&self, index: usize) -> bool {
        self.items.contains_key(&index)
    }

    /// True when the id was issued but its record has left.
    pub fn is_forgotten(&self, index: usize) -> bool {
        index < self.issued && !self.items.contains_key(&index)
    }

    /// Stores `item` under the next index and returns that index.
    pub fn push(&mut self, item: T) -> usize {
        let index = self.issued;
        self.items.insert(index, Box::new(item));
        self.issued += 1;
        index
    }

    /// Stores `item` under an index already issued (a record moved out and back: a closed bet
    /// unpacked, `Bets`).
    pub(crate) fn put(&mut self, index: usize, item: T) {
        debug_assert!(index < self.issued, "record {} was never issued", index + 1);
        self.items.insert(index, Box::new(item));
    }

    pub fn remove(&mut self, index: usize) -> Option<T> {
        self.items.remove(&index).map(|item| *item)
    }

    /// Held records in id order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> + ExactSizeIterator + '_ {
        self.items.values().map(|item| &**item)
    }

    pub fn iter_mut(&mut self) -> impl DoubleEndedIterator<Item = &mut T> + '_ {
        self.items.values_mut().map(|item| &mut **item)
    }

    /// Held records from `index` on, in id order.
    pub fn range_from(&self, index: usize) -> impl DoubleEndedIterator<Item = &T> + '_ {
        self.items.range(index..).map(|(_, item)| &**item)
    }

    /// Held records with their indexes (`id - 1`), in id order.
    pub fn entries(&self) -> impl DoubleEndedIterator<Item = (usize, &T)> + '_ {
        self.items.iter().map(|(index, item)| (*index, &**item))
    }

    /// Held records from index `from` on, with their indexes, in id order.
    pub fn entries_from(&self, from: usize) -> impl DoubleEndedIterator<Item = (usize, &T)> + '_ {
        self.items.range(from..).map(|(index, item)| (*index, &**item))
    }

    /// Held records with indexes in `range`, in id order.
    pub fn range(&self, range: std::ops::Range<usize>) -> impl DoubleEndedIterator<Item = &T> + '_ {
        self.items.range(range).map(|(_, item)| &**item)
    }

    /// The held record with the lowest id.
    pub fn first(&self) -> Option<&T> {
        self.items.values().next().map(|item| &**item)
    }

    /// Held records, cloned into a vector in id order.
    pub fn to_vec(&self) -> Vec<T>
    where
        T: Clone,
    {
        self.items.values().map(|item| T::clone(item)).collect()
    }
}

impl<T> Index<usize> for Records<T> {
    type Output = T;

    /// The record at `index`. The book only indexes records it holds (a held record refers
    /// only to held ones, `check_invariants`); an absent one is a bug, not bad input.
    fn index(&self, index: usize) -> &T {
        match self.items.get(&index) {
            Some(item) => item,
            None => panic!("record {} is not held", index + 1),
        }
    }
}

impl<T> IndexMut<usize> for Records<T> {
    fn index_mut(&mut self, index: usize) -> &mut T {
        match self.items.get_mut(&index) {
            Some(item) => item,
            None => panic!("record {} is not held", index + 1),
        }
    }
}

impl<'a, T> IntoIterator for &'a Records<T> {
    type Item = &'a T;
    type IntoIter = Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        Iter { values: self.items.values() }
    }
}

/// The held records in id order (`&Records` in a `for` loop).
#[derive(Debug)]
pub struct Iter<'a, T> {
    values: std::collections::btree_map::Values<'a, usize, Box<T>>,
}

impl<'a, T> Iterator for Iter<'a, T> {
    type Item = &'a T;

    fn next(&mut self) -> Option<&'a T> {
        self.values.next().map(|item| &**item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.values.size_hint()
    }
}
