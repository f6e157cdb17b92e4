//! Timer queues: timers ordered by time, at most one per (time, key), where registering,
//! deleting and firing the next due timer each cost O(log T) for T distinct timestamps (O(1) per
//! key within one timestamp), so firing N timers costs O(N log N) at worst whether they share one
//! timestamp or not.
//!
//! Timers are grouped by timestamp (one B-tree entry per timestamp), and the keys of one
//! timestamp are a [`TimerSet`]: a set whose arbitrary element comes out in O(1). A hash set would
//! not do: taking "any element" of a hash set scans from the first bucket, past every bucket
//! emptied before, which makes draining it quadratic. Keys themselves sit in a [`KeySet`];
//! the keyed process operator's timers hold interned key ids in an [`IdSet`], which turns into a
//! bit per id when most keys have a timer at one time (the end-of-input timer of every key
//! costs an eighth of a byte a key then).

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::hash::{BuildHasher, Hash};

use hashbrown::HashTable;

use crate::output::Timestamp;
use crate::state::keys::KeyId;

/// A set whose elements live in a vector and a hash table of their positions: insert, remove
/// and pop (the last element) are O(1); a set with one element allocates nothing.
// Only its tests use it since the windows moved to the keyed backend (700da0d), which left the
// workspace's clippy red; kept for the window work that may use it again.
#[cfg_attr(not(test), expect(dead_code))]
pub enum KeySet<T> {
    One(T),
    Many(Box<IndexedSet<T>>),
}

#[derive(Clone)]
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

/// The keys of one timestamp.
pub trait TimerSet {
    type Item;
    /// A set of one.
    fn one(value: Self::Item) -> Self;
    /// Adds `value`; false if it was there.
    fn insert(&mut self, value: Self::Item) -> bool;
    /// Removes `value`; returns whether it was there.
    fn remove(&mut self, value: &Self::Item) -> bool;
    /// Takes any element.
    fn pop(&mut self) -> Option<Self::Item>;
    fn len(&self) -> usize;
    /// All elements, in no particular order.
    fn into_vec(self) -> Vec<Self::Item>;
}

impl<T: Hash + Eq> TimerSet for KeySet<T> {
    type Item = T;

    fn one(value: T) -> Self {
        KeySet::One(value)
    }

    fn insert(&mut self, value: T) -> bool {
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

    /// Removing the single element of a `One` leaves it as it is: the queue drops a set that
    /// [`len`](TimerSet::len) says is empty.
    fn remove(&mut self, value: &T) -> bool {
        match self {
            KeySet::One(one) => one == value,
            KeySet::Many(many) => many.remove(value),
        }
    }

    fn pop(&mut self) -> Option<T> {
        match self {
            KeySet::One(_) => None,
            KeySet::Many(many) => many.pop(),
        }
    }

    fn len(&self) -> usize {
        match self {
            KeySet::One(_) => 1,
            KeySet::Many(many) => many.entries.len(),
        }
    }

    fn into_vec(self) -> Vec<T> {
        match self {
            KeySet::One(one) => vec![one],
            KeySet::Many(many) => many.entries,
        }
    }
}

#[cfg(test)]
impl<T> KeySet<T> {
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        match self {
            KeySet::One(one) => std::slice::from_ref(one).iter(),
            KeySet::Many(many) => many.entries.iter(),
        }
    }
}

/// The key ids with a timer at one timestamp: one inline, a few in an [`IndexedSet`], or a bit
/// per id once they are dense enough that the bits take less memory (at least one id in 32
/// below the largest). It goes back to an indexed set when fewer than one in 128 are left, so
/// a conversion's O(bits) cost is paid for by as many inserts or removals.
#[derive(Clone)]
pub enum IdSet {
    One(KeyId),
    Sparse(Box<IndexedSet<KeyId>>),
    Dense(Box<IdBits>),
}

/// A sparse set turns dense from this size on (smaller sets stay sparse whatever their ids).
const DENSE_FROM: usize = 256;

impl IdSet {
    pub fn contains(&self, id: KeyId) -> bool {
        match self {
            IdSet::One(one) => *one == id,
            IdSet::Sparse(sparse) => {
                let hash = sparse.hasher.hash_one(id);
                sparse.positions.find(hash, |&i| sparse.entries[i as usize] == id).is_some()
            }
            IdSet::Dense(dense) => dense.words.get(id as usize / 64).is_some_and(|w| w & (1 << (id % 64)) != 0),
        }
    }

