//! The endpoints: each answers from one status snapshot of the job, with Flink's JSON.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State as Extract};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rheo_rest as api;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{FLINK_API_VERSION, State};
use crate::cluster::handle::{CompletedCheckpoint, JobState, JobStatus, SavepointStatus};
use crate::runtime::task::now_ms;

type Shared = Arc<State>;

pub(crate) fn router(state: Shared) -> Router {
    Router::new()
        .route("/config", get(config))
        .route("/overview", get(overview))
        .route("/jobs", get(jobs))
        .route("/jobs/overview", get(jobs_overview))
        .route("/jobs/{id}", get(job).patch(cancel))
        .route("/jobs/{id}/checkpoints", get(checkpoints))
        .route("/jobs/{id}/checkpoints/config", get(checkpoint_config))
        .route("/jobs/{id}/exceptions", get(exceptions))
        .route("/jobs/{id}/savepoints", post(trigger_savepoint))
        .route("/jobs/{id}/savepoints/{trigger}", get(savepoint_status))
        .route("/jobs/{id}/stop", post(stop))
        .route("/metrics", get(super::metrics::metrics))
        .fallback(not_found)
        .with_state(state)
}

/// A Flink error answer: `{"errors": [message]}`.
pub(crate) struct Error(StatusCode, String);

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        (self.0, axum::Json(api::ErrorResponse { errors: vec![self.1] })).into_response()
    }
}

type Answer<T> = Result<axum::Json<T>, Error>;

fn ok<T>(value: T) -> Answer<T> {
    Ok(axum::Json(value))
}

async fn not_found(uri: Uri) -> Error {
    Error(StatusCode::NOT_FOUND, format!("Not found: {}", uri.path()))
}

/// Checks that `id` names this server's job: 400 when it is no job id, 404 when another job.
fn check_job(state: &State, id: &str) -> Result<(), Error> {
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error(
            StatusCode::BAD_REQUEST,
            format!("Bad request, could not parse parameters: '{id}' is not a job id (32 hexadecimal digits)"),
        ));
    }
    if !id.eq_ignore_ascii_case(&state.handle.job_id()) {
        return Err(Error(StatusCode::NOT_FOUND, format!("Job {id} not found")));
    }
    Ok(())
}

/// The JSON body of a request, or a 400 naming what is wrong with it. An empty body is `{}`.
fn body<T: DeserializeOwned>(bytes: &Bytes, what: &str) -> Result<T, Error> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { bytes };
    let invalid = |message: String| {
        Error(StatusCode::BAD_REQUEST, format!("Request did not match expected format {what}: {message}"))
    };
    let mut json = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut json).map_err(|e| {
        let at = e.path().to_string();
        invalid(if at == "." { e.inner().to_string() } else { format!("field '{at}': {}", e.inner()) })
    })?;
    json.end().map_err(|e| invalid(e.to_string()))?;
    Ok(value)
}

fn accepted<T: Serialize>(value: T) -> Response {
    (StatusCode::ACCEPTED, axum::Json(value)).into_response()
}

fn flink_state(state: JobState) -> api::JobState {
    match state {
        JobState::Created => api::JobState::Created,
        JobState::Running => api::JobState::Running,
        JobState::Restarting => api::JobState::Restarting,
        JobState::Finished => api::JobState::Finished,
        JobState::Failed => api::JobState::Failed,
        JobState::Cancelled => api::JobState::Canceled,
    }
}

/// The execution state (Flink's `ExecutionState`) of every subtask while the job is in `state`.
fn execution_state(state: JobState) -> &'static str {
    match state {
        JobState::Created => "CREATED",
        JobState::Running => "RUNNING",
        JobState::Restarting => "CANCELING",
        JobState::Finished => "FINISHED",
        JobState::Failed => "FAILED",
        JobState::Cancelled => "CANCELED",
    }
}

const EXECUTION_STATES: [&str; 10] = [
    "CREATED",
    "SCHEDULED",
    "DEPLOYING",
    "RUNNING",
    "FINISHED",
    "CANCELING",
    "CANCELED",
    "FAILED",
    "RECONCILING",
    "INITIALIZING",
];

