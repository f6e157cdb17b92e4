//! The API a source implements, and the output it emits records, watermarks and idleness into.

use super::TaskInfo;
use crate::output::{Output, Timestamp};

/// Errors a source reports. Sources name their own problem (a host, a file, a line).
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// What a call to [`SourceFunction::poll`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceStatus {
    /// Records were emitted, or may be: call again right away.
    More,
    /// Nothing was available within a short wait: the task flushes and fires timers, then
    /// polls again.
    Idle,
    /// The input is exhausted (bounded source).
    Finished,
}

/// A source of records for one subtask. `poll` emits one batch and must not block for long
/// (a few tens of milliseconds at most), so timers and cancellation stay responsive.
pub trait SourceFunction<T>: Send + 'static {
    fn open(&mut self, _info: &TaskInfo) -> Result<(), SourceError> {
        Ok(())
    }
    fn poll(&mut self, out: &mut SourceOutput<'_, T>) -> Result<SourceStatus, SourceError>;
    /// The source's position for a checkpoint (e.g. a file offset), restored by whoever builds
    /// the source from `TaskInfo::restored`. `None`: the source cannot rewind (e.g. a socket).
    fn snapshot_state(&mut self) -> Option<Vec<u8>> {
        None
    }
    /// The position for checkpoint `checkpoint_id`, for sources that act when that checkpoint
    /// completes (e.g. commit offsets to a consumer group). Defaults to [`snapshot_state`](Self::snapshot_state).
    fn snapshot_state_for(&mut self, checkpoint_id: u64) -> Option<Vec<u8>> {
        let _ = checkpoint_id;
        self.snapshot_state()
    }
    /// Checkpoint `checkpoint_id` completed (and with it every earlier one).
    fn checkpoint_complete(&mut self, _checkpoint_id: u64) {}
}

/// Where a source emits its records.
pub struct SourceOutput<'a, T> {
    out: &'a mut dyn Output<T>,
    /// Records emitted in this poll, read by the source task's loop.
    pub(super) emitted: u64,
    idle: bool,
}

impl<'a, T> SourceOutput<'a, T> {
    pub fn new(out: &'a mut dyn Output<T>) -> Self {
        Self { out, emitted: 0, idle: false }
    }

    /// Emits a record without an event timestamp.
    #[inline]
    pub fn collect(&mut self, value: T) {
        self.collect_with_timestamp(value, crate::output::NO_TIMESTAMP);
    }

    /// Emits a record with its event timestamp.
    #[inline]
    pub fn collect_with_timestamp(&mut self, value: T, timestamp: Timestamp) {
        if self.idle {
            self.idle = false;
            self.out.idle(false);
        }
        self.emitted += 1;
        self.out.collect(value, timestamp);
    }

    /// Emits a watermark from the source itself.
    pub fn emit_watermark(&mut self, watermark: Timestamp) {
        self.out.watermark(watermark);
    }

    /// Marks this source idle: it does not hold back downstream watermarks until it emits again.
    pub fn mark_idle(&mut self) {
        if !self.idle {
            self.idle = true;
            self.out.idle(true);
        }
    }
}
