//! The one-input operator harness.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::graph::OperatorContext;
use crate::output::{Chained, CheckpointBarrier, NodeId, Operator, Output, TaskSnapshot, Timestamp};
use crate::state::restore::{RestoredState, SubtaskState};
use crate::task::{JobShared, TaskCounters, TaskInfo};
use rheo_config::Configuration;
use rheo_types::keygroups::KeyGroupRange;

/// Everything that left an operator through one output, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamElement<T> {
    Record(T, Timestamp),
    Watermark(Timestamp),
    Idle(bool),
    /// A checkpoint barrier passed (the operator snapshotted before it).
    Barrier(u64),
    CheckpointComplete(u64),
    /// End of input (`finish`).
    Finished,
    Closed,
}

/// A shared list of what an output received; cheap to clone.
pub struct Collected<T>(Arc<Mutex<Vec<StreamElement<T>>>>);

impl<T> Clone for Collected<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Default for Collected<T> {
    fn default() -> Self {
        Self(Arc::default())
    }
}

impl<T> Collected<T> {
    fn lock(&self) -> MutexGuard<'_, Vec<StreamElement<T>>> {
        // A panicking operator under test must not hide what it emitted before.
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Removes and returns everything received so far.
    pub fn take(&self) -> Vec<StreamElement<T>> {
        std::mem::take(&mut *self.lock())
    }

    /// Removes everything received so far and returns its records.
    pub fn take_records(&self) -> Vec<(T, Timestamp)> {
        self.take()
            .into_iter()
            .filter_map(|e| match e {
                StreamElement::Record(value, timestamp) => Some((value, timestamp)),
                _ => None,
            })
            .collect()
    }
}

impl<T: Clone> Collected<T> {
    /// Everything received so far.
    pub fn elements(&self) -> Vec<StreamElement<T>> {
        self.lock().clone()
    }

    /// The records received so far, with their timestamps.
    pub fn records(&self) -> Vec<(T, Timestamp)> {
        self.lock()
            .iter()
            .filter_map(|e| match e {
                StreamElement::Record(value, timestamp) => Some((value.clone(), *timestamp)),
                _ => None,
            })
            .collect()
    }

    /// The watermarks received so far.
    pub fn watermarks(&self) -> Vec<Timestamp> {
        self.lock()
            .iter()
            .filter_map(|e| match e {
                StreamElement::Watermark(w) => Some(*w),
                _ => None,
            })
            .collect()
    }
}

struct CollectingOutput<T>(Collected<T>);

impl<T: Send> Output<T> for CollectingOutput<T> {
    fn collect(&mut self, value: T, timestamp: Timestamp) {
        self.0.lock().push(StreamElement::Record(value, timestamp));
    }
    fn watermark(&mut self, watermark: Timestamp) {
        self.0.lock().push(StreamElement::Watermark(watermark));
    }
    fn idle(&mut self, idle: bool) {
        self.0.lock().push(StreamElement::Idle(idle));
    }
    fn tick(&mut self, _now: Timestamp) -> Option<Timestamp> {
        None
    }
    fn flush(&mut self) {}
    fn finish(&mut self) {
        self.0.lock().push(StreamElement::Finished);
    }
    fn barrier(&mut self, barrier: &CheckpointBarrier, _snapshot: &mut TaskSnapshot) {
        self.0.lock().push(StreamElement::Barrier(barrier.id));
    }
    fn checkpoint_complete(&mut self, checkpoint_id: u64) {
        self.0.lock().push(StreamElement::CheckpointComplete(checkpoint_id));
    }
    fn close(&mut self) {
        self.0.lock().push(StreamElement::Closed);
    }
}

/// An output that records everything it receives, and the handle to read it.
pub fn collecting_output<T: Send + 'static>() -> (Box<dyn Output<T>>, Collected<T>) {
    let collected = Collected::default();
    (Box::new(CollectingOutput(collected.clone())), collected)
}

/// The outputs an operator under test writes to: the main output and named side outputs.
pub struct HarnessOutputs<O> {
    main: Collected<O>,
    sides: HashMap<String, Box<dyn Any>>,
}

