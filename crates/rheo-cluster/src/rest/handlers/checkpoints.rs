//! `/jobs/:id/checkpoints` and its configuration.

use super::*;

pub(super) fn checkpoint_statistics(checkpoint: &CompletedCheckpoint, subtasks: u32) -> api::CheckpointStatistics {
    api::CheckpointStatistics {
        class_name: "completed".into(),
        id: checkpoint.id,
        status: "COMPLETED".into(),
        is_savepoint: checkpoint.is_savepoint,
        savepoint_format: checkpoint.is_savepoint.then(|| "CANONICAL".into()),
        trigger_timestamp: checkpoint.trigger_timestamp,
        latest_ack_timestamp: checkpoint.trigger_timestamp + checkpoint.duration_ms as i64,
        checkpointed_size: checkpoint.size,
        state_size: checkpoint.size,
        end_to_end_duration: checkpoint.duration_ms,
        alignment_buffered: 0,
        processed_data: 0,
        persisted_data: 0,
        num_subtasks: subtasks,
        num_acknowledged_subtasks: subtasks,
        checkpoint_type: if checkpoint.is_savepoint { "SAVEPOINT" } else { "CHECKPOINT" }.into(),
        tasks: BTreeMap::new(),
        external_path: Some(checkpoint.external_path.clone()),
        discarded: Some(false),
        failure_timestamp: None,
        failure_message: None,
    }
}

/// Flink's summary statistics of one metric over the given values.
pub(super) fn summary(values: &[u64]) -> BTreeMap<String, serde_json::Number> {
    let (min, max) = (values.iter().min().copied().unwrap_or(0), values.iter().max().copied().unwrap_or(0));
    let avg = if values.is_empty() { 0 } else { values.iter().sum::<u64>() / values.len() as u64 };
    let mut map: BTreeMap<String, serde_json::Number> =
        [("min", min), ("max", max), ("avg", avg)].iter().map(|(k, v)| (k.to_string(), (*v).into())).collect();
    for p in ["p50", "p90", "p95", "p99", "p999"] {
        map.insert(p.into(), max.into());
    }
    map
}

pub(super) async fn checkpoints(
    Extract(state): Extract<Shared>,
    Path(id): Path<String>,
) -> Answer<api::CheckpointingStatistics> {
    let status = find_job(&state, &id)?.status();
    let n = subtasks(&status);
    let counts = &status.checkpoints;
    let completed = status.last_checkpoint.as_ref().map(|c| checkpoint_statistics(c, n));
    let savepoint = status.last_savepoint.as_ref().map(|c| checkpoint_statistics(c, n));
    let mut history: Vec<api::CheckpointStatistics> =
        status.checkpoint_history.iter().map(|c| checkpoint_statistics(c, n)).collect();
    history.sort_by_key(|c| std::cmp::Reverse(c.id));
    let sizes: Vec<u64> = history.iter().map(|c| c.state_size).collect();
    let durations: Vec<u64> = history.iter().map(|c| c.end_to_end_duration).collect();
    let zeros = vec![0; history.len()];
    let summary = [
        ("checkpointed_size", &sizes),
        ("state_size", &sizes),
        ("end_to_end_duration", &durations),
        ("alignment_buffered", &zeros),
        ("processed_data", &zeros),
        ("persisted_data", &zeros),
    ]
    .iter()
    .map(|(name, values)| (name.to_string(), summary(values)))
    .collect();
    let restored = status.restored.as_ref().map(|r| api::RestoredCheckpoint {
        id: r.id,
        restore_timestamp: status.start_time,
        is_savepoint: r.is_savepoint,
        external_path: (!r.external_path.is_empty()).then(|| r.external_path.clone()),
    });
    ok(api::CheckpointingStatistics {
        counts: api::CheckpointCounts {
            restored: counts.restored,
            total: counts.completed + counts.failed + counts.in_progress,
            in_progress: counts.in_progress,
            completed: counts.completed,
            failed: counts.failed,
        },
        summary,
        latest: api::LatestCheckpoints { completed, savepoint, failed: None, restored },
        history,
    })
}

