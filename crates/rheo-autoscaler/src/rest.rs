//! Reading a job through Flink's REST API, for the callers that realise decisions (the local
//! mode and the operator): the job graph from `GET /jobs/:id`, one sample per vertex from
//! `GET /jobs/:id/vertices/:vid/subtasks/metrics`, and the `PUT /jobs/:id/resource-requirements`
//! body that rescales the job. Behind the `rest` feature: the decision core needs none of it.

use std::collections::BTreeMap;

use rheo_rest::{
    AggregatedMetric, JobDetails, JobResourceRequirements, JobState, JobVertexSummary, ParallelismBounds,
    VertexResourceRequirements,
};

use crate::BusyTimeAggregator;
use crate::metrics::{MetricSample, Topology};

/// The metrics a sample reads, under Flink's names.
pub const METRICS: [&str; 6] = [
    "numRecordsInPerSecond",
    "numRecordsOutPerSecond",
    "busyTimeMsPerSecond",
    "backPressuredTimeMsPerSecond",
    "idleTimeMsPerSecond",
    "pendingRecords",
];

/// One vertex's sample at `timestamp_ms` from its subtasks' aggregated metrics: rates and the
/// backlog summed over the subtasks, busy time aggregated as `busy_time` says
/// (`job.autoscaler.metrics.busy-time.aggregator`, the busiest subtask's by default), the
/// back-pressured and idle times averaged. A metric the answer lacks is NaN, so
/// [`crate::MetricHistory::push`] drops the sample (it could not be measured).
pub fn sample(
    vertex: &JobVertexSummary,
    metrics: &[AggregatedMetric],
    timestamp_ms: u64,
    busy_time: BusyTimeAggregator,
) -> MetricSample {
    let find = |name: &str| metrics.iter().find(|m| m.id == name);
    let sum = |name: &str| find(name).and_then(|m| m.sum);
    let avg = |name: &str| find(name).and_then(|m| m.avg);
    let busy = find("busyTimeMsPerSecond").and_then(|m| busy_time.pick(m.min, m.avg, m.max));
    MetricSample {
        timestamp_ms,
        vertex: vertex.id.clone().into(),
        parallelism: vertex.parallelism,
        max_parallelism: vertex.max_parallelism.max(1) as u32,
        num_records_in_per_second: sum("numRecordsInPerSecond").unwrap_or(f64::NAN),
        num_records_out_per_second: sum("numRecordsOutPerSecond").unwrap_or(f64::NAN),
        busy_time_ms_per_second: busy.unwrap_or(f64::NAN),
        back_pressured_time_ms_per_second: avg("backPressuredTimeMsPerSecond").unwrap_or(f64::NAN),
        idle_time_ms_per_second: avg("idleTimeMsPerSecond").unwrap_or(f64::NAN),
        pending_records: sum("pendingRecords"),
    }
}

/// Every subtask of every vertex is running: only then are the metrics the job's own (not a
/// deployment's or a restart's).
pub fn is_running(job: &JobDetails) -> bool {
    job.state == JobState::Running
        && !job.vertices.is_empty()
        && job.vertices.iter().all(|v| v.tasks.get("RUNNING").copied().unwrap_or(0) == v.parallelism)
}

