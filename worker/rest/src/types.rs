//! Serde types for Flink's REST JSON. Every field is renamed to Flink's exact spelling, which mixes
//! kebab-case (`start-time`), camelCase (`maxParallelism`) and snake_case (`external_path`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A Flink job id: 32 lowercase hex digits.
pub type JobId = String;

/// The state of a job, as Flink's `JobStatus` enum.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    Initializing,
    Created,
    Running,
    Failing,
    Failed,
    Cancelling,
    Canceled,
    Finished,
    Restarting,
    Suspended,
    Reconciling,
}

impl JobState {
    /// Flink's spelling, e.g. `RUNNING`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Initializing => "INITIALIZING",
            JobState::Created => "CREATED",
            JobState::Running => "RUNNING",
            JobState::Failing => "FAILING",
            JobState::Failed => "FAILED",
            JobState::Cancelling => "CANCELLING",
            JobState::Canceled => "CANCELED",
            JobState::Finished => "FINISHED",
            JobState::Restarting => "RESTARTING",
            JobState::Suspended => "SUSPENDED",
            JobState::Reconciling => "RECONCILING",
        }
    }

    /// A globally terminal state: the job will not run again in this JobManager.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobState::Failed | JobState::Canceled | JobState::Finished)
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `GET /overview`: the cluster overview.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ClusterOverview {
    pub taskmanagers: u32,
    #[serde(rename = "slots-total")]
    pub slots_total: u32,
    #[serde(rename = "slots-available")]
    pub slots_available: u32,
    #[serde(rename = "jobs-running")]
    pub jobs_running: u32,
    #[serde(rename = "jobs-finished")]
    pub jobs_finished: u32,
    #[serde(rename = "jobs-cancelled")]
    pub jobs_cancelled: u32,
    #[serde(rename = "jobs-failed")]
    pub jobs_failed: u32,
    #[serde(rename = "flink-version")]
    pub flink_version: String,
    #[serde(rename = "flink-commit")]
    pub flink_commit: String,
}

/// `GET /jobs`: job ids with their state.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct JobIdsWithStatus {
    pub jobs: Vec<JobIdWithStatus>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct JobIdWithStatus {
    pub id: JobId,
    pub status: JobState,
}

/// `GET /jobs/overview`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct JobsOverview {
    pub jobs: Vec<JobOverview>,
}

/// One job in `GET /jobs/overview`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct JobOverview {
    pub jid: JobId,
    pub name: String,
    #[serde(rename = "jobType", default, skip_serializing_if = "Option::is_none")]
    pub job_type: Option<String>,
    #[serde(rename = "schedulerType", default, skip_serializing_if = "Option::is_none")]
    pub scheduler_type: Option<String>,
    #[serde(rename = "start-time")]
    pub start_time: i64,
    #[serde(rename = "end-time")]
    pub end_time: i64,
    pub duration: i64,
    pub state: JobState,
    #[serde(rename = "last-modification")]
    pub last_modification: i64,
    pub tasks: TaskCounts,
    #[serde(rename = "pending-operators", default, skip_serializing_if = "Option::is_none")]
    pub pending_operators: Option<u32>,
}

/// Task counts per state in `GET /jobs/overview` (lowercase keys).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct TaskCounts {
    pub running: u32,
    pub canceling: u32,
    pub canceled: u32,
    pub total: u32,
    pub created: u32,
    pub scheduled: u32,
    pub deploying: u32,
    pub reconciling: u32,
    pub finished: u32,
    pub initializing: u32,
    pub failed: u32,
}

/// `GET /jobs/:id`: job details with a summary of each vertex.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct JobDetails {
    pub jid: JobId,
    #[serde(rename = "application-id", default, skip_serializing_if = "Option::is_none")]
    pub application_id: Option<String>,
    pub name: String,
    #[serde(rename = "isStoppable")]
    pub is_stoppable: bool,
    pub state: JobState,
    #[serde(rename = "job-type", default, skip_serializing_if = "Option::is_none")]
    pub job_type: Option<String>,
    #[serde(rename = "schedulerType", default, skip_serializing_if = "Option::is_none")]
    pub scheduler_type: Option<String>,
    #[serde(rename = "start-time")]
    pub start_time: i64,
    #[serde(rename = "end-time")]
    pub end_time: i64,
    pub duration: i64,
    #[serde(rename = "maxParallelism")]
    pub max_parallelism: i64,
    pub now: i64,
    /// Epoch millis at which the job entered each state (0 = never).
    pub timestamps: BTreeMap<String, i64>,
    pub vertices: Vec<JobVertexSummary>,
    #[serde(rename = "status-counts")]
    pub status_counts: BTreeMap<String, u32>,
    /// The job graph (`nodes` with inputs); kept as JSON, it is only displayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<serde_json::Value>,
    #[serde(rename = "pending-operators", default, skip_serializing_if = "Option::is_none")]
    pub pending_operators: Option<u32>,
}

