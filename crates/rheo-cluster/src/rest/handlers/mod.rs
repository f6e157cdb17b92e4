//! The endpoints: each answer about a job is built from one status snapshot of its handle,
//! with Flink's JSON.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State as Extract};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rheo_rest as api;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::rates::VertexRates;
use super::{FLINK_API_VERSION, JAR_ID, State};
use crate::view::{SubmitError, SubmitRequest, SubtaskLocation, TaskManagerInfo};
use rheo_runtime::driver::handle::{
    CheckpointTriggerStatus, CompletedCheckpoint, JobHandle, JobSnapshot, JobState, JobStatus, SavepointStatus,
    TaskStatus,
};
use rheo_runtime::task::{TaskMetrics, now_ms};

type Shared = Arc<State>;

mod checkpoints;
mod cluster;
mod jars;
mod jobmanager;
mod jobs;
mod savepoints;
mod taskmanagers;
mod vertices;

/// Every path, served at the root and under `/v1`, as Flink's client calls them.
pub(crate) fn router(state: Shared) -> Router {
    let api = Router::new()
        .route("/config", get(cluster::config))
        .route("/overview", get(cluster::overview))
        .route("/jobs", get(jobs::jobs).post(jars::refuse_upload))
        .route("/jobs/overview", get(jobs::jobs_overview))
        .route("/jobs/{id}", get(jobs::job).patch(jobs::cancel))
        .route("/jobs/{id}/exceptions", get(jobs::exceptions))
        .route("/jobs/{id}/ready", get(jobs::ready))
        .route("/jobs/{id}/checkpoints", get(checkpoints::checkpoints).post(checkpoints::trigger_checkpoint))
        .route("/jobs/{id}/checkpoints/config", get(checkpoints::checkpoint_config))
        .route("/jobs/{id}/checkpoints/{trigger}", get(checkpoints::checkpoint_status))
        .route("/jobs/{id}/savepoints", post(savepoints::trigger_savepoint))
        .route("/jobs/{id}/savepoints/{trigger}", get(savepoints::savepoint_status))
        .route("/jobs/{id}/stop", post(savepoints::stop))
        .route("/savepoint-disposal", post(savepoints::trigger_disposal))
        .route("/savepoint-disposal/{trigger}", get(savepoints::disposal_status))
        .route("/snapshots/validation", post(savepoints::validate_snapshot))
        .route("/jobs/{id}/vertices/{vid}/backpressure", get(vertices::backpressure))
        .route("/jobs/{id}/vertices/{vid}/metrics", get(vertices::vertex_metrics))
        .route("/jobs/{id}/vertices/{vid}", get(vertices::vertex))
        .route("/jobs/{id}/vertices/{vid}/watermarks", get(vertices::watermarks))
        .route("/jobs/{id}/vertices/{vid}/subtasktimes", get(vertices::subtask_times))
        .route("/jobs/{id}/vertices/{vid}/taskmanagers", get(vertices::vertex_taskmanagers))
        .route("/jobs/{id}/vertices/{vid}/subtasks/metrics", get(vertices::subtasks_metrics))
        .route("/jobs/{id}/vertices/{vid}/subtasks/{n}", get(vertices::subtask))
        .route("/jobs/{id}/vertices/{vid}/subtasks/{n}/metrics", get(vertices::subtask_metrics))
        .route("/jobs/{id}/plan", get(jobs::plan))
        .route(
            "/jobs/{id}/resource-requirements",
            get(jobs::resource_requirements).put(jobs::set_resource_requirements),
        )
        .route("/jobs/{id}/config", get(jobs::job_config))
        .route("/jobs/{id}/accumulators", get(jobs::accumulators))
        .route("/jobs/{id}/metrics", get(jobs::job_metrics))
        .route("/jobs/{id}/watermarks", get(jobs::watermarks))
        .route("/taskmanagers", get(taskmanagers::taskmanagers))
        .route("/taskmanagers/metrics", get(taskmanagers::taskmanagers_metrics))
        .route("/taskmanagers/{tmid}", get(taskmanagers::taskmanager))
        .route("/taskmanagers/{tmid}/metrics", get(taskmanagers::taskmanager_metrics))
        .route("/jobmanager/config", get(jobmanager::jobmanager_config))
        .route("/jobmanager/environment", get(jobmanager::environment))
        .route("/jobmanager/metrics", get(jobmanager::jobmanager_metrics))
        .route("/jobmanager/logs", get(jobmanager::logs))
        .route("/jars", get(jars::jars))
        .route("/jars/{jarid}/run", post(jars::run_jar))
        .route("/jars/upload", post(jars::refuse_upload))
        .route("/metrics", get(super::metrics::metrics));
    Router::new()
        .route("/", get(super::web::index))
        .route("/web/app.js", get(super::web::app))
        .route("/web/style.css", get(super::web::style))
        .nest("/v1", api.clone())
        .merge(api)
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

pub(super) fn ok<T>(value: T) -> Answer<T> {
    Ok(axum::Json(value))
}

pub(super) async fn not_found(uri: Uri) -> Error {
    Error(StatusCode::NOT_FOUND, format!("Not found: {}", uri.path()))
}

/// The job `id` names: 400 when it is no job id, 404 when the cluster has no such job.
pub(super) fn find_job(state: &State, id: &str) -> Result<JobHandle, Error> {
    let job_id: rheo_types::JobId = id.parse().map_err(|e: rheo_types::JobIdError| {
        Error(StatusCode::BAD_REQUEST, format!("Bad request, could not parse parameters: {e}"))
    })?;
    state.find_job(&job_id.to_string()).ok_or_else(|| Error(StatusCode::NOT_FOUND, format!("Job {id} not found")))
}

/// A job's id as the REST types carry it. Every job's id was checked where the job was made (a
/// submission's `jobId`, `--job-id`) or derived from its name, so this cannot fail.
pub(super) fn wire_id(id: &str) -> api::JobId {
    id.parse().unwrap_or_else(|e| panic!("a job was made with an unchecked id: {e}"))
}

/// A 400 naming a field of a request body.
pub(super) fn bad_field(what: &str, field: &str, message: impl std::fmt::Display) -> Error {
    Error(StatusCode::BAD_REQUEST, format!("Request did not match expected format {what}: field '{field}': {message}"))
}

/// The JSON body of a request, or a 400 naming what is wrong with it. An empty body is `{}`.
pub(super) fn body<T: DeserializeOwned>(bytes: &Bytes, what: &str) -> Result<T, Error> {
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

pub(super) fn accepted<T: Serialize>(value: T) -> Response {
    (StatusCode::ACCEPTED, axum::Json(value)).into_response()
}

pub(super) fn flink_state(state: JobState) -> api::JobState {
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
pub(super) fn execution_state(state: JobState) -> &'static str {
    match state {
        JobState::Created => "CREATED",
        JobState::Running => "RUNNING",
        JobState::Restarting => "CANCELING",
        JobState::Finished => "FINISHED",
        JobState::Failed => "FAILED",
        JobState::Cancelled => "CANCELED",
    }
}

pub(super) const EXECUTION_STATES: [&str; 10] = [
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

pub(super) fn execution_counts(state: JobState, subtasks: u32) -> BTreeMap<String, u32> {
    let current = execution_state(state);
    EXECUTION_STATES.iter().map(|s| (s.to_string(), if *s == current { subtasks } else { 0 })).collect()
}

pub(super) fn subtasks(status: &JobStatus) -> u32 {
    status.tasks.iter().map(|t| t.parallelism as u32).sum()
}

pub(super) fn end_time(status: &JobStatus) -> i64 {
    status.end_time.unwrap_or(-1)
}

pub(super) fn duration(status: &JobStatus, now: i64) -> i64 {
    (status.end_time.unwrap_or(now) - status.start_time).max(0)
}

pub(super) fn max_parallelism(state: &State) -> i64 {
    let option = &rheo_config::options::MAX_PARALLELISM;
    state.options.config.get(option).unwrap_or_else(|_| option.default_value()) as i64
}
