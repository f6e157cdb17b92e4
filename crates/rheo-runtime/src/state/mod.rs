//! Keyed state: values, lists and maps scoped to the key of the current record.
//!
//! A keyed operator registers its state when it opens and gets typed handles back; reading or
//! writing through a handle touches only the entry of the current key. Keys are interned once
//! per operator instance ([`keys::KeyTable`]): every state table is a vector indexed by the
//! key's 4-byte id, so a key is stored once however many states and timers it has. Every
//! entry's key group follows from its key hash, which is how a restored snapshot is split by
//! key group for rescaling.
//!
//! With `state.backend.type: disk` the backend keeps at most `state.backend.disk.cached-keys`
//! keys in memory and moves the state and timers of keys not used for a while to a
//! [`disk::DiskTier`]; a key used again, or whose timer is due, is read back first.

mod cow;
pub mod disk;
pub mod incremental;
pub mod keys;
pub mod restore;
pub(crate) mod timers;

use timers::Timers;

use std::any::Any;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::output::Timestamp;
use cow::{CowVec, CowView};
use disk::{DiskError, DiskRecord, DiskTier, DiskView, StoredKey};
use incremental::Increments;
use keys::{KeyId, KeyTable};
use rheo_types::Key;

/// A value that can live in operator state: sent to checkpoints and read back.
pub trait StateValue: Serialize + DeserializeOwned + Send + 'static {}
impl<T: Serialize + DeserializeOwned + Send + 'static> StateValue for T {}

/// A value of keyed state. `Clone` and `Sync` because a checkpoint is written from a
/// copy-on-write view on another thread: a value written while a checkpoint reads its chunk
/// is copied first.
pub trait KeyedValue: StateValue + Clone + Sync {}
impl<T: StateValue + Clone + Sync> KeyedValue for T {}

/// One registered state of every key: a slot per key id.
struct Table<S> {
    slots: CowVec<S>,
    len: usize,
}

impl<S: Clone> Table<S> {
    fn get(&self, id: KeyId) -> Option<&S> {
        self.slots.get(id as usize)
    }

    fn get_mut(&mut self, id: KeyId) -> Option<&mut S> {
        self.slots.get(id as usize)?;
        self.slots.existing_slot_mut(id as usize)?.as_mut()
    }

    /// The value of `id`, made with `make` if there is none; true if it was made.
    fn get_or_insert_with(&mut self, id: KeyId, make: impl FnOnce() -> S) -> (&mut S, bool) {
        let slot = self.slots.slot_mut(id as usize);
        let made = slot.is_none();
        if made {
            self.len += 1;
        }
        (slot.get_or_insert_with(make), made)
    }

    /// Sets the value of `id`; true if it had none.
    fn put(&mut self, id: KeyId, value: S) -> bool {
        let slot = self.slots.slot_mut(id as usize);
        let made = slot.replace(value).is_none();
        self.len += usize::from(made);
        made
    }

    fn take(&mut self, id: KeyId) -> Option<S> {
        self.slots.get(id as usize)?;
        let taken = self.slots.existing_slot_mut(id as usize)?.take();
        self.len -= usize::from(taken.is_some());
        taken
    }
}

/// One registered state of every key, behind a trait object so the backend can snapshot and
/// restore tables of any value type.
trait StateTable: Send {
    fn as_any(&mut self) -> &mut dyn Any;
    fn len(&self) -> usize;
    /// The table as it is now, for a checkpoint written while it changes.
    fn view(&mut self) -> Box<dyn TableView>;
    /// Sets the value of `id` from its encoding; true if it had none.
    fn insert_encoded(&mut self, id: KeyId, bytes: &[u8]) -> Result<bool, postcard::Error>;
    /// Whether `id` has a value.
    fn has(&self, id: KeyId) -> bool;
    /// Takes the value of `id` out, encoded.
    fn take_encoded(&mut self, id: KeyId) -> Option<Vec<u8>>;
}

