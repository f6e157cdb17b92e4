//! `GET /metrics`: the metrics of every job in Prometheus text format, named as Flink's
//! Prometheus reporter names them (`flink_taskmanager_job_task_numRecordsIn`, ...). Like
//! Flink's reporter, counters are exported as gauges. Task metrics are per subtask, labelled
//! `subtask_index` as Flink labels them: `sum by (task_name)` gives a vertex's records.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::extract::State as Extract;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::State;
use super::rates::VertexRates;
use rheo_runtime::task::{TaskMetrics, now_ms};

type Labels = Vec<(String, String)>;
type U64Gauge = Gauge<u64, AtomicU64>;
type F64Gauge = Gauge<f64, AtomicU64>;

/// Per-vertex gauges: (name, help, value).
type VertexGauge = (&'static str, &'static str, fn(&TaskMetrics, &VertexRates) -> f64);

const VERTEX_GAUGES: [VertexGauge; 8] = [
    ("numRecordsIn", "Records a subtask read from upstream tasks (a source subtask: from its source)", |m, _| {
        m.records_in as f64
    }),
    ("numRecordsOut", "Records a subtask sent to downstream tasks", |m, _| m.records_out as f64),
    ("numRecordsInPerSecond", "Records read per second since the previous sample", |_, r| r.records_in_per_second),
    ("numRecordsOutPerSecond", "Records sent downstream per second since the previous sample", |_, r| {
        r.records_out_per_second
    }),
    ("busyTimeMsPerSecond", "Milliseconds per second the subtask was busy", |_, r| r.busy_ms_per_second),
    ("idleTimeMsPerSecond", "Milliseconds per second the subtask waited for input", |_, r| r.idle_ms_per_second),
    ("pendingRecords", "Records the source subtask has yet to read (Kafka consumer lag, unread lines)", |m, _| {
        m.pending_records as f64
    }),
    ("backPressuredTimeMsPerSecond", "Milliseconds per second the subtask was back-pressured", |_, r| {
        r.back_pressured_ms_per_second
    }),
];

/// The registry with the current values of every job of `state`'s cluster.
pub(crate) fn registry(state: &State) -> Registry {
    let jobs = state.view.jobs();
    let mut registry = Registry::default();
    let vertex_families: Vec<Family<Labels, F64Gauge>> = VERTEX_GAUGES.iter().map(|_| Family::default()).collect();
    const JOB_GAUGES: [(&str, &str); 8] = [
        ("numberOfCompletedCheckpoints", "Checkpoints completed"),
        ("numberOfFailedCheckpoints", "Checkpoints failed"),
        ("numberOfInProgressCheckpoints", "Checkpoints in progress"),
        ("totalNumberOfCheckpoints", "Checkpoints triggered"),
        ("lastCheckpointDuration", "Milliseconds the latest completed checkpoint took"),
        ("lastCheckpointSize", "Bytes of the latest completed checkpoint"),
        ("numRestarts", "Restarts of the job after task failures"),
        ("uptime", "Milliseconds the job has been running"),
    ];
    let job_families: Vec<Family<Labels, U64Gauge>> = JOB_GAUGES.iter().map(|_| Family::default()).collect();
    let mut job_ids = HashSet::new();
    for handle in &jobs {
        let snapshot = handle.snapshot();
        let (status, job_id) = (&snapshot.status, snapshot.job_id.clone());
        let job_labels: Labels = vec![("job_id".into(), job_id.clone()), ("job_name".into(), state.job_name(handle))];
        job_ids.insert(job_id);
        for (index, task) in status.tasks.iter().enumerate() {
            for (subtask, (metrics, rates)) in state.rates.subtasks(&snapshot, index).iter().enumerate() {
                let mut labels = job_labels.clone();
                labels.push(("task_id".into(), task.id.clone()));
                labels.push(("task_name".into(), task.name.clone()));
                labels.push(("subtask_index".into(), subtask.to_string()));
                for ((_, _, value), family) in VERTEX_GAUGES.iter().zip(&vertex_families) {
                    family.get_or_create(&labels).set(value(metrics, rates));
                }
            }
        }
        let last = status.last_checkpoint.as_ref();
        let uptime = if status.state.is_terminal() { 0 } else { (now_ms() - status.start_time).max(0) as u64 };
        let c = &status.checkpoints;
        let values: [u64; 8] = [
            c.completed,
            c.failed,
            c.in_progress,
            c.completed + c.failed + c.in_progress,
            last.map_or(0, |c| c.duration_ms),
            last.map_or(0, |c| c.size),
            u64::from(status.restarts),
            uptime,
        ];
        for (value, family) in values.into_iter().zip(&job_families) {
            family.get_or_create(&job_labels).set(value);
        }
    }
    state.rates.retain_jobs(&job_ids);
    for ((name, help, _), family) in VERTEX_GAUGES.iter().zip(vertex_families) {
        registry.register(format!("flink_taskmanager_job_task_{name}"), *help, family);
    }
    for ((name, help), family) in JOB_GAUGES.iter().zip(job_families) {
        registry.register(format!("flink_jobmanager_job_{name}"), *help, family);
    }
    registry
}

pub(crate) async fn metrics(Extract(state): Extract<Arc<State>>) -> Response {
    let mut body = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut body, &registry(&state));
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body).into_response()
}
