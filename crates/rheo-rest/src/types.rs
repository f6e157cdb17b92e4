//! Serde types for Flink's REST JSON. Every field is renamed to Flink's exact spelling, which mixes
//! kebab-case (`start-time`), camelCase (`maxParallelism`) and snake_case (`external_path`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A Flink job id: 32 hex digits on the wire, written in lowercase; text that is not one fails
/// to deserialize.
pub use rheo_types::JobId;

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

/// `POST /savepoint-disposal` body (`flink savepoint -d PATH`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct SavepointDisposalRequest {
    #[serde(rename = "savepoint-path", default, skip_serializing_if = "Option::is_none")]
    pub savepoint_path: Option<String>,
}

/// `POST /snapshots/validation` body (Rheo's, not Flink's): a savepoint or checkpoint
/// directory, or a job's checkpoint directory, that a job is about to be started from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct SnapshotValidationRequest {
    #[serde(default)]
    pub path: String,
}

/// What `POST /snapshots/validation` found: whether a job given `path` to start from could
/// restore it, resolved as a starting JobManager resolves it, every file read and checked.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotValidation {
    pub path: String,
    pub restorable: bool,
    /// The checkpoint or savepoint directory a job would restore (for a job's checkpoint
    /// directory: its newest complete checkpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// Bytes of state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_size: Option<u64>,
    /// Why it cannot be restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// `POST /jobs/:id/savepoints` body.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct SavepointTriggerRequest {
    #[serde(rename = "target-directory", default, skip_serializing_if = "Option::is_none")]
    pub target_directory: Option<String>,
    #[serde(rename = "cancel-job", default)]
    pub cancel_job: bool,
}

/// `POST /jobs/:id/checkpoints` body (Flink 1.19+): take a checkpoint now.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct CheckpointTriggerRequest {
    #[serde(rename = "checkpointType", default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_type: Option<CheckpointType>,
    /// The trigger id to use (32 hex digits): the same id again does not take a second checkpoint.
    #[serde(rename = "triggerId", default, skip_serializing_if = "Option::is_none")]
    pub trigger_id: Option<String>,
}

/// The kind of a checkpoint asked for. `FULL` writes all keyed state even when checkpoints are
/// incremental (`state.backend.incremental`, the default), and later ones build on it;
/// `INCREMENTAL` is incremental only when the job's checkpoints are (as in Flink, where it
/// takes the backend's configured kind).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CheckpointType {
    /// What the job is configured with.
    #[default]
    Configured,
    Full,
    Incremental,
}

/// `GET /jobs/:id/checkpoints/:trigger`: the state of a checkpoint asked for.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CheckpointTriggerResult {
    pub status: QueueStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<CheckpointInfo>,
}

/// A completed checkpoint operation: the checkpoint's id, or the cause of its failure.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct CheckpointInfo {
    #[serde(rename = "checkpointId", default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_id: Option<u64>,
    #[serde(rename = "failure-cause", default, skip_serializing_if = "Option::is_none")]
    pub failure_cause: Option<serde_json::Value>,
}

impl CheckpointInfo {
    /// A one-line description of the failure cause, if any.
    pub fn failure_message(&self) -> Option<String> {
        self.failure_cause.as_ref().map(one_line_cause)
    }
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
        self.failure_cause.as_ref().map(one_line_cause)
    }
}

/// The first line of a failure cause: Flink's serialized throwable or a plain message.
fn one_line_cause(cause: &serde_json::Value) -> String {
    let text = match cause {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Object(map) => ["stack-trace", "class"]
            .iter()
            .find_map(|k| map.get(*k).and_then(|v| v.as_str()))
            .map(str::to_string)
            .unwrap_or_else(|| cause.to_string()),
        other => other.to_string(),
    };
    text.lines().next().unwrap_or_default().to_string()
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

/// `GET /taskmanagers`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct TaskManagersInfo {
    pub taskmanagers: Vec<TaskManagerInfo>,
}

