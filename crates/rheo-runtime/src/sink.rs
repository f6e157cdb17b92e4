//! Sinks: where records leave the job.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::output::{CheckpointBarrier, NodeId, Output, TaskSnapshot, Timestamp};
use crate::task::JobShared;

/// Why a sink could not write.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The reader of the output went away (`rheo run ... | head -3` closed stdout): nobody wants
    /// more output, so the job ends as finished rather than failing and restarting.
    #[error("the reader closed the output")]
    OutputClosed,
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Other(#[from] Box<dyn std::error::Error + Send + Sync>),
}

impl SinkError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        SinkError::Io { context: context.into(), source }
    }
}

/// Writes records out of the job. `flush` is called at least every buffer timeout and at the
/// end; `finish` once when the input ends. An error fails the task (which the restart strategy
/// may restart), except [`SinkError::OutputClosed`], which ends the job.
///
/// A two-phase-commit sink pre-commits in `snapshot_state` (the returned state holds what is
/// pending) and commits in `checkpoint_complete`; when it is built from restored state it
/// commits what the restored checkpoint covered.
pub trait SinkFunction<T>: Send + 'static {
    fn invoke(&mut self, value: T, timestamp: Timestamp) -> Result<(), SinkError>;
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
    fn finish(&mut self) -> Result<(), SinkError> {
        self.flush()
    }
    /// Pre-commit for checkpoint `checkpoint_id`; the state to store with it.
    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Option<Vec<u8>>, SinkError> {
        Ok(None)
    }
    /// Checkpoint `checkpoint_id` completed: make what it covers visible.
    fn checkpoint_complete(&mut self, _checkpoint_id: u64) -> Result<(), SinkError> {
        Ok(())
    }
}

/// A sink's error on its way out of a task. The chain calls its sink through
/// [`Output`], whose methods return nothing (a record passes through user functions on its
/// way), so the error unwinds to the task's guard (as [`crate::exchange::DownstreamGone`]
/// does), which turns it into the task's outcome; `resume_unwind` prints nothing.
#[derive(Debug)]
pub struct SinkFailed {
    pub sink: String,
    pub error: SinkError,
}

/// Adapts a [`SinkFunction`] to the end of a chain and counts the records it writes.
pub struct SinkOutput<S> {
    sink: S,
    name: String,
    node: NodeId,
    unreported: u64,
    job: Arc<JobShared>,
}

impl<S> SinkOutput<S> {
    pub fn new(sink: S, name: impl Into<String>, node: NodeId, job: Arc<JobShared>) -> Self {
        Self { sink, name: name.into(), node, unreported: 0, job }
    }

    fn report(&mut self) {
        self.job.records_out.fetch_add(std::mem::take(&mut self.unreported), Ordering::Relaxed);
    }

    fn check<R>(&mut self, result: Result<R, SinkError>) -> R {
        match result {
            Ok(value) => value,
            Err(error) => {
                self.report();
                std::panic::resume_unwind(Box::new(SinkFailed { sink: self.name.clone(), error }))
            }
        }
    }
}

impl<T, S: SinkFunction<T>> Output<T> for SinkOutput<S> {
    #[inline]
    fn collect(&mut self, value: T, timestamp: Timestamp) {
        let result = self.sink.invoke(value, timestamp);
        self.check(result);
        self.unreported += 1;
    }
    fn watermark(&mut self, _watermark: Timestamp) {}
    fn idle(&mut self, _idle: bool) {}
    fn tick(&mut self, _now: Timestamp) -> Option<Timestamp> {
        self.report();
        None
    }
    fn flush(&mut self) {
        self.report();
        let result = self.sink.flush();
        self.check(result);
    }
    fn finish(&mut self) {
        self.report();
        let result = self.sink.finish();
        self.check(result);
    }
    fn barrier(&mut self, barrier: &CheckpointBarrier, snapshot: &mut TaskSnapshot) {
        let result = self.sink.flush().and_then(|()| self.sink.snapshot_state(barrier.id));
        if let Some(state) = self.check(result) {
            snapshot.put(self.node, state);
        }
    }
    fn checkpoint_complete(&mut self, checkpoint_id: u64) {
        let result = self.sink.checkpoint_complete(checkpoint_id);
        self.check(result);
    }
    fn close(&mut self) {
        self.report();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Failing(Option<SinkError>);

    impl SinkFunction<u32> for Failing {
        fn invoke(&mut self, value: u32, _timestamp: Timestamp) -> Result<(), SinkError> {
            match self.0.take_if(|_| value == 3) {
                Some(error) => Err(error),
                None => Ok(()),
            }
        }
    }

    #[test]
    fn a_sink_error_unwinds_with_the_sink_name_and_the_records_written() {
        let job = Arc::new(JobShared::default());
        let error = SinkError::io("/out/part-0", std::io::Error::other("disk full"));
        let mut output = SinkOutput::new(Failing(Some(error)), "Sink: Text File /out", 0, job.clone());
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for i in 0..5 {
                Output::<u32>::collect(&mut output, i, 0);
            }
        }))
        .unwrap_err();
        let failed = unwound.downcast::<SinkFailed>().expect("a SinkFailed payload");
        assert_eq!(failed.sink, "Sink: Text File /out");
        assert_eq!(failed.error.to_string(), "/out/part-0: disk full");
        assert_eq!(job.records_out.load(Ordering::Relaxed), 3, "records 0, 1 and 2 were written");
    }
}
