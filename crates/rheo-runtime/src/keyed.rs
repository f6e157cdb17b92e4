//! Operators on keyed streams that are not windows: the general keyed process function with
//! keyed state and timers, and rolling reduce and aggregate built on it ([`rolling`]).

use std::sync::Arc;

use crate::graph::OperatorContext;
use crate::output::{CheckpointBarrier, Operator, Output, StateBytes, Timestamp};
use crate::state::keys::KeyId;
use crate::state::{BackendOptions, KeyedStateBackend, ListState, MapState, ValueState};
use crate::task::now_ms;
use rheo_types::Key;
pub use rolling::{KeyedAggregateOperator, KeyedReduceOperator, rolling_aggregate, rolling_reduce};

/// Extracts the key of a record.
pub type KeySelector<T, K> = Arc<dyn Fn(&T) -> K + Send + Sync>;

/// Flink's `KeyedProcessFunction`: per record and per timer, with keyed state.
pub trait KeyedProcessFunction<K, I, O>: Send + 'static {
    /// Registers state; called once per subtask before the first record.
    fn open(&mut self, _state: &mut KeyedStateBackend<K>) {}
    fn process_element(&mut self, value: I, ctx: &mut KeyedContext<'_, K, O>);
    fn on_timer(&mut self, _timestamp: Timestamp, _ctx: &mut KeyedContext<'_, K, O>) {}
}

/// What a keyed process function sees of its key, time, state and timers.
pub struct KeyedContext<'a, K, O> {
    key: KeyId,
    timestamp: Timestamp,
    watermark: Timestamp,
    now: Timestamp,
    state: &'a mut KeyedStateBackend<K>,
    out: &'a mut dyn Output<O>,
}

impl<K: Key, O> KeyedContext<'_, K, O> {
    pub fn key(&self) -> &K {
        self.state.key(self.key)
    }
    /// The timestamp of the current record, or the time of the firing timer.
    pub fn timestamp(&self) -> Timestamp {
        self.timestamp
    }
    pub fn current_watermark(&self) -> Timestamp {
        self.watermark
    }
    pub fn current_processing_time(&self) -> Timestamp {
        self.now
    }
    pub fn collect(&mut self, value: O) {
        self.out.collect(value, self.timestamp);
    }
    pub fn collect_with_timestamp(&mut self, value: O, timestamp: Timestamp) {
        self.out.collect(value, timestamp);
    }
    /// Calls `on_timer` once the watermark reaches `time`.
    pub fn register_event_time_timer(&mut self, time: Timestamp) {
        self.state.register_timer(true, time, self.key);
    }
    /// Calls `on_timer` once the clock reaches `time`.
    pub fn register_processing_time_timer(&mut self, time: Timestamp) {
        self.state.register_timer(false, time, self.key);
    }
    pub fn delete_event_time_timer(&mut self, time: Timestamp) {
        self.state.delete_timer(true, time, self.key);
    }
    pub fn delete_processing_time_timer(&mut self, time: Timestamp) {
        self.state.delete_timer(false, time, self.key);
    }
    pub fn value<V: Clone + 'static>(&mut self, handle: &ValueState<V>) -> Option<&V> {
        self.state.value(handle, self.key)
    }
    pub fn update<V: Clone + 'static>(&mut self, handle: &ValueState<V>, value: V) {
        self.state.update(handle, self.key, value);
    }
    pub fn clear<V: Clone + 'static>(&mut self, handle: &ValueState<V>) {
        self.state.clear_value(handle, self.key);
    }
    pub fn list<V: Clone + 'static>(&mut self, handle: &ListState<V>) -> &[V] {
        self.state.list(handle, self.key)
    }
    pub fn add<V: Clone + 'static>(&mut self, handle: &ListState<V>, value: V) {
        self.state.add(handle, self.key, value);
    }
    pub fn clear_list<V: Clone + 'static>(&mut self, handle: &ListState<V>) {
        self.state.clear_list(handle, self.key);
    }
    pub fn map_get<UK: Key, UV: Clone + 'static>(&mut self, handle: &MapState<UK, UV>, user_key: &UK) -> Option<&UV> {
        self.state.map_get(handle, self.key, user_key)
    }
    pub fn map_put<UK: Key, UV: Clone + 'static>(&mut self, handle: &MapState<UK, UV>, user_key: UK, value: UV) {
        self.state.map_put(handle, self.key, user_key, value);
    }
    pub fn map_remove<UK: Key, UV: Clone + 'static>(&mut self, handle: &MapState<UK, UV>, user_key: &UK) -> Option<UV> {
        self.state.map_remove(handle, self.key, user_key)
    }
    pub fn map_entries<UK: Key, UV: Clone + 'static>(&mut self, handle: &MapState<UK, UV>) -> Vec<(UK, &UV)> {
        self.state.map_entries(handle, self.key)
    }
    pub fn clear_map<UK: Key, UV: Clone + 'static>(&mut self, handle: &MapState<UK, UV>) {
        self.state.clear_map(handle, self.key);
    }
}