/// A registered state as it was at a checkpoint.
trait TableView: Send {
    fn len(&self) -> usize;
    /// Calls `visit` with every key id and its value encoded, in one buffer reused for all.
    fn for_each_encoded(&self, visit: &mut dyn FnMut(KeyId, &[u8]));
    /// The value of `id` encoded, if it has one.
    fn encoded(&self, id: KeyId) -> Option<Vec<u8>>;
}

struct TypedView<S> {
    slots: CowView<S>,
    len: usize,
}

impl<S: KeyedValue> TableView for TypedView<S> {
    fn len(&self) -> usize {
        self.len
    }
    fn for_each_encoded(&self, visit: &mut dyn FnMut(KeyId, &[u8])) {
        let mut buffer = Vec::new();
        for (id, value) in self.slots.iter() {
            buffer.clear();
            buffer = postcard::to_extend(value, buffer).expect("state is serializable");
            visit(id as KeyId, &buffer);
        }
    }
    fn encoded(&self, id: KeyId) -> Option<Vec<u8>> {
        self.slots.get(id as usize).map(|value| postcard::to_stdvec(value).expect("state is serializable"))
    }
}

impl<S: KeyedValue> StateTable for Table<S> {
    fn as_any(&mut self) -> &mut dyn Any {
        self
    }
    fn len(&self) -> usize {
        self.len
    }
    fn view(&mut self) -> Box<dyn TableView> {
        Box::new(TypedView { slots: self.slots.view(), len: self.len })
    }
    fn insert_encoded(&mut self, id: KeyId, bytes: &[u8]) -> Result<bool, postcard::Error> {
        Ok(self.put(id, postcard::from_bytes(bytes)?))
    }
    fn has(&self, id: KeyId) -> bool {
        self.get(id).is_some()
    }
    fn take_encoded(&mut self, id: KeyId) -> Option<Vec<u8>> {
        self.take(id).map(|value| postcard::to_stdvec(&value).expect("state is serializable"))
    }
}

/// A key's state entries: (state name, encoded value).
pub type NamedEntries<'a> = Vec<(&'a str, Vec<u8>)>;

/// A key's state entries and timers (event time?, at) as they were on disk at a view.
pub struct KeyOnDisk<'a> {
    pub entries: NamedEntries<'a>,
    pub timers: Vec<(bool, Timestamp)>,
}

/// All keyed state of an operator instance as it was when the view was taken: what a
/// checkpoint writes, off the task thread, while the task goes on changing the state. Taking
/// it copies a pointer per chunk of 1,024 keys or values (and, with the disk tier, commits the
/// keys evicted since the last commit and opens a read transaction).
pub struct StateView<K> {
    keys: CowView<K>,
    names: Vec<String>,
    tables: Vec<Box<dyn TableView>>,
    /// The keys on disk at the view (disk backend only).
    disk: Option<Arc<DiskView>>,
    _key: PhantomData<fn() -> K>,
}

impl<K: Key> StateView<K> {
    /// How many (state, key) entries there are.
    pub fn entry_count(&self) -> usize {
        let on_disk = self.disk.as_ref().map_or(0, |d| d.entries as usize);
        self.tables.iter().map(|t| t.len()).sum::<usize>() + on_disk
    }

    /// The key of an id that was live when the view was taken.
    pub fn key(&self, id: KeyId) -> &K {
        self.keys.get(id as usize).expect("the id of a key live at the view")
    }

    /// The key of `id` if it was live when the view was taken.
    pub fn live_key(&self, id: KeyId) -> Option<&K> {
        self.keys.get(id as usize)
    }

    /// Calls `visit` with every (state name, encoded value) of key `id`.
    pub fn for_each_entry_of<'a>(&'a self, id: KeyId, mut visit: impl FnMut(&'a str, Vec<u8>)) {
        for (name, table) in self.names.iter().zip(&self.tables) {
            if let Some(value) = table.encoded(id) {
                visit(name, value);
            }
        }
    }

