//! Serde types of the endpoints Flink's web UI reads besides those the operator and CLI use:
//! the plan, a vertex and its subtasks, job configuration and accumulators, TaskManager
//! details, the JobManager's environment and logs, aggregated metrics.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::types::{TaskManagerInfo, VertexMetrics};

/// `GET /jobs/:id/plan`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct JobPlanInfo {
    pub plan: JobPlan,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct JobPlan {
    pub jid: String,
    pub name: String,
    #[serde(rename = "type")]
    pub job_type: String,
    pub nodes: Vec<PlanNode>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PlanNode {
    pub id: String,
    pub operator: String,
    pub parallelism: u32,
    pub operator_strategy: String,
    /// The vertex's operators, `<br/>`-separated as Flink's UI expects.
    pub description: String,
    pub optimizer_properties: serde_json::Value,
    /// The vertex's inputs; absent for sources.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<PlanInput>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PlanInput {
    /// The upstream vertex.
    pub id: String,
    pub num: u32,
    pub exchange: String,
    /// `FORWARD`, `REBALANCE`, `HASH`, ...
    pub ship_strategy: String,
}

/// `GET /jobs/:id/config`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct JobConfigInfo {
    pub jid: String,
    pub name: String,
    #[serde(rename = "execution-config")]
    pub execution_config: ExecutionConfigInfo,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ExecutionConfigInfo {
    #[serde(rename = "restart-strategy")]
    pub restart_strategy: String,
    #[serde(rename = "job-parallelism")]
    pub job_parallelism: u32,
    #[serde(rename = "object-reuse-mode")]
    pub object_reuse_mode: bool,
    #[serde(rename = "user-config")]
    pub user_config: BTreeMap<String, String>,
}

/// `GET /jobs/:id/accumulators`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct JobAccumulatorsInfo {
    #[serde(rename = "job-accumulators")]
    pub job_accumulators: Vec<serde_json::Value>,
    #[serde(rename = "user-task-accumulators")]
    pub user_task_accumulators: Vec<serde_json::Value>,
    #[serde(rename = "serialized-user-task-accumulators")]
    pub serialized_user_task_accumulators: BTreeMap<String, serde_json::Value>,
}

/// Statistics of one value over the subtasks of a vertex (`aggregated` of a vertex).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Default)]
pub struct AggregatedStatistics {
    pub p25: i64,
    pub min: i64,
    pub avg: i64,
    pub median: i64,
    pub max: i64,
    pub sum: i64,
    pub p95: i64,
    pub p75: i64,
}

impl AggregatedStatistics {
    /// The statistics of `values`, with percentiles estimated as Flink's (commons-math's
    /// default: position p·(n+1), linear interpolation between neighbours), truncated to integers.
    pub fn of(values: &[i64]) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        let mut sorted = values.to_vec();
        sorted.sort_unstable();
        let n = sorted.len();
        let rank = |p: f64| {
            let position = p * (n as f64 + 1.0);
            if position < 1.0 {
                return sorted[0];
            }
            if position >= n as f64 {
                return sorted[n - 1];
            }
            let below = position.floor() as usize;
            let (low, high) = (sorted[below - 1] as f64, sorted[below] as f64);
            (low + (position - below as f64) * (high - low)) as i64
        };
        let sum: i64 = sorted.iter().sum();
        AggregatedStatistics {
            p25: rank(0.25),
            min: sorted[0],
            avg: sum / sorted.len() as i64,
            median: rank(0.5),
            max: sorted[sorted.len() - 1],
            sum,
            p95: rank(0.95),
            p75: rank(0.75),
        }
    }
}

/// `aggregated` of a vertex or of a vertex's subtasks on one TaskManager.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct AggregatedTaskDetails {
    pub metrics: BTreeMap<String, AggregatedStatistics>,
    #[serde(rename = "status-duration")]
    pub status_duration: BTreeMap<String, AggregatedStatistics>,
}

/// One subtask (execution attempt): an entry of `/jobs/:id/vertices/:vid` and the answer of
/// `/jobs/:id/vertices/:vid/subtasks/:n`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SubtaskExecutionAttemptDetails {
    pub subtask: u32,
    pub status: String,
    pub attempt: u32,
    pub endpoint: String,
    #[serde(rename = "start-time")]
    pub start_time: i64,
    #[serde(rename = "end-time")]
    pub end_time: i64,
    pub duration: i64,
    pub metrics: VertexMetrics,
    #[serde(rename = "taskmanager-id")]
    pub taskmanager_id: String,
    #[serde(rename = "status-duration")]
    pub status_duration: BTreeMap<String, i64>,
    /// Flink repeats `start-time` under this older name.
    #[serde(rename = "start_time")]
    pub start_time_deprecated: i64,
}

