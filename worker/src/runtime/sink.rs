//! Sinks: where records leave the job.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::runtime::output::{Output, Timestamp};
use crate::runtime::task::JobShared;

/// Writes records out of the job. `flush` is called at least every buffer timeout and at the
/// end; `finish` once when the input ends.
pub trait SinkFunction<T>: Send + 'static {
    fn invoke(&mut self, value: T, timestamp: Timestamp);
    fn flush(&mut self) {}
    fn finish(&mut self) {
        self.flush();
    }
}

/// Adapts a [`SinkFunction`] to the end of a chain and counts the records it writes.
pub struct SinkOutput<S> {
    sink: S,
    unreported: u64,
    job: Arc<JobShared>,
}

impl<S> SinkOutput<S> {
    pub fn new(sink: S, job: Arc<JobShared>) -> Self {
        Self { sink, unreported: 0, job }
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
}