/// One TaskManager in `GET /taskmanagers`. Memory sizes of `totalResource`/`freeResource` are
/// in MiB, those of `hardware` and `memoryConfiguration` in bytes, as in Flink.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TaskManagerInfo {
    /// The resource id, e.g. `localhost:34155-58c331`.
    pub id: String,
    /// Its RPC address (Flink: a Pekko actor path).
    pub path: String,
    #[serde(rename = "dataPort")]
    pub data_port: i64,
    #[serde(rename = "jmxPort")]
    pub jmx_port: i64,
    /// Epoch millis of the last heartbeat (Flink's name notwithstanding).
    #[serde(rename = "timeSinceLastHeartbeat")]
    pub time_since_last_heartbeat: i64,
    #[serde(rename = "slotsNumber")]
    pub slots_number: u32,
    #[serde(rename = "freeSlots")]
    pub free_slots: u32,
    #[serde(rename = "assignedTasks", default)]
    pub assigned_tasks: u32,
    #[serde(rename = "totalResource")]
    pub total_resource: ResourceProfileInfo,
    #[serde(rename = "freeResource")]
    pub free_resource: ResourceProfileInfo,
    pub hardware: HardwareDescription,
    #[serde(rename = "memoryConfiguration")]
    pub memory_configuration: TaskExecutorMemoryConfiguration,
}

/// Resources of a TaskManager or slot (memory in MiB).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct ResourceProfileInfo {
    #[serde(rename = "cpuCores", serialize_with = "whole_numbers_as_integers")]
    pub cpu_cores: f64,
    #[serde(rename = "taskHeapMemory")]
    pub task_heap_memory: i64,
    #[serde(rename = "taskOffHeapMemory")]
    pub task_off_heap_memory: i64,
    #[serde(rename = "managedMemory")]
    pub managed_memory: i64,
    #[serde(rename = "networkMemory")]
    pub network_memory: i64,
    #[serde(rename = "extendedResources", default)]
    pub extended_resources: BTreeMap<String, f64>,
}

/// The machine a TaskManager runs on (bytes).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct HardwareDescription {
    #[serde(rename = "cpuCores")]
    pub cpu_cores: u32,
    #[serde(rename = "physicalMemory")]
    pub physical_memory: i64,
    #[serde(rename = "freeMemory")]
    pub free_memory: i64,
    #[serde(rename = "managedMemory")]
    pub managed_memory: i64,
}

/// Flink's TaskManager memory model (bytes); all 0 for Rheo, which has no JVM memory pools.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct TaskExecutorMemoryConfiguration {
    #[serde(rename = "frameworkHeap")]
    pub framework_heap: i64,
    #[serde(rename = "taskHeap")]
    pub task_heap: i64,
    #[serde(rename = "frameworkOffHeap")]
    pub framework_off_heap: i64,
    #[serde(rename = "taskOffHeap")]
    pub task_off_heap: i64,
    #[serde(rename = "networkMemory")]
    pub network_memory: i64,
    #[serde(rename = "managedMemory")]
    pub managed_memory: i64,
    #[serde(rename = "jvmMetaspace")]
    pub jvm_metaspace: i64,
    #[serde(rename = "jvmOverhead")]
    pub jvm_overhead: i64,
    #[serde(rename = "totalFlinkMemory")]
    pub total_flink_memory: i64,
    #[serde(rename = "totalProcessMemory")]
    pub total_process_memory: i64,
}

/// One entry of `GET /jobmanager/config` (the answer is a JSON array of them).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ConfigurationEntry {
    pub key: String,
    pub value: String,
}

/// Back pressure of a vertex or subtask, by Flink's thresholds on the back-pressured ratio:
/// `ok` up to 0.1, `low` up to 0.5, `high` above.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum BackPressureLevel {
    Ok,
    Low,
    High,
}

impl BackPressureLevel {
    /// The level of a back-pressured ratio (0..=1).
    pub fn of_ratio(ratio: f64) -> Self {
        if ratio <= 0.1 {
            BackPressureLevel::Ok
        } else if ratio <= 0.5 {
            BackPressureLevel::Low
        } else {
            BackPressureLevel::High
        }
    }
}

