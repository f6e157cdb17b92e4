//! The push-based contract between chained operators.
//!
//! A task is a chain of operators called as plain functions: each record costs one virtual call
//! per operator. Control events (watermarks, processing-time ticks, flushes, end of input) travel
//! down the same chain as method calls, so an operator sees them in order with its records.

pub use rheo_types::{CheckpointBarrier, MAX_WATERMARK, NO_TIMESTAMP, NodeId, Timestamp};

/// The state one task captured for a checkpoint: one blob per stateful operator.
#[derive(Debug, Default)]
pub struct TaskSnapshot {
    pub states: Vec<(NodeId, StateBytes)>,
}

impl TaskSnapshot {
    pub fn put(&mut self, node: NodeId, state: Vec<u8>) {
        self.states.push((node, StateBytes::Ready(state)));
    }

    pub fn put_state(&mut self, node: NodeId, state: StateBytes) {
        self.states.push((node, state));
    }

    /// Every operator's state written out, on the calling thread.
    pub fn into_bytes(self) -> Vec<(NodeId, Vec<u8>)> {
        self.states.into_iter().map(|(node, state)| (node, state.into_bytes())).collect()
    }
}

/// An operator's state in a checkpoint: written at the barrier, or to be written from a view
/// taken at the barrier, off the task thread, so the task's pause does not grow with its state.
pub enum StateBytes {
    Ready(Vec<u8>),
    /// Written into the checkpoint file as it uploads (a state larger than memory allows twice
    /// is never held whole).
    Deferred(crate::checkpoint::storage::WriteObject),
    /// Keyed state of an incremental checkpoint: a new file for the job's shared area, on top of
    /// files of earlier checkpoints.
    Incremental(crate::state::incremental::IncrementalSnapshot),
}

impl StateBytes {
    /// The state as one self-contained blob. An incremental snapshot is one only when it
    /// builds on nothing (its first, full file); one that builds on earlier files is restored
    /// from storage, never from bytes alone.
    pub fn into_bytes(self) -> Vec<u8> {
        let write = match self {
            StateBytes::Ready(bytes) => return bytes,
            StateBytes::Deferred(write) => write,
            StateBytes::Incremental(incremental) => {
                assert!(
                    incremental.builds_on.is_empty(),
                    "an incremental snapshot that builds on earlier checkpoints is not self-contained"
                );
                incremental.write
            }
        };
        let mut bytes = Vec::new();
        write(&mut bytes).expect("state is written into memory");
        bytes
    }
}

impl std::fmt::Debug for StateBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateBytes::Ready(bytes) => write!(f, "Ready({} bytes)", bytes.len()),
            StateBytes::Deferred(_) => f.write_str("Deferred"),
            StateBytes::Incremental(incremental) => {
                write!(f, "Incremental(on {} files)", incremental.builds_on.len())
            }
        }
    }
}

/// Where an operator sends its results. Implemented by the next chained operator, by a channel
/// writer to the next task, by a fan-out, or by a sink.
pub trait Output<T>: Send {
    /// One record with its event timestamp (or [`NO_TIMESTAMP`]).
    fn collect(&mut self, value: T, timestamp: Timestamp);
    /// Event time has advanced to `watermark`: no record with a smaller timestamp should follow.
    fn watermark(&mut self, watermark: Timestamp);
    /// The upstream source became idle (`true`) or active again: idle inputs do not hold back
    /// the watermark of a task with several inputs.
    fn idle(&mut self, idle: bool);
    /// Processing time is now `now`. Returns the earliest processing-time timer still pending
    /// in this chain, so the task knows when to call again.
    fn tick(&mut self, now: Timestamp) -> Option<Timestamp>;
    /// Send buffered records downstream (the buffer timeout of an idle task).
    fn flush(&mut self);
    /// End of data: fire what is left (windows, timers) and pass it on. The task stays up
    /// for the final checkpoint; [`close`](Output::close) ends it.
    fn finish(&mut self);
    /// A checkpoint barrier, aligned over all inputs: snapshot state into `snapshot`, then
    /// pass the barrier on.
    fn barrier(&mut self, barrier: &CheckpointBarrier, snapshot: &mut TaskSnapshot);
    /// Checkpoint `checkpoint_id` is complete everywhere: sinks commit what it covers.
    fn checkpoint_complete(&mut self, checkpoint_id: u64);
    /// The stream ends: nothing follows.
    fn close(&mut self);
}

/// The smaller of two optional deadlines.
pub fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// One operator of a chain: it sees records and control events and writes to `out`. The
/// defaults forward control events unchanged, so a stateless operator only writes `process`.
pub trait Operator<I, O>: Send + 'static {
    fn process(&mut self, value: I, timestamp: Timestamp, out: &mut dyn Output<O>);

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut dyn Output<O>) {
        out.watermark(watermark);
    }

    /// Fires processing-time timers due at `now`; returns this operator's next timer.
    fn on_processing_time(&mut self, _now: Timestamp, _out: &mut dyn Output<O>) -> Option<Timestamp> {
        None
    }

    /// End of input: emit what is still held (e.g. open windows).
    fn finish(&mut self, _out: &mut dyn Output<O>) {}

    /// A synchronous, cheap copy of the operator's state for a checkpoint; `None` when the
    /// operator has no state. Uploading happens elsewhere while processing goes on.
    fn snapshot(&mut self) -> Option<Vec<u8>> {
        None
    }

    /// The state for a checkpoint as [`snapshot`](Operator::snapshot) gives it, or a view of it
    /// to be written off the task thread (incrementally if the barrier allows it).
    fn snapshot_state(&mut self, _barrier: &CheckpointBarrier) -> Option<StateBytes> {
        self.snapshot().map(StateBytes::Ready)
    }

    /// A checkpoint completed.
    fn checkpoint_complete(&mut self, _checkpoint_id: u64) {}
}