impl<O: Send + 'static> HarnessOutputs<O> {
    /// The main output.
    pub fn main(&mut self) -> Box<dyn Output<O>> {
        Box::new(CollectingOutput(self.main.clone()))
    }

    /// A side output (e.g. late data), read back with [`OneInputHarness::side_records`].
    pub fn side<T: Send + 'static>(&mut self, name: &str) -> Box<dyn Output<T>> {
        let (out, collected) = collecting_output::<T>();
        let previous = self.sides.insert(name.to_string(), Box::new(collected));
        assert!(previous.is_none(), "side output '{name}' is made twice");
        out
    }
}

/// Which subtask the operator is, and where its clock starts.
#[derive(Debug, Clone)]
pub struct HarnessSetup {
    pub task_name: String,
    pub subtask: usize,
    pub parallelism: usize,
    pub max_parallelism: usize,
    /// Processing time when the operator opens (the task loop ticks it right away).
    pub processing_time: Timestamp,
    /// The job's configuration as the operator reads it (e.g. `state.backend.type`).
    pub config: Arc<Configuration>,
}

impl Default for HarnessSetup {
    fn default() -> Self {
        Self {
            task_name: "harness".into(),
            subtask: 0,
            parallelism: 1,
            max_parallelism: 128,
            processing_time: 0,
            config: Arc::new(Configuration::default()),
        }
    }
}

/// A subtask's `TaskInfo` as the plan would make it, for building operators and tasks by hand.
pub fn task_info(setup: &HarnessSetup, restored: Option<Arc<RestoredState>>) -> TaskInfo {
    TaskInfo {
        task_name: setup.task_name.clone(),
        subtask_index: setup.subtask,
        parallelism: setup.parallelism,
        max_parallelism: setup.max_parallelism,
        config: setup.config.clone(),
        job: Arc::new(JobShared::default()),
        restored,
        counters: Arc::new(TaskCounters::default()),
    }
}

/// One subtask's state at a checkpoint: what its task would have acknowledged.
#[derive(Debug, Clone)]
pub struct OperatorSnapshot {
    pub checkpoint_id: u64,
    pub subtask: usize,
    pub parallelism: usize,
    pub max_parallelism: usize,
    /// The harness's processing time when the snapshot was taken.
    pub processing_time: Timestamp,
    /// One state blob per stateful operator of the chain.
    pub states: Vec<(NodeId, Vec<u8>)>,
}

/// The snapshots of all subtasks of one checkpoint, as the job driver reads them back: what
/// `TaskInfo::restored` holds for the next run.
pub fn restored_state(snapshots: &[OperatorSnapshot]) -> RestoredState {
    let first = snapshots.first().expect("at least one snapshot to restore");
    let mut restored = RestoredState {
        checkpoint_id: first.checkpoint_id,
        max_parallelism: first.max_parallelism,
        ..Default::default()
    };
    for snapshot in snapshots {
        assert_eq!(snapshot.checkpoint_id, first.checkpoint_id, "snapshots of different checkpoints");
        for (node, bytes) in &snapshot.states {
            restored.nodes.entry(*node).or_default().push(SubtaskState {
                subtask: snapshot.subtask,
                parallelism: snapshot.parallelism,
                bytes: bytes.clone().into(),
                changes: Vec::new(),
            });
        }
    }
    restored
}

type Build<I, O> = Arc<dyn Fn(&OperatorContext, &mut HarnessOutputs<O>) -> Box<dyn Output<I>>>;

/// One operator (or chain) driven by hand. The operator is node 0; a chain built by the test
/// may give its further operators other node ids.
pub struct OneInputHarness<I, O> {
    build: Build<I, O>,
    setup: HarnessSetup,
    pub(super) chain: Box<dyn Output<I>>,
    main: Collected<O>,
    sides: HashMap<String, Box<dyn Any>>,
    processing_time: Timestamp,
    next_timer: Option<Timestamp>,
}

impl<I: Send + 'static, O: Send + 'static> OneInputHarness<I, O> {
    /// Builds the operator with `build`, as subtask 0 of 1. `build` runs again for every
    /// restored instance, so it must not capture the operator itself.
    pub fn new(build: impl Fn(&OperatorContext, &mut HarnessOutputs<O>) -> Box<dyn Output<I>> + 'static) -> Self {
        Self::with_setup(HarnessSetup::default(), build)
    }

    pub fn with_setup(
        setup: HarnessSetup,
        build: impl Fn(&OperatorContext, &mut HarnessOutputs<O>) -> Box<dyn Output<I>> + 'static,
    ) -> Self {
        Self::open(Arc::new(build), setup, None)
    }

