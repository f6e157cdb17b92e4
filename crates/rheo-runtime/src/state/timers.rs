//! Timer queues: timers ordered by time, at most one per (time, key), where registering,
//! deleting and firing the next due timer each cost O(log T) for T distinct timestamps (O(1) per
//! key within one timestamp), so firing N timers costs O(N log N) at worst whether they share one
//! timestamp or not.
//!
//! Timers are grouped by timestamp (one B-tree entry per timestamp), and the keys of one
//! timestamp are a [`KeySet`]: a set whose arbitrary element comes out in O(1). A hash set would
//! not do: taking "any element" of a hash set scans from the first bucket, past every bucket
//! emptied before, which makes draining it quadratic.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::hash::{BuildHasher, Hash};

use hashbrown::HashTable;

use crate::output::Timestamp;

/// A set whose elements live in a vector and a hash table of their positions: insert, remove
/// and pop (the last element) are O(1); a set with one element allocates nothing.
pub enum KeySet<T> {
    One(T),
    Many(Box<IndexedSet<T>>),
}

pub struct IndexedSet<T> {
    entries: Vec<T>,
    positions: HashTable<u32>,
    hasher: foldhash::fast::RandomState,
}

impl<T: Hash + Eq> IndexedSet<T> {
    fn new() -> Self {
        Self { entries: Vec::new(), positions: HashTable::new(), hasher: foldhash::fast::RandomState::default() }
    }

    fn insert(&mut self, value: T) -> bool {
        let hash = self.hasher.hash_one(&value);
        let entries = &self.entries;
        if self.positions.find(hash, |&i| entries[i as usize] == value).is_some() {
            return false;
        }
        let position = u32::try_from(entries.len()).expect("fewer than 2^32 timers at one timestamp");
        let hasher = &self.hasher;
        self.positions.insert_unique(hash, position, |&i| hasher.hash_one(&entries[i as usize]));
        self.entries.push(value);
        true
    }

    fn remove(&mut self, value: &T) -> bool {
        let hash = self.hasher.hash_one(value);
        let entries = &self.entries;
        let Ok(found) = self.positions.find_entry(hash, |&i| entries[i as usize] == *value) else {
            return false;
        };
        let (position, _) = found.remove();
        let last = self.entries.len() as u32 - 1;
        if position != last {
            // The last entry moves into the hole: its position changes.
            let moved = self.hasher.hash_one(&self.entries[last as usize]);
            *self.positions.find_mut(moved, |&i| i == last).expect("every entry has a position") = position;
        }
        self.entries.swap_remove(position as usize);
        true
    }

    fn pop(&mut self) -> Option<T> {
        let last = self.entries.last()?;
        let hash = self.hasher.hash_one(last);
        let position = self.entries.len() as u32 - 1;
        self.positions.find_entry(hash, |&i| i == position).expect("every entry has a position").remove();
        self.entries.pop()
    }
}

impl<T: Hash + Eq> KeySet<T> {
    /// Adds `value`; false if it was there.
    pub fn insert(&mut self, value: T) -> bool {
        match self {
            KeySet::One(one) if *one == value => false,
            KeySet::One(_) => {
                let KeySet::One(one) = std::mem::replace(self, KeySet::Many(Box::new(IndexedSet::new()))) else {
                    unreachable!("matched One")
                };
                let KeySet::Many(many) = self else { unreachable!("replaced with Many") };
                many.insert(one);
                many.insert(value)
            }
            KeySet::Many(many) => many.insert(value),
        }
    }

    /// Removes `value`; returns whether it was there and whether the set is now empty.
    fn remove(&mut self, value: &T) -> (bool, bool) {
        match self {
            KeySet::One(one) => {
                let removed = one == value;
                (removed, removed)
            }
            KeySet::Many(many) => {
                let removed = many.remove(value);
                (removed, many.entries.is_empty())
            }
        }
    }

    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        match self {
            KeySet::One(one) => std::slice::from_ref(one).iter(),
            KeySet::Many(many) => many.entries.iter(),
        }
    }

    /// All elements, in no particular order.
    pub fn into_vec(self) -> Vec<T> {
        match self {
            KeySet::One(one) => vec![one],
            KeySet::Many(many) => many.entries,
        }
    }
}

/// Timers of one time domain: (time, key) pairs, at most one per pair, due in time order.
pub struct TimerQueue<K> {
    by_time: BTreeMap<Timestamp, KeySet<K>>,
    len: usize,
}

impl<K> Default for TimerQueue<K> {
    fn default() -> Self {
        Self { by_time: BTreeMap::new(), len: 0 }
    }
}

