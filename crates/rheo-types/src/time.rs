//! Event and processing time, and node ids.

/// Milliseconds since the Unix epoch, event or processing time.
pub type Timestamp = i64;
/// The timestamp of a record that has none (no event time assigned).
pub const NO_TIMESTAMP: Timestamp = i64::MIN;
/// The watermark that ends event time: every event-time window fires.
pub const MAX_WATERMARK: Timestamp = i64::MAX;

/// Index of a node in the job graph; identifies an operator's state in a checkpoint.
pub type NodeId = usize;
