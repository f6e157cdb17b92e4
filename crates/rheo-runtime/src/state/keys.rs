//! The keys of one keyed operator instance, each stored once and known elsewhere by a 4-byte id.
//!
//! State tables and timer queues refer to a key by its [`KeyId`], so a key with a value and a
//! timer costs one copy of the key, one slot in one hash index, and a few bytes per state and
//! timer, instead of a copy of the key and a hash-table slot in every table. An id counts what
//! holds it (state entries and timers); an id that nothing holds any more is freed when the
//! record or timer that touched it is done, and a later new key takes it, so ids stay dense
//! (`0..` about the number of live keys) and tables indexed by id stay compact.

use std::hash::{BuildHasher, Hash};

use hashbrown::HashTable;

use super::cow::{CowVec, CowView};

/// A key's index in its operator's [`KeyTable`]: valid while anything holds the key.
pub type KeyId = u32;

pub struct KeyTable<K> {
    /// The key of each id; `None` for a free id. Shared with the checkpoints being written.
    keys: CowVec<K>,
    /// How many state entries and timers hold each id.
    holds: Vec<u32>,
    /// Ids of live keys, found by the key's hash (hashed here, so the index stores only ids).
    index: HashTable<KeyId>,
    hasher: foldhash::fast::RandomState,
    /// Ids free for reuse.
    free: Vec<KeyId>,
}

impl<K> Default for KeyTable<K> {
    fn default() -> Self {
        Self {
            keys: CowVec::default(),
            holds: Vec::new(),
            index: HashTable::new(),
            hasher: foldhash::fast::RandomState::default(),
            free: Vec::new(),
        }
    }
}

impl<K: Hash + Eq + Clone> KeyTable<K> {
    /// The id of `key`, a new one (held by nothing yet) if the key is not known: the caller
    /// either makes something hold it or gives it back with [`free_if_unused`](Self::free_if_unused).
    pub fn intern(&mut self, key: K) -> KeyId {
        let hash = self.hasher.hash_one(&key);
        let keys = &self.keys;
        if let Some(&id) = self.index.find(hash, |&id| keys.get(id as usize) == Some(&key)) {
            return id;
        }
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                let id = KeyId::try_from(self.holds.len()).expect("fewer than 2^32 keys per operator instance");
                self.holds.push(0);
                id
            }
        };
        *self.keys.slot_mut(id as usize) = Some(key);
        let (keys, hasher) = (&self.keys, &self.hasher);
        self.index.insert_unique(hash, id, |&id| hasher.hash_one(keys.get(id as usize).expect("indexed keys live")));
        id
    }

    /// The key of a live id.
    pub fn key(&self, id: KeyId) -> &K {
        self.keys.get(id as usize).expect("the id of a live key")
    }

    /// The keys as they are now, for a checkpoint written while the table changes.
    pub fn view(&mut self) -> CowView<K> {
        self.keys.view()
    }

    /// One more state entry or timer holds `id`.
    pub fn hold(&mut self, id: KeyId) {
        self.holds[id as usize] += 1;
    }

    /// One state entry or timer less holds `id`. The id stays until
    /// [`free_if_unused`](Self::free_if_unused): the key is still the current one.
    pub fn release(&mut self, id: KeyId) {
        let holds = &mut self.holds[id as usize];
        *holds = holds.checked_sub(1).expect("released more often than held");
    }

    /// Frees `id` if nothing holds it: its key is taken out (and returned) and the id can be
    /// given to a new key.
    #[inline]
    pub fn free_if_unused(&mut self, id: KeyId) -> Option<K> {
        if self.holds[id as usize] != 0 {
            return None;
        }
        self.free(id)
    }

    fn free(&mut self, id: KeyId) -> Option<K> {
        let key = self.keys.existing_slot_mut(id as usize).and_then(Option::take).expect("the id of a live key");
        let hash = self.hasher.hash_one(&key);
        self.index.find_entry(hash, |&indexed| indexed == id).expect("live keys are indexed").remove();
        self.free.push(id);
        Some(key)
    }

    /// How many state entries and timers hold `id`.
    pub fn holds(&self, id: KeyId) -> u32 {
        self.holds[id as usize]
    }

    /// Whether `id` is the id of a live key.
    pub fn is_live(&self, id: KeyId) -> bool {
        self.keys.get(id as usize).is_some()
    }

    /// How many ids have been given out (live or free): ids are below this.
    pub fn capacity(&self) -> usize {
        self.holds.len()
    }

    /// How many keys are live (held by some state entry or timer, or current).
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_kept_while_held_and_reused_once_free() {
        let mut table = KeyTable::default();
        let a = table.intern("a".to_string());
        let b = table.intern("b".to_string());
        assert_ne!(a, b);
        assert_eq!(table.intern("a".to_string()), a, "a known key keeps its id");
        table.hold(a);
        table.hold(a);
        table.release(a);
        table.free_if_unused(a);
        assert_eq!(table.key(a), "a", "still held once");
        table.free_if_unused(b);
        assert_eq!(table.len(), 1);
        let c = table.intern("c".to_string());
        assert_eq!(c, b, "the freed id is reused");
        assert_eq!(table.key(c), "c");
        assert_eq!(table.intern("b".to_string()), 2, "the freed key is new again");
        table.release(a);
        table.free_if_unused(a);
        assert_eq!(table.len(), 2);
        assert_ne!(table.intern("a".to_string()), 2);
    }

    #[test]
    fn many_keys_keep_their_ids_through_growth_and_frees() {
        let mut table = KeyTable::default();
        let ids: Vec<KeyId> = (0..10_000u64).map(|k| table.intern(k)).collect();
        for (k, &id) in ids.iter().enumerate() {
            if k % 2 == 0 {
                table.free_if_unused(id);
            } else {
                table.hold(id);
            }
        }
        assert_eq!(table.len(), 5_000);
        for (k, &id) in ids.iter().enumerate().filter(|(k, _)| k % 2 == 1) {
            assert_eq!(*table.key(id), k as u64);
            assert_eq!(table.intern(k as u64), id);
        }
        let reused: Vec<KeyId> = (10_000..15_000u64).map(|k| table.intern(k)).collect();
        assert!(reused.iter().all(|&id| id < 10_000), "new keys take freed ids before new ones");
    }
}