/// The job graph from `GET /jobs/:id`'s plan (`nodes[].inputs[].id`); a vertex the plan does
/// not describe reads the vertex listed before it.
pub fn topology(job: &JobDetails) -> Topology {
    let inputs: BTreeMap<String, Vec<String>> = job
        .plan
        .as_ref()
        .and_then(|plan| plan.get("nodes"))
        .and_then(|nodes| nodes.as_array())
        .map(|nodes| {
            nodes
                .iter()
                .filter_map(|node| {
                    let id = node.get("id")?.as_str()?.to_string();
                    let inputs = node
                        .get("inputs")
                        .and_then(|i| i.as_array())
                        .map(|i| i.iter().filter_map(|i| Some(i.get("id")?.as_str()?.to_string())).collect())
                        .unwrap_or_default();
                    Some((id, inputs))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut topology = Topology::new();
    for (k, vertex) in job.vertices.iter().enumerate() {
        let upstream: Vec<String> = match inputs.get(&vertex.id) {
            Some(inputs) => inputs.clone(),
            None if k == 0 => Vec::new(),
            None => vec![job.vertices[k - 1].id.clone()],
        };
        topology = if upstream.is_empty() {
            topology.source(vertex.id.as_str())
        } else {
            let upstream: Vec<&str> = upstream.iter().map(String::as_str).collect();
            topology.vertex(vertex.id.as_str(), &upstream)
        };
    }
    topology
}

/// The body of `PUT /jobs/:id/resource-requirements` that runs every vertex at `parallelism`.
/// Rheo's vertices share slots and run at one job parallelism (the largest upper bound).
pub fn requirements(job: &JobDetails, parallelism: u32) -> JobResourceRequirements {
    job.vertices
        .iter()
        .map(|v| {
            let bounds = ParallelismBounds { lower_bound: 1, upper_bound: parallelism };
            (v.id.clone(), VertexResourceRequirements { parallelism: bounds })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vertex() -> JobVertexSummary {
        serde_json::from_value(serde_json::json!({
            "id": "map", "name": "Map", "maxParallelism": 128, "parallelism": 4, "status": "RUNNING",
            "start-time": 0, "end-time": -1, "duration": 0, "tasks": {"RUNNING": 4},
            "metrics": serde_json::to_value(rheo_rest::VertexMetrics::default()).unwrap()
        }))
        .expect("a vertex")
    }

    fn metric(id: &str, min: f64, max: f64, avg: f64, sum: f64) -> AggregatedMetric {
        AggregatedMetric { id: id.into(), min: Some(min), max: Some(max), avg: Some(avg), sum: Some(sum), skew: None }
    }

    /// Four subtasks, one saturated by a hot key (1000 ms/s busy), three at 100 ms/s.
    fn skewed() -> Vec<AggregatedMetric> {
        vec![
            metric("numRecordsInPerSecond", 100.0, 1_000.0, 325.0, 1_300.0),
            metric("numRecordsOutPerSecond", 100.0, 1_000.0, 325.0, 1_300.0),
            metric("busyTimeMsPerSecond", 100.0, 1_000.0, 325.0, 1_300.0),
            metric("backPressuredTimeMsPerSecond", 0.0, 0.0, 0.0, 0.0),
            metric("idleTimeMsPerSecond", 0.0, 900.0, 675.0, 2_700.0),
        ]
    }

    #[test]
    fn busy_time_is_the_busiest_subtasks_by_default() {
        let s = sample(&vertex(), &skewed(), 7, BusyTimeAggregator::default());
        assert_eq!((s.timestamp_ms, s.parallelism, s.max_parallelism), (7, 4, 128));
        assert_eq!(s.busy_time_ms_per_second, 1_000.0);
        assert_eq!(s.num_records_in_per_second, 1_300.0);
        assert_eq!(s.idle_time_ms_per_second, 675.0);
        assert_eq!(s.pending_records, None);
        assert_eq!(sample(&vertex(), &skewed(), 7, BusyTimeAggregator::Avg).busy_time_ms_per_second, 325.0);
        assert_eq!(sample(&vertex(), &skewed(), 7, BusyTimeAggregator::Min).busy_time_ms_per_second, 100.0);
    }

    #[test]
    fn a_missing_aggregate_makes_the_sample_unmeasured() {
        let mut metrics = skewed();
        metrics[2].max = None;
        assert!(sample(&vertex(), &metrics, 7, BusyTimeAggregator::Max).busy_time_ms_per_second.is_nan());
        assert_eq!(sample(&vertex(), &metrics, 7, BusyTimeAggregator::Avg).busy_time_ms_per_second, 325.0);
    }
}