    /// The (state name, encoded value) entries and the timers of `key` if it was on disk at
    /// the view.
    pub fn on_disk(&self, key: &K) -> Result<Option<KeyOnDisk<'_>>, String> {
        let Some(disk) = &self.disk else { return Ok(None) };
        let encoded = postcard::to_stdvec(key).map_err(|e| e.to_string())?;
        Ok(disk.get(&encoded)?.map(|stored| KeyOnDisk { entries: self.named(stored.entries), timers: stored.timers }))
    }

    /// How many timers were on disk at the view.
    pub fn timers_on_disk(&self) -> usize {
        self.disk.as_ref().map_or(0, |d| d.timers as usize)
    }

    /// Calls `visit` with every timer (key, event time?, at) on disk at the view.
    pub fn for_each_timer_on_disk(&self, mut visit: impl FnMut(&K, bool, Timestamp)) -> Result<(), String> {
        let Some(disk) = &self.disk else { return Ok(()) };
        let mut failed = None;
        disk.for_each(|key, stored| {
            if failed.is_some() || stored.timers.is_empty() {
                return;
            }
            match postcard::from_bytes::<K>(key) {
                Ok(key) => stored.timers.iter().for_each(|&(event_time, at)| visit(&key, event_time, at)),
                Err(e) => failed = Some(format!("a key on disk cannot be decoded: {e}")),
            }
        })?;
        failed.map_or(Ok(()), Err)
    }

    fn named(&self, record: DiskRecord) -> NamedEntries<'_> {
        record.into_iter().map(|(index, value)| (self.names[index as usize].as_str(), value)).collect()
    }

    /// Calls `visit` with every (state name, key, encoded value), those on disk last.
    pub fn for_each_entry(&self, mut visit: impl FnMut(&str, &K, &[u8])) -> Result<(), String> {
        for (name, table) in self.names.iter().zip(&self.tables) {
            table.for_each_encoded(&mut |id, value| visit(name, self.key(id), value));
        }
        let Some(disk) = &self.disk else { return Ok(()) };
        let mut failed = None;
        disk.for_each(|key, stored| {
            if failed.is_some() || stored.entries.is_empty() {
                return;
            }
            match postcard::from_bytes::<K>(key) {
                Ok(key) => {
                    for (index, value) in stored.entries {
                        visit(&self.names[index as usize], &key, &value);
                    }
                }
                Err(e) => failed = Some(format!("a key on disk cannot be decoded: {e}")),
            }
        })?;
        failed.map_or(Ok(()), Err)
    }
}

/// Where keyed state lives (`state.backend.type`).
#[derive(Debug, Clone, Default)]
pub enum BackendOptions {
    /// All of it in memory (Flink's `hashmap`).
    #[default]
    Memory,
    /// At most `cached_keys` keys in memory, the rest in a database under `dir` (the system's
    /// temporary directory when `None`).
    Disk { dir: Option<PathBuf>, cached_keys: usize },
}

impl BackendOptions {
    /// The options of `config`, which the job driver validated before the job started.
    pub fn from_config(config: &rheo_config::Configuration) -> Self {
        use rheo_config::options;
        match config.get(&options::STATE_BACKEND_TYPE).as_deref() {
            Ok("disk") => BackendOptions::Disk {
                dir: config.get(&options::STATE_BACKEND_DISK_DIR).ok().flatten().map(PathBuf::from),
                cached_keys: (config.get(&options::STATE_BACKEND_DISK_CACHED_KEYS))
                    .unwrap_or(options::STATE_BACKEND_DISK_CACHED_KEYS.default_value())
                    .max(1),
            },
            _ => BackendOptions::Memory,
        }
    }
}

/// The disk tier and its eviction clock.
struct Spill {
    tier: DiskTier,
    cached_keys: usize,
    /// A bit per key id set when the key is used, cleared as the clock hand passes (the CLOCK
    /// approximation of least-recently-used).
    used: Vec<u64>,
    hand: usize,
    /// Eviction is tried again once this many keys are in memory: when every key is in use,
    /// scanning again at every record would cost a scan per record.
    next_try_at: usize,
    /// The times timers last fired through (event time, processing time): a key with a timer
    /// due by then is about to fire and stays in memory.
    fired_through: (Timestamp, Timestamp),
}

impl Spill {
    fn touch(&mut self, id: KeyId) {
        let word = id as usize / 64;
        if self.used.len() <= word {
            self.used.resize(word + 1, 0);
        }
        self.used[word] |= 1 << (id % 64);
    }

