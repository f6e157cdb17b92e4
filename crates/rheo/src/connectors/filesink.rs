//! An exactly-once file sink on any object store (two-phase commit).
//!
//! Records are formatted into an in-memory buffer. On a checkpoint barrier the buffer is
//! pre-committed: it becomes a pending part that travels inside the checkpoint's state. When
//! the checkpoint completes, each pending part is written as `part-<subtask>-<checkpoint>.csv`,
//! so output becomes visible only once the checkpoint that covers it exists. A restore commits
//! the pending parts of the restored checkpoint again; the write is idempotent (same name, same
//! bytes). Keeping pending data in the checkpoint instead of in-progress objects means no
//! rename is needed, which object stores do not have.
//!
//! Without checkpointing, the sink writes its part at the end of input (`part-<subtask>-final.csv`).

use std::sync::Arc;

use crate::api::DataStream;
use crate::api::stream::DataSink;
use rheo_config::options;
use rheo_runtime::checkpoint::{CheckpointStorage, StorageError, io_runtime};
use rheo_runtime::graph::{Data, OperatorContext};
use rheo_runtime::output::Timestamp;
use rheo_runtime::sink::{SinkError, SinkFunction};
use rheo_runtime::state::restore::encode;

/// Output waiting for its checkpoint to complete.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct PendingPart {
    checkpoint_id: u64,
    /// The subtask that wrote it (kept when restored at another parallelism).
    subtask: usize,
    data: Vec<u8>,
}

impl PendingPart {
    fn file_name(&self) -> String {
        format!("part-{}-{}.csv", self.subtask, self.checkpoint_id)
    }
}

/// Formats one record as one or more lines appended to the buffer.
pub type LineFormat<T> = Arc<dyn Fn(&T, &mut String) + Send + Sync>;

pub struct ExactlyOnceFileSink<T> {
    storage: CheckpointStorage,
    format: LineFormat<T>,
    subtask: usize,
    buffer: String,
    pending: Vec<PendingPart>,
    checkpointing: bool,
}

impl<T> ExactlyOnceFileSink<T> {
    fn new(storage: CheckpointStorage, format: LineFormat<T>, ctx: &OperatorContext) -> Self {
        let checkpointing =
            ctx.info.config.get(&options::CHECKPOINT_INTERVAL).ok().flatten().is_some_and(|d| !d.is_zero());
        let sink = Self {
            storage,
            format,
            subtask: ctx.info.subtask_index,
            buffer: String::new(),
            pending: Vec::new(),
            checkpointing,
        };
        // Parts pending in the restored checkpoint belong to a completed checkpoint: commit.
        let restored: Vec<Vec<PendingPart>> = ctx.restore_operator();
        let parts: Vec<PendingPart> = restored.into_iter().flatten().collect();
        for part in &parts {
            // Building a task has no error path; a panic here fails the task as well.
            if let Err(e) = sink.write(&part.file_name(), part.data.clone()) {
                panic!("{e}");
            }
        }
        sink
    }

    fn write(&self, name: &str, data: Vec<u8>) -> Result<(), SinkError> {
        io_runtime()
            .block_on(self.storage.put(name, data))
            .map_err(|e| SinkError::Other(format!("cannot commit a part file: {e}").into()))
    }
}

impl<T: Send + 'static> SinkFunction<T> for ExactlyOnceFileSink<T> {
    fn invoke(&mut self, value: T, _timestamp: Timestamp) -> Result<(), SinkError> {
        (self.format)(&value, &mut self.buffer);
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        if !self.checkpointing && !self.buffer.is_empty() {
            let data = std::mem::take(&mut self.buffer).into_bytes();
            self.write(&format!("part-{}-final.csv", self.subtask), data)?;
        }
        Ok(())
    }

    fn snapshot_state(&mut self, checkpoint_id: u64) -> Result<Option<Vec<u8>>, SinkError> {
        if !self.buffer.is_empty() {
            let data = std::mem::take(&mut self.buffer).into_bytes();
            self.pending.push(PendingPart { checkpoint_id, subtask: self.subtask, data });
        }
        Ok(Some(encode(&self.pending)))
    }

    /// A part that cannot be written fails the task; the restart commits it again from the
    /// completed checkpoint, which holds it.
    fn checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<(), SinkError> {
        let (ready, waiting): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.pending).into_iter().partition(|p| p.checkpoint_id <= checkpoint_id);
        self.pending = waiting;
        for part in ready {
            let name = part.file_name();
            self.write(&name, part.data)?;
        }
        Ok(())
    }
}

impl<T: Data> DataStream<T> {
    /// Writes the stream exactly once into part files under `url` (any object store URL),
    /// each record formatted by `format` (which appends its lines, with `\n`).
    pub fn sink_to_files(
        &self,
        url: &str,
        format: impl Fn(&T, &mut String) + Send + Sync + 'static,
    ) -> Result<DataSink, StorageError> {
        let storage = CheckpointStorage::from_url(url)?;
        let format: LineFormat<T> = Arc::new(format);
        Ok(self.add_sink("Exactly-once File Sink", move |ctx| {
            ExactlyOnceFileSink::new(storage.clone(), format.clone(), ctx)
        }))
    }
}