/// `GET /jobs/:id/vertices/:vid/backpressure`. Flink sends each level twice, under a camelCase
/// and a (deprecated) kebab-case name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct JobVertexBackPressureInfo {
    /// `ok`, or `deprecated` while no sample is available yet.
    pub status: String,
    #[serde(rename = "backpressureLevel", default, skip_serializing_if = "Option::is_none")]
    pub backpressure_level: Option<BackPressureLevel>,
    /// Epoch millis of the sample.
    #[serde(rename = "end-timestamp", default, skip_serializing_if = "Option::is_none")]
    pub end_timestamp: Option<i64>,
    #[serde(default)]
    pub subtasks: Vec<SubtaskBackPressureInfo>,
    #[serde(rename = "backpressure-level", default, skip_serializing_if = "Option::is_none")]
    pub backpressure_level_deprecated: Option<BackPressureLevel>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SubtaskBackPressureInfo {
    pub subtask: u32,
    #[serde(rename = "backpressureLevel")]
    pub backpressure_level: BackPressureLevel,
    /// Share of time back-pressured.
    pub ratio: f64,
    #[serde(rename = "idleRatio")]
    pub idle_ratio: f64,
    #[serde(rename = "busyRatio")]
    pub busy_ratio: f64,
    #[serde(rename = "backpressure-level")]
    pub backpressure_level_deprecated: BackPressureLevel,
}

/// One metric of `GET .../metrics`: with `?get=` its value (always a string in Flink), without
/// only its id (the list of available metrics).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct MetricValue {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// `GET /jars`: the uploaded jars and their entry points.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct JarListInfo {
    /// The REST address of the JobManager.
    pub address: String,
    pub files: Vec<JarFileInfo>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct JarFileInfo {
    pub id: String,
    pub name: String,
    /// Epoch millis of the upload.
    pub uploaded: i64,
    pub entry: Vec<JarEntryInfo>,
}

/// An entry point of a jar: a job Rheo's binary carries.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct JarEntryInfo {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
}

/// `POST /jars/:jarid/run` body (Flink's `JarRunRequestBody`); every field is optional.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct JarRunRequest {
    /// The job to run (Flink: the main class).
    #[serde(rename = "entryClass", default, skip_serializing_if = "Option::is_none")]
    pub entry_class: Option<String>,
    /// The job's arguments as one string, split on whitespace (quotes group words).
    #[serde(rename = "programArgs", default, skip_serializing_if = "Option::is_none")]
    pub program_args: Option<String>,
    #[serde(rename = "programArgsList", default, skip_serializing_if = "Option::is_none")]
    pub program_args_list: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<u32>,
    #[serde(rename = "jobId", default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    #[serde(rename = "allowNonRestoredState", default, skip_serializing_if = "Option::is_none")]
    pub allow_non_restored_state: Option<bool>,
    #[serde(rename = "savepointPath", default, skip_serializing_if = "Option::is_none")]
    pub savepoint_path: Option<String>,
    /// Configuration of this job (`-D key=value`), over the cluster's.
    #[serde(rename = "flinkConfiguration", default, skip_serializing_if = "Option::is_none")]
    pub flink_configuration: Option<BTreeMap<String, String>>,
}

/// `POST /jars/:jarid/run` answer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct JarRunResponse {
    pub jobid: JobId,
    #[serde(rename = "applicationId", default, skip_serializing_if = "Option::is_none")]
    pub application_id: Option<String>,
}

/// Flink writes a whole number of cores as `2`, not `2.0`.
fn whole_numbers_as_integers<S: serde::Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        serializer.serialize_i64(*value as i64)
    } else {
        serializer.serialize_f64(*value)
    }
}

/// `GET`/`PUT /jobs/:id/resource-requirements` (Flink's adaptive scheduler): the parallelism
/// bounds of each vertex, by vertex id.
pub type JobResourceRequirements = BTreeMap<String, VertexResourceRequirements>;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct VertexResourceRequirements {
    pub parallelism: ParallelismBounds,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct ParallelismBounds {
    #[serde(rename = "lowerBound")]
    pub lower_bound: u32,
    #[serde(rename = "upperBound")]
    pub upper_bound: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_are_parsed_on_the_wire() {
        let jobs: JobIdsWithStatus =
            serde_json::from_str(r#"{"jobs":[{"id":"6232260E7262BC211B07D58420043BD8","status":"RUNNING"}]}"#).unwrap();
        assert_eq!(jobs.jobs[0].id.to_string(), "6232260e7262bc211b07d58420043bd8");
        let error = serde_json::from_str::<JobIdsWithStatus>(r#"{"jobs":[{"id":"6232","status":"RUNNING"}]}"#)
            .unwrap_err()
            .to_string();
        assert!(error.contains("'6232' is not a job id"), "{error}");
    }
}
