//! Checkpoints: asynchronous barrier snapshots written to object storage, in Flink's layout.
//!
//! ```text
//! <state.checkpoints.dir>/<job-id>/chk-<n>/_metadata   written last: a checkpoint exists iff this does
//! <state.checkpoints.dir>/<job-id>/chk-<n>/<node>-<subtask>.state
//! <state.checkpoints.dir>/<job-id>/shared/chk-<n>/<node>-<subtask>-<nonce>.state
//! ```
//!
//! With incremental checkpoints (`state.backend.incremental`), keyed state goes to the shared
//! area instead: each checkpoint adds the files of what changed and lists in `_metadata` every
//! file it needs, those of earlier checkpoints included; [`shared`] deletes a shared file once
//! no retained checkpoint references it.
//!
//! The [`coordinator`] triggers checkpoints, collects each task's snapshot, uploads it while the
//! tasks go on processing, and writes `_metadata` once every task acknowledged. [`discover`]
//! finds the newest complete checkpoint whose files all match their checksums.
//!
//! State files are streamed both ways, so a large state is never held twice in memory: an
//! operator's state is written from its view straight into a multipart upload of
//! [`storage::PART_SIZE`] parts (size and CRC32 computed on the way), and a large file is
//! restored from a map of a local copy downloaded (and checked) as it streams.

pub mod coordinator;
pub mod discover;
pub mod metadata;
pub mod shared;
pub mod storage;

pub use storage::{CheckpointStorage, StorageError};

/// The runtime that runs object-store I/O for checkpoints and sinks. Task threads and the
/// coordinator are plain threads and block on it.
pub fn io_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("rheo-io")
            .enable_all()
            .build()
            .expect("cannot start the I/O runtime")
    })
}