    /// An [`Operator`] chained to the main output, as the plan chains it.
    pub fn for_operator<Op: Operator<I, O>>(make: impl Fn(&OperatorContext) -> Op + 'static) -> Self {
        Self::new(move |ctx, outs| Box::new(Chained { op: make(ctx), node: ctx.node, out: outs.main() }))
    }

    /// An [`Operator`] chained to the main output, opened with `setup`.
    pub fn for_operator_with<Op: Operator<I, O>>(
        setup: HarnessSetup,
        make: impl Fn(&OperatorContext) -> Op + 'static,
    ) -> Self {
        Self::with_setup(setup, move |ctx, outs| Box::new(Chained { op: make(ctx), node: ctx.node, out: outs.main() }))
    }

    fn open(build: Build<I, O>, setup: HarnessSetup, restored: Option<Arc<RestoredState>>) -> Self {
        let info = task_info(&setup, restored);
        let mut outputs = HarnessOutputs { main: Collected::default(), sides: HashMap::new() };
        let mut chain = build(&OperatorContext { info: &info, node: 0 }, &mut outputs);
        // The task loop ticks its chain as soon as it runs: timers restored in the past fire.
        let next_timer = chain.tick(setup.processing_time);
        let processing_time = setup.processing_time;
        Self { build, setup, chain, main: outputs.main, sides: outputs.sides, processing_time, next_timer }
    }

    /// A fresh instance of the same operator, restored from `snapshots`, as the same subtask.
    pub fn restore(&self, snapshots: &[OperatorSnapshot]) -> Self {
        self.restore_at(snapshots, self.setup.subtask, self.setup.parallelism)
    }

    /// A fresh instance restored from `snapshots` (one per old subtask) as `subtask` of
    /// `parallelism`: keyed state is split by key group, as when a job rescales.
    pub fn restore_at(&self, snapshots: &[OperatorSnapshot], subtask: usize, parallelism: usize) -> Self {
        let processing_time = snapshots.iter().map(|s| s.processing_time).max().unwrap_or(self.processing_time);
        let setup = HarnessSetup { subtask, parallelism, processing_time, ..self.setup.clone() };
        Self::open(self.build.clone(), setup, Some(Arc::new(restored_state(snapshots))))
    }

    /// A fresh instance restored from state read back from storage (a checkpoint's
    /// [`Discovered`](crate::checkpoint::discover::Discovered) state, incremental ones
    /// included) as `subtask` of `parallelism`.
    pub fn restore_from(&self, restored: RestoredState, subtask: usize, parallelism: usize) -> Self {
        let setup = HarnessSetup { subtask, parallelism, ..self.setup.clone() };
        Self::open(self.build.clone(), setup, Some(Arc::new(restored)))
    }

    /// This subtask's key groups.
    pub fn key_groups(&self) -> KeyGroupRange {
        KeyGroupRange::for_subtask(self.setup.max_parallelism, self.setup.parallelism, self.setup.subtask)
    }

    pub fn process(&mut self, value: I, timestamp: Timestamp) {
        self.chain.collect(value, timestamp);
    }

    pub fn process_watermark(&mut self, watermark: Timestamp) {
        self.chain.watermark(watermark);
    }

    pub fn set_idle(&mut self, idle: bool) {
        self.chain.idle(idle);
    }

    /// Advances processing time to `now` and fires what is due, as the task loop's tick does.
    /// Returns the chain's next processing-time timer.
    pub fn set_processing_time(&mut self, now: Timestamp) -> Option<Timestamp> {
        assert!(now >= self.processing_time, "processing time goes back from {} to {now}", self.processing_time);
        self.processing_time = now;
        self.next_timer = self.chain.tick(now);
        self.next_timer
    }

    pub fn processing_time(&self) -> Timestamp {
        self.processing_time
    }

    /// The next processing-time timer the chain reported at its last tick.
    pub fn next_processing_timer(&self) -> Option<Timestamp> {
        self.next_timer
    }

    /// End of input: windows and event-time timers that are left fire.
    pub fn finish(&mut self) {
        self.chain.finish();
    }

