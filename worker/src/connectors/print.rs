//! The print sink, in Flink's format: `N> record` when the sink runs with parallelism > 1.

use std::fmt::Display;
use std::io::{BufWriter, Stdout, Write};

use crate::api::DataStream;
use crate::graph::Data;
use crate::runtime::output::Timestamp;
use crate::runtime::sink::SinkFunction;

pub struct PrintSink {
    prefix: String,
    out: BufWriter<Stdout>,
}

impl PrintSink {
    pub fn new(subtask_index: usize, parallelism: usize) -> Self {
        let prefix = if parallelism > 1 { format!("{}> ", subtask_index + 1) } else { String::new() };
        Self { prefix, out: BufWriter::new(std::io::stdout()) }
    }
}

impl<T: Display> SinkFunction<T> for PrintSink {
    fn invoke(&mut self, value: T, _timestamp: Timestamp) {
        if let Err(e) = writeln!(self.out, "{}{}", self.prefix, value) {
            panic!("print sink: cannot write to stdout: {e}");
        }
    }
    fn flush(&mut self) {
        if let Err(e) = self.out.flush() {
            panic!("print sink: cannot write to stdout: {e}");
        }
    }
}

impl<T: Data + Display> DataStream<T> {
    /// Prints every record to stdout (Flink's `print()`).
    pub fn print(&self) -> crate::api::stream::DataSink {
        self.add_sink("Print to Std. Out", |ctx| PrintSink::new(ctx.info.subtask_index, ctx.info.parallelism))
    }
}
