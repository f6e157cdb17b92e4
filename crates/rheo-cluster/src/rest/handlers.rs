//! The endpoints: each answer about a job is built from one status snapshot of its handle,
//! with Flink's JSON.

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

use super::rates::VertexRates;
use super::{FLINK_API_VERSION, JAR_ID, State};
use crate::view::{SubmitError, SubmitRequest, TaskManagerInfo};
use rheo_runtime::driver::handle::{CompletedCheckpoint, JobHandle, JobState, JobStatus, SavepointStatus, TaskStatus};
use rheo_runtime::task::{TaskMetrics, now_ms};

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
        .route("/jobs/{id}/vertices/{vid}/backpressure", get(backpressure))
        .route("/jobs/{id}/vertices/{vid}/metrics", get(vertex_metrics))
        .route("/taskmanagers", get(taskmanagers))
        .route("/jobmanager/config", get(jobmanager_config))
        .route("/jars", get(jars))
        .route("/jars/{jarid}/run", post(run_jar))
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

/// The job `id` names: 400 when it is no job id, 404 when the cluster has no such job.
fn find_job(state: &State, id: &str) -> Result<JobHandle, Error> {
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error(
            StatusCode::BAD_REQUEST,
            format!("Bad request, could not parse parameters: '{id}' is not a job id (32 hexadecimal digits)"),
        ));
    }
    state.find_job(id).ok_or_else(|| Error(StatusCode::NOT_FOUND, format!("Job {id} not found")))
}

/// A 400 naming a field of a request body.
fn bad_field(what: &str, field: &str, message: impl std::fmt::Display) -> Error {
    Error(StatusCode::BAD_REQUEST, format!("Request did not match expected format {what}: field '{field}': {message}"))
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
    let option = &rheo_config::options::MAX_PARALLELISM;
    state.options.config.get(option).unwrap_or_else(|_| option.default_value()) as i64
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
    let taskmanagers = state.view.taskmanagers();
    let states: Vec<JobState> = state.view.jobs().iter().map(|job| job.status().state).collect();
    let count = |s: JobState| states.iter().filter(|&&state| state == s).count() as u32;
    ok(api::ClusterOverview {
        taskmanagers: taskmanagers.len() as u32,
        slots_total: taskmanagers.iter().map(|tm| tm.slots as u32).sum(),
        slots_available: taskmanagers.iter().map(|tm| tm.free_slots as u32).sum(),
        jobs_running: states.iter().filter(|s| !s.is_terminal()).count() as u32,
        jobs_finished: count(JobState::Finished),
        jobs_cancelled: count(JobState::Cancelled),
        jobs_failed: count(JobState::Failed),
        flink_version: FLINK_API_VERSION.into(),
        flink_commit: format!("rheo {}", env!("CARGO_PKG_VERSION")),
    })
}

async fn jobs(Extract(state): Extract<Shared>) -> Answer<api::JobIdsWithStatus> {
    let jobs = state.view.jobs();
    ok(api::JobIdsWithStatus {
        jobs: jobs
            .iter()
            .map(|job| api::JobIdWithStatus { id: job.job_id(), status: flink_state(job.status().state) })
            .collect(),
    })
}

async fn jobs_overview(Extract(state): Extract<Shared>) -> Answer<api::JobsOverview> {
    let now = now_ms();
    let jobs = state.view.jobs().iter().map(|job| job_overview(&state, job, now)).collect();
    ok(api::JobsOverview { jobs })
}

fn job_overview(state: &State, job: &JobHandle, now: i64) -> api::JobOverview {
    let status = job.status();
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
    api::JobOverview {
        jid: job.job_id(),
        name: state.job_name(job),
        job_type: Some("STREAMING".into()),
        scheduler_type: Some("Default".into()),
        start_time: status.start_time,
        end_time: end_time(&status),
        duration: duration(&status, now),
        state: flink_state(status.state),
        last_modification: status.end_time.unwrap_or(status.start_time),
        tasks,
        pending_operators: Some(0),
    }
}

