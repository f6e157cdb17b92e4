//! Reading a job through Flink's REST API, for the callers that realise decisions (the local
//! mode and the operator): the job graph from `GET /jobs/:id`, one sample per vertex from
//! `GET /jobs/:id/vertices/:vid/subtasks/metrics`, and the `PUT /jobs/:id/resource-requirements`
//! body that rescales the job. Behind the `rest` feature: the decision core needs none of it.

use std::collections::BTreeMap;

use rheo_rest::{
    AggregatedMetric, JobDetails, JobResourceRequirements, JobState, JobVertexSummary, ParallelismBounds,
    VertexResourceRequirements,
};

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
/// backlog summed over the subtasks, the three times averaged. A metric the answer lacks is
/// NaN, so [`crate::MetricHistory::push`] drops the sample (it could not be measured).
pub fn sample(vertex: &JobVertexSummary, metrics: &[AggregatedMetric], timestamp_ms: u64) -> MetricSample {
    let metric =
        |name: &str, sum: bool| metrics.iter().find(|m| m.id == name).and_then(|m| if sum { m.sum } else { m.avg });
    MetricSample {
        timestamp_ms,
        vertex: vertex.id.clone().into(),
        parallelism: vertex.parallelism,
        max_parallelism: vertex.max_parallelism.max(1) as u32,
        num_records_in_per_second: metric("numRecordsInPerSecond", true).unwrap_or(f64::NAN),
        num_records_out_per_second: metric("numRecordsOutPerSecond", true).unwrap_or(f64::NAN),
        busy_time_ms_per_second: metric("busyTimeMsPerSecond", false).unwrap_or(f64::NAN),
        back_pressured_time_ms_per_second: metric("backPressuredTimeMsPerSecond", false).unwrap_or(f64::NAN),
        idle_time_ms_per_second: metric("idleTimeMsPerSecond", false).unwrap_or(f64::NAN),
        pending_records: metric("pendingRecords", true),
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
