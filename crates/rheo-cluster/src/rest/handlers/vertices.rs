//! `/jobs/:id/vertices/:vid/...`: one vertex (a chain of operators) of a job.

use super::*;

/// The vertex `vid` of job `id`: its job's status and metrics (one snapshot), and its index in
/// `tasks`.
pub(super) fn find_vertex(state: &State, id: &str, vid: &str) -> Result<(JobSnapshot, usize), Error> {
    let snapshot = find_job(state, id)?.snapshot();
    let index = snapshot
        .status
        .tasks
        .iter()
        .position(|t| t.id.eq_ignore_ascii_case(vid))
        .ok_or_else(|| Error(StatusCode::NOT_FOUND, format!("No vertex with ID '{vid}' exists.")))?;
    Ok((snapshot, index))
}

/// Rounds a ratio to three decimals, as Flink shows them.
pub(super) fn ratio(value: f64) -> f64 {
    (value.clamp(0.0, 1.0) * 1000.0).round() / 1000.0
}

/// `GET /jobs/:id/vertices/:vid/backpressure`: each subtask's back pressure from the
/// back-pressured share of its time since the previous sample (Flink's
/// `backPressuredTimeMsPerSecond`); the vertex's level is its worst subtask's, as in Flink.
pub(super) async fn backpressure(
    Extract(state): Extract<Shared>,
    Path((id, vid)): Path<(String, String)>,
) -> Answer<api::JobVertexBackPressureInfo> {
    let (snapshot, index) = find_vertex(&state, &id, &vid)?;
    let per_subtask = state.rates.subtasks(&snapshot, index);
    let end_timestamp = per_subtask.iter().map(|(_, r)| r.end_timestamp).max().unwrap_or_else(now_ms);
    let subtasks: Vec<api::SubtaskBackPressureInfo> = per_subtask
        .iter()
        .enumerate()
        .map(|(subtask, (_, rates))| {
            let back_pressured = ratio(rates.back_pressured_ratio());
            let level = api::BackPressureLevel::of_ratio(back_pressured);
            api::SubtaskBackPressureInfo {
                subtask: subtask as u32,
                backpressure_level: level,
                ratio: back_pressured,
                idle_ratio: ratio(rates.idle_ratio()),
                busy_ratio: ratio(rates.busy_ratio()),
                backpressure_level_deprecated: level,
            }
        })
        .collect();
    let worst = subtasks.iter().map(|s| s.ratio).fold(0.0, f64::max);
    let level = api::BackPressureLevel::of_ratio(worst);
    ok(api::JobVertexBackPressureInfo {
        status: "ok".into(),
        backpressure_level: Some(level),
        end_timestamp: Some(end_timestamp),
        subtasks,
        backpressure_level_deprecated: Some(level),
    })
}

/// The metrics of a vertex that `/jobs/:id/vertices/:vid/metrics` serves.
pub(super) const VERTEX_METRICS: [&str; 11] = [
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
    "pendingRecords",
];

/// The value of a vertex metric as Flink prints it: doubles as Java's `Double.toString`, longs
/// as integers.
pub(super) fn vertex_metric(name: &str, metrics: &TaskMetrics, rates: &VertexRates) -> Option<String> {
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
        "pendingRecords" => metrics.pending_records.to_string(),
        _ => return None,
    })
}