    /// Passes checkpoint barrier `checkpoint_id` through the chain and returns what it captured.
    pub fn snapshot(&mut self, checkpoint_id: u64) -> OperatorSnapshot {
        self.snapshot_at(CheckpointBarrier {
            id: checkpoint_id,
            timestamp: self.processing_time,
            incremental: false,
            full: false,
        })
    }

    pub(super) fn snapshot_at(&mut self, barrier: CheckpointBarrier) -> OperatorSnapshot {
        let mut snapshot = TaskSnapshot::default();
        self.chain.barrier(&barrier, &mut snapshot);
        self.written(barrier.id, snapshot)
    }

    /// Passes checkpoint barrier `checkpoint_id` through the chain and returns what the task
    /// thread captured, before any state taken as a view is written (the synchronous part of
    /// a checkpoint); [`written`](Self::written) writes it.
    pub fn barrier(&mut self, checkpoint_id: u64) -> TaskSnapshot {
        let mut snapshot = TaskSnapshot::default();
        let barrier =
            CheckpointBarrier { id: checkpoint_id, timestamp: self.processing_time, incremental: false, full: false };
        self.chain.barrier(&barrier, &mut snapshot);
        snapshot
    }

    /// The barrier of an incremental checkpoint: keyed state is captured as the changes since
    /// the last checkpoint this harness was told completed, for an uploader to write.
    pub fn incremental_barrier(&mut self, checkpoint_id: u64) -> TaskSnapshot {
        let mut snapshot = TaskSnapshot::default();
        let barrier =
            CheckpointBarrier { id: checkpoint_id, timestamp: self.processing_time, incremental: true, full: false };
        self.chain.barrier(&barrier, &mut snapshot);
        snapshot
    }

    /// The barrier of a checkpoint of type FULL with incremental checkpoints on: keyed state is
    /// captured whole, for an uploader to write to the shared area, where later incremental
    /// checkpoints build on it.
    pub fn full_checkpoint_barrier(&mut self, checkpoint_id: u64) -> TaskSnapshot {
        let mut snapshot = TaskSnapshot::default();
        let barrier =
            CheckpointBarrier { id: checkpoint_id, timestamp: self.processing_time, incremental: true, full: true };
        self.chain.barrier(&barrier, &mut snapshot);
        snapshot
    }

    /// What [`barrier`](Self::barrier) captured, written out now, as a snapshot to restore from.
    pub fn written(&self, checkpoint_id: u64, snapshot: TaskSnapshot) -> OperatorSnapshot {
        OperatorSnapshot {
            checkpoint_id,
            subtask: self.setup.subtask,
            parallelism: self.setup.parallelism,
            max_parallelism: self.setup.max_parallelism,
            processing_time: self.processing_time,
            states: snapshot.into_bytes(),
        }
    }

    pub fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) {
        self.chain.checkpoint_complete(checkpoint_id);
    }

    pub fn close(&mut self) {
        self.chain.close();
    }

    /// The main output so far.
    pub fn main_output(&self) -> &Collected<O> {
        &self.main
    }

    /// Removes and returns the records of the main output so far.
    pub fn take_records(&mut self) -> Vec<(O, Timestamp)> {
        self.main.take_records()
    }

    /// Removes and returns the records of side output `name` so far.
    pub fn take_side_records<T: 'static>(&mut self, name: &str) -> Vec<(T, Timestamp)> {
        self.side::<T>(name).take_records()
    }

    fn side<T: 'static>(&self, name: &str) -> &Collected<T> {
        self.sides
            .get(name)
            .unwrap_or_else(|| panic!("the operator made no side output '{name}'"))
            .downcast_ref::<Collected<T>>()
            .unwrap_or_else(|| panic!("side output '{name}' has another record type"))
    }
}

impl<I: Send + 'static, O: Clone + Send + 'static> OneInputHarness<I, O> {
    /// Everything the main output received so far.
    pub fn output(&self) -> Vec<StreamElement<O>> {
        self.main.elements()
    }

    /// The records of the main output so far.
    pub fn records(&self) -> Vec<(O, Timestamp)> {
        self.main.records()
    }

    /// The watermarks of the main output so far.
    pub fn watermarks(&self) -> Vec<Timestamp> {
        self.main.watermarks()
    }

    /// The records of side output `name` so far.
    pub fn side_records<T: Clone + 'static>(&self, name: &str) -> Vec<(T, Timestamp)> {
        self.side::<T>(name).records()
    }
}