impl JobDetails {
    /// The largest parallelism of any vertex: what Flink shows as the job's parallelism.
    pub fn parallelism(&self) -> Option<u32> {
        self.vertices.iter().map(|v| v.parallelism).max()
    }
}

/// A vertex in `GET /jobs/:id`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct JobVertexSummary {
    pub id: String,
    #[serde(rename = "slotSharingGroupId", default, skip_serializing_if = "Option::is_none")]
    pub slot_sharing_group_id: Option<String>,
    pub name: String,
    #[serde(rename = "maxParallelism")]
    pub max_parallelism: i64,
    pub parallelism: u32,
    pub status: String,
    #[serde(rename = "start-time")]
    pub start_time: i64,
    #[serde(rename = "end-time")]
    pub end_time: i64,
    pub duration: i64,
    /// Subtask counts per execution state (uppercase keys).
    pub tasks: BTreeMap<String, u32>,
    pub metrics: VertexMetrics,
}

/// I/O metrics of a vertex in `GET /jobs/:id`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct VertexMetrics {
    #[serde(rename = "read-bytes")]
    pub read_bytes: u64,
    #[serde(rename = "read-bytes-complete")]
    pub read_bytes_complete: bool,
    #[serde(rename = "write-bytes")]
    pub write_bytes: u64,
    #[serde(rename = "write-bytes-complete")]
    pub write_bytes_complete: bool,
    #[serde(rename = "read-records")]
    pub read_records: u64,
    #[serde(rename = "read-records-complete")]
    pub read_records_complete: bool,
    #[serde(rename = "write-records")]
    pub write_records: u64,
    #[serde(rename = "write-records-complete")]
    pub write_records_complete: bool,
    #[serde(rename = "accumulated-backpressured-time")]
    pub accumulated_backpressured_time: u64,
    #[serde(rename = "accumulated-idle-time")]
    pub accumulated_idle_time: u64,
    #[serde(rename = "accumulated-busy-time")]
    pub accumulated_busy_time: u64,
}

/// `GET /jobs/:id/checkpoints`: checkpoint statistics.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CheckpointingStatistics {
    pub counts: CheckpointCounts,
    /// Min/max/avg/percentiles per metric (`state_size`, `end_to_end_duration`, ...).
    #[serde(default)]
    pub summary: BTreeMap<String, BTreeMap<String, serde_json::Number>>,
    pub latest: LatestCheckpoints,
    #[serde(default)]
    pub history: Vec<CheckpointStatistics>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct CheckpointCounts {
    pub restored: u64,
    pub total: u64,
    pub in_progress: u64,
    pub completed: u64,
    pub failed: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct LatestCheckpoints {
    pub completed: Option<CheckpointStatistics>,
    pub savepoint: Option<CheckpointStatistics>,
    pub failed: Option<CheckpointStatistics>,
    pub restored: Option<RestoredCheckpoint>,
}

/// One checkpoint (completed, in progress or failed) in `GET /jobs/:id/checkpoints`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CheckpointStatistics {
    #[serde(rename = "className")]
    pub class_name: String,
    pub id: u64,
    /// `IN_PROGRESS`, `COMPLETED` or `FAILED`.
    pub status: String,
    pub is_savepoint: bool,
    #[serde(rename = "savepointFormat")]
    pub savepoint_format: Option<String>,
    pub trigger_timestamp: i64,
    pub latest_ack_timestamp: i64,
    pub checkpointed_size: u64,
    pub state_size: u64,
    pub end_to_end_duration: u64,
    pub alignment_buffered: u64,
    pub processed_data: u64,
    pub persisted_data: u64,
    pub num_subtasks: u32,
    pub num_acknowledged_subtasks: u32,
    /// `CHECKPOINT`, `SAVEPOINT` or `SYNC_SAVEPOINT`.
    pub checkpoint_type: String,
    #[serde(default)]
    pub tasks: BTreeMap<String, serde_json::Value>,
    /// Where a completed checkpoint lives, e.g. `s3://bucket/ckpt/<job-id>/chk-23`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discarded: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_timestamp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_message: Option<String>,
}

/// The checkpoint or savepoint the job was restored from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RestoredCheckpoint {
    pub id: u64,
    pub restore_timestamp: i64,
    pub is_savepoint: bool,
    pub external_path: Option<String>,
}

/// `POST /jobs/:id/savepoints` body.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct SavepointTriggerRequest {
    #[serde(rename = "target-directory", default, skip_serializing_if = "Option::is_none")]
    pub target_directory: Option<String>,
    #[serde(rename = "cancel-job", default)]
    pub cancel_job: bool,
}

/// `POST /jobs/:id/stop` body: stop with a savepoint.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct StopWithSavepointRequest {
    #[serde(rename = "targetDirectory", default, skip_serializing_if = "Option::is_none")]
    pub target_directory: Option<String>,
    #[serde(default)]
    pub drain: bool,
}