fn execution_counts(state: JobState, subtasks: u32) -> BTreeMap<String, u32> {
    let current = execution_state(state);
    EXECUTION_STATES.iter().map(|s| (s.to_string(), if *s == current { subtasks } else { 0 })).collect()
}

fn subtasks(status: &JobStatus) -> u32 {
    status.tasks.iter().map(|t| t.parallelism as u32).sum()
}

fn end_time(status: &JobStatus) -> i64 {
    status.end_time.unwrap_or(-1)
}

fn duration(status: &JobStatus, now: i64) -> i64 {
    (status.end_time.unwrap_or(now) - status.start_time).max(0)
}

fn max_parallelism(state: &State) -> i64 {
    state.options.config.max_parallelism().map(|p| p as i64).unwrap_or(128)
}

async fn config() -> Answer<api::DashboardConfiguration> {
    ok(api::DashboardConfiguration {
        refresh_interval: 3000,
        timezone_name: "Coordinated Universal Time".into(),
        timezone_offset: 0,
        flink_version: FLINK_API_VERSION.into(),
        flink_revision: format!("rheo {}", env!("CARGO_PKG_VERSION")),
        features: api::DashboardFeatures {
            web_submit: false,
            web_cancel: true,
            web_rescale: false,
            web_history: false,
        },
    })
}

async fn overview(Extract(state): Extract<Shared>) -> Answer<api::ClusterOverview> {
    let status = state.handle.status();
    let slots = subtasks(&status).max(1);
    let count = |s: JobState| u32::from(status.state == s);
    ok(api::ClusterOverview {
        taskmanagers: 1,
        slots_total: slots,
        slots_available: if status.state.is_terminal() { slots } else { 0 },
        jobs_running: u32::from(!status.state.is_terminal()),
        jobs_finished: count(JobState::Finished),
        jobs_cancelled: count(JobState::Cancelled),
        jobs_failed: count(JobState::Failed),
        flink_version: FLINK_API_VERSION.into(),
        flink_commit: format!("rheo {}", env!("CARGO_PKG_VERSION")),
    })
}

async fn jobs(Extract(state): Extract<Shared>) -> Answer<api::JobIdsWithStatus> {
    let status = state.handle.status();
    ok(api::JobIdsWithStatus {
        jobs: vec![api::JobIdWithStatus { id: state.handle.job_id(), status: flink_state(status.state) }],
    })
}

async fn jobs_overview(Extract(state): Extract<Shared>) -> Answer<api::JobsOverview> {
    let status = state.handle.status();
    let now = now_ms();
    let n = subtasks(&status);
    let mut tasks = api::TaskCounts { total: n, ..Default::default() };
    match status.state {
        JobState::Created => tasks.created = n,
        JobState::Running => tasks.running = n,
        JobState::Restarting => tasks.canceling = n,
        JobState::Finished => tasks.finished = n,
        JobState::Failed => tasks.failed = n,
        JobState::Cancelled => tasks.canceled = n,
    }
    ok(api::JobsOverview {
        jobs: vec![api::JobOverview {
            jid: state.handle.job_id(),
            name: state.job_name(),
            job_type: Some("STREAMING".into()),
            scheduler_type: Some("Default".into()),
            start_time: status.start_time,
            end_time: end_time(&status),
            duration: duration(&status, now),
            state: flink_state(status.state),
            last_modification: status.end_time.unwrap_or(status.start_time),
            tasks,
            pending_operators: Some(0),
        }],
    })
}

