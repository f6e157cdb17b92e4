//! Sinks: where records leave the job.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::output::{CheckpointBarrier, NodeId, Output, TaskSnapshot, Timestamp};
use crate::task::JobShared;

/// Writes records out of the job. `flush` is called at least every buffer timeout and at the
/// end; `finish` once when the input ends.
///
/// A two-phase-commit sink pre-commits in `snapshot_state` (the returned state holds what is
/// pending) and commits in `checkpoint_complete`; when it is built from restored state it
/// commits what the restored checkpoint covered.
pub trait SinkFunction<T>: Send + 'static {
    fn invoke(&mut self, value: T, timestamp: Timestamp);
    fn flush(&mut self) {}
    fn finish(&mut self) {
        self.flush();
    }
    /// Pre-commit for checkpoint `checkpoint_id`; the state to store with it.
    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Option<Vec<u8>> {
        None
    }
    /// Checkpoint `checkpoint_id` completed: make what it covers visible.
    fn checkpoint_complete(&mut self, _checkpoint_id: u64) {}
}

/// Adapts a [`SinkFunction`] to the end of a chain and counts the records it writes.
pub struct SinkOutput<S> {
    sink: S,
    node: NodeId,
    unreported: u64,
    job: Arc<JobShared>,
}

impl<S> SinkOutput<S> {
    pub fn new(sink: S, node: NodeId, job: Arc<JobShared>) -> Self {
        Self { sink, node, unreported: 0, job }
    }

    fn report(&mut self) {
        self.job.records_out.fetch_add(std::mem::take(&mut self.unreported), Ordering::Relaxed);
    }
}

impl<T, S: SinkFunction<T>> Output<T> for SinkOutput<S> {
    #[inline]
    fn collect(&mut self, value: T, timestamp: Timestamp) {
        self.unreported += 1;
        self.sink.invoke(value, timestamp);
    }
    fn watermark(&mut self, _watermark: Timestamp) {}
    fn idle(&mut self, _idle: bool) {}
    fn tick(&mut self, _now: Timestamp) -> Option<Timestamp> {
        self.report();
        None
    }
    fn flush(&mut self) {
        self.report();
        self.sink.flush();
    }
    fn finish(&mut self) {
        self.report();
        self.sink.finish();
    }
    fn barrier(&mut self, barrier: &CheckpointBarrier, snapshot: &mut TaskSnapshot) {
        self.sink.flush();
        if let Some(state) = self.sink.snapshot_state(barrier.id) {
            snapshot.put(self.node, state);
        }
    }
    fn checkpoint_complete(&mut self, checkpoint_id: u64) {
        self.sink.checkpoint_complete(checkpoint_id);
    }
    fn close(&mut self) {
        self.report();
    }
}
