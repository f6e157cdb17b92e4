//! What travels on a channel between two subtasks, in this process or across the network.

use crate::time::Timestamp;

/// Marks the position of a checkpoint in every stream (Chandy-Lamport marker).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckpointBarrier {
    pub id: u64,
    pub timestamp: Timestamp,
    /// Whether keyed state may be written as the changes since the last completed checkpoint
    /// (Flink's checkpoint options travel with its barrier the same way): false for savepoints,
    /// which are always full and self-contained, and with `state.backend.incremental: false`.
    pub incremental: bool,
    /// A checkpoint of type FULL (`POST /jobs/:id/checkpoints` with `checkpointType: FULL`):
    /// keyed state is written whole, building on no earlier file. With `incremental` it still
    /// goes to the shared area, and later checkpoints build on it (Flink's FULL checkpoint,
    /// whose files are shared forward only).
    pub full: bool,
}

/// What travels on a channel between two subtasks.
pub enum Event<T> {
    Records(Vec<(T, Timestamp)>),
    Watermark(Timestamp),
    Idle(bool),
    Barrier(CheckpointBarrier),
    /// No more records: windows and timers fire. Barriers may still follow.
    EndOfData,
    /// The channel closes.
    End,
}

/// Records per batch: large enough to amortise a channel send, small enough to keep latency low.
pub const BATCH_SIZE: usize = 1024;
/// Batches in flight per channel before the writer blocks.
pub const CHANNEL_CAPACITY: usize = 4;
