//! Finding the checkpoint to resume from: the newest one whose `_metadata` exists and whose
//! files are all present with matching size and checksum. A corrupt or partial checkpoint is
//! reported and skipped for the one before it.

use std::collections::HashMap;

use futures::{StreamExt, TryStreamExt};

use crate::checkpoint::metadata::{CheckpointMetadata, METADATA_FILE, checkpoint_dir, parse_checkpoint_dir};
use crate::checkpoint::storage::{CheckpointStorage, Checksummed, Download, PART_SIZE, StorageError};
use crate::state::restore::{RestoredState, StateBlob, SubtaskState};

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

/// What listing a job's checkpoints found: the newest valid one, and the newer ones that
/// exist (their `_metadata` was written) but cannot be restored.
pub struct Scan {
    pub found: Option<Discovered>,
    /// `(checkpoint id, what is wrong)`, newest first.
    pub unreadable: Vec<(u64, String)>,
}

/// The newest valid checkpoint of the job, if any.
pub async fn latest(job: &CheckpointStorage) -> Result<Option<Discovered>, StorageError> {
    Ok(scan(job).await?.found)
}

/// Looks for the newest valid checkpoint, remembering the unreadable ones it skipped. An
/// incomplete checkpoint (no `_metadata`: the job stopped while taking it) is no loss and is
/// not reported.
pub async fn scan(job: &CheckpointStorage) -> Result<Scan, StorageError> {
    let mut unreadable = Vec::new();
    for id in checkpoint_ids(job).await? {
        match load_checked(&job.child(&checkpoint_dir(id))).await {
            Ok(Some(found)) => return Ok(Scan { found: Some(found), unreadable }),
            Ok(None) => tracing::info!(checkpoint = id, "checkpoint is incomplete (no _metadata); skipping it"),
            // The store is unreachable: that says nothing about the checkpoint.
            Err(LoadError::Storage(e)) => return Err(e),
            Err(LoadError::Corrupt(problem)) => {
                tracing::warn!(checkpoint = id, %problem, "checkpoint is corrupt; trying the one before it");
                unreadable.push((id, problem));
            }
        }
    }
    Ok(Scan { found: None, unreadable })
}

/// Why a checkpoint could not be loaded.
enum LoadError {
    /// The store did not answer: retry later.
    Storage(StorageError),
    /// The checkpoint is damaged: it will never load.
    Corrupt(String),
}

/// Loads and verifies one checkpoint or savepoint directory. `Ok(None)`: no `_metadata`.
pub async fn load(dir: &CheckpointStorage) -> Result<Option<Discovered>, String> {
    load_checked(dir).await.map_err(|e| match e {
        LoadError::Storage(e) => e.to_string(),
        LoadError::Corrupt(problem) => problem,
    })
}

async fn load_checked(dir: &CheckpointStorage) -> Result<Option<Discovered>, LoadError> {
    let Some(raw) = dir.get_if_exists(METADATA_FILE).await.map_err(LoadError::Storage)? else {
        return Ok(None);
    };
    let metadata: CheckpointMetadata =
        serde_json::from_slice(&raw).map_err(|e| LoadError::Corrupt(format!("{}/{METADATA_FILE}: {e}", dir.url())))?;
    let mut nodes: HashMap<usize, Vec<SubtaskState>> = HashMap::new();
    let mut operators: HashMap<usize, String> = HashMap::new();
    // Shared files of incremental checkpoints are in the job's directory, the parent of this one.
    let job = match metadata.shared_files().next() {
        Some(_) => Some(dir.parent().map_err(LoadError::Storage)?),
        None => None,
    };
    for handle in &metadata.states {
        let mut files = Vec::with_capacity(1 + handle.shared.len());
        if !handle.file.is_empty() {
            files.push(read_checked(dir, &handle.file, handle.size, handle.crc32).await?);
        }
        if let Some(job) = &job {
            // A chain of change files is read a few at a time: on an object store each is a request.
            let reads = handle.shared.iter().map(|f| read_checked(job, &f.path, f.size, f.crc32));
            files.extend(futures::stream::iter(reads).buffered(8).try_collect::<Vec<_>>().await?);
        }
        let mut files = files.into_iter();
        let bytes = files.next().unwrap_or_default();
        operators.insert(handle.node, handle.operator.clone());
        nodes.entry(handle.node).or_default().push(SubtaskState {
            subtask: handle.subtask,
            parallelism: handle.parallelism,
            bytes,
            changes: files.collect(),
        });
    }
    let state = RestoredState {
        metadata_version: metadata.version,
        job_id: metadata.job_id.clone(),
        checkpoint_id: metadata.checkpoint_id,
        max_parallelism: metadata.max_parallelism,
        nodes,
        operators,
    };
    Ok(Some(Discovered { metadata, state }))
}

/// State files up to this size are read into memory; larger ones are downloaded into a local
/// temporary file and mapped (see [`StateBlob`]).
const IN_MEMORY_MAX: u64 = PART_SIZE as u64;

/// Reads `file` under `dir` and checks its size and CRC32 against the metadata, as it streams.
async fn read_checked(dir: &CheckpointStorage, file: &str, size: u64, crc32: u32) -> Result<StateBlob, LoadError> {
    let mismatch = |found: String| {
        LoadError::Corrupt(format!("{}/{file}: expected {size} bytes with CRC32 {crc32:08x}, found {found}", dir.url()))
    };
    let missing = || LoadError::Corrupt(format!("{}/{file}: the file is missing", dir.url()));
    if size <= IN_MEMORY_MAX {
        let bytes = dir.get_if_exists(file).await.map_err(LoadError::Storage)?.ok_or_else(missing)?;
        let found = crc32fast::hash(&bytes);
        if bytes.len() as u64 != size || found != crc32 {
            return Err(mismatch(format!("{} bytes with CRC32 {found:08x}", bytes.len())));
        }
        return Ok(StateBlob::Bytes(bytes));
    }
    // An unnamed file in the system's temporary directory: gone once unmapped, even if the
    // process dies.
    let local = tempfile::tempfile().map_err(|e| LoadError::Storage(dir.local_error(file, e)))?;
    let (found, local) = match dir.download(file, size, local).await.map_err(LoadError::Storage)? {
        Download::Missing => return Err(missing()),
        Download::OtherSize(found) => return Err(mismatch(format!("{found} bytes"))),
        Download::Done(found, local) => (found, local),
    };
    if found != (Checksummed { size, crc32 }) {
        return Err(mismatch(format!("{} bytes with CRC32 {:08x}", found.size, found.crc32)));
    }
    StateBlob::map(&local).map_err(|e| LoadError::Storage(dir.local_error(file, e)))
}
