//! In-memory sources and sinks: a fixed collection in, a shared vector out. For tests and
//! examples.

use std::sync::{Arc, Mutex};

use crate::api::{DataStream, StreamEnv};
use rheo_runtime::graph::Data;
use rheo_runtime::output::{NO_TIMESTAMP, Timestamp};
use rheo_runtime::sink::{SinkError, SinkFunction};
use rheo_runtime::task::{SourceError, SourceFunction, SourceOutput, SourceStatus};

/// Emits a fixed list of records (with optional timestamps), then ends. Its position (how
/// many were emitted) is checkpointed.
pub struct CollectionSource<T> {
    items: std::iter::Skip<std::vec::IntoIter<(T, Timestamp)>>,
    position: u64,
}

const BATCH: usize = 1024;

impl<T: Data> SourceFunction<T> for CollectionSource<T> {
    fn poll(&mut self, out: &mut SourceOutput<'_, T>) -> Result<SourceStatus, SourceError> {
        for _ in 0..BATCH {
            match self.items.next() {
                Some((value, timestamp)) => {
                    self.position += 1;
                    out.collect_with_timestamp(value, timestamp)
                }
                None => return Ok(SourceStatus::Finished),
            }
        }
        Ok(SourceStatus::More)
    }

    fn snapshot_state(&mut self) -> Option<Vec<u8>> {
        Some(rheo_runtime::state::restore::encode(&self.position))
    }
}

impl StreamEnv {
    /// A bounded, non-parallel stream of `items` (Flink's `fromCollection`).
    pub fn from_collection<T: Data + Sync>(&self, items: Vec<T>) -> DataStream<T> {
        self.from_timestamped(items.into_iter().map(|v| (v, NO_TIMESTAMP)).collect())
    }

    /// A bounded, non-parallel stream of records with event timestamps.
    pub fn from_timestamped<T: Data + Sync>(&self, items: Vec<(T, Timestamp)>) -> DataStream<T> {
        let items = Arc::new(items);
        self.add_non_parallel_source("Collection", move |ctx| {
            let position = ctx.restore_operator::<u64>().into_iter().next().unwrap_or(0);
            CollectionSource { items: items.as_ref().clone().into_iter().skip(position as usize), position }
        })
    }
}

/// The records a [`collect`](DataStream::collect) sink received, readable after the job ends.
pub struct Collected<T> {
    records: Arc<Mutex<Vec<(T, Timestamp)>>>,
}

impl<T> Clone for Collected<T> {
    fn clone(&self) -> Self {
        Self { records: self.records.clone() }
    }
}

impl<T: Clone> Collected<T> {
    /// The values received so far, in arrival order per subtask.
    pub fn values(&self) -> Vec<T> {
        self.records.lock().expect("collect sink lock").iter().map(|(v, _)| v.clone()).collect()
    }

    /// The values with their timestamps.
    pub fn timestamped(&self) -> Vec<(T, Timestamp)> {
        self.records.lock().expect("collect sink lock").clone()
    }
}

/// Buffers per subtask and appends to the shared vector on flush.
struct CollectSink<T> {
    buffer: Vec<(T, Timestamp)>,
    records: Arc<Mutex<Vec<(T, Timestamp)>>>,
}

impl<T: Send + 'static> SinkFunction<T> for CollectSink<T> {
    fn invoke(&mut self, value: T, timestamp: Timestamp) -> Result<(), SinkError> {
        self.buffer.push((value, timestamp));
        Ok(())
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        if !self.buffer.is_empty() {
            self.records.lock().expect("collect sink lock").append(&mut self.buffer);
        }
        Ok(())
    }
}

impl<T: Data> DataStream<T> {
    /// Collects the stream into memory, for tests.
    pub fn collect(&self) -> Collected<T> {
        let records = Arc::new(Mutex::new(Vec::new()));
        let shared = records.clone();
        self.add_sink("Collect", move |_| CollectSink { buffer: Vec::new(), records: shared.clone() });
        Collected { records }
    }
}
