//! A slow sink and a fast source, for the backpressure tests (`properties.rs` in one process,
//! `remote_backpressure.rs` across TCP).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rheo::prelude::*;
use rheo::runtime::exchange::BATCH_SIZE;

/// Counts what it receives and checks how far ahead the source is.
pub struct SlowSink {
    pub received: Arc<AtomicU64>,
    pub max_in_flight: Arc<AtomicU64>,
    pub job: Arc<rheo::runtime::task::JobShared>,
}

impl SinkFunction<u64> for SlowSink {
    fn invoke(&mut self, _value: u64, _timestamp: Timestamp) -> Result<(), SinkError> {
        let received = self.received.fetch_add(1, Ordering::Relaxed) + 1;
        let emitted = self.job.records_in.load(Ordering::Relaxed);
        self.max_in_flight.fetch_max(emitted.saturating_sub(received), Ordering::Relaxed);
        if received.is_multiple_of(256) {
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    }
}

/// Emits numbers as fast as it may.
pub struct Counter {
    pub next: u64,
    pub end: u64,
}

impl SourceFunction<u64> for Counter {
    fn poll(
        &mut self,
        out: &mut SourceOutput<'_, u64>,
    ) -> Result<SourceStatus, Box<dyn std::error::Error + Send + Sync>> {
        for _ in 0..BATCH_SIZE {
            if self.next == self.end {
                return Ok(SourceStatus::Finished);
            }
            out.collect(self.next);
            self.next += 1;
        }
        Ok(SourceStatus::More)
    }
}
