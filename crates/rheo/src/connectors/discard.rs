//! The discard sink: drops every record (for benchmarks), still counting it as written.

use crate::api::DataStream;
use crate::api::stream::DataSink;
use rheo_runtime::graph::Data;
use rheo_runtime::output::Timestamp;
use rheo_runtime::sink::{SinkError, SinkFunction};

/// Records of any type, thrown away (for benchmarks).
pub struct DiscardSink;

impl<T> SinkFunction<T> for DiscardSink {
    fn invoke(&mut self, _value: T, _timestamp: Timestamp) -> Result<(), SinkError> {
        Ok(())
    }
}

impl<T: Data> DataStream<T> {
    /// Counts the records as written and drops them (for benchmarks).
    pub fn discard(&self) -> DataSink {
        self.add_sink("Discard", |_| DiscardSink)
    }
}