/// An operator joined to the rest of its chain.
pub struct Chained<Op, O> {
    pub op: Op,
    pub node: NodeId,
    pub out: Box<dyn Output<O>>,
}

impl<I, O: 'static, Op: Operator<I, O>> Output<I> for Chained<Op, O> {
    #[inline]
    fn collect(&mut self, value: I, timestamp: Timestamp) {
        self.op.process(value, timestamp, &mut *self.out);
    }
    fn watermark(&mut self, watermark: Timestamp) {
        self.op.on_watermark(watermark, &mut *self.out);
    }
    fn idle(&mut self, idle: bool) {
        self.out.idle(idle);
    }
    fn tick(&mut self, now: Timestamp) -> Option<Timestamp> {
        let mine = self.op.on_processing_time(now, &mut *self.out);
        earliest(mine, self.out.tick(now))
    }
    fn flush(&mut self) {
        self.out.flush();
    }
    fn finish(&mut self) {
        self.op.finish(&mut *self.out);
        self.out.finish();
    }
    fn barrier(&mut self, barrier: &CheckpointBarrier, snapshot: &mut TaskSnapshot) {
        if let Some(state) = self.op.snapshot_state(barrier) {
            snapshot.put_state(self.node, state);
        }
        self.out.barrier(barrier, snapshot);
    }
    fn checkpoint_complete(&mut self, checkpoint_id: u64) {
        self.op.checkpoint_complete(checkpoint_id);
        self.out.checkpoint_complete(checkpoint_id);
    }
    fn close(&mut self) {
        self.out.close();
    }
}

/// Sends every record to several consumers (a stream used more than once).
pub struct Fanout<T> {
    pub outs: Vec<Box<dyn Output<T>>>,
}

impl<T: Clone + Send> Output<T> for Fanout<T> {
    fn collect(&mut self, value: T, timestamp: Timestamp) {
        let (last, rest) = self.outs.split_last_mut().expect("fan-out has consumers");
        for out in rest {
            out.collect(value.clone(), timestamp);
        }
        last.collect(value, timestamp);
    }
    fn watermark(&mut self, watermark: Timestamp) {
        self.outs.iter_mut().for_each(|o| o.watermark(watermark));
    }
    fn idle(&mut self, idle: bool) {
        self.outs.iter_mut().for_each(|o| o.idle(idle));
    }
    fn tick(&mut self, now: Timestamp) -> Option<Timestamp> {
        self.outs.iter_mut().fold(None, |next, o| earliest(next, o.tick(now)))
    }
    fn flush(&mut self) {
        self.outs.iter_mut().for_each(|o| o.flush());
    }
    fn finish(&mut self) {
        self.outs.iter_mut().for_each(|o| o.finish());
    }
    fn barrier(&mut self, barrier: &CheckpointBarrier, snapshot: &mut TaskSnapshot) {
        self.outs.iter_mut().for_each(|o| o.barrier(barrier, snapshot));
    }
    fn checkpoint_complete(&mut self, checkpoint_id: u64) {
        self.outs.iter_mut().for_each(|o| o.checkpoint_complete(checkpoint_id));
    }
    fn close(&mut self) {
        self.outs.iter_mut().for_each(|o| o.close());
    }
}

/// The output of a port nobody consumes (e.g. an unused late-data side output).
pub struct Discard;

impl<T> Output<T> for Discard {
    fn collect(&mut self, _value: T, _timestamp: Timestamp) {}
    fn watermark(&mut self, _watermark: Timestamp) {}
    fn idle(&mut self, _idle: bool) {}
    fn tick(&mut self, _now: Timestamp) -> Option<Timestamp> {
        None
    }
    fn flush(&mut self) {}
    fn finish(&mut self) {}
    fn barrier(&mut self, _barrier: &CheckpointBarrier, _snapshot: &mut TaskSnapshot) {}
    fn checkpoint_complete(&mut self, _checkpoint_id: u64) {}
    fn close(&mut self) {}
}

/// Handed to user functions that emit any number of records (flat_map, process functions).
pub struct Collector<'a, T> {
    out: &'a mut dyn Output<T>,
    timestamp: Timestamp,
}

impl<'a, T> Collector<'a, T> {
    pub fn new(out: &'a mut dyn Output<T>, timestamp: Timestamp) -> Self {
        Self { out, timestamp }
    }

    /// Emits `value` with the timestamp of the record being processed.
    #[inline]
    pub fn collect(&mut self, value: T) {
        self.out.collect(value, self.timestamp);
    }

    /// Emits `value` with an explicit event timestamp.
    pub fn collect_with_timestamp(&mut self, value: T, timestamp: Timestamp) {
        self.out.collect(value, timestamp);
    }
}