async fn job(Extract(state): Extract<Shared>, Path(id): Path<String>) -> Answer<api::JobDetails> {
    check_job(&state, &id)?;
    let status = state.handle.status();
    let jid = state.handle.job_id();
    let name = state.job_name();
    let now = now_ms();
    let max_parallelism = max_parallelism(&state);
    let vertex_state = execution_state(status.state);
    let slot_sharing_group = crate::cluster::minicluster::job_id_for(&format!("{jid}/slot-sharing-group"));
    let vertices: Vec<api::JobVertexSummary> = status
        .tasks
        .iter()
        .map(|task| api::JobVertexSummary {
            id: task.id.clone(),
            slot_sharing_group_id: Some(slot_sharing_group.clone()),
            name: task.name.clone(),
            max_parallelism,
            parallelism: task.parallelism as u32,
            status: vertex_state.into(),
            start_time: status.start_time,
            end_time: end_time(&status),
            duration: duration(&status, now),
            tasks: execution_counts(status.state, task.parallelism as u32),
            metrics: api::VertexMetrics {
                read_records: task.records_in,
                read_records_complete: true,
                write_records: task.records_out,
                write_records_complete: true,
                ..Default::default()
            },
        })
        .collect();
    let mut timestamps: BTreeMap<String, i64> = [
        "INITIALIZING",
        "CREATED",
        "RUNNING",
        "FAILING",
        "FAILED",
        "CANCELLING",
        "CANCELED",
        "FINISHED",
        "RESTARTING",
        "SUSPENDED",
        "RECONCILING",
    ]
    .iter()
    .map(|s| (s.to_string(), 0))
    .collect();
    for s in ["INITIALIZING", "CREATED"] {
        timestamps.insert(s.into(), status.start_time);
    }
    if status.state != JobState::Created {
        timestamps.insert("RUNNING".into(), status.start_time);
    }
    if let Some(end) = status.end_time {
        timestamps.insert(flink_state(status.state).as_str().into(), end);
    }
    let nodes: Vec<serde_json::Value> = status
        .tasks
        .iter()
        .rev()
        .map(|task| {
            serde_json::json!({
                "id": task.id,
                "operator": "",
                "parallelism": task.parallelism,
                "operator_strategy": "",
                "description": task.name,
                "optimizer_properties": {},
            })
        })
        .collect();
    ok(api::JobDetails {
        jid: jid.clone(),
        application_id: Some(jid.clone()),
        name: name.clone(),
        is_stoppable: false,
        state: flink_state(status.state),
        job_type: Some("STREAMING".into()),
        scheduler_type: Some("Default".into()),
        start_time: status.start_time,
        end_time: end_time(&status),
        duration: duration(&status, now),
        max_parallelism,
        now,
        timestamps,
        vertices,
        status_counts: execution_counts(status.state, subtasks(&status)),
        plan: Some(serde_json::json!({ "jid": jid, "name": name, "type": "STREAMING", "nodes": nodes })),
        pending_operators: Some(0),
    })
}

