//! The shared vocabulary of Rheo: what every other crate names and nothing here depends on.
//!
//! Records and their timestamps, the events that travel on channels between subtasks
//! (record batches, watermarks, checkpoint barriers), keys and key groups, and job ids. The
//! runtime, the network and the cluster speak these types; none of them owns them.

pub mod event;
pub mod job_id;
pub mod keygroups;
pub mod time;

pub use event::{BATCH_SIZE, CHANNEL_CAPACITY, CheckpointBarrier, Event};
pub use job_id::{JobId, JobIdError};
pub use keygroups::{KeyGroupRange, hash_key};
pub use time::{MAX_WATERMARK, NO_TIMESTAMP, NodeId, Timestamp};

/// A record type that can flow through a job. Serializable, as in Flink: records cross
/// process boundaries and live in checkpointed state. `Sync` because records kept in keyed state
/// (a window's elements) are written to a checkpoint from a copy-on-write view, on another
/// thread than the task's.
pub trait Data: Clone + Send + Sync + serde::Serialize + serde::de::DeserializeOwned + 'static {}
impl<T: Clone + Send + Sync + serde::Serialize + serde::de::DeserializeOwned + 'static> Data for T {}

/// A key of a keyed stream: hashed into a key group, kept in state, sent between processes.
/// `Sync` because a checkpoint writes keys from a copy-on-write view of the state, on another
/// thread than the task's.
pub trait Key:
    std::hash::Hash + Eq + Clone + Send + Sync + serde::Serialize + serde::de::DeserializeOwned + 'static
{
}
impl<K: std::hash::Hash + Eq + Clone + Send + Sync + serde::Serialize + serde::de::DeserializeOwned + 'static> Key
    for K
{
}
