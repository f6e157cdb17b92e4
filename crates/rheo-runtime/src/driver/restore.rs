//! Where a job starts from: its own newest complete checkpoint, else the savepoint it was
//! given, else nothing.

use std::sync::Arc;

use rheo_config::{Configuration, options};

use super::JobError;
use crate::checkpoint::discover::{self, FINISHED_MARKER};
use crate::checkpoint::metadata::checkpoint_dir;
use crate::checkpoint::{CheckpointStorage, StorageError, io_runtime};
use crate::state::restore::RestoredState;

/// The job's newest complete checkpoint under its directory `storage`.
pub async fn latest_checkpoint(storage: &CheckpointStorage) -> Result<Option<Restore>, StorageError> {
    Ok(discover::latest(storage).await?.map(|d| Restore {
        url: storage.child(&checkpoint_dir(d.state.checkpoint_id)).url().to_string(),
        state: Arc::new(d.state),
    }))
}

/// The snapshot a job given `path` (`execution.savepoint.path`) starts from, loaded and checked
/// (every file present with its size and checksum), and its directory's URL. `path` is a
/// savepoint or checkpoint directory (with `_metadata`), or a job's checkpoint directory
/// (`<state.checkpoints.dir>/<job-id>`): then its newest complete checkpoint. The operator
/// hands over the old job's directory on a last-state upgrade, so the new job starts from the
/// newest checkpoint at its start, even when the old JobManager could not be asked.
/// `Err`: why nothing can be restored from `path`.
pub async fn resolve_snapshot(path: &str) -> Result<(discover::Discovered, String), String> {
    let dir = CheckpointStorage::from_url(path).map_err(|e| e.to_string())?;
    if let Some(found) = discover::load(&dir).await? {
        return Ok((found, path.to_string()));
    }
    match discover::latest(&dir).await.map_err(|e| e.to_string())? {
        Some(found) => {
            let url = dir.child(&checkpoint_dir(found.state.checkpoint_id)).url().to_string();
            Ok((found, url))
        }
        None => Err("no _metadata there, nor a complete chk-<n>/_metadata under it".into()),
    }
}

/// A checkpoint or savepoint to start from.
pub struct Restore {
    pub state: Arc<RestoredState>,
    /// Its directory, for TaskManagers that load it themselves.
    pub url: String,
}

/// The state to start from, as Flink decides it: the job's own newest checkpoint (so a
/// restarted JobManager never rewinds to the savepoint it was first started from), else the
/// savepoint given by `execution.savepoint.path`, else nothing. A job that finished last
/// time, or one told to with `execution.fresh-start`, starts fresh: its checkpoints are
/// deleted (its exactly-once sinks roll back their output when they start from nothing).
///
/// A job whose checkpoints exist but none can be restored never starts from nothing
/// silently: that would commit again what its sinks committed before. It fails naming the
/// checkpoint and the ways out, unless a savepoint was given.
pub fn initial_state(
    config: &Configuration,
    storage: Option<&CheckpointStorage>,
    operators: &[String],
) -> Result<Option<Restore>, JobError> {
    let fresh_start = config.get(&options::FRESH_START)?;
    let savepoint = config.get(&options::SAVEPOINT_PATH)?;
    if let Some(storage) = storage {
        let scan = io_runtime().block_on(async {
            if storage.get_if_exists(FINISHED_MARKER).await?.is_some() || fresh_start {
                tracing::info!(dir = storage.url(), fresh_start, "starting fresh: deleting the job's checkpoints");
                storage.delete_all("").await?;
                return Ok::<_, StorageError>(None);
            }
            discover::scan(storage).await.map(Some)
        })?;
        if let Some(scan) = scan {
            if let Some(found) = scan.found {
                return Ok(Some(Restore {
                    url: storage.child(&checkpoint_dir(found.state.checkpoint_id)).url().to_string(),
                    state: Arc::new(found.state),
                }));
            }
            if let Some((id, problem)) = scan.unreadable.into_iter().next() {
                let path = storage.child(&checkpoint_dir(id)).url().to_string();
                if savepoint.is_none() {
                    return Err(JobError::Unrestorable { path, problem });
                }
                tracing::warn!(checkpoint = %path, %problem, "the job's own checkpoints cannot be restored; using the savepoint");
            }
        }
    }
    let Some(path) = savepoint.as_deref() else { return Ok(None) };
    let (found, url) = io_runtime()
        .block_on(resolve_snapshot(path))
        .map_err(|message| JobError::Restore { path: path.into(), message })?;
    let mut state = found.state;
    let unclaimed = state.unclaimed(operators);
    if !unclaimed.is_empty() {
        if !config.get(&options::SAVEPOINT_IGNORE_UNCLAIMED_STATE)? {
            return Err(JobError::Restore {
                path: path.into(),
                message: format!(
                    "it holds state of {} that this job does not have; \
                     pass --allow-non-restored-state to drop it",
                    unclaimed.join(", ")
                ),
            });
        }
        tracing::warn!(dropped = %unclaimed.join(", "), "dropping state the job does not have");
        state.drop_unclaimed(operators);
    }
    tracing::info!(path = url, checkpoint = state.checkpoint_id, "restoring from savepoint");
    Ok(Some(Restore { state: Arc::new(state), url }))
}
