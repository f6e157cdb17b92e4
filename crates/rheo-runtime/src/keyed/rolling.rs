//! Rolling `reduce` and `aggregate` (Flink's `KeyedStream::reduce` / `aggregate`): keyed process
//! functions that hold one value per key in a [`ValueState`], run by [`KeyedProcessOperator`].
//! So they checkpoint as every keyed process operator does: a copy-on-write view at the barrier,
//! written off the task thread, incrementally when `state.backend.incremental` is on, and
//! restored or rescaled at any parallelism.
//!
//! Until checkpoint metadata version 3 these operators kept their own hash map and wrote it as
//! a list of `(key, value)` pairs. State in that format (a checkpoint or savepoint of an older
//! Rheo) is still restored: the metadata version tells which format a node's state is in.

use std::sync::Arc;

use crate::checkpoint::metadata::ROLLING_AS_KEYED_PROCESS_SINCE;
use crate::graph::{Data, OperatorContext};
use crate::keyed::{KeySelector, KeyedContext, KeyedProcessFunction, KeyedProcessOperator};
use crate::state::restore::encode;
use crate::state::{KeyedStateBackend, KeyedValue, ValueState};
use crate::task::TaskInfo;
use crate::window::AggregateFunction;
use rheo_types::Key;

/// The name of the rolling reduce's state in checkpoints.
pub const REDUCE_STATE: &str = "reduce";
/// The name of the rolling aggregate's state (its accumulator) in checkpoints.
pub const AGGREGATE_STATE: &str = "aggregate";

/// Rolling `reduce`: emits the running result of the record's key after every record, with the
/// record's timestamp.
pub type KeyedReduceOperator<K, T, F> = KeyedProcessOperator<K, T, T, ReduceFunction<T, F>>;

/// Rolling `aggregate`: an [`AggregateFunction`] per key, its result emitted after every record
/// with the record's timestamp.
pub type KeyedAggregateOperator<K, T, A> =
    KeyedProcessOperator<K, T, <A as AggregateFunction<T>>::Out, AggregateProcessFunction<T, A>>;

/// The keyed process function of a rolling reduce: the running result per key.
pub struct ReduceFunction<T, F> {
    reduce: Arc<F>,
    result: Option<ValueState<T>>,
}

impl<T, F> ReduceFunction<T, F> {
    pub fn new(reduce: Arc<F>) -> Self {
        Self { reduce, result: None }
    }
}

impl<K, T, F> KeyedProcessFunction<K, T, T> for ReduceFunction<T, F>
where
    K: Key,
    T: Data + KeyedValue,
    F: Fn(T, T) -> T + Send + Sync + 'static,
{
    fn open(&mut self, state: &mut KeyedStateBackend<K>) {
        self.result = Some(state.value_state(REDUCE_STATE));
    }

    fn process_element(&mut self, value: T, ctx: &mut KeyedContext<'_, K, T>) {
        let state = self.result.as_ref().expect("opened");
        // A copy of the previous result: the state keeps its own until it is replaced (a
        // checkpoint may be reading it).
        let result = match ctx.value(state).cloned() {
            Some(previous) => (self.reduce)(previous, value),
            None => value,
        };
        ctx.update(state, result.clone());
        ctx.collect(result);
    }
}

/// The keyed process function of a rolling aggregate: the accumulator per key.
pub struct AggregateProcessFunction<T, A: AggregateFunction<T>> {
    aggregate: Arc<A>,
    accumulator: Option<ValueState<A::Acc>>,
}

impl<T, A: AggregateFunction<T>> AggregateProcessFunction<T, A> {
    pub fn new(aggregate: Arc<A>) -> Self {
        Self { aggregate, accumulator: None }
    }
}

impl<K, T, A> KeyedProcessFunction<K, T, A::Out> for AggregateProcessFunction<T, A>
where
    K: Key,
    T: Send + 'static,
    A: AggregateFunction<T>,
    A::Acc: KeyedValue,
{
    fn open(&mut self, state: &mut KeyedStateBackend<K>) {
        self.accumulator = Some(state.value_state(AGGREGATE_STATE));
    }

    fn process_element(&mut self, value: T, ctx: &mut KeyedContext<'_, K, A::Out>) {
        let state = self.accumulator.as_ref().expect("opened");
        let mut accumulator = ctx.value(state).cloned().unwrap_or_else(|| self.aggregate.create_accumulator());
        self.aggregate.add(value, &mut accumulator);
        let result = self.aggregate.get_result(&accumulator);
        ctx.update(state, accumulator);
        ctx.collect(result);
    }
}

/// Builds a rolling reduce's subtask, restoring its state if the run restores.
pub fn rolling_reduce<K, T, F>(
    key_of: KeySelector<T, K>,
    reduce: Arc<F>,
    ctx: &OperatorContext,
) -> KeyedReduceOperator<K, T, F>
where
    K: Key,
    T: Data + KeyedValue,
    F: Fn(T, T) -> T + Send + Sync + 'static,
{
    open_restoring_old_format::<K, T, T, _, T>(key_of, ReduceFunction::new(reduce), REDUCE_STATE, ctx)
}

/// Builds a rolling aggregate's subtask, restoring its state if the run restores.
pub fn rolling_aggregate<K, T, A>(
    key_of: KeySelector<T, K>,
    aggregate: Arc<A>,
    ctx: &OperatorContext,
) -> KeyedAggregateOperator<K, T, A>
where
    K: Key,
    T: Send + 'static,
    A: AggregateFunction<T>,
    A::Acc: KeyedValue,
{
    open_restoring_old_format::<K, T, A::Out, _, A::Acc>(
        key_of,
        AggregateProcessFunction::new(aggregate),
        AGGREGATE_STATE,
        ctx,
    )
}

/// Opens the operator as [`KeyedProcessOperator::new`] does, except when this node's state was
/// written by the rolling operators of before metadata version 3: a list of `(key, value)` per
/// old subtask. That list is read by key group as any keyed state, and each value put into
/// `state` as if it had been restored under that name.
fn open_restoring_old_format<K, I, O, F, V>(
    key_of: KeySelector<I, K>,
    function: F,
    state: &str,
    ctx: &OperatorContext,
) -> KeyedProcessOperator<K, I, O, F>
where
    K: Key,
    I: Send + 'static,
    O: 'static,
    F: KeyedProcessFunction<K, I, O>,
    V: KeyedValue,
{
    let old_format = ctx.info.restored.as_ref().is_some_and(|restored| {
        restored.metadata_version < ROLLING_AS_KEYED_PROCESS_SINCE && restored.nodes.contains_key(&ctx.node)
    });
    if !old_format {
        return KeyedProcessOperator::new(key_of, function, ctx);
    }
    let entries: Vec<(K, V)> = ctx.restore_keyed(|(key, _)| key);
    // The operator opens empty; the old entries go in through the backend.
    let info = TaskInfo { restored: None, ..ctx.info.clone() };
    let mut operator = KeyedProcessOperator::new(key_of, function, &OperatorContext { info: &info, node: ctx.node });
    tracing::info!(
        task = %ctx.info.display_name(),
        entries = entries.len(),
        "restoring rolling {state} state written before checkpoint metadata version {ROLLING_AS_KEYED_PROCESS_SINCE}"
    );
    for (key, value) in entries {
        operator
            .state
            .restore_entry(state, key, &encode(&value))
            .unwrap_or_else(|e| panic!("{}: {e}", ctx.info.task_name));
    }
    operator
}
