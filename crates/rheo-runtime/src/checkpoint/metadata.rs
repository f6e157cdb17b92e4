//! `_metadata`: what a checkpoint holds and the checksum of every file, written last.

use serde::{Deserialize, Serialize};

/// The current metadata format.
pub const METADATA_VERSION: u32 = 1;
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

/// One operator subtask's state file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateHandle {
    pub node: usize,
    /// The operator's name when the checkpoint was taken, to match state to operators.
    #[serde(default)]
    pub operator: String,
    pub subtask: usize,
    pub parallelism: usize,
    /// Relative to the checkpoint directory.
    pub file: String,
    pub size: u64,
    pub crc32: u32,
}

impl CheckpointMetadata {
    pub fn total_size(&self) -> u64 {
        self.states.iter().map(|s| s.size).sum()
    }
}

/// `chk-17` → 17.
pub fn checkpoint_dir(id: u64) -> String {
    format!("chk-{id}")
}

pub fn parse_checkpoint_dir(name: &str) -> Option<u64> {
    name.strip_prefix("chk-")?.parse().ok()
}