/// `PATCH /jobs/:id?mode=cancel` (the mode defaults to cancel, as in Flink).
async fn cancel(
    Extract(state): Extract<Shared>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, Error> {
    check_job(&state, &id)?;
    match query.get("mode").map(String::as_str) {
        None | Some("cancel") => {}
        Some(other) => {
            return Err(Error(
                StatusCode::BAD_REQUEST,
                format!("Bad request, could not parse parameters: mode '{other}' is not 'cancel'"),
            ));
        }
    }
    if !state.handle.status().state.is_terminal() {
        tracing::info!(job_id = %id, "cancelling the job (REST request)");
        state.handle.cancel();
    }
    Ok(accepted(serde_json::json!({})))
}

fn checkpoint_statistics(checkpoint: &CompletedCheckpoint, subtasks: u32) -> api::CheckpointStatistics {
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
fn summary(values: &[u64]) -> BTreeMap<String, serde_json::Number> {
    let (min, max) = (values.iter().min().copied().unwrap_or(0), values.iter().max().copied().unwrap_or(0));
    let avg = if values.is_empty() { 0 } else { values.iter().sum::<u64>() / values.len() as u64 };
    let mut map: BTreeMap<String, serde_json::Number> =
        [("min", min), ("max", max), ("avg", avg)].iter().map(|(k, v)| (k.to_string(), (*v).into())).collect();
    for p in ["p50", "p90", "p95", "p99", "p999"] {
        map.insert(p.into(), max.into());
    }
    map
}

async fn checkpoints(Extract(state): Extract<Shared>, Path(id): Path<String>) -> Answer<api::CheckpointingStatistics> {
    check_job(&state, &id)?;
    let status = state.handle.status();
    let n = subtasks(&status);
    let counts = &status.checkpoints;
    let completed = status.last_checkpoint.as_ref().map(|c| checkpoint_statistics(c, n));
    let savepoint = status.last_savepoint.as_ref().map(|c| checkpoint_statistics(c, n));
    let mut history: Vec<api::CheckpointStatistics> = completed.iter().chain(savepoint.iter()).cloned().collect();
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

async fn checkpoint_config(
    Extract(state): Extract<Shared>,
    Path(id): Path<String>,
) -> Answer<api::CheckpointConfigInfo> {
    check_job(&state, &id)?;
    let status = state.handle.status();
    let Some(interval) = status.checkpoint_interval_ms.filter(|_| status.state != JobState::Created).or_else(|| {
        // Before the job starts the handle does not know the interval yet: read the config.
        let config = &state.options.config;
        config.duration(crate::config::keys::CHECKPOINT_INTERVAL).ok().flatten().map(|d| d.as_millis() as u64)
    }) else {
        return Err(Error(StatusCode::NOT_FOUND, "Checkpointing is not enabled for this job.".into()));
    };
    if interval == 0 {
        return Err(Error(StatusCode::NOT_FOUND, "Checkpointing is not enabled for this job.".into()));
    }
    let timeout = state
        .options
        .config
        .duration("execution.checkpointing.timeout")
        .ok()
        .flatten()
        .map_or(600_000, |d| d.as_millis() as i64);
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

async fn exceptions(Extract(state): Extract<Shared>, Path(id): Path<String>) -> Answer<api::JobExceptions> {
    check_job(&state, &id)?;
    let status = state.handle.status();
    let entries = status
        .failure
        .iter()
        .filter(|_| status.state == JobState::Failed)
        .map(|failure| api::ExceptionInfo {
            exception_name: "rheo::JobError".into(),
            stacktrace: failure.clone(),
            timestamp: status.end_time.unwrap_or_else(now_ms),
            failure_labels: BTreeMap::new(),
            task_name: None,
            endpoint: None,
            task_manager_id: None,
            concurrent_exceptions: Vec::new(),
        })
        .collect();
    ok(api::JobExceptions { exception_history: api::ExceptionHistory { entries, truncated: false } })
}

fn trigger(state: &State, target_dir: Option<String>, stop: bool) -> Result<Response, Error> {
    let target_dir = target_dir.filter(|d| !d.trim().is_empty());
    match state.handle.trigger_savepoint(target_dir, stop) {
        Ok(trigger_id) => {
            tracing::info!(trigger = %trigger_id, stop, "savepoint triggered (REST request)");
            state.unread().insert(trigger_id.clone());
            Ok(accepted(api::TriggerResponse { request_id: trigger_id }))
        }
        Err(message) => Err(Error(StatusCode::CONFLICT, message)),
    }
}

/// `POST /jobs/:id/savepoints` with `{"target-directory": .., "cancel-job": ..}`.
async fn trigger_savepoint(
    Extract(state): Extract<Shared>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Response, Error> {
    check_job(&state, &id)?;
    let request: api::SavepointTriggerRequest = body(&bytes, "SavepointTriggerRequestBody")?;
    trigger(&state, request.target_directory, request.cancel_job)
}

/// `POST /jobs/:id/stop` with `{"targetDirectory": .., "drain": ..}`: stop with a savepoint.
async fn stop(Extract(state): Extract<Shared>, Path(id): Path<String>, bytes: Bytes) -> Result<Response, Error> {
    check_job(&state, &id)?;
    let request: api::StopWithSavepointRequest = body(&bytes, "StopWithSavepointRequestBody")?;
    if request.drain {
        return Err(Error(
            StatusCode::BAD_REQUEST,
            "drain (advancing event time to the end before stopping) is not supported; stop without it".into(),
        ));
    }
    trigger(&state, request.target_directory, true)
}

/// `GET /jobs/:id/savepoints/:trigger`.
async fn savepoint_status(
    Extract(state): Extract<Shared>,
    Path((id, trigger)): Path<(String, String)>,
) -> Answer<api::AsynchronousOperationResult> {
    check_job(&state, &id)?;
    let Some(status) = state.handle.savepoint_status(&trigger) else {
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

pub(crate) fn text(content_type: &'static str, body: String) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}