async fn job(Extract(state): Extract<Shared>, Path(id): Path<String>) -> Answer<api::JobDetails> {
    let handle = find_job(&state, &id)?;
    let status = handle.status();
    let metrics = handle.task_metrics();
    let jid = handle.job_id();
    let name = state.job_name(&handle);
    let now = now_ms();
    let max_parallelism = max_parallelism(&state);
    let vertex_state = execution_state(status.state);
    let slot_sharing_group = rheo_runtime::driver::minicluster::job_id_for(&format!("{jid}/slot-sharing-group"));
    let vertices: Vec<api::JobVertexSummary> = status
        .tasks
        .iter()
        .enumerate()
        .map(|(index, task)| api::JobVertexSummary {
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
            metrics: vertex_metrics_summary(task, metrics.get(index)),
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

/// The I/O metrics of a vertex in `/jobs/:id` (times summed over the subtasks, in ms).
fn vertex_metrics_summary(task: &TaskStatus, metrics: Option<&TaskMetrics>) -> api::VertexMetrics {
    let metrics = metrics.copied().unwrap_or_default();
    api::VertexMetrics {
        read_records: task.records_in,
        read_records_complete: true,
        write_records: task.records_out,
        write_records_complete: true,
        accumulated_backpressured_time: metrics.back_pressured_ns / 1_000_000,
        accumulated_idle_time: metrics.idle_ns / 1_000_000,
        accumulated_busy_time: metrics.busy_ns / 1_000_000,
        ..Default::default()
    }
}

/// `PATCH /jobs/:id?mode=cancel` (the mode defaults to cancel, as in Flink).
async fn cancel(
    Extract(state): Extract<Shared>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, Error> {
    let handle = find_job(&state, &id)?;
    match query.get("mode").map(String::as_str) {
        None | Some("cancel") => {}
        Some(other) => {
            return Err(Error(
                StatusCode::BAD_REQUEST,
                format!("Bad request, could not parse parameters: mode '{other}' is not 'cancel'"),
            ));
        }
    }
    if !handle.status().state.is_terminal() {
        tracing::info!(job_id = %id, "cancelling the job (REST request)");
        handle.cancel();
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

async fn checkpoint_config(
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

async fn exceptions(Extract(state): Extract<Shared>, Path(id): Path<String>) -> Answer<api::JobExceptions> {
    let status = find_job(&state, &id)?.status();
    let entries = status
        .exceptions
        .iter()
        .map(|e| api::ExceptionInfo {
            exception_name: e.name.clone(),
            stacktrace: e.message.clone(),
            timestamp: e.timestamp,
            failure_labels: BTreeMap::new(),
            task_name: e.task.clone(),
            endpoint: e.endpoint.clone(),
            task_manager_id: e.task_manager_id.clone(),
            concurrent_exceptions: Vec::new(),
        })
        .collect();
    ok(api::JobExceptions {
        exception_history: api::ExceptionHistory { entries, truncated: status.exceptions_truncated },
    })
}

fn trigger(state: &State, handle: &JobHandle, target_dir: Option<String>, stop: bool) -> Result<Response, Error> {
    let target_dir = target_dir.filter(|d| !d.trim().is_empty());
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
async fn trigger_savepoint(
    Extract(state): Extract<Shared>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Response, Error> {
    let handle = find_job(&state, &id)?;
    let request: api::SavepointTriggerRequest = body(&bytes, "SavepointTriggerRequestBody")?;
    trigger(&state, &handle, request.target_directory, request.cancel_job)
}

/// `POST /jobs/:id/stop` with `{"targetDirectory": .., "drain": ..}`: stop with a savepoint.
async fn stop(Extract(state): Extract<Shared>, Path(id): Path<String>, bytes: Bytes) -> Result<Response, Error> {
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
async fn savepoint_status(
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

pub(crate) fn text(content_type: &'static str, body: String) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// The vertex `vid` of job `id`: its job's handle and status, and its index in `tasks`.
fn find_vertex(state: &State, id: &str, vid: &str) -> Result<(JobHandle, JobStatus, usize), Error> {
    let handle = find_job(state, id)?;
    let status = handle.status();
    let index = status
        .tasks
        .iter()
        .position(|t| t.id.eq_ignore_ascii_case(vid))
        .ok_or_else(|| Error(StatusCode::NOT_FOUND, format!("No vertex with ID '{vid}' exists.")))?;
    Ok((handle, status, index))
}

/// The rates of every vertex of a job, indexed like `status.tasks`, sampled now.
pub(crate) fn job_rates(state: &State, handle: &JobHandle, status: &JobStatus) -> Vec<VertexRates> {
    let job_id = handle.job_id();
    let metrics = handle.task_metrics();
    status
        .tasks
        .iter()
        .zip(metrics)
        .map(|(task, metrics)| state.rates.sample(&job_id, &task.id, metrics, status.start_time))
        .collect()
}

/// Rounds a ratio to three decimals, as Flink shows them.
fn ratio(value: f64) -> f64 {
    (value.clamp(0.0, 1.0) * 1000.0).round() / 1000.0
}

/// `GET /jobs/:id/vertices/:vid/backpressure`: back pressure from the back-pressured share of
/// the vertex's time since the previous sample (Flink's `backPressuredTimeMsPerSecond`). Rheo
/// counts time per vertex, not per subtask, so every subtask entry shows the vertex's average.
async fn backpressure(
    Extract(state): Extract<Shared>,
    Path((id, vid)): Path<(String, String)>,
) -> Answer<api::JobVertexBackPressureInfo> {
    let (handle, status, index) = find_vertex(&state, &id, &vid)?;
    let rates = job_rates(&state, &handle, &status)[index];
    let back_pressured = ratio(rates.back_pressured_ratio());
    let level = api::BackPressureLevel::of_ratio(back_pressured);
    let subtasks = (0..status.tasks[index].parallelism as u32)
        .map(|subtask| api::SubtaskBackPressureInfo {
            subtask,
            backpressure_level: level,
            ratio: back_pressured,
            idle_ratio: ratio(rates.idle_ratio()),
            busy_ratio: ratio(rates.busy_ratio()),
            backpressure_level_deprecated: level,
        })
        .collect();
    ok(api::JobVertexBackPressureInfo {
        status: "ok".into(),
        backpressure_level: Some(level),
        end_timestamp: Some(rates.end_timestamp),
        subtasks,
        backpressure_level_deprecated: Some(level),
    })
}

/// The metrics of a vertex that `/jobs/:id/vertices/:vid/metrics` serves.
const VERTEX_METRICS: [&str; 10] = [
    "numRecordsIn",
    "numRecordsOut",
    "numRecordsInPerSecond",
    "numRecordsOutPerSecond",
    "busyTimeMsPerSecond",
    "idleTimeMsPerSecond",
    "backPressuredTimeMsPerSecond",
    "accumulateBusyTimeMs",
    "accumulateIdleTimeMs",
    "accumulateBackPressuredTimeMs",
];

/// The value of a vertex metric as Flink prints it: doubles as Java's `Double.toString`, longs
/// as integers.
fn vertex_metric(name: &str, metrics: &TaskMetrics, rates: &VertexRates) -> Option<String> {
    let double = |v: f64| format!("{v:?}");
    Some(match name {
        "numRecordsIn" => metrics.records_in.to_string(),
        "numRecordsOut" => metrics.records_out.to_string(),
        "numRecordsInPerSecond" => double(rates.records_in_per_second),
        "numRecordsOutPerSecond" => double(rates.records_out_per_second),
        "busyTimeMsPerSecond" => double(rates.busy_ms_per_second.round()),
        "idleTimeMsPerSecond" => (rates.idle_ms_per_second.round() as u64).to_string(),
        "backPressuredTimeMsPerSecond" => (rates.back_pressured_ms_per_second.round() as u64).to_string(),
        "accumulateBusyTimeMs" => (metrics.busy_ns / 1_000_000).to_string(),
        "accumulateIdleTimeMs" => (metrics.idle_ns / 1_000_000).to_string(),
        "accumulateBackPressuredTimeMs" => (metrics.back_pressured_ns / 1_000_000).to_string(),
        _ => return None,
    })
}

/// `GET /jobs/:id/vertices/:vid/metrics[?get=a,b]`: the vertex's metrics (aggregated over its
/// subtasks, under unprefixed names); without `get`, their ids. Unknown names are left out, as
/// Flink does.
async fn vertex_metrics(
    Extract(state): Extract<Shared>,
    Path((id, vid)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer<Vec<api::MetricValue>> {
    let (handle, status, index) = find_vertex(&state, &id, &vid)?;
    let Some(get) = query.get("get") else {
        return ok(VERTEX_METRICS.iter().map(|id| api::MetricValue { id: id.to_string(), value: None }).collect());
    };
    let metrics = handle.task_metrics().get(index).copied().unwrap_or_default();
    let rates = job_rates(&state, &handle, &status)[index];
    ok(get
        .split(',')
        .map(str::trim)
        .filter_map(|name| {
            vertex_metric(name, &metrics, &rates).map(|value| api::MetricValue { id: name.into(), value: Some(value) })
        })
        .collect())
}

/// The port of `host:port`, or -1.
fn port_of(address: &str) -> i64 {
    address.rsplit_once(':').and_then(|(_, port)| port.parse().ok()).unwrap_or(-1)
}

fn taskmanager_info(tm: &TaskManagerInfo) -> api::TaskManagerInfo {
    let cores = tm.cpu_cores as f64;
    let free_cores = if tm.slots == 0 { 0.0 } else { cores * tm.free_slots as f64 / tm.slots as f64 };
    api::TaskManagerInfo {
        id: tm.id.clone(),
        path: format!("rheo://{}/taskmanager", tm.data_address),
        data_port: port_of(&tm.data_address),
        jmx_port: -1,
        time_since_last_heartbeat: tm.last_heartbeat,
        slots_number: tm.slots as u32,
        free_slots: tm.free_slots as u32,
        assigned_tasks: tm.slots.saturating_sub(tm.free_slots) as u32,
        total_resource: api::ResourceProfileInfo { cpu_cores: cores, ..Default::default() },
        free_resource: api::ResourceProfileInfo { cpu_cores: free_cores, ..Default::default() },
        hardware: api::HardwareDescription {
            cpu_cores: tm.cpu_cores as u32,
            physical_memory: tm.physical_memory as i64,
            free_memory: 0,
            managed_memory: 0,
        },
        memory_configuration: api::TaskExecutorMemoryConfiguration::default(),
    }
}

/// `GET /taskmanagers`. Rheo has no JVM memory model: memory sizes other than the machine's
/// physical memory are 0.
async fn taskmanagers(Extract(state): Extract<Shared>) -> Answer<api::TaskManagersInfo> {
    ok(api::TaskManagersInfo { taskmanagers: state.view.taskmanagers().iter().map(taskmanager_info).collect() })
}

/// Whether a configuration key names a secret, whose value is never shown: Flink's sensitive
/// keys (password, secret, token, credentials, ...), and any key or access key (`s3.access-key`,
/// `fs.azure.account.key.*`, `apikey`), as the words of the key tell.
pub(crate) fn is_sensitive(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    const SUBSTRINGS: [&str; 8] =
        ["password", "secret", "token", "credential", "jaas.config", "auth-params", "basic-auth", "http-headers"];
    if SUBSTRINGS.iter().any(|s| key.contains(s)) {
        return true;
    }
    key.split(|c: char| !c.is_ascii_alphanumeric()).any(|word| word.ends_with("key"))
}

/// What Flink shows in place of a secret.
const HIDDEN: &str = "******";

/// `GET /jobmanager/config`: the configuration as `{key, value}` entries, secrets masked.
async fn jobmanager_config(Extract(state): Extract<Shared>) -> Answer<Vec<api::ConfigurationEntry>> {
    ok(state
        .options
        .config
        .entries()
        .map(|(key, value)| api::ConfigurationEntry {
            key: key.to_string(),
            value: if is_sensitive(key) { HIDDEN.to_string() } else { value.to_string() },
        })
        .collect())
}

/// The file name of this binary (the pseudo-jar's name).
fn binary_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|path| path.file_name().map(|name| name.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "rheo".to_string())
}

/// `GET /jars`: one pseudo-jar, the binary, whose entries are the jobs it carries.
async fn jars(Extract(state): Extract<Shared>) -> Answer<api::JarListInfo> {
    let entry = state
        .view
        .available_jobs()
        .into_iter()
        .map(|(name, description)| api::JarEntryInfo { name, description: Some(description) })
        .collect();
    ok(api::JarListInfo {
        address: state.address.clone(),
        files: vec![api::JarFileInfo { id: JAR_ID.into(), name: binary_name(), uploaded: state.started, entry }],
    })
}

/// Splits Flink's `programArgs` on whitespace; single or double quotes group words.
pub(crate) fn split_args(text: &str) -> Result<Vec<String>, String> {
    let mut args = Vec::new();
    let mut current: Option<String> = None;
    let mut quote: Option<char> = None;
    for c in text.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => current.get_or_insert_default().push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                current.get_or_insert_default();
            }
            None if c.is_whitespace() => args.extend(current.take()),
            None => current.get_or_insert_default().push(c),
        }
    }
    if let Some(q) = quote {
        return Err(format!("unbalanced {q} quote"));
    }
    args.extend(current);
    Ok(args)
}

/// The submission a `JarRunRequestBody` asks for, or a 400 naming the bad field.
fn submit_request(state: &State, request: api::JarRunRequest) -> Result<SubmitRequest, Error> {
    const WHAT: &str = "JarRunRequestBody";
    let Some(job) = request.entry_class.filter(|job| !job.trim().is_empty()) else {
        let jobs: Vec<String> = state.view.available_jobs().into_iter().map(|(name, _)| name).collect();
        return Err(bad_field(WHAT, "entryClass", format!("the job to run is required (one of: {})", jobs.join(", "))));
    };
    let args = match (request.program_args, request.program_args_list) {
        (Some(_), Some(_)) => {
            return Err(bad_field(WHAT, "programArgs", "give either programArgs or programArgsList, not both"));
        }
        (Some(text), None) => split_args(&text).map_err(|e| bad_field(WHAT, "programArgs", e))?,
        (None, list) => list.unwrap_or_default(),
    };
    if request.parallelism == Some(0) {
        return Err(bad_field(WHAT, "parallelism", "must be at least 1"));
    }
    if let Some(id) = &request.job_id
        && !(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(bad_field(WHAT, "jobId", format!("'{id}' is not a job id (32 hexadecimal digits)")));
    }
    Ok(SubmitRequest {
        job,
        args,
        parallelism: request.parallelism.map(|p| p as usize),
        job_id: request.job_id.map(|id| id.to_ascii_lowercase()),
        savepoint_path: request.savepoint_path.filter(|p| !p.trim().is_empty()),
        allow_non_restored_state: request.allow_non_restored_state.unwrap_or(false),
    })
}

/// `POST /jars/:jarid/run` with Flink's `JarRunRequestBody`: starts a job the binary carries.
async fn run_jar(
    Extract(state): Extract<Shared>,
    Path(jar_id): Path<String>,
    bytes: Bytes,
) -> Answer<api::JarRunResponse> {
    if jar_id != JAR_ID {
        return Err(Error(
            StatusCode::NOT_FOUND,
            format!("Jar file {jar_id} does not exist (the only jar is '{JAR_ID}')"),
        ));
    }
    let request = submit_request(&state, body(&bytes, "JarRunRequestBody")?)?;
    let job = request.job.clone();
    // Submission may plan the job and read a savepoint: off the server's only thread.
    let view = state.view.clone();
    let submitted = tokio::task::spawn_blocking(move || view.submit(request))
        .await
        .map_err(|e| Error(StatusCode::INTERNAL_SERVER_ERROR, format!("job submission failed: {e}")))?;
    match submitted {
        Ok(job_id) => {
            tracing::info!(%job, %job_id, "job submitted (REST request)");
            ok(api::JarRunResponse { jobid: job_id.clone(), application_id: Some(job_id) })
        }
        Err(SubmitError::BadRequest(message)) => Err(Error(StatusCode::BAD_REQUEST, message)),
        Err(SubmitError::Conflict(message)) => Err(Error(StatusCode::CONFLICT, message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_recognised_by_their_keys() {
        for key in [
            "s3.access-key",
            "s3.secret-key",
            "s3.access.key",
            "fs.azure.account.key.acc.blob.core.windows.net",
            "ssl.keystore-password",
            "metrics.reporter.dd.apikey",
            "security.kerberos.token",
            "gcs.credentials",
            "my.secret",
            "S3.ACCESS-KEY",
        ] {
            assert!(is_sensitive(key), "{key}");
        }
        for key in ["rest.port", "state.checkpoints.dir", "pipeline.max-parallelism", "execution.keyed-state"] {
            assert!(!is_sensitive(key), "{key}");
        }
    }

    #[test]
    fn program_args_split_on_whitespace_with_quotes() {
        assert_eq!(split_args("  --input  a.txt -n 3 ").unwrap(), ["--input", "a.txt", "-n", "3"]);
        assert_eq!(split_args(r#"--name "two words" --x '' y"#).unwrap(), ["--name", "two words", "--x", "", "y"]);
        assert!(split_args(r#"--name "open"#).is_err());
        assert!(split_args("").unwrap().is_empty());
    }
}
