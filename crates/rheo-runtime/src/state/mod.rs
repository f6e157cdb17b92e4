//! Keyed state: values, lists and maps scoped to the key of the current record.
//!
//! A keyed operator registers its state when it opens and gets typed handles back; reading or
//! writing through a handle touches only the table of the current key. Tables are plain hash
//! maps per operator instance; every entry's key group follows from its key hash, which is how
//! a restored snapshot is split by key group for rescaling.

pub mod restore;
pub(crate) mod timers;

use std::any::Any;
use std::collections::HashMap;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use rheo_types::Key;

type Table<K, S> = foldhash::HashMap<K, S>;

/// A value that can live in keyed state: sent to checkpoints and read back.
pub trait StateValue: Serialize + DeserializeOwned + Send + 'static {}
impl<T: Serialize + DeserializeOwned + Send + 'static> StateValue for T {}

/// One registered state of every key, behind a trait object so the backend can snapshot and
/// restore tables of any value type.
trait StateTable<K>: Send {
    fn as_any(&mut self) -> &mut dyn Any;
    fn len(&self) -> usize;
    /// Calls `visit` with every key and its value encoded, in one buffer reused for all.
    fn for_each_encoded(&self, visit: &mut dyn FnMut(&K, &[u8]));
    fn insert_encoded(&mut self, key: K, bytes: &[u8]) -> Result<(), postcard::Error>;
}

struct TypedTable<K, S>(Table<K, S>);

impl<K: Key, S: StateValue> StateTable<K> for TypedTable<K, S> {
    fn as_any(&mut self) -> &mut dyn Any {
        &mut self.0
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn for_each_encoded(&self, visit: &mut dyn FnMut(&K, &[u8])) {
        let mut buffer = Vec::new();
        for (key, value) in &self.0 {
            buffer.clear();
            buffer = postcard::to_extend(value, buffer).expect("state is serializable");
            visit(key, &buffer);
        }
    }
    fn insert_encoded(&mut self, key: K, bytes: &[u8]) -> Result<(), postcard::Error> {
        self.0.insert(key, postcard::from_bytes(bytes)?);
        Ok(())
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

/// All keyed state of one operator instance.
pub struct KeyedStateBackend<K> {
    names: Vec<String>,
    tables: Vec<Box<dyn StateTable<K>>>,
}

impl<K: Key> Default for KeyedStateBackend<K> {
    fn default() -> Self {
        Self { names: Vec::new(), tables: Vec::new() }
    }
}

impl<K: Key> KeyedStateBackend<K> {
    fn register<S: StateValue>(&mut self, name: &str) -> usize {
        assert!(!self.names.iter().any(|n| n == name), "keyed state '{name}' is registered twice");
        self.names.push(name.to_string());
        self.tables.push(Box::new(TypedTable::<K, S>(Table::default())));
        self.tables.len() - 1
    }

    pub fn value_state<V: StateValue>(&mut self, name: &str) -> ValueState<V> {
        ValueState { index: self.register::<V>(name), _type: PhantomData }
    }

    pub fn list_state<V: StateValue>(&mut self, name: &str) -> ListState<V> {
        ListState { index: self.register::<Vec<V>>(name), _type: PhantomData }
    }

    pub fn map_state<UK: Key, UV: StateValue>(&mut self, name: &str) -> MapState<UK, UV> {
        MapState { index: self.register::<HashMap<UK, UV>>(name), _type: PhantomData }
    }

    fn table<S: 'static>(&mut self, index: usize) -> &mut Table<K, S> {
        self.tables[index].as_any().downcast_mut::<Table<K, S>>().expect("state handle of this backend")
    }

    /// How many (state, key) entries there are.
    pub fn entry_count(&self) -> usize {
        self.tables.iter().map(|t| t.len()).sum()
    }

    /// Calls `visit` with every (state name, key, encoded value), for a checkpoint, without
    /// copying keys or allocating per entry.
    pub fn for_each_entry(&self, mut visit: impl FnMut(&str, &K, &[u8])) {
        for (name, table) in self.names.iter().zip(&self.tables) {
            table.for_each_encoded(&mut |key, value| visit(name, key, value));
        }
    }

    /// Every (state name, key, encoded value), for a checkpoint.
    pub fn snapshot_entries(&self) -> Vec<(String, K, Vec<u8>)> {
        let mut entries = Vec::with_capacity(self.entry_count());
        self.for_each_entry(|name, key, value| entries.push((name.to_string(), key.clone(), value.to_vec())));
        entries
    }

    /// Puts back one entry of a checkpoint.
    pub fn restore_entry(&mut self, name: &str, key: K, value: &[u8]) -> Result<(), StateError> {
        let index =
            self.names.iter().position(|n| n == name).ok_or_else(|| StateError::UnknownState(name.to_string()))?;
        self.tables[index]
            .insert_encoded(key, value)
            .map_err(|source| StateError::Decode { name: name.to_string(), source })
    }

    pub fn value<V: 'static>(&mut self, handle: &ValueState<V>, key: &K) -> Option<&V> {
        self.table::<V>(handle.index).get(key)
    }

    pub fn update<V: 'static>(&mut self, handle: &ValueState<V>, key: &K, value: V) {
        self.table::<V>(handle.index).insert(key.clone(), value);
    }

    pub fn clear_value<V: 'static>(&mut self, handle: &ValueState<V>, key: &K) {
        self.table::<V>(handle.index).remove(key);
    }

    pub fn list<V: 'static>(&mut self, handle: &ListState<V>, key: &K) -> &[V] {
        self.table::<Vec<V>>(handle.index).get(key).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn add<V: 'static>(&mut self, handle: &ListState<V>, key: &K, value: V) {
        self.table::<Vec<V>>(handle.index).entry(key.clone()).or_default().push(value);
    }

    pub fn clear_list<V: 'static>(&mut self, handle: &ListState<V>, key: &K) {
        self.table::<Vec<V>>(handle.index).remove(key);
    }

    pub fn map_get<UK: Key, UV: 'static>(&mut self, handle: &MapState<UK, UV>, key: &K, user_key: &UK) -> Option<&UV> {
        self.table::<HashMap<UK, UV>>(handle.index).get(key).and_then(|m| m.get(user_key))
    }

    pub fn map_put<UK: Key, UV: 'static>(&mut self, handle: &MapState<UK, UV>, key: &K, user_key: UK, value: UV) {
        self.table::<HashMap<UK, UV>>(handle.index).entry(key.clone()).or_default().insert(user_key, value);
    }

    pub fn map_remove<UK: Key, UV: 'static>(
        &mut self,
        handle: &MapState<UK, UV>,
        key: &K,
        user_key: &UK,
    ) -> Option<UV> {
        let table = self.table::<HashMap<UK, UV>>(handle.index);
        let map = table.get_mut(key)?;
        let removed = map.remove(user_key);
        if map.is_empty() {
            table.remove(key);
        }
        removed
    }

    pub fn map_entries<UK: Key, UV: 'static>(&mut self, handle: &MapState<UK, UV>, key: &K) -> Vec<(UK, &UV)> {
        match self.table::<HashMap<UK, UV>>(handle.index).get(key) {
            Some(map) => map.iter().map(|(k, v)| (k.clone(), v)).collect(),
            None => Vec::new(),
        }
    }

    pub fn clear_map<UK: Key, UV: 'static>(&mut self, handle: &MapState<UK, UV>, key: &K) {
        self.table::<HashMap<UK, UV>>(handle.index).remove(key);
    }
}
