//! The print sink, in Flink's format: `N> record` when the sink runs with parallelism > 1.

use std::fmt::Display;
use std::io::{ErrorKind, Write};

use crate::api::DataStream;
use rheo_runtime::graph::Data;
use rheo_runtime::output::Timestamp;
use rheo_runtime::sink::{SinkError, SinkFunction};

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

impl PrintSink {
    /// Writes the buffered lines to `out`. A closed pipe (`| head`) ends the job rather than
    /// failing it: the reader has all it wanted.
    fn write_to(&mut self, out: &mut impl Write) -> Result<(), SinkError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        match out.write_all(&self.buffer).and_then(|()| out.flush()) {
            Ok(()) => {
                self.buffer.clear();
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::BrokenPipe => Err(SinkError::OutputClosed),
            Err(e) => Err(SinkError::io("cannot write to stdout", e)),
        }
    }
}

impl<T: Display> SinkFunction<T> for PrintSink {
    fn invoke(&mut self, value: T, _timestamp: Timestamp) -> Result<(), SinkError> {
        writeln!(self.buffer, "{}{}", self.prefix, value).expect("writing to a Vec");
        if self.buffer.len() >= FLUSH_AT {
            SinkFunction::<T>::flush(self)?;
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        self.write_to(&mut std::io::stdout().lock())
    }
}

impl<T: Data + Display> DataStream<T> {
    /// Prints every record to stdout (Flink's `print()`).
    pub fn print(&self) -> crate::api::stream::DataSink {
        self.add_sink("Print to Std. Out", |ctx| PrintSink::new(ctx.info.subtask_index, ctx.info.parallelism))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer whose reader went away.
    struct ClosedPipe;

    impl Write for ClosedPipe {
        fn write(&mut self, _buf: &[u8]) -> std::io::Result<usize> {
            Err(ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_in_flinks_format() {
        let mut sink = PrintSink::new(1, 3);
        SinkFunction::<&str>::invoke(&mut sink, "hello", 0).unwrap();
        let mut out = Vec::new();
        sink.write_to(&mut out).unwrap();
        assert_eq!(out, b"2> hello\n");
    }

    #[test]
    fn a_closed_pipe_closes_the_output_and_other_errors_fail() {
        let mut sink = PrintSink::new(0, 1);
        SinkFunction::<u32>::invoke(&mut sink, 7, 0).unwrap();
        assert!(matches!(sink.write_to(&mut ClosedPipe), Err(SinkError::OutputClosed)));
        struct Full;
        impl Write for Full {
            fn write(&mut self, _buf: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("device full"))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let err = sink.write_to(&mut Full).unwrap_err().to_string();
        assert_eq!(err, "cannot write to stdout: device full");
    }
}