impl<K: Hash + Eq> TimerQueue<K> {
    /// Adds the timer; false if it was set already.
    pub fn register(&mut self, at: Timestamp, key: K) -> bool {
        let added = match self.by_time.entry(at) {
            Entry::Vacant(vacant) => {
                vacant.insert(KeySet::One(key));
                true
            }
            Entry::Occupied(mut occupied) => occupied.get_mut().insert(key),
        };
        self.len += usize::from(added);
        added
    }

    /// Removes the timer; false if it was not set.
    pub fn delete(&mut self, at: Timestamp, key: &K) -> bool {
        let Entry::Occupied(mut occupied) = self.by_time.entry(at) else { return false };
        let (removed, empty) = occupied.get_mut().remove(key);
        if empty {
            occupied.remove();
        }
        self.len -= usize::from(removed);
        removed
    }

    /// Takes the earliest timer due at `time` (at or before it).
    pub fn pop_due(&mut self, time: Timestamp) -> Option<(Timestamp, K)> {
        let mut first = self.by_time.first_entry()?;
        let at = *first.key();
        if at > time {
            return None;
        }
        let key = match first.get_mut() {
            KeySet::One(_) => match first.remove() {
                KeySet::One(key) => key,
                KeySet::Many(_) => unreachable!(),
            },
            KeySet::Many(many) => {
                let key = many.pop().expect("timer sets are never empty");
                if many.entries.is_empty() {
                    first.remove();
                }
                key
            }
        };
        self.len -= 1;
        Some((at, key))
    }

    /// Takes every key of the earliest timestamp due at `time`.
    pub fn pop_due_time(&mut self, time: Timestamp) -> Option<(Timestamp, Vec<K>)> {
        let first = self.by_time.first_entry()?;
        if *first.key() > time {
            return None;
        }
        let (at, keys) = first.remove_entry();
        let keys = keys.into_vec();
        self.len -= keys.len();
        Some((at, keys))
    }

    /// How many timers are set.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The time of the earliest timer.
    pub fn next_time(&self) -> Option<Timestamp> {
        self.by_time.keys().next().copied()
    }

    /// Every timer, in time order (keys of one time in no particular order).
    pub fn iter(&self) -> impl Iterator<Item = (Timestamp, &K)> {
        self.by_time.iter().flat_map(|(&at, keys)| keys.iter().map(move |key| (at, key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_come_out_in_time_order_once_each_and_deleted_ones_not_at_all() {
        let mut queue = TimerQueue::default();
        for key in 0..100u32 {
            assert!(queue.register(i64::from(key % 7), key));
        }
        assert!(!queue.register(3, 3), "a timer set twice is one timer");
        assert_eq!(queue.len(), 100);
        assert!(queue.delete(3, &10));
        assert!(!queue.delete(3, &10), "deleted already");
        assert!(!queue.delete(4, &3), "never set at this time");
        assert!(queue.delete(0, &0));
        assert_eq!(queue.next_time(), Some(0));
        assert!(queue.pop_due(-1).is_none(), "nothing due before 0");
        let mut fired = Vec::new();
        while let Some((at, key)) = queue.pop_due(5) {
            fired.push((at, key));
        }
        assert!(fired.windows(2).all(|w| w[0].0 <= w[1].0), "time order");
        let mut keys: Vec<u32> = fired.iter().map(|&(_, key)| key).collect();
        keys.sort_unstable();
        let expected: Vec<u32> = (0..100).filter(|k| k % 7 <= 5 && *k != 10 && *k != 0).collect();
        assert_eq!(keys, expected);
        assert!(fired.iter().all(|&(at, key)| at == i64::from(key % 7)));
        assert_eq!(queue.len(), (0..100).filter(|k| k % 7 == 6).count());
        assert_eq!(queue.iter().count(), queue.len());
    }

    #[test]
    fn a_set_keeps_its_positions_through_removals_from_the_middle() {
        let mut set = KeySet::One(0u32);
        for value in 1..1000 {
            assert!(set.insert(value));
        }
        for value in (0..1000).step_by(3) {
            assert!(set.remove(&value).0);
        }
        let mut left: Vec<u32> = set.iter().copied().collect();
        left.sort_unstable();
        assert_eq!(left, (0..1000).filter(|v| v % 3 != 0).collect::<Vec<_>>());
        for value in left {
            assert!(!set.insert(value), "{value} is there");
            assert!(set.remove(&value).0);
        }
        assert_eq!(set.iter().count(), 0);
    }
}