/// Answer to an asynchronous trigger (`POST /jobs/:id/savepoints`, `POST /jobs/:id/stop`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TriggerResponse {
    #[serde(rename = "request-id")]
    pub request_id: String,
}

/// `GET /jobs/:id/savepoints/:trigger`: the state of an asynchronous savepoint operation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct AsynchronousOperationResult {
    pub status: QueueStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<SavepointInfo>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct QueueStatus {
    pub id: QueueStatusId,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum QueueStatusId {
    InProgress,
    Completed,
}

/// The result of a completed savepoint operation: a location, or the cause of its failure.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct SavepointInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Flink's serialized throwable (`class`, `stack-trace`, ...), or a plain message.
    #[serde(rename = "failure-cause", default, skip_serializing_if = "Option::is_none")]
    pub failure_cause: Option<serde_json::Value>,
}

impl SavepointInfo {
    /// A one-line description of the failure cause, if any.
    pub fn failure_message(&self) -> Option<String> {
        let cause = self.failure_cause.as_ref()?;
        let text = match cause {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Object(map) => ["stack-trace", "class"]
                .iter()
                .find_map(|k| map.get(*k).and_then(|v| v.as_str()))
                .map(str::to_string)
                .unwrap_or_else(|| cause.to_string()),
            other => other.to_string(),
        };
        Some(text.lines().next().unwrap_or_default().to_string())
    }
}

/// The body of every Flink REST error.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct ErrorResponse {
    pub errors: Vec<String>,
}

impl ErrorResponse {
    /// The first line of the first error: Flink puts whole stack traces in `errors`.
    pub fn summary(&self) -> String {
        self.errors.first().and_then(|e| e.lines().next()).unwrap_or_default().to_string()
    }
}

/// `GET /config`: the web dashboard configuration (version, time zone, enabled features).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct DashboardConfiguration {
    #[serde(rename = "refresh-interval")]
    pub refresh_interval: i64,
    #[serde(rename = "timezone-name")]
    pub timezone_name: String,
    /// Offset of the time zone from UTC in milliseconds.
    #[serde(rename = "timezone-offset")]
    pub timezone_offset: i64,
    #[serde(rename = "flink-version")]
    pub flink_version: String,
    #[serde(rename = "flink-revision")]
    pub flink_revision: String,
    pub features: DashboardFeatures,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct DashboardFeatures {
    #[serde(rename = "web-submit")]
    pub web_submit: bool,
    #[serde(rename = "web-cancel")]
    pub web_cancel: bool,
    #[serde(rename = "web-rescale")]
    pub web_rescale: bool,
    #[serde(rename = "web-history")]
    pub web_history: bool,
}

/// `GET /jobs/:id/checkpoints/config`: how the job checkpoints (snake_case keys, as Flink's).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CheckpointConfigInfo {
    /// `exactly_once` or `at_least_once`.
    pub mode: String,
    /// Milliseconds between checkpoints (`Long.MAX_VALUE` in Flink when checkpointing is off).
    pub interval: i64,
    pub timeout: i64,
    pub min_pause: i64,
    pub max_concurrent: i64,
    pub externalization: ExternalizedCheckpointInfo,
    pub state_backend: String,
    pub checkpoint_storage: String,
    pub unaligned_checkpoints: bool,
    pub tolerable_failed_checkpoints: i64,
    pub aligned_checkpoint_timeout: i64,
    pub checkpoints_after_tasks_finish: bool,
    pub state_changelog_enabled: bool,
    pub changelog_periodic_materialization_interval: i64,
    pub changelog_storage: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct ExternalizedCheckpointInfo {
    pub enabled: bool,
    pub delete_on_cancellation: bool,
}

/// `GET /jobs/:id/exceptions`: the failures of a job, newest first.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct JobExceptions {
    #[serde(rename = "exceptionHistory")]
    pub exception_history: ExceptionHistory,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct ExceptionHistory {
    pub entries: Vec<ExceptionInfo>,
    /// Whether older entries were left out.
    pub truncated: bool,
}

/// One failure in `GET /jobs/:id/exceptions`. The task fields are `null` for a failure of the
/// whole job (not of one task).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ExceptionInfo {
    #[serde(rename = "exceptionName")]
    pub exception_name: String,
    pub stacktrace: String,
    /// Epoch millis of the failure.
    pub timestamp: i64,
    #[serde(rename = "failureLabels", default)]
    pub failure_labels: BTreeMap<String, String>,
    #[serde(rename = "taskName", default)]
    pub task_name: Option<String>,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(rename = "taskManagerId", default)]
    pub task_manager_id: Option<String>,
    #[serde(rename = "concurrentExceptions", default)]
    pub concurrent_exceptions: Vec<ExceptionInfo>,
}