    /// The ids, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = KeyId> + '_ {
        let (one, sparse, dense) = match self {
            IdSet::One(one) => (Some(*one), None, None),
            IdSet::Sparse(sparse) => (None, Some(sparse.entries.iter().copied()), None),
            IdSet::Dense(dense) => (None, None, Some(dense.iter())),
        };
        one.into_iter().chain(sparse.into_iter().flatten()).chain(dense.into_iter().flatten())
    }

    /// A sparse set that has just doubled turns dense if bits take less memory.
    fn densify_if_worth_it(&mut self) {
        let IdSet::Sparse(sparse) = self else { return };
        let len = sparse.entries.len();
        if len < DENSE_FROM || !len.is_power_of_two() {
            return;
        }
        let largest = sparse.entries.iter().copied().max().unwrap_or(0) as usize;
        if largest < len * 32 {
            *self = IdSet::Dense(Box::new(IdBits::from_ids(&sparse.entries)));
        }
    }

    /// A dense set that has thinned out goes back to a sparse one.
    fn sparsify_if_worth_it(&mut self) {
        let IdSet::Dense(dense) = self else { return };
        if dense.len * 128 < dense.words.len() * 64 {
            let mut sparse = IndexedSet::new();
            for id in dense.iter() {
                sparse.insert(id);
            }
            *self = IdSet::Sparse(Box::new(sparse));
        }
    }
}

impl TimerSet for IdSet {
    type Item = KeyId;

    fn one(value: KeyId) -> Self {
        IdSet::One(value)
    }

    fn insert(&mut self, value: KeyId) -> bool {
        let added = match self {
            IdSet::One(one) if *one == value => false,
            IdSet::One(one) => {
                let mut sparse = IndexedSet::new();
                sparse.insert(*one);
                sparse.insert(value);
                *self = IdSet::Sparse(Box::new(sparse));
                true
            }
            IdSet::Sparse(sparse) => sparse.insert(value),
            IdSet::Dense(dense) => dense.insert(value),
        };
        if added {
            self.densify_if_worth_it();
        }
        added
    }

    fn remove(&mut self, value: &KeyId) -> bool {
        let removed = match self {
            IdSet::One(one) => one == value,
            IdSet::Sparse(sparse) => sparse.remove(value),
            IdSet::Dense(dense) => dense.remove(*value),
        };
        if removed {
            self.sparsify_if_worth_it();
        }
        removed
    }

    fn pop(&mut self) -> Option<KeyId> {
        let popped = match self {
            IdSet::One(_) => None,
            IdSet::Sparse(sparse) => sparse.pop(),
            IdSet::Dense(dense) => dense.pop(),
        };
        self.sparsify_if_worth_it();
        popped
    }

    fn len(&self) -> usize {
        match self {
            IdSet::One(_) => 1,
            IdSet::Sparse(sparse) => sparse.entries.len(),
            IdSet::Dense(dense) => dense.len,
        }
    }

    fn into_vec(self) -> Vec<KeyId> {
        match self {
            IdSet::One(one) => vec![one],
            IdSet::Sparse(sparse) => sparse.entries,
            IdSet::Dense(dense) => dense.iter().collect(),
        }
    }
}

/// A bit per key id. Written here rather than taken from a bit-set crate for `pop`: any element
/// in O(1) amortized, by remembering the first word that may have a bit set.
#[derive(Clone)]
pub struct IdBits {
    words: Vec<u64>,
    len: usize,
    /// No bit is set in the words before this one.
    first: usize,
}

impl IdBits {
    fn from_ids(ids: &[KeyId]) -> Self {
        let mut bits = IdBits { words: Vec::new(), len: 0, first: 0 };
        for &id in ids {
            bits.insert(id);
        }
        bits
    }

    fn insert(&mut self, id: KeyId) -> bool {
        let (word, bit) = (id as usize / 64, 1u64 << (id % 64));
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        if self.words[word] & bit != 0 {
            return false;
        }
        self.words[word] |= bit;
        self.len += 1;
        self.first = self.first.min(word);
        true
    }

    fn remove(&mut self, id: KeyId) -> bool {
        let (word, bit) = (id as usize / 64, 1u64 << (id % 64));
        match self.words.get_mut(word) {
            Some(w) if *w & bit != 0 => {
                *w &= !bit;
                self.len -= 1;
                true
            }
            _ => false,
        }
    }

