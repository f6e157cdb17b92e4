//! `GET /metrics`: the job's metrics in Prometheus text format, named as Flink's Prometheus
//! reporter names them (`flink_taskmanager_job_task_numRecordsIn`, ...). Like Flink's reporter,
//! counters are exported as gauges; task metrics are summed over the subtasks of a vertex.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::extract::State as Extract;
use axum::response::Response;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::State;
use super::handlers::text;
use crate::runtime::task::now_ms;

type Labels = Vec<(String, String)>;
type U64Gauge = Gauge<u64, AtomicU64>;

/// The registry with the current values of `state`'s job.
pub(crate) fn registry(state: &State) -> Registry {
    let status = state.handle.status();
    let job_id = state.handle.job_id();
    let job_name = state.job_name();
    let job_labels: Labels = vec![("job_id".into(), job_id.clone()), ("job_name".into(), job_name.clone())];
    let mut registry = Registry::default();

    let records_in = Family::<Labels, U64Gauge>::default();
    let records_out = Family::<Labels, U64Gauge>::default();
    for task in &status.tasks {
        let mut labels = job_labels.clone();
        labels.push(("task_id".into(), task.id.clone()));
        labels.push(("task_name".into(), task.name.clone()));
        records_in.get_or_create(&labels).set(task.records_in);
        records_out.get_or_create(&labels).set(task.records_out);
    }
    registry.register(
        "flink_taskmanager_job_task_numRecordsIn",
        "Records a task read from upstream tasks (all its subtasks)",
        records_in,
    );
    registry.register(
        "flink_taskmanager_job_task_numRecordsOut",
        "Records a source task emitted (all its subtasks)",
        records_out,
    );

    let last = status.last_checkpoint.as_ref();
    let uptime = if status.state.is_terminal() { 0 } else { (now_ms() - status.start_time).max(0) as u64 };
    let job_gauges: [(&str, &str, u64); 8] = [
        ("numberOfCompletedCheckpoints", "Checkpoints completed", status.checkpoints.completed),
        ("numberOfFailedCheckpoints", "Checkpoints failed", status.checkpoints.failed),
        ("numberOfInProgressCheckpoints", "Checkpoints in progress", status.checkpoints.in_progress),
        ("totalNumberOfCheckpoints", "Checkpoints triggered", {
            let c = &status.checkpoints;
            c.completed + c.failed + c.in_progress
        }),
        (
            "lastCheckpointDuration",
            "Milliseconds the latest completed checkpoint took",
            last.map_or(0, |c| c.duration_ms),
        ),
        ("lastCheckpointSize", "Bytes of the latest completed checkpoint", last.map_or(0, |c| c.size)),
        ("numRestarts", "Restarts of the job after task failures", u64::from(status.restarts)),
        ("uptime", "Milliseconds the job has been running", uptime),
    ];
    for (name, help, value) in job_gauges {
        let family = Family::<Labels, U64Gauge>::default();
        family.get_or_create(&job_labels).set(value);
        registry.register(format!("flink_jobmanager_job_{name}"), help, family);
    }
    registry
}

pub(crate) async fn metrics(Extract(state): Extract<Arc<State>>) -> Response {
    let mut body = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut body, &registry(&state));
    text("application/openmetrics-text; version=1.0.0; charset=utf-8", body)
}