/// Runs a [`KeyedProcessFunction`] with its state and timers.
pub struct KeyedProcessOperator<K, I, O, F> {
    key_of: KeySelector<I, K>,
    function: F,
    state: KeyedStateBackend<K>,
    watermark: Timestamp,
    now: Timestamp,
    _types: std::marker::PhantomData<fn(I) -> O>,
}

impl<K: Key, I, O, F: KeyedProcessFunction<K, I, O>> KeyedProcessOperator<K, I, O, F> {
    pub fn new(key_of: KeySelector<I, K>, mut function: F, ctx: &OperatorContext) -> Self {
        let options = BackendOptions::from_config(&ctx.info.config);
        let mut state = KeyedStateBackend::new(&options, &ctx.info.display_name())
            .unwrap_or_else(|e| panic!("{}: {e}", ctx.info.task_name));
        function.open(&mut state);
        snapshot::restore(&mut state, ctx);
        Self { key_of, function, state, watermark: Timestamp::MIN, now: now_ms(), _types: std::marker::PhantomData }
    }

    fn fire(&mut self, event_time: bool, time: Timestamp, out: &mut dyn Output<O>) {
        // The fired timer no longer holds the key; the key stays while `on_timer` runs.
        while let Some((at, key)) = self.state.pop_due_timer(event_time, time) {
            let mut ctx = KeyedContext {
                key,
                timestamp: at,
                watermark: self.watermark,
                now: self.now,
                state: &mut self.state,
                out,
            };
            self.function.on_timer(at, &mut ctx);
            self.state.free_if_unused(key);
        }
    }
}

impl<K: Key, I: Send + 'static, O: 'static, F: KeyedProcessFunction<K, I, O>> Operator<I, O>
    for KeyedProcessOperator<K, I, O, F>
{
    fn snapshot(&mut self) -> Option<Vec<u8>> {
        Some(snapshot::full(&mut self.state))
    }

    fn snapshot_state(&mut self, barrier: &CheckpointBarrier) -> Option<StateBytes> {
        Some(snapshot::state(&mut self.state, barrier))
    }

    fn checkpoint_complete(&mut self, checkpoint_id: u64) {
        self.state.increments().completed(checkpoint_id);
    }

    fn process(&mut self, value: I, timestamp: Timestamp, out: &mut dyn Output<O>) {
        let key = self.state.intern((self.key_of)(&value));
        let mut ctx =
            KeyedContext { key, timestamp, watermark: self.watermark, now: self.now, state: &mut self.state, out };
        self.function.process_element(value, &mut ctx);
        // A key that kept neither state nor a timer is not kept.
        self.state.free_if_unused(key);
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut dyn Output<O>) {
        self.watermark = watermark;
        self.fire(true, watermark, out);
        out.watermark(watermark);
    }

    fn on_processing_time(&mut self, now: Timestamp, out: &mut dyn Output<O>) -> Option<Timestamp> {
        self.now = now;
        self.fire(false, now, out);
        self.state.next_timer(false)
    }

    fn finish(&mut self, out: &mut dyn Output<O>) {
        // The final watermark of a bounded input fires all event-time timers.
        self.watermark = Timestamp::MAX;
        self.fire(true, Timestamp::MAX, out);
    }
}

/// A [`KeyedProcessFunction`] from a closure, for functions that need no state or timers.
#[derive(Clone)]
pub struct ProcessFn<F>(pub F);

impl<K: Key, I, O, F> KeyedProcessFunction<K, I, O> for ProcessFn<F>
where
    F: FnMut(I, &mut KeyedContext<'_, K, O>) + Send + 'static,
{
    fn process_element(&mut self, value: I, ctx: &mut KeyedContext<'_, K, O>) {
        (self.0)(value, ctx)
    }
}

#[cfg(test)]
mod incremental_tests;
pub mod rolling;
#[cfg(test)]
mod rolling_tests;
pub(crate) mod snapshot;
#[cfg(test)]
mod tests;