    fn pop(&mut self) -> Option<KeyId> {
        if self.len == 0 {
            return None;
        }
        while self.words[self.first] == 0 {
            self.first += 1;
        }
        let word = &mut self.words[self.first];
        let bit = word.trailing_zeros();
        *word &= *word - 1;
        self.len -= 1;
        Some((self.first * 64) as KeyId + bit)
    }

    fn iter(&self) -> impl Iterator<Item = KeyId> + '_ {
        self.words.iter().enumerate().skip(self.first).flat_map(|(index, &word)| {
            let mut rest = word;
            std::iter::from_fn(move || {
                if rest == 0 {
                    return None;
                }
                let bit = rest.trailing_zeros();
                rest &= rest - 1;
                Some((index * 64) as KeyId + bit)
            })
        })
    }
}

/// Timers of one time domain: (time, key) pairs, at most one per pair, due in time order. The
/// keys of one time are an `S`: [`KeySet`] of keys, or [`IdSet`] of interned key ids.
#[derive(Clone)]
pub struct TimerQueue<S> {
    by_time: BTreeMap<Timestamp, S>,
    len: usize,
}

impl<S> Default for TimerQueue<S> {
    fn default() -> Self {
        Self { by_time: BTreeMap::new(), len: 0 }
    }
}

impl<S: TimerSet> TimerQueue<S> {
    /// Adds the timer; false if it was set already.
    pub fn register(&mut self, at: Timestamp, key: S::Item) -> bool {
        let added = match self.by_time.entry(at) {
            Entry::Vacant(vacant) => {
                vacant.insert(S::one(key));
                true
            }
            Entry::Occupied(mut occupied) => occupied.get_mut().insert(key),
        };
        self.len += usize::from(added);
        added
    }

    /// Removes the timer; false if it was not set.
    pub fn delete(&mut self, at: Timestamp, key: &S::Item) -> bool {
        let Entry::Occupied(mut occupied) = self.by_time.entry(at) else { return false };
        let set = occupied.get_mut();
        let removed = if set.len() == 1 {
            let removed = set.remove(key);
            if removed {
                occupied.remove();
            }
            removed
        } else {
            set.remove(key)
        };
        self.len -= usize::from(removed);
        removed
    }

    /// Takes the earliest timer due at `time` (at or before it).
    pub fn pop_due(&mut self, time: Timestamp) -> Option<(Timestamp, S::Item)> {
        let mut first = self.by_time.first_entry()?;
        let at = *first.key();
        if at > time {
            return None;
        }
        let key = if first.get().len() == 1 {
            first.remove().into_vec().pop().expect("a set of one")
        } else {
            let key = first.get_mut().pop().expect("a set of more than one");
            if first.get().len() == 0 {
                first.remove();
            }
            key
        };
        self.len -= 1;
        Some((at, key))
    }

    /// Takes every key of the earliest timestamp due at `time`.
    pub fn pop_due_time(&mut self, time: Timestamp) -> Option<(Timestamp, Vec<S::Item>)> {
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
}

/// A key's timers: (event time?, at).
pub type TimerList = smallvec::SmallVec<[(bool, Timestamp); 2]>;

/// The timers of one keyed operator, per time domain, at most one per key and time. Keys are
/// the ids of the operator's [`KeyTable`](crate::state::keys::KeyTable), which each timer holds.
#[derive(Default)]
pub struct Timers {
    pub event: TimerQueue<IdSet>,
    pub processing: TimerQueue<IdSet>,
    /// Each key's timers (event time?, at) by key id (ids are dense), with the disk tier only:
    /// an evicted key takes its timers along.
    by_key: Option<Vec<TimerList>>,
}

/// A copy of the queues, for a checkpoint (the per-key index stays behind).
impl Clone for Timers {
    fn clone(&self) -> Self {
        Self { event: self.event.clone(), processing: self.processing.clone(), by_key: None }
    }
}

impl Timers {
    /// Timers that also know each key's timers.
    pub fn indexed() -> Self {
        Self { by_key: Some(Default::default()), ..Self::default() }
    }

    pub fn queue(&self, event_time: bool) -> &TimerQueue<IdSet> {
        if event_time { &self.event } else { &self.processing }
    }

    fn queue_mut(&mut self, event_time: bool) -> &mut TimerQueue<IdSet> {
        if event_time { &mut self.event } else { &mut self.processing }
    }