/// `GET /jobs/:id/vertices/:vid/metrics[?get=a,b]`: the vertex's metrics (aggregated over its
/// subtasks, under unprefixed names); without `get`, their ids. Unknown names are left out, as
/// Flink does.
pub(super) async fn vertex_metrics(
    Extract(state): Extract<Shared>,
    Path((id, vid)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer<Vec<api::MetricValue>> {
    let (snapshot, index) = find_vertex(&state, &id, &vid)?;
    let Some(get) = query.get("get") else {
        return ok(VERTEX_METRICS.iter().map(|id| api::MetricValue { id: id.to_string(), value: None }).collect());
    };
    let metrics = snapshot.metrics.get(index).copied().unwrap_or_default();
    let rates = state.rates.job(&snapshot)[index];
    ok(get
        .split(',')
        .map(str::trim)
        .filter_map(|name| {
            vertex_metric(name, &metrics, &rates).map(|value| api::MetricValue { id: name.into(), value: Some(value) })
        })
        .collect())
}

/// A vertex and the I/O metrics of each of its subtasks.
struct VertexView {
    id: String,
    name: String,
    parallelism: u32,
    /// By subtask index.
    subtask_metrics: Vec<api::VertexMetrics>,
    state: &'static str,
    start_time: i64,
    end_time: i64,
    duration: i64,
    now: i64,
}

fn vertex_view(snapshot: &JobSnapshot, index: usize) -> VertexView {
    let status = &snapshot.status;
    let task = &status.tasks[index];
    let now = now_ms();
    let metrics = &snapshot.subtask_metrics[index];
    VertexView {
        id: task.id.clone(),
        name: task.name.clone(),
        parallelism: task.parallelism as u32,
        subtask_metrics: metrics.iter().map(subtask_io).collect(),
        state: execution_state(status.state),
        start_time: status.start_time,
        end_time: end_time(status),
        duration: duration(status, now),
        now,
    }
}

/// The I/O metrics of one subtask, as `/jobs/:id/vertices/:vid` shows them (times in ms).
fn subtask_io(metrics: &TaskMetrics) -> api::VertexMetrics {
    api::VertexMetrics {
        read_records: metrics.records_in,
        read_records_complete: true,
        write_records: metrics.records_out,
        write_records_complete: true,
        accumulated_backpressured_time: metrics.back_pressured_ns / 1_000_000,
        accumulated_idle_time: metrics.idle_ns / 1_000_000,
        accumulated_busy_time: metrics.busy_ns / 1_000_000,
        ..Default::default()
    }
}

fn location(state: &State, job_id: &str, subtask: u32) -> SubtaskLocation {
    state.view.subtask_location(job_id, subtask as usize).unwrap_or_else(|| SubtaskLocation {
        endpoint: "(unassigned)".to_string(),
        taskmanager_id: "(unassigned)".to_string(),
    })
}

fn subtask_details(
    state: &State,
    job_id: &str,
    vertex: &VertexView,
    subtask: u32,
) -> api::SubtaskExecutionAttemptDetails {
    let at = location(state, job_id, subtask);
    api::SubtaskExecutionAttemptDetails {
        subtask,
        status: vertex.state.into(),
        attempt: 1,
        endpoint: at.endpoint,
        start_time: vertex.start_time,
        end_time: vertex.end_time,
        duration: vertex.duration,
        metrics: vertex.subtask_metrics.get(subtask as usize).cloned().unwrap_or_default(),
        taskmanager_id: at.taskmanager_id,
        status_duration: status_duration(vertex.state, vertex.duration),
        start_time_deprecated: vertex.start_time,
    }
}

/// How long a subtask was in each state, with Flink's keys: the states before RUNNING take no
/// time Rheo measures (0), RUNNING the time since the attempt started, an ended state 0.
fn status_duration(state: &str, duration: i64) -> BTreeMap<String, i64> {
    let mut durations: BTreeMap<String, i64> =
        ["CREATED", "SCHEDULED", "DEPLOYING", "INITIALIZING"].into_iter().map(|s| (s.to_string(), 0)).collect();
    durations.insert(if state == "CREATED" { "CREATED" } else { "RUNNING" }.into(), duration);
    if !matches!(state, "CREATED" | "RUNNING") {
        durations.insert(state.into(), 0);
    }
    durations
}

/// Flink's `aggregated` block over the given subtasks.
fn aggregated(subtasks: &[api::SubtaskExecutionAttemptDetails]) -> api::AggregatedTaskDetails {
    let stats = |f: &dyn Fn(&api::VertexMetrics) -> u64| {
        api::AggregatedStatistics::of(&subtasks.iter().map(|s| f(&s.metrics) as i64).collect::<Vec<_>>())
    };
    let metrics = [
        ("read-records", stats(&|m| m.read_records)),
        ("write-records", stats(&|m| m.write_records)),
        ("read-bytes", stats(&|m| m.read_bytes)),
        ("write-bytes", stats(&|m| m.write_bytes)),
        ("accumulated-backpressured-time", stats(&|m| m.accumulated_backpressured_time)),
        ("accumulated-idle-time", stats(&|m| m.accumulated_idle_time)),
        ("accumulated-busy-time", stats(&|m| m.accumulated_busy_time)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut status_duration = BTreeMap::new();
    for subtask in subtasks {
        for (state, ms) in &subtask.status_duration {
            status_duration.entry(state.clone()).or_insert_with(Vec::new).push(*ms);
        }
    }
    api::AggregatedTaskDetails {
        metrics,
        status_duration: status_duration.into_iter().map(|(k, v)| (k, api::AggregatedStatistics::of(&v))).collect(),
    }
}

/// `GET /jobs/:id/vertices/:vid`.
pub(super) async fn vertex(
    Extract(state): Extract<Shared>,
    Path((id, vid)): Path<(String, String)>,
) -> Answer<api::JobVertexDetailsInfo> {
    let (snapshot, index) = find_vertex(&state, &id, &vid)?;
    let vertex = vertex_view(&snapshot, index);
    let job_id = &snapshot.job_id;
    let subtasks: Vec<_> = (0..vertex.parallelism).map(|n| subtask_details(&state, job_id, &vertex, n)).collect();
    ok(api::JobVertexDetailsInfo {
        id: vertex.id.clone(),
        name: vertex.name.clone(),
        parallelism: vertex.parallelism,
        max_parallelism: max_parallelism(&state),
        now: vertex.now,
        aggregated: aggregated(&subtasks),
        subtasks,
    })
}

/// `GET /jobs/:id/vertices/:vid/subtasks/:n` (and `.../attempts/:a`, the only attempt).
pub(super) async fn subtask(
    Extract(state): Extract<Shared>,
    Path((id, vid, n)): Path<(String, String, String)>,
) -> Answer<api::SubtaskExecutionAttemptDetails> {
    let (snapshot, index) = find_vertex(&state, &id, &vid)?;
    let vertex = vertex_view(&snapshot, index);
    let Some(n) = n.parse::<u32>().ok().filter(|&n| n < vertex.parallelism) else {
        return Err(Error(
            StatusCode::BAD_REQUEST,
            format!("Invalid subtask index '{n}' for vertex {vid} (parallelism {})", vertex.parallelism),
        ));
    };
    ok(subtask_details(&state, &snapshot.job_id, &vertex, n))
}

/// `GET /jobs/:id/vertices/:vid/subtasktimes`: when each subtask entered each state. Rheo
/// knows when the job's attempt started running: every subtask shows that.
pub(super) async fn subtask_times(
    Extract(state): Extract<Shared>,
    Path((id, vid)): Path<(String, String)>,
) -> Answer<api::SubtasksTimesInfo> {
    let (snapshot, index) = find_vertex(&state, &id, &vid)?;
    let vertex = vertex_view(&snapshot, index);
    let job_id = &snapshot.job_id;
    let subtasks = (0..vertex.parallelism)
        .map(|subtask| {
            let mut timestamps: BTreeMap<String, i64> = EXECUTION_STATES.iter().map(|s| (s.to_string(), 0)).collect();
            for s in ["CREATED", "SCHEDULED", "DEPLOYING", "INITIALIZING", "RUNNING"] {
                timestamps.insert(s.into(), vertex.start_time);
            }
            if vertex.end_time >= 0 {
                timestamps.insert(vertex.state.into(), vertex.end_time);
            }
            api::SubtaskTimesInfo {
                subtask,
                endpoint: location(&state, job_id, subtask).endpoint,
                duration: vertex.duration,
                timestamps,
            }
        })
        .collect();
    ok(api::SubtasksTimesInfo { id: vertex.id, name: vertex.name, now: vertex.now, subtasks })
}

/// `GET /jobs/:id/vertices/:vid/taskmanagers`: the vertex's subtasks grouped by TaskManager.
pub(super) async fn vertex_taskmanagers(
    Extract(state): Extract<Shared>,
    Path((id, vid)): Path<(String, String)>,
) -> Answer<api::JobVertexTaskManagersInfo> {
    let (snapshot, index) = find_vertex(&state, &id, &vid)?;
    let vertex = vertex_view(&snapshot, index);
    let job_id = &snapshot.job_id;
    let mut by_taskmanager: BTreeMap<String, Vec<api::SubtaskExecutionAttemptDetails>> = BTreeMap::new();
    for n in 0..vertex.parallelism {
        let details = subtask_details(&state, job_id, &vertex, n);
        by_taskmanager.entry(details.taskmanager_id.clone()).or_default().push(details);
    }
    let taskmanagers = by_taskmanager
        .into_iter()
        .map(|(taskmanager_id, subtasks)| {
            let sum = |f: fn(&api::VertexMetrics) -> u64| subtasks.iter().map(|s| f(&s.metrics)).sum::<u64>();
            api::TaskManagersOfVertex {
                endpoint: subtasks[0].endpoint.clone(),
                status: vertex.state.into(),
                start_time: vertex.start_time,
                end_time: vertex.end_time,
                duration: vertex.duration,
                metrics: api::VertexMetrics {
                    read_records: sum(|m| m.read_records),
                    write_records: sum(|m| m.write_records),
                    accumulated_backpressured_time: sum(|m| m.accumulated_backpressured_time),
                    accumulated_idle_time: sum(|m| m.accumulated_idle_time),
                    accumulated_busy_time: sum(|m| m.accumulated_busy_time),
                    read_records_complete: true,
                    write_records_complete: true,
                    ..Default::default()
                },
                status_counts: execution_counts(snapshot.status.state, subtasks.len() as u32),
                taskmanager_id,
                aggregated: aggregated(&subtasks),
            }
        })
        .collect();
    ok(api::JobVertexTaskManagersInfo { id: vertex.id, name: vertex.name, now: vertex.now, taskmanagers })
}

/// `GET /jobs/:id/vertices/:vid/watermarks`: `<subtask>.currentInputWatermark` of each
/// subtask. Rheo keeps the vertex's lowest input watermark, which every subtask shows; a
/// vertex without one (a source, or before the first watermark) has none, as in Flink.
pub(super) async fn watermarks(
    Extract(state): Extract<Shared>,
    Path((id, vid)): Path<(String, String)>,
) -> Answer<Vec<api::MetricValue>> {
    let (snapshot, index) = find_vertex(&state, &id, &vid)?;
    let watermark = snapshot.metrics.get(index).and_then(|m| m.input_watermark);
    ok(match watermark {
        None => Vec::new(),
        Some(w) => (0..snapshot.status.tasks[index].parallelism)
            .map(|n| api::MetricValue { id: format!("{n}.currentInputWatermark"), value: Some(w.to_string()) })
            .collect(),
    })
}

/// `GET /jobs/:id/vertices/:vid/subtasks/metrics?get=a,b[&agg=min,max,..]`: the metrics of the
/// vertex's subtasks aggregated over them (`skew` as Flink computes it: how far the maximum
/// lies above the average, in percent of the average).
pub(super) async fn subtasks_metrics(
    Extract(state): Extract<Shared>,
    Path((id, vid)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer<Vec<api::AggregatedMetric>> {
    let (snapshot, index) = find_vertex(&state, &id, &vid)?;
    let Some(get) = query.get("get") else {
        return ok(VERTEX_METRICS
            .iter()
            .map(|id| api::AggregatedMetric { id: id.to_string(), ..Default::default() })
            .collect());
    };
    let subtasks = state.rates.subtasks(&snapshot, index);
    let aggs: Vec<&str> = query.get("agg").map_or(vec!["min", "max", "avg", "sum", "skew"], |a| a.split(',').collect());
    ok(get
        .split(',')
        .map(str::trim)
        .filter_map(|name| {
            let values: Vec<f64> = subtasks
                .iter()
                .map(|(metrics, rates)| vertex_metric(name, metrics, rates)?.parse().ok())
                .collect::<Option<_>>()?;
            Some(aggregate(name, &values, &aggs))
        })
        .collect())
}

/// Flink's aggregates of one metric over subtasks; only those in `aggs`.
fn aggregate(name: &str, values: &[f64], aggs: &[&str]) -> api::AggregatedMetric {
    let n = values.len().max(1) as f64;
    let sum: f64 = values.iter().sum();
    let avg = sum / n;
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (min, max) = if values.is_empty() { (0.0, 0.0) } else { (min, max) };
    let skew = if avg > 0.0 { (max - avg) / avg * 100.0 } else { 0.0 };
    let has = |a: &str| aggs.contains(&a);
    api::AggregatedMetric {
        id: name.into(),
        min: has("min").then_some(min),
        max: has("max").then_some(max),
        avg: has("avg").then_some(avg),
        sum: has("sum").then_some(sum),
        skew: has("skew").then_some(skew),
    }
}

/// `GET /jobs/:id/vertices/:vid/subtasks/:n/metrics[?get=a,b]`: one subtask's metrics.
pub(super) async fn subtask_metrics(
    Extract(state): Extract<Shared>,
    Path((id, vid, n)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer<Vec<api::MetricValue>> {
    let (snapshot, index) = find_vertex(&state, &id, &vid)?;
    let parallelism = snapshot.status.tasks[index].parallelism;
    let Some(n) = n.parse::<usize>().ok().filter(|&n| n < parallelism) else {
        return Err(Error(
            StatusCode::BAD_REQUEST,
            format!("Invalid subtask index '{n}' for vertex {vid} (parallelism {parallelism})"),
        ));
    };
    let Some(get) = query.get("get") else {
        return ok(VERTEX_METRICS.iter().map(|id| api::MetricValue { id: id.to_string(), value: None }).collect());
    };
    let subtasks = state.rates.subtasks(&snapshot, index);
    let (metrics, rates) = &subtasks[n];
    ok(get
        .split(',')
        .map(str::trim)
        .filter_map(|name| {
            vertex_metric(name, metrics, rates).map(|value| api::MetricValue { id: name.into(), value: Some(value) })
        })
        .collect())
}