    /// Clears the use bit of `id`; whether it was set.
    fn clear_used(&mut self, id: KeyId) -> bool {
        let Some(word) = self.used.get_mut(id as usize / 64) else { return false };
        let bit = 1 << (id % 64);
        let was = *word & bit != 0;
        *word &= !bit;
        was
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("restored state '{0}' is not registered by the function's open()")]
    UnknownState(String),
    #[error("restored state '{name}' cannot be decoded: {source}")]
    Decode { name: String, source: postcard::Error },
}

/// A single value per key (Flink's `ValueState`).
pub struct ValueState<V> {
    index: usize,
    _type: PhantomData<fn() -> V>,
}

/// A list per key (Flink's `ListState`).
pub struct ListState<V> {
    index: usize,
    _type: PhantomData<fn() -> V>,
}

/// A map per key (Flink's `MapState`).
pub struct MapState<UK, UV> {
    index: usize,
    _type: PhantomData<fn() -> (UK, UV)>,
}

impl<V> Clone for ValueState<V> {
    fn clone(&self) -> Self {
        Self { index: self.index, _type: PhantomData }
    }
}
impl<V> Clone for ListState<V> {
    fn clone(&self) -> Self {
        Self { index: self.index, _type: PhantomData }
    }
}
impl<UK, UV> Clone for MapState<UK, UV> {
    fn clone(&self) -> Self {
        Self { index: self.index, _type: PhantomData }
    }
}

/// All keyed state of one operator instance: its keys, and a table per registered state.
///
/// Values are reached by the [`KeyId`] of the current key (the operator interns the key of
/// each record and timer once). Each entry holds its key's id; the operator frees an id that
/// nothing holds when it is done with the record or timer.
pub struct KeyedStateBackend<K> {
    keys: KeyTable<K>,
    names: Vec<String>,
    tables: Vec<Box<dyn StateTable>>,
    /// What changed since the last completed checkpoint, for incremental checkpoints.
    increments: Increments<K>,
    /// The timers of every key in memory.
    timers: Timers,
    /// The disk tier, with `state.backend.type: disk`.
    spill: Option<Spill>,
}

impl<K: Key> Default for KeyedStateBackend<K> {
    fn default() -> Self {
        Self {
            keys: KeyTable::default(),
            names: Vec::new(),
            tables: Vec::new(),
            increments: Increments::default(),
            timers: Timers::default(),
            spill: None,
        }
    }
}

impl<K: Key> KeyedStateBackend<K> {
    /// A backend as configured; `name` names its directory on disk (the task's name).
    pub fn new(options: &BackendOptions, name: &str) -> Result<Self, DiskError> {
        let mut backend = Self::default();
        if let BackendOptions::Disk { dir, cached_keys } = options {
            let tier = DiskTier::create(dir.as_deref(), name)?;
            backend.spill = Some(Spill {
                tier,
                cached_keys: *cached_keys,
                used: Vec::new(),
                hand: 0,
                next_try_at: 0,
                fired_through: (Timestamp::MIN, Timestamp::MIN),
            });
            backend.timers = Timers::indexed();
        }
        Ok(backend)
    }

    fn register<S: KeyedValue>(&mut self, name: &str) -> usize {
        assert!(!self.names.iter().any(|n| n == name), "keyed state '{name}' is registered twice");
        self.names.push(name.to_string());
        self.tables.push(Box::new(Table::<S> { slots: CowVec::default(), len: 0 }));
        self.tables.len() - 1
    }

    pub fn value_state<V: KeyedValue>(&mut self, name: &str) -> ValueState<V> {
        ValueState { index: self.register::<V>(name), _type: PhantomData }
    }

    pub fn list_state<V: KeyedValue>(&mut self, name: &str) -> ListState<V> {
        ListState { index: self.register::<Vec<V>>(name), _type: PhantomData }
    }

    pub fn map_state<UK: Key, UV: KeyedValue>(&mut self, name: &str) -> MapState<UK, UV> {
        MapState { index: self.register::<HashMap<UK, UV>>(name), _type: PhantomData }
    }

