//! Finding the checkpoint to resume from: the newest one whose `_metadata` exists and whose
//! files are all present with matching size and checksum. A corrupt or partial checkpoint is
//! reported and skipped for the one before it.

use std::collections::HashMap;

use crate::checkpoint::metadata::{CheckpointMetadata, METADATA_FILE, checkpoint_dir, parse_checkpoint_dir};
use crate::checkpoint::storage::{CheckpointStorage, StorageError};
use crate::state::restore::{RestoredState, SubtaskState};

/// Marks a job that ran to completion: its next run starts fresh.
pub const FINISHED_MARKER: &str = "_job_finished";

/// A checkpoint that can be restored, with its state loaded.
pub struct Discovered {
    pub metadata: CheckpointMetadata,
    pub state: RestoredState,
}

/// Checkpoint ids under the job's directory, newest first.
pub async fn checkpoint_ids(job: &CheckpointStorage) -> Result<Vec<u64>, StorageError> {
    let mut ids: Vec<u64> = job.list_dirs("").await?.iter().filter_map(|d| parse_checkpoint_dir(d)).collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    Ok(ids)
}

/// The newest valid checkpoint of the job, if any.
pub async fn latest(job: &CheckpointStorage) -> Result<Option<Discovered>, StorageError> {
    for id in checkpoint_ids(job).await? {
        match load(&job.child(&checkpoint_dir(id))).await {
            Ok(Some(found)) => return Ok(Some(found)),
            Ok(None) => tracing::info!(checkpoint = id, "checkpoint is incomplete (no _metadata); skipping it"),
            Err(problem) => {
                tracing::warn!(checkpoint = id, %problem, "checkpoint is corrupt; trying the one before it")
            }
        }
    }
    Ok(None)
}

/// Loads and verifies one checkpoint or savepoint directory. `Ok(None)`: no `_metadata`.
pub async fn load(dir: &CheckpointStorage) -> Result<Option<Discovered>, String> {
    let Some(raw) = dir.get_if_exists(METADATA_FILE).await.map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let metadata: CheckpointMetadata =
        serde_json::from_slice(&raw).map_err(|e| format!("{}/{METADATA_FILE}: {e}", dir.url()))?;
    let mut nodes: HashMap<usize, Vec<SubtaskState>> = HashMap::new();
    let mut operators: HashMap<usize, String> = HashMap::new();
    for handle in &metadata.states {
        let bytes = dir.get(&handle.file).await.map_err(|e| e.to_string())?;
        if bytes.len() as u64 != handle.size || crc32fast::hash(&bytes) != handle.crc32 {
            return Err(format!(
                "{}/{}: expected {} bytes with CRC32 {:08x}, found {} bytes with CRC32 {:08x}",
                dir.url(),
                handle.file,
                handle.size,
                handle.crc32,
                bytes.len(),
                crc32fast::hash(&bytes)
            ));
        }
        operators.insert(handle.node, handle.operator.clone());
        nodes.entry(handle.node).or_default().push(SubtaskState {
            subtask: handle.subtask,
            parallelism: handle.parallelism,
            bytes,
        });
    }
    let state = RestoredState {
        checkpoint_id: metadata.checkpoint_id,
        max_parallelism: metadata.max_parallelism,
        nodes,
        operators,
    };
    Ok(Some(Discovered { metadata, state }))
}