    /// Sets the timer; false if it was set already.
    pub fn register(&mut self, event_time: bool, at: Timestamp, id: KeyId) -> bool {
        let added = self.queue_mut(event_time).register(at, id);
        if let (true, Some(by_key)) = (added, &mut self.by_key) {
            if by_key.len() <= id as usize {
                by_key.resize(id as usize + 1, TimerList::new());
            }
            by_key[id as usize].push((event_time, at));
        }
        added
    }

    /// Deletes the timer; false if it was not set.
    pub fn delete(&mut self, event_time: bool, at: Timestamp, id: KeyId) -> bool {
        let removed = self.queue_mut(event_time).delete(at, &id);
        if removed {
            self.unindex(event_time, at, id);
        }
        removed
    }

    /// Takes the earliest timer of the domain due at `time`.
    pub fn pop_due(&mut self, event_time: bool, time: Timestamp) -> Option<(Timestamp, KeyId)> {
        let (at, id) = self.queue_mut(event_time).pop_due(time)?;
        self.unindex(event_time, at, id);
        Some((at, id))
    }

    fn unindex(&mut self, event_time: bool, at: Timestamp, id: KeyId) {
        let Some(by_key) = &mut self.by_key else { return };
        if let Some(timers) = by_key.get_mut(id as usize) {
            timers.retain(|timer| *timer != (event_time, at));
        }
    }

    /// How many timers `id` has (indexed timers only; 0 otherwise).
    pub fn count_of(&self, id: KeyId) -> usize {
        self.by_key.as_ref().and_then(|by_key| by_key.get(id as usize)).map_or(0, |timers| timers.len())
    }

    /// Whether `id` has an event-time timer at or before `event_through`, or a processing-time
    /// timer at or before `processing_through` (indexed timers only).
    pub fn has_due(&self, id: KeyId, event_through: Timestamp, processing_through: Timestamp) -> bool {
        let Some(timers) = self.by_key.as_ref().and_then(|by_key| by_key.get(id as usize)) else { return false };
        timers.iter().any(|&(event_time, at)| at <= if event_time { event_through } else { processing_through })
    }

    /// Deletes every timer of `id` and returns them (indexed timers only).
    pub fn take_key(&mut self, id: KeyId) -> TimerList {
        let timers =
            self.by_key.as_mut().and_then(|by_key| by_key.get_mut(id as usize)).map(std::mem::take).unwrap_or_default();
        for &(event_time, at) in &timers {
            self.queue_mut(event_time).delete(at, &id);
        }
        timers
    }
}

#[cfg(test)]
impl<K> TimerQueue<KeySet<K>> {
    /// Every timer, in time order (keys of one time in no particular order).
    pub fn iter(&self) -> impl Iterator<Item = (Timestamp, &K)> {
        self.by_time.iter().flat_map(|(&at, keys)| keys.iter().map(move |key| (at, key)))
    }
}

impl TimerQueue<IdSet> {
    /// Whether the timer of `id` at `at` is set.
    pub fn contains(&self, at: Timestamp, id: KeyId) -> bool {
        self.by_time.get(&at).is_some_and(|ids| ids.contains(id))
    }