    fn table<S: 'static>(&mut self, index: usize) -> &mut Table<S> {
        self.tables[index].as_any().downcast_mut::<Table<S>>().expect("state handle of this backend")
    }

    /// The id of `key`, reading its state back from disk first if it was evicted (see
    /// [`KeyTable::intern`] for what the caller owes).
    #[inline]
    pub(crate) fn intern(&mut self, key: K) -> KeyId {
        let known = self.keys.len();
        let id = self.keys.intern(key);
        if self.spill.is_none() { id } else { self.read_back(id, known) }
    }

    /// With the disk tier: marks `id` used, and if it is new in memory reads its state and
    /// timers back from disk, if it was evicted.
    fn read_back(&mut self, id: KeyId, known: usize) -> KeyId {
        let Some(spill) = &mut self.spill else { return id };
        spill.touch(id);
        if self.keys.len() == known || spill.tier.key_count() == 0 {
            return id;
        }
        let encoded = postcard::to_stdvec(self.keys.key(id)).expect("keys are serializable");
        let record = spill.tier.take(&encoded).unwrap_or_else(|e| panic!("keyed state on disk: {e}"));
        if let Some(StoredKey { changed_at, entries, timers }) = record {
            for (index, value) in entries {
                let made = self.tables[index as usize].insert_encoded(id, &value);
                if made.unwrap_or_else(|e| panic!("keyed state on disk cannot be decoded: {e}")) {
                    self.keys.hold(id);
                }
            }
            for &(event_time, at) in &timers {
                if self.timers.register(event_time, at, id) {
                    self.keys.hold(id);
                }
            }
            let key = self.keys.key(id).clone();
            self.increments.key_faulted_in(id, &key, changed_at, &timers);
        }
        id
    }

    /// The timers of the keys in memory.
    pub(crate) fn timers(&self) -> &Timers {
        &self.timers
    }

    /// Sets a timer of `id`, which holds the key.
    pub(crate) fn register_timer(&mut self, event_time: bool, at: Timestamp, id: KeyId) {
        if self.timers.register(event_time, at, id) {
            self.keys.hold(id);
            self.increments.timer_changed(event_time, at, id);
        }
    }

    /// Deletes a timer of `id`.
    pub(crate) fn delete_timer(&mut self, event_time: bool, at: Timestamp, id: KeyId) {
        if self.timers.delete(event_time, at, id) {
            self.keys.release(id);
            self.increments.timer_changed(event_time, at, id);
        }
    }

    /// Puts back a timer of a checkpoint.
    pub(crate) fn restore_timer(&mut self, event_time: bool, at: Timestamp, key: K) {
        let id = self.intern(key);
        if self.timers.register(event_time, at, id) {
            self.keys.hold(id);
        }
        self.free_if_unused(id);
    }

    /// Takes the earliest timer of the domain due at `time`, in memory or on disk (whose key is
    /// read back first). The fired timer no longer holds its key, which stays until the caller
    /// is done with it ([`free_if_unused`](Self::free_if_unused)).
    pub(crate) fn pop_due_timer(&mut self, event_time: bool, time: Timestamp) -> Option<(Timestamp, KeyId)> {
        self.read_back_due_timers(event_time, time);
        let (at, id) = self.timers.pop_due(event_time, time)?;
        self.keys.release(id);
        self.increments.timer_changed(event_time, at, id);
        Some((at, id))
    }

    /// Reads back keys whose timers on disk are due at `time`, once the earliest of them is
    /// earlier than the next timer in memory: the keys of the earliest due timers on disk, a
    /// batch at a time; the queue in memory then fires them in time order.
    fn read_back_due_timers(&mut self, event_time: bool, time: Timestamp) {
        let Some(spill) = &mut self.spill else { return };
        let through = if event_time { &mut spill.fired_through.0 } else { &mut spill.fired_through.1 };
        *through = (*through).max(time);
        let on_disk = spill.tier.first_timer(event_time).unwrap_or_else(|e| panic!("keyed state on disk: {e}"));
        let Some(at) = on_disk.filter(|&at| at <= time) else { return };
        // Timers in memory of the same time fire first: the next batch comes back once they
        // have, so the keys in memory stay about a batch beyond the cached keys.
        if self.timers.queue(event_time).next_time().is_some_and(|in_memory| in_memory <= at) {
            return;
        }
        // A batch: not one key at a time (a lookup each), not all at once (10 million timers of
        // the end of input would all come back to memory).
        let batch = (spill.cached_keys / 10).clamp(1, 1024);
        let keys = spill
            .tier
            .keys_with_timers_due(event_time, time, batch)
            .unwrap_or_else(|e| panic!("keyed state on disk: {e}"));
        for key in keys {
            let key: K = postcard::from_bytes(&key).unwrap_or_else(|e| panic!("a key on disk cannot be decoded: {e}"));
            let id = self.intern(key);
            // Held by its timers: nothing to free, and no eviction before they fire.
            assert!(self.keys.holds(id) > 0, "a timer on disk whose key is not there");
        }
    }

    /// The time of the earliest timer of the domain, in memory or on disk.
    pub(crate) fn next_timer(&mut self, event_time: bool) -> Option<Timestamp> {
        let in_memory = self.timers.queue(event_time).next_time();
        let on_disk = self.spill.as_mut().and_then(|spill| {
            spill.tier.first_timer(event_time).unwrap_or_else(|e| panic!("keyed state on disk: {e}"))
        });
        in_memory.into_iter().chain(on_disk).min()
    }

    /// The key of a live id.
    pub(crate) fn key(&self, id: KeyId) -> &K {
        self.keys.key(id)
    }

    /// Frees `id` if nothing holds it (see [`KeyTable::free_if_unused`]), remembering the key as
    /// dropped for the next incremental checkpoint; then, with the disk tier, evicts keys if too
    /// many are in memory.
    #[inline]
    pub(crate) fn free_if_unused(&mut self, id: KeyId) {
        if let Some(key) = self.keys.free_if_unused(id) {
            self.increments.key_dropped(id, &key);
        }
        if self.spill.is_some() {
            self.evict_if_over();
        }
    }

    /// Done with `id`, which holds state: nothing to free (so its hold count, another cache
    /// line, is not read); with the disk tier, evicts keys if too many are in memory.
    #[inline]
    pub(crate) fn done_with_held(&mut self, id: KeyId) {
        debug_assert!(self.keys.holds(id) > 0, "done_with_held on a key that holds nothing");
        if self.spill.is_some() {
            self.evict_if_over();
        }
    }

    /// Moves the state and timers of keys not used lately to disk until at most 75 % of the
    /// cached keys are in memory (a batch: each write to the database has a fixed cost).
    fn evict_if_over(&mut self) {
        let Some(spill) = &mut self.spill else { return };
        let in_memory = self.keys.len();
        if in_memory <= spill.cached_keys || in_memory < spill.next_try_at {
            return;
        }
        let target = spill.cached_keys - spill.cached_keys / 4;
        let capacity = self.keys.capacity();
        let mut evicted: Vec<(Vec<u8>, StoredKey)> = Vec::new();
        // Two turns of the clock at most: the first clears use bits, the second finds them clear.
        for _ in 0..2 * capacity {
            if self.keys.len() <= target {
                break;
            }
            let id = spill.hand as KeyId;
            spill.hand = (spill.hand + 1) % capacity;
            if !self.keys.is_live(id) || spill.clear_used(id) {
                continue;
            }
            let entries = self.tables.iter().filter(|t| t.has(id)).count();
            if self.keys.holds(id) as usize != entries + self.timers.count_of(id) {
                continue; // held by something else than its state and timers: in use
            }
            if self.timers.has_due(id, spill.fired_through.0, spill.fired_through.1) {
                continue; // fires next
            }
            let record: DiskRecord = (self.tables.iter_mut().enumerate())
                .filter_map(|(index, table)| Some((index as u32, table.take_encoded(id)?)))
                .collect();
            let timers = self.timers.take_key(id).into_vec();
            for _ in 0..record.len() + timers.len() {
                self.keys.release(id);
            }
            let key = self.keys.free_if_unused(id).expect("an evicted key is held by nothing");
            let changed_at = self.increments.key_evicted(id, &key);
            let stored = StoredKey { changed_at, entries: record, timers };
            evicted.push((postcard::to_stdvec(&key).expect("keys are serializable"), stored));
        }
        let commit_after = spill.cached_keys as u64;
        spill.tier.put_all(&evicted, commit_after).unwrap_or_else(|e| panic!("keyed state on disk: {e}"));
        spill.next_try_at = if self.keys.len() > target { self.keys.len() + spill.cached_keys / 10 + 1 } else { 0 };
        tracing::debug!(
            evicted = evicted.len(),
            in_memory = self.keys.len(),
            on_disk = spill.tier.key_count(),
            "keyed state evicted"
        );
    }

    /// How many keys are on disk (0 without the disk tier).
    pub fn keys_on_disk(&self) -> u64 {
        self.spill.as_ref().map_or(0, |s| s.tier.key_count())
    }

    /// The change tracking of incremental checkpoints (timers are marked by their operator).
    pub(crate) fn increments(&mut self) -> &mut Increments<K> {
        &mut self.increments
    }

    /// How many (state, key) entries are in memory.
    pub fn entry_count(&self) -> usize {
        self.tables.iter().map(|t| t.len()).sum()
    }

    /// How many distinct keys in memory have state or timers.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// The state as it is now, for a checkpoint written while it changes.
    pub fn view(&mut self) -> StateView<K> {
        let disk = self
            .spill
            .as_mut()
            .map(|spill| Arc::new(spill.tier.view().unwrap_or_else(|e| panic!("keyed state on disk: {e}"))));
        StateView {
            keys: self.keys.view(),
            names: self.names.clone(),
            tables: self.tables.iter_mut().map(|table| table.view()).collect(),
            disk,
            _key: PhantomData,
        }
    }

    /// Every (state name, key, encoded value), for a checkpoint.
    pub fn snapshot_entries(&mut self) -> Vec<(String, K, Vec<u8>)> {
        let mut entries = Vec::with_capacity(self.entry_count());
        self.view()
            .for_each_entry(|name, key, value| entries.push((name.to_string(), key.clone(), value.to_vec())))
            .unwrap_or_else(|e| panic!("keyed state on disk: {e}"));
        entries
    }

    /// Puts back one entry of a checkpoint.
    pub fn restore_entry(&mut self, name: &str, key: K, value: &[u8]) -> Result<(), StateError> {
        let index =
            self.names.iter().position(|n| n == name).ok_or_else(|| StateError::UnknownState(name.to_string()))?;
        let id = self.intern(key);
        let made = self.tables[index].insert_encoded(id, value);
        let made = made.map_err(|source| StateError::Decode { name: name.to_string(), source });
        if made.as_ref().is_ok_and(|&made| made) {
            self.keys.hold(id);
        }
        self.keys.free_if_unused(id);
        self.evict_if_over();
        made.map(drop)
    }

    pub(crate) fn value<V: Clone + 'static>(&mut self, handle: &ValueState<V>, key: KeyId) -> Option<&V> {
        self.table::<V>(handle.index).get(key)
    }

    pub(crate) fn update<V: Clone + 'static>(&mut self, handle: &ValueState<V>, key: KeyId, value: V) {
        self.increments.state_changed(key);
        if self.table::<V>(handle.index).put(key, value) {
            self.keys.hold(key);
        }
    }

    /// The value of `key` to change in place, made with `make` if it has none: one lookup where
    /// reading, changing and writing back a copy would be two and a copy.
    pub(crate) fn value_mut<V: Clone + 'static>(
        &mut self,
        handle: &ValueState<V>,
        key: KeyId,
        make: impl FnOnce() -> V,
    ) -> &mut V {
        self.increments.state_changed(key);
        let table =
            self.tables[handle.index].as_any().downcast_mut::<Table<V>>().expect("state handle of this backend");
        let (value, made) = table.get_or_insert_with(key, make);
        if made {
            self.keys.hold(key);
        }
        value
    }

    /// The key of `key` with its value to change in place, if it has one.
    pub(crate) fn key_and_value_mut<V: Clone + 'static>(
        &mut self,
        handle: &ValueState<V>,
        key: KeyId,
    ) -> (&K, Option<&mut V>) {
        self.increments.state_changed(key);
        let table =
            self.tables[handle.index].as_any().downcast_mut::<Table<V>>().expect("state handle of this backend");
        (self.keys.key(key), table.get_mut(key))
    }

    /// Takes the value of `key` out (it has none afterwards).
    pub(crate) fn take_value<V: Clone + 'static>(&mut self, handle: &ValueState<V>, key: KeyId) -> Option<V> {
        self.increments.state_changed(key);
        let taken = self.table::<V>(handle.index).take(key);
        if taken.is_some() {
            self.keys.release(key);
        }
        taken
    }

    pub(crate) fn clear_value<V: Clone + 'static>(&mut self, handle: &ValueState<V>, key: KeyId) {
        self.increments.state_changed(key);
        if self.table::<V>(handle.index).take(key).is_some() {
            self.keys.release(key);
        }
    }

    pub(crate) fn list<V: Clone + 'static>(&mut self, handle: &ListState<V>, key: KeyId) -> &[V] {
        self.table::<Vec<V>>(handle.index).get(key).map(Vec::as_slice).unwrap_or(&[])
    }

    pub(crate) fn add<V: Clone + 'static>(&mut self, handle: &ListState<V>, key: KeyId, value: V) {
        self.increments.state_changed(key);
        let (list, made) = self.table::<Vec<V>>(handle.index).get_or_insert_with(key, Vec::new);
        list.push(value);
        if made {
            self.keys.hold(key);
        }
    }

    pub(crate) fn clear_list<V: Clone + 'static>(&mut self, handle: &ListState<V>, key: KeyId) {
        self.increments.state_changed(key);
        if self.table::<Vec<V>>(handle.index).take(key).is_some() {
            self.keys.release(key);
        }
    }

    pub(crate) fn map_get<UK: Key, UV: Clone + 'static>(
        &mut self,
        handle: &MapState<UK, UV>,
        key: KeyId,
        user_key: &UK,
    ) -> Option<&UV> {
        self.table::<HashMap<UK, UV>>(handle.index).get(key).and_then(|m| m.get(user_key))
    }

    pub(crate) fn map_put<UK: Key, UV: Clone + 'static>(
        &mut self,
        handle: &MapState<UK, UV>,
        key: KeyId,
        user_key: UK,
        value: UV,
    ) {
        self.increments.state_changed(key);
        let (map, made) = self.table::<HashMap<UK, UV>>(handle.index).get_or_insert_with(key, HashMap::new);
        map.insert(user_key, value);
        if made {
            self.keys.hold(key);
        }
    }

    pub(crate) fn map_remove<UK: Key, UV: Clone + 'static>(
        &mut self,
        handle: &MapState<UK, UV>,
        key: KeyId,
        user_key: &UK,
    ) -> Option<UV> {
        self.increments.state_changed(key);
        let table = self.table::<HashMap<UK, UV>>(handle.index);
        let map = table.get_mut(key)?;
        let removed = map.remove(user_key);
        if map.is_empty() {
            table.take(key);
            self.keys.release(key);
        }
        removed
    }

    pub(crate) fn map_entries<UK: Key, UV: Clone + 'static>(
        &mut self,
        handle: &MapState<UK, UV>,
        key: KeyId,
    ) -> Vec<(UK, &UV)> {
        match self.table::<HashMap<UK, UV>>(handle.index).get(key) {
            Some(map) => map.iter().map(|(k, v)| (k.clone(), v)).collect(),
            None => Vec::new(),
        }
    }

    pub(crate) fn clear_map<UK: Key, UV: Clone + 'static>(&mut self, handle: &MapState<UK, UV>, key: KeyId) {
        self.increments.state_changed(key);
        if self.table::<HashMap<UK, UV>>(handle.index).take(key).is_some() {
            self.keys.release(key);
        }
    }
}