/// `GET /jobs/:id/vertices/:vid`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct JobVertexDetailsInfo {
    pub id: String,
    pub name: String,
    pub parallelism: u32,
    #[serde(rename = "maxParallelism")]
    pub max_parallelism: i64,
    pub now: i64,
    pub subtasks: Vec<SubtaskExecutionAttemptDetails>,
    pub aggregated: AggregatedTaskDetails,
}

/// `GET /jobs/:id/vertices/:vid/subtasktimes`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SubtasksTimesInfo {
    pub id: String,
    pub name: String,
    pub now: i64,
    pub subtasks: Vec<SubtaskTimesInfo>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SubtaskTimesInfo {
    pub subtask: u32,
    pub endpoint: String,
    pub duration: i64,
    pub timestamps: BTreeMap<String, i64>,
}

/// `GET /jobs/:id/vertices/:vid/taskmanagers`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct JobVertexTaskManagersInfo {
    pub id: String,
    pub name: String,
    pub now: i64,
    pub taskmanagers: Vec<TaskManagersOfVertex>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TaskManagersOfVertex {
    pub endpoint: String,
    pub status: String,
    #[serde(rename = "start-time")]
    pub start_time: i64,
    #[serde(rename = "end-time")]
    pub end_time: i64,
    pub duration: i64,
    pub metrics: VertexMetrics,
    #[serde(rename = "status-counts")]
    pub status_counts: BTreeMap<String, u32>,
    #[serde(rename = "taskmanager-id")]
    pub taskmanager_id: String,
    pub aggregated: AggregatedTaskDetails,
}

/// An entry of an aggregated-metrics answer (`/jobs/:id/vertices/:vid/subtasks/metrics`,
/// `/taskmanagers/metrics`): only the requested aggregates are present.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct AggregatedMetric {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avg: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sum: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skew: Option<f64>,
}

/// `GET /taskmanagers/:id`: the `/taskmanagers` entry plus slots and memory metrics.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TaskManagerDetailsInfo {
    #[serde(flatten)]
    pub info: TaskManagerInfo,
    #[serde(rename = "allocatedSlots", default)]
    pub allocated_slots: Vec<serde_json::Value>,
    pub metrics: TaskManagerMetricsInfo,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct TaskManagerMetricsInfo {
    #[serde(rename = "heapUsed")]
    pub heap_used: i64,
    #[serde(rename = "heapCommitted")]
    pub heap_committed: i64,
    #[serde(rename = "heapMax")]
    pub heap_max: i64,
    #[serde(rename = "nonHeapUsed")]
    pub non_heap_used: i64,
    #[serde(rename = "nonHeapCommitted")]
    pub non_heap_committed: i64,
    #[serde(rename = "nonHeapMax")]
    pub non_heap_max: i64,
    #[serde(rename = "directCount")]
    pub direct_count: i64,
    #[serde(rename = "directUsed")]
    pub direct_used: i64,
    #[serde(rename = "directMax")]
    pub direct_max: i64,
    #[serde(rename = "mappedCount")]
    pub mapped_count: i64,
    #[serde(rename = "mappedUsed")]
    pub mapped_used: i64,
    #[serde(rename = "mappedMax")]
    pub mapped_max: i64,
    #[serde(rename = "nettyShuffleMemorySegmentsAvailable")]
    pub netty_shuffle_memory_segments_available: i64,
    #[serde(rename = "nettyShuffleMemorySegmentsUsed")]
    pub netty_shuffle_memory_segments_used: i64,
    #[serde(rename = "nettyShuffleMemorySegmentsTotal")]
    pub netty_shuffle_memory_segments_total: i64,
    #[serde(rename = "nettyShuffleMemoryAvailable")]
    pub netty_shuffle_memory_available: i64,
    #[serde(rename = "nettyShuffleMemoryUsed")]
    pub netty_shuffle_memory_used: i64,
    #[serde(rename = "nettyShuffleMemoryTotal")]
    pub netty_shuffle_memory_total: i64,
    #[serde(rename = "garbageCollectors")]
    pub garbage_collectors: Vec<serde_json::Value>,
}

/// `GET /jobmanager/environment`. Rheo runs no JVM: `jvm` describes the process instead.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct EnvironmentInfo {
    pub jvm: JvmInfo,
    pub classpath: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct JvmInfo {
    pub version: String,
    pub arch: String,
    pub options: Vec<String>,
}

/// `GET /jobmanager/logs`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct LogListInfo {
    pub logs: Vec<LogInfo>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct LogInfo {
    pub name: String,
    pub size: u64,
    pub mtime: i64,
}
