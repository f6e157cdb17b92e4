//! Keyed state: values, lists and maps scoped to the key of the current record.
//!
//! A keyed operator registers its state when it opens and gets typed handles back; reading or
//! writing through a handle touches only the table of the current key. Tables are plain hash
//! maps per operator instance; every entry's key group follows from its key hash, which is how
//! a snapshot will be split by key group for rescaling.

use std::any::Any;
use std::collections::HashMap;
use std::marker::PhantomData;

use crate::window::operator::Key;

type Table<K, S> = foldhash::HashMap<K, S>;

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
    tables: Vec<Box<dyn Any + Send>>,
    _key: PhantomData<fn() -> K>,
}

impl<K: Key> Default for KeyedStateBackend<K> {
    fn default() -> Self {
        Self { names: Vec::new(), tables: Vec::new(), _key: PhantomData }
    }
}

impl<K: Key> KeyedStateBackend<K> {
    fn register<S: Send + 'static>(&mut self, name: &str) -> usize {
        assert!(!self.names.iter().any(|n| n == name), "keyed state '{name}' is registered twice");
        self.names.push(name.to_string());
        self.tables.push(Box::new(Table::<K, S>::default()));
        self.tables.len() - 1
    }

    pub fn value_state<V: Send + 'static>(&mut self, name: &str) -> ValueState<V> {
        ValueState { index: self.register::<V>(name), _type: PhantomData }
    }

    pub fn list_state<V: Send + 'static>(&mut self, name: &str) -> ListState<V> {
        ListState { index: self.register::<Vec<V>>(name), _type: PhantomData }
    }

    pub fn map_state<UK: Key, UV: Send + 'static>(&mut self, name: &str) -> MapState<UK, UV> {
        MapState { index: self.register::<HashMap<UK, UV>>(name), _type: PhantomData }
    }

    fn table<S: 'static>(&mut self, index: usize) -> &mut Table<K, S> {
        self.tables[index].downcast_mut::<Table<K, S>>().expect("state handle of this backend")
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
