//! `_metadata`: what a checkpoint holds and the checksum of every file, written last.

use serde::{Deserialize, Serialize};

/// The current metadata format: 2 added [`StateHandle::shared`] (incremental checkpoints); 3
/// changed no field but the state of rolling reduce and aggregate, now that of a keyed process
/// operator (see [`ROLLING_AS_KEYED_PROCESS_SINCE`]); 4 that of windows, now on the keyed state
/// backend (see [`WINDOWS_ON_KEYED_BACKEND_SINCE`]).
pub const METADATA_VERSION: u32 = 4;
/// From this metadata version on, rolling reduce and aggregate write their state as keyed
/// process operators do; before, as a list of `(key, value)` (still restored).
pub const ROLLING_AS_KEYED_PROCESS_SINCE: u32 = 3;
/// From this metadata version on, the window operator writes its state as keyed process
/// operators do (each key's open windows, a timer per window end); before, as a list of
/// (key, window, fired, accumulator) (still restored).
pub const WINDOWS_ON_KEYED_BACKEND_SINCE: u32 = 4;
pub const METADATA_FILE: &str = "_metadata";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMetadata {
    pub version: u32,
    pub job_id: String,
    pub job_name: String,
    pub checkpoint_id: u64,
    /// When the checkpoint was triggered, ms since the epoch.
    pub timestamp: i64,
    /// Taken after every source reached the end of its input.
    pub is_final: bool,
    pub max_parallelism: usize,
    pub states: Vec<StateHandle>,
}

/// One operator subtask's state: a file of the checkpoint's own directory (a full snapshot), or
/// the files of the job's shared area it is built from (an incremental one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateHandle {
    pub node: usize,
    /// The operator's name when the checkpoint was taken, to match state to operators.
    #[serde(default)]
    pub operator: String,
    pub subtask: usize,
    pub parallelism: usize,
    /// Relative to the checkpoint directory; empty when the state is all in `shared`. (No
    /// `skip_serializing_if`: handles also travel in postcard, which needs every field.)
    #[serde(default)]
    pub file: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub crc32: u32,
    /// Incremental keyed state: a full snapshot, then the changes of later checkpoints, in the
    /// order they are applied on restore. Files of earlier checkpoints are shared with them.
    #[serde(default)]
    pub shared: Vec<SharedFile>,
}

/// A file of the job's shared area (`<job>/shared/chk-<n>/...`), written once by checkpoint
/// `checkpoint_id` and read by every later checkpoint that builds on it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SharedFile {
    /// Relative to the job's directory, the parent of `chk-<n>`.
    pub path: String,
    pub size: u64,
    pub crc32: u32,
    pub checkpoint_id: u64,
}

impl CheckpointMetadata {
    /// Bytes of state the checkpoint needs, its shared files included (Flink's "full size").
    pub fn total_size(&self) -> u64 {
        self.states.iter().map(|s| s.size + s.shared.iter().map(|f| f.size).sum::<u64>()).sum()
    }

    /// Bytes this checkpoint wrote itself (Flink's "checkpointed size"): its own files and the
    /// shared files it added; less than [`total_size`](Self::total_size) when incremental.
    pub fn uploaded_size(&self) -> u64 {
        let added = |s: &StateHandle| -> u64 {
            s.shared.iter().filter(|f| f.checkpoint_id == self.checkpoint_id).map(|f| f.size).sum()
        };
        self.states.iter().map(|s| s.size + added(s)).sum()
    }

    /// Every shared file the checkpoint references.
    pub fn shared_files(&self) -> impl Iterator<Item = &SharedFile> {
        self.states.iter().flat_map(|s| &s.shared)
    }
}

/// Where checkpoint `checkpoint_id` puts the shared files it adds, relative to the job's
/// directory. One directory per checkpoint, so the files of one that failed go in one delete.
pub fn shared_dir(checkpoint_id: u64) -> String {
    format!("{SHARED_DIR}/{}", checkpoint_dir(checkpoint_id))
}

/// The job's shared area, beside its `chk-<n>` directories (Flink's `<job>/shared/`).
pub const SHARED_DIR: &str = "shared";

/// `chk-17` → 17.
pub fn checkpoint_dir(id: u64) -> String {
    format!("chk-{id}")
}

pub fn parse_checkpoint_dir(name: &str) -> Option<u64> {
    name.strip_prefix("chk-")?.parse().ok()
}