pub(super) async fn checkpoint_config(
    Extract(state): Extract<Shared>,
    Path(id): Path<String>,
) -> Answer<api::CheckpointConfigInfo> {
    let status = find_job(&state, &id)?.status();
    let Some(interval) = status.checkpoint_interval_ms.filter(|_| status.state != JobState::Created).or_else(|| {
        // Before the job starts the handle does not know the interval yet: read the config.
        let config = &state.options.config;
        config.get(&rheo_config::options::CHECKPOINT_INTERVAL).ok().flatten().map(|d| d.as_millis() as u64)
    }) else {
        return Err(Error(StatusCode::NOT_FOUND, "Checkpointing is not enabled for this job.".into()));
    };
    if interval == 0 {
        return Err(Error(StatusCode::NOT_FOUND, "Checkpointing is not enabled for this job.".into()));
    }
    let option = &rheo_config::options::CHECKPOINT_TIMEOUT;
    let timeout = state.options.config.get(option).unwrap_or_else(|_| option.default_value()).as_millis() as i64;
    ok(api::CheckpointConfigInfo {
        mode: "exactly_once".into(),
        interval: interval as i64,
        timeout,
        min_pause: 0,
        max_concurrent: 1,
        // Rheo keeps the latest checkpoints when a job is cancelled: a rerun resumes from them.
        externalization: api::ExternalizedCheckpointInfo { enabled: true, delete_on_cancellation: false },
        state_backend: "HashMapStateBackend".into(),
        checkpoint_storage: "FileSystemCheckpointStorage".into(),
        unaligned_checkpoints: false,
        tolerable_failed_checkpoints: 0,
        aligned_checkpoint_timeout: 0,
        checkpoints_after_tasks_finish: true,
        state_changelog_enabled: false,
        changelog_periodic_materialization_interval: 600_000,
        changelog_storage: "memory".into(),
    })
}

/// `POST /jobs/:id/checkpoints` with `{"checkpointType": .., "triggerId": ..}` (Flink 1.19+):
/// a checkpoint now, into the job's checkpoint directory. `FULL` writes keyed state whole even
/// with incremental checkpoints on (later ones build on it); `INCREMENTAL` and `CONFIGURED`
/// take what `state.backend.incremental` says, as Flink's backends do.
pub(super) async fn trigger_checkpoint(
    Extract(state): Extract<Shared>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Response, Error> {
    let handle = find_job(&state, &id)?;
    let request: api::CheckpointTriggerRequest = body(&bytes, "CheckpointTriggerRequestBody")?;
    // A trigger id has a job id's form (both are Flink's AbstractID: 16 bytes in hex).
    if let Some(trigger) = &request.trigger_id
        && trigger.parse::<rheo_types::JobId>().is_err()
    {
        return Err(bad_field("CheckpointTriggerRequestBody", "triggerId", "expected 32 hexadecimal digits"));
    }
    let full = request.checkpoint_type == Some(api::CheckpointType::Full);
    match handle.trigger_checkpoint(request.trigger_id, full) {
        Ok(trigger_id) => {
            tracing::info!(trigger = %trigger_id, "checkpoint triggered (REST request)");
            Ok(accepted(api::TriggerResponse { request_id: trigger_id }))
        }
        Err(message) => Err(Error(StatusCode::CONFLICT, message)),
    }
}

/// `GET /jobs/:id/checkpoints/:trigger`.
pub(super) async fn checkpoint_status(
    Extract(state): Extract<Shared>,
    Path((id, trigger)): Path<(String, String)>,
) -> Answer<api::CheckpointTriggerResult> {
    let handle = find_job(&state, &id)?;
    let Some(status) = handle.checkpoint_trigger_status(&trigger) else {
        return Err(Error(StatusCode::NOT_FOUND, format!("There is no checkpoint operation with triggerId={trigger}")));
    };
    let (id, operation) = match status {
        CheckpointTriggerStatus::InProgress => (api::QueueStatusId::InProgress, None),
        CheckpointTriggerStatus::Completed { checkpoint_id, .. } => (
            api::QueueStatusId::Completed,
            Some(api::CheckpointInfo { checkpoint_id: Some(checkpoint_id), failure_cause: None }),
        ),
        CheckpointTriggerStatus::Failed { cause } => (
            api::QueueStatusId::Completed,
            Some(api::CheckpointInfo {
                checkpoint_id: None,
                failure_cause: Some(serde_json::json!({
                    "class": "org.apache.flink.runtime.checkpoint.CheckpointException",
                    "stack-trace": cause,
                    "serialized-throwable": "",
                })),
            }),
        ),
    };
    ok(api::CheckpointTriggerResult { status: api::QueueStatus { id }, operation })
}