    /// Every timer, in time order (ids of one time in no particular order).
    pub fn iter(&self) -> impl Iterator<Item = (Timestamp, KeyId)> + '_ {
        self.by_time.iter().flat_map(|(&at, ids)| ids.iter().map(move |id| (at, id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_come_out_in_time_order_once_each_and_deleted_ones_not_at_all() {
        let mut queue = TimerQueue::<KeySet<u32>>::default();
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
            assert!(set.remove(&value));
        }
        let mut left: Vec<u32> = set.iter().copied().collect();
        left.sort_unstable();
        assert_eq!(left, (0..1000).filter(|v| v % 3 != 0).collect::<Vec<_>>());
        for value in left {
            assert!(!set.insert(value), "{value} is there");
            assert!(set.remove(&value));
        }
        assert_eq!(set.iter().count(), 0);
    }

    /// Drives an [`IdSet`] and a plain set side by side through growth into bits, removals from
    /// the middle and draining back into an indexed set.
    #[test]
    fn an_id_set_holds_the_same_ids_whether_sparse_or_dense() {
        let mut set = IdSet::one(5);
        let mut expected = std::collections::BTreeSet::from([5]);
        let check = |set: &IdSet, expected: &std::collections::BTreeSet<KeyId>| {
            assert_eq!(set.len(), expected.len());
            let mut ids: Vec<KeyId> = set.iter().collect();
            ids.sort_unstable();
            assert_eq!(ids, expected.iter().copied().collect::<Vec<_>>());
        };
        for id in (0..20_000).filter(|id| id % 3 != 0) {
            assert_eq!(set.insert(id), expected.insert(id), "insert {id}");
        }
        assert!(matches!(set, IdSet::Dense(_)), "two ids in three are dense");
        check(&set, &expected);
        assert!(!set.insert(7), "7 is there");
        for id in (0..20_000).step_by(7) {
            assert_eq!(set.remove(&id), expected.remove(&id), "remove {id}");
        }
        check(&set, &expected);
        let mut popped = Vec::new();
        while expected.len() > 50 {
            let id = set.pop().expect("not empty");
            assert!(expected.remove(&id), "{id} popped once");
            popped.push(id);
        }
        assert!(matches!(set, IdSet::Sparse(_)), "fifty ids of 20,000 are sparse");
        check(&set, &expected);
        // Ids below those popped come out too.
        assert!(set.insert(0));
        expected.insert(0);
        check(&set, &expected);
        while let Some(id) = set.pop() {
            assert!(expected.remove(&id));
        }
        assert!(expected.is_empty());
    }

    #[test]
    fn dense_bits_pop_ids_set_below_the_first_again() {
        let mut bits = IdBits::from_ids(&[100, 200, 300]);
        assert_eq!(bits.pop(), Some(100));
        assert_eq!(bits.pop(), Some(200));
        assert!(bits.insert(3));
        assert!(!bits.remove(100), "popped already");
        assert_eq!(bits.pop(), Some(3));
        assert_eq!(bits.pop(), Some(300));
        assert_eq!(bits.pop(), None);
        assert_eq!(bits.iter().count(), 0);
    }

    #[test]
    fn a_queue_of_ids_fires_a_million_timers_at_one_time_from_an_eighth_of_a_byte_each() {
        let mut queue = TimerQueue::<IdSet>::default();
        for id in 0..1_000_000 {
            assert!(queue.register(7, id));
        }
        let Some(IdSet::Dense(bits)) = queue.by_time.get(&7) else { panic!("a million ids at one time are bits") };
        assert_eq!(bits.words.len(), 1_000_000_usize.div_ceil(64));
        assert!(queue.delete(7, &500));
        assert_eq!(queue.iter().count(), 999_999);
        let mut fired = 0;
        while let Some((at, id)) = queue.pop_due(7) {
            assert_eq!(at, 7);
            assert_ne!(id, 500);
            fired += 1;
        }
        assert_eq!(fired, 999_999);
        assert_eq!(queue.len(), 0);
        assert!(queue.next_time().is_none());
    }

    /// The scale: ten million timers, one per key, at 100,000 distinct times (100 keys
    /// a time, as windows ending together give), a tenth of them deleted and some set again,
    /// all fired in time order once each. A quadratic pop (one hash-set scan per timer, as
    /// before) would not finish in the test's lifetime; this runs in seconds unoptimised.
    #[test]
    fn ten_million_timers_fire_once_each_in_time_order() {
        const KEYS: u32 = 10_000_000;
        let time_of = |id: KeyId| 1_000 + Timestamp::from(id % 100_000);
        let mut timers = Timers::default();
        for id in 0..KEYS {
            assert!(timers.register(true, time_of(id), id));
        }
        // Every tenth key's timer deleted; every hundredth of those set again later.
        for id in (0..KEYS).step_by(10) {
            assert!(timers.delete(true, time_of(id), id));
        }
        for id in (0..KEYS).step_by(1_000) {
            assert!(timers.register(true, time_of(id) + 1_000_000, id));
        }
        let expected = (KEYS - KEYS / 10 + KEYS / 1_000) as usize;
        assert_eq!(timers.queue(true).len(), expected);
        let mut fired = vec![0u8; KEYS as usize];
        let (mut last, mut count) = (Timestamp::MIN, 0usize);
        while let Some((at, id)) = timers.pop_due(true, Timestamp::MAX) {
            assert!(at >= last, "timers fire in time order");
            last = at;
            let rescheduled = id % 1_000 == 0;
            let due = if rescheduled { time_of(id) + 1_000_000 } else { time_of(id) };
            assert_eq!(at, due, "key {id} fires at its time");
            assert!(rescheduled || id % 10 != 0, "a deleted timer fires");
            fired[id as usize] += 1;
            count += 1;
        }
        assert_eq!(count, expected);
        assert!(fired.iter().all(|&n| n <= 1), "no timer fires twice");
        assert!(timers.queue(true).next_time().is_none());
    }
}
