//! Savepoints and stop-with-savepoint: trigger and poll.

use super::*;

pub(super) fn trigger(
    state: &State,
    handle: &JobHandle,
    target_dir: Option<String>,
    stop: bool,
) -> Result<Response, Error> {
    let target_dir = target_dir.filter(|d| !d.trim().is_empty());
    if let Some(dir) = &target_dir {
        rheo_runtime::checkpoint::CheckpointStorage::check_scheme(dir)
            .map_err(|e| Error(StatusCode::BAD_REQUEST, format!("target directory: {e}")))?;
    }
    match handle.trigger_savepoint(target_dir, stop) {
        Ok(trigger_id) => {
            tracing::info!(trigger = %trigger_id, stop, "savepoint triggered (REST request)");
            state.unread().insert(trigger_id.clone());
            Ok(accepted(api::TriggerResponse { request_id: trigger_id }))
        }
        Err(message) => Err(Error(StatusCode::CONFLICT, message)),
    }
}

/// `POST /jobs/:id/savepoints` with `{"target-directory": .., "cancel-job": ..}`.
pub(super) async fn trigger_savepoint(
    Extract(state): Extract<Shared>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Response, Error> {
    let handle = find_job(&state, &id)?;
    let request: api::SavepointTriggerRequest = body(&bytes, "SavepointTriggerRequestBody")?;
    trigger(&state, &handle, request.target_directory, request.cancel_job)
}

/// `POST /jobs/:id/stop` with `{"targetDirectory": .., "drain": ..}`: stop with a savepoint.
pub(super) async fn stop(
    Extract(state): Extract<Shared>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Response, Error> {
    let handle = find_job(&state, &id)?;
    let request: api::StopWithSavepointRequest = body(&bytes, "StopWithSavepointRequestBody")?;
    if request.drain {
        return Err(Error(
            StatusCode::BAD_REQUEST,
            "drain (advancing event time to the end before stopping) is not supported; stop without it".into(),
        ));
    }
    trigger(&state, &handle, request.target_directory, true)
}

/// `GET /jobs/:id/savepoints/:trigger`.
pub(super) async fn savepoint_status(
    Extract(state): Extract<Shared>,
    Path((id, trigger)): Path<(String, String)>,
) -> Answer<api::AsynchronousOperationResult> {
    let handle = find_job(&state, &id)?;
    let Some(status) = handle.savepoint_status(&trigger) else {
        return Err(Error(StatusCode::NOT_FOUND, format!("There is no savepoint operation with triggerId={trigger}")));
    };
    let (id, operation) = match status {
        SavepointStatus::InProgress => (api::QueueStatusId::InProgress, None),
        SavepointStatus::Completed { location } => {
            (api::QueueStatusId::Completed, Some(api::SavepointInfo { location: Some(location), failure_cause: None }))
        }
        SavepointStatus::Failed { cause } => (
            api::QueueStatusId::Completed,
            Some(api::SavepointInfo {
                location: None,
                failure_cause: Some(serde_json::json!({
                    "class": "org.apache.flink.runtime.checkpoint.CheckpointException",
                    "stack-trace": cause,
                    "serialized-throwable": "",
                })),
            }),
        ),
    };
    if id == api::QueueStatusId::Completed {
        state.unread().remove(&trigger);
    }
    ok(api::AsynchronousOperationResult { status: api::QueueStatus { id }, operation })
}

/// Deletes the savepoint at `path`, or a job's checkpoint directory (`<state.checkpoints.dir>/
/// <job-id>`, holding only `chk-<n>/` directories and the `shared/` area of incremental state, as
/// the operator retires old job epochs).
/// Anything else is refused: a directory without `_metadata` is neither.
async fn dispose(path: &str) -> Result<(), String> {
    let storage = rheo_runtime::checkpoint::CheckpointStorage::from_url(path).map_err(|e| e.to_string())?;
    let is_savepoint = storage.get_if_exists("_metadata").await.map_err(|e| e.to_string())?.is_some();
    if !is_savepoint && !is_job_checkpoint_dir(&storage).await? {
        return Err(format!(
            "{path} is no savepoint: it has no _metadata (nor is it a job's checkpoint directory of chk-<n>/ and shared/ only)"
        ));
    }
    storage.delete_all("").await.map_err(|e| e.to_string())?;
    // A local directory is left behind empty: remove it too.
    if let Some(dir) = path.strip_prefix("file://") {
        if !is_savepoint {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    Ok(())
}

/// Whether `storage` holds checkpoints (`chk-<n>/`), the files they share (`shared/`, incremental
/// checkpoints) and nothing else but the marker the job driver leaves in the directory of a job
/// that finished (a job stopped with a savepoint for an upgrade or a suspension finishes: the
/// operator retires exactly such directories).
async fn is_job_checkpoint_dir(storage: &rheo_runtime::checkpoint::CheckpointStorage) -> Result<bool, String> {
    use rheo_runtime::checkpoint::discover::FINISHED_MARKER;
    use rheo_runtime::checkpoint::metadata::{SHARED_DIR, parse_checkpoint_dir};
    let files = storage.list_files("").await.map_err(|e| e.to_string())?;
    let dirs = storage.list_dirs("").await.map_err(|e| e.to_string())?;
    let checkpoints = dirs.iter().filter(|d| parse_checkpoint_dir(d).is_some()).count();
    let only_checkpoints = dirs.iter().all(|d| d == SHARED_DIR || parse_checkpoint_dir(d).is_some());
    Ok(files.iter().all(|f| f == FINISHED_MARKER) && checkpoints > 0 && only_checkpoints)
}

/// `POST /savepoint-disposal` with `{"savepoint-path": ..}` (`flink savepoint -d PATH`).
pub(super) async fn trigger_disposal(Extract(state): Extract<Shared>, bytes: Bytes) -> Result<Response, Error> {
    let request: api::SavepointDisposalRequest = body(&bytes, "SavepointDisposalRequest")?;
    let Some(path) = request.savepoint_path.filter(|p| !p.trim().is_empty()) else {
        return Err(bad_field("SavepointDisposalRequest", "savepoint-path", "the savepoint to dispose of is required"));
    };
    let result = dispose(&path).await;
    match &result {
        Ok(()) => tracing::info!(%path, "savepoint disposed (REST request)"),
        Err(e) => tracing::warn!(%path, "savepoint disposal failed: {e}"),
    }
    let trigger_id = rheo_types::JobId::random().to_string();
    state.disposals.lock().unwrap_or_else(|p| p.into_inner()).insert(trigger_id.clone(), result);
    Ok(accepted(api::TriggerResponse { request_id: trigger_id }))
}

/// `GET /savepoint-disposal/:trigger`.
pub(super) async fn disposal_status(
    Extract(state): Extract<Shared>,
    Path(trigger): Path<String>,
) -> Answer<api::AsynchronousOperationResult> {
    let disposals = state.disposals.lock().unwrap_or_else(|p| p.into_inner());
    let Some(result) = disposals.get(&trigger) else {
        return Err(Error(StatusCode::NOT_FOUND, format!("There is no savepoint disposal with triggerId={trigger}")));
    };
    let operation = match result {
        Ok(()) => api::SavepointInfo { location: None, failure_cause: None },
        Err(cause) => api::SavepointInfo {
            location: None,
            failure_cause: Some(serde_json::json!({
                "class": "java.io.IOException",
                "stack-trace": cause,
                "serialized-throwable": "",
            })),
        },
    };
    ok(api::AsynchronousOperationResult {
        status: api::QueueStatus { id: api::QueueStatusId::Completed },
        operation: Some(operation),
    })
}

/// `POST /snapshots/validation` with `{"path": ..}` (Rheo's): resolves and reads the snapshot
/// exactly as a JobManager started with `execution.savepoint.path` would, so that a client (the
/// operator, before it stops a job for an upgrade) learns now, not from the new job's failure,
/// that the state it is about to hand over cannot be restored. Run off the REST thread: reading
/// every file of a large snapshot takes a while.
pub(super) async fn validate_snapshot(bytes: Bytes) -> Answer<api::SnapshotValidation> {
    let request: api::SnapshotValidationRequest = body(&bytes, "SnapshotValidationRequest")?;
    let path = request.path.trim().to_string();
    if path.is_empty() {
        return Err(bad_field("SnapshotValidationRequest", "path", "the snapshot to validate is required"));
    }
    let resolved = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            rheo_runtime::checkpoint::io_runtime().block_on(rheo_runtime::driver::restore::resolve_snapshot(&path))
        })
        .await
        .map_err(|e| Error(StatusCode::INTERNAL_SERVER_ERROR, format!("the validation stopped: {e}")))?
    };
    let answer = match resolved {
        Ok((found, url)) => api::SnapshotValidation {
            path,
            restorable: true,
            resolved: Some(url),
            checkpoint_id: Some(found.metadata.checkpoint_id),
            job_id: Some(found.metadata.job_id.clone()),
            state_size: Some(found.metadata.total_size()),
            problem: None,
        },
        Err(problem) => {
            tracing::warn!(%path, %problem, "snapshot cannot be restored (validation request)");
            api::SnapshotValidation { path, restorable: false, problem: Some(problem), ..Default::default() }
        }
    };
    ok(answer)
}
