//! The print sink, in Flink's format: `N> record` when the sink runs with parallelism > 1.

use std::fmt::Display;
use std::io::Write;

use crate::api::DataStream;
use rheo_runtime::graph::Data;
use rheo_runtime::output::Timestamp;
use rheo_runtime::sink::SinkFunction;

/// Buffers whole lines and writes them under the stdout lock, so lines of parallel subtasks
/// never interleave (a `BufWriter` flushes mid-line when full, and another subtask's write can
/// land inside that line).
pub struct PrintSink {
    prefix: String,
    buffer: Vec<u8>,
}

/// Write out once this many bytes are buffered.
const FLUSH_AT: usize = 64 * 1024;

impl PrintSink {
    pub fn new(subtask_index: usize, parallelism: usize) -> Self {
        let prefix = if parallelism > 1 { format!("{}> ", subtask_index + 1) } else { String::new() };
        Self { prefix, buffer: Vec::with_capacity(FLUSH_AT) }
    }
}

impl<T: Display> SinkFunction<T> for PrintSink {
    fn invoke(&mut self, value: T, _timestamp: Timestamp) {
        // Writing to a Vec cannot fail.
        let _ = writeln!(self.buffer, "{}{}", self.prefix, value);
        if self.buffer.len() >= FLUSH_AT {
            SinkFunction::<T>::flush(self);
        }
    }
    fn flush(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let mut stdout = std::io::stdout().lock();
        if let Err(e) = stdout.write_all(&self.buffer).and_then(|()| stdout.flush()) {
            panic!("print sink: cannot write to stdout: {e}");
        }
        self.buffer.clear();
    }
}

impl<T: Data + Display> DataStream<T> {
    /// Prints every record to stdout (Flink's `print()`).
    pub fn print(&self) -> crate::api::stream::DataSink {
        self.add_sink("Print to Std. Out", |ctx| PrintSink::new(ctx.info.subtask_index, ctx.info.parallelism))
    }
}
