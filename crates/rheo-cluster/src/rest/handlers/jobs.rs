//! `/jobs`, `/jobs/overview`, `/jobs/:id` (details and cancel) and the job's exceptions.

use super::*;

pub(super) async fn jobs(Extract(state): Extract<Shared>) -> Answer<api::JobIdsWithStatus> {
    let jobs = state.view.jobs();
    ok(api::JobIdsWithStatus {
        jobs: jobs
            .iter()
            .map(|job| api::JobIdWithStatus { id: wire_id(&job.job_id()), status: flink_state(job.status().state) })
            .collect(),
    })
}

pub(super) async fn jobs_overview(Extract(state): Extract<Shared>) -> Answer<api::JobsOverview> {
    let now = now_ms();
    let jobs = state.view.jobs().iter().map(|job| job_overview(&state, job, now)).collect();
    ok(api::JobsOverview { jobs })
}

pub(super) fn job_overview(state: &State, job: &JobHandle, now: i64) -> api::JobOverview {
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
        jid: wire_id(&job.job_id()),
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

/// What `GET /jobs/:id/ready` answers (Rheo's, not Flink's).
#[derive(Serialize)]
pub(super) struct Readiness {
    ready: bool,
    state: api::JobState,
}

/// A readiness probe that knows the job: 200 while the job can still run or has ended well
/// (CREATED, RUNNING, RESTARTING, FINISHED, CANCELED), 503 once it has FAILED, 404 before the
/// job is submitted. The Kubernetes operator points the JobManager pod's readiness probe
/// here, so a pod whose job failed is not Ready (`/jobs/:id` answers 200 for a FAILED job).
pub(super) async fn ready(Extract(state): Extract<Shared>, Path(id): Path<String>) -> Result<Response, Error> {
    let handle = find_job(&state, &id)?;
    let job_state = handle.status().state;
    let ready = job_state != JobState::Failed;
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    Ok((code, axum::Json(Readiness { ready, state: flink_state(job_state) })).into_response())
}

pub(super) async fn job(Extract(state): Extract<Shared>, Path(id): Path<String>) -> Answer<api::JobDetails> {
    let handle = find_job(&state, &id)?;
    let JobSnapshot { job_id: jid, status, metrics, .. } = handle.snapshot();
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

    ok(api::JobDetails {
        jid: wire_id(&jid),
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
        plan: serde_json::to_value(job_plan(&jid, &name, &status)).ok(),
        pending_operators: Some(0),
    })
}

/// The I/O metrics of a vertex in `/jobs/:id` (times summed over the subtasks, in ms).
pub(super) fn vertex_metrics_summary(task: &TaskStatus, metrics: Option<&TaskMetrics>) -> api::VertexMetrics {
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
pub(super) async fn cancel(
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

pub(super) async fn exceptions(Extract(state): Extract<Shared>, Path(id): Path<String>) -> Answer<api::JobExceptions> {
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

/// The job graph as Flink's plan: vertices sinks first, each with its inputs.
pub(super) fn job_plan(jid: &str, name: &str, status: &JobStatus) -> api::JobPlan {
    let nodes = status
        .tasks
        .iter()
        .rev()
        .map(|task| api::PlanNode {
            id: task.id.clone(),
            operator: String::new(),
            parallelism: task.parallelism as u32,
            operator_strategy: String::new(),
            description: plan_description(&task.name),
            optimizer_properties: serde_json::json!({}),
            inputs: task
                .inputs
                .iter()
                .enumerate()
                .filter_map(|(num, input)| {
                    Some(api::PlanInput {
                        id: status.tasks.get(input.task)?.id.clone(),
                        num: num as u32,
                        exchange: "pipelined_bounded".into(),
                        ship_strategy: input.ship_strategy.into(),
                    })
                })
                .collect(),
        })
        .collect();
    api::JobPlan { jid: jid.into(), name: name.into(), job_type: "STREAMING".into(), nodes }
}

/// Flink's plan description of a chain `A -> B -> C`: `A<br/>+- B<br/>   +- C<br/>`.
fn plan_description(task_name: &str) -> String {
    let mut description = String::new();
    for (depth, operator) in task_name.split(" -> ").enumerate() {
        if depth > 0 {
            description.push_str(&" ".repeat(3 * (depth - 1)));
            description.push_str("+- ");
        }
        description.push_str(operator);
        description.push_str("<br/>");
    }
    description
}

/// `GET /jobs/:id/plan`.
pub(super) async fn plan(Extract(state): Extract<Shared>, Path(id): Path<String>) -> Answer<api::JobPlanInfo> {
    let handle = find_job(&state, &id)?;
    let status = handle.status();
    ok(api::JobPlanInfo { plan: job_plan(&handle.job_id(), &state.job_name(&handle), &status) })
}

/// `GET /jobs/:id/config`: the execution configuration; `user-config` holds the job's
/// `pipeline.global-job-parameters`-like settings, here every `-D` the job was given is in
/// `/jobmanager/config` instead, so it is empty.
pub(super) async fn job_config(Extract(state): Extract<Shared>, Path(id): Path<String>) -> Answer<api::JobConfigInfo> {
    let handle = find_job(&state, &id)?;
    let status = handle.status();
    let config = &state.options.config;
    let parallelism = status.tasks.iter().map(|t| t.parallelism as u32).max().unwrap_or(1);
    let restart_strategy = match config.raw(rheo_config::options::RESTART_STRATEGY.key).unwrap_or("fixed-delay") {
        "none" | "disable" | "off" => "Restart deactivated.".to_string(),
        other => format!("Restart strategy {other} (restart-strategy.type)"),
    };
    ok(api::JobConfigInfo {
        jid: handle.job_id(),
        name: state.job_name(&handle),
        execution_config: api::ExecutionConfigInfo {
            restart_strategy,
            job_parallelism: parallelism,
            object_reuse_mode: false,
            user_config: BTreeMap::new(),
        },
    })
}

/// `GET /jobs/:id/accumulators`: Rheo has no accumulators.
pub(super) async fn accumulators(
    Extract(state): Extract<Shared>,
    Path(id): Path<String>,
) -> Answer<api::JobAccumulatorsInfo> {
    find_job(&state, &id)?;
    ok(api::JobAccumulatorsInfo::default())
}

/// The job metrics `/jobs/:id/metrics` serves, by Flink's names.
const JOB_METRICS: [&str; 12] = [
    "uptime",
    "downtime",
    "numRestarts",
    "numberOfCompletedCheckpoints",
    "numberOfFailedCheckpoints",
    "numberOfInProgressCheckpoints",
    "totalNumberOfCheckpoints",
    "lastCheckpointDuration",
    "lastCheckpointSize",
    "lastCheckpointFullSize",
    "lastCompletedCheckpointId",
    "lastCheckpointExternalPath",
];

fn job_metric(name: &str, status: &JobStatus, now: i64) -> Option<String> {
    let last = status.last_checkpoint.as_ref();
    let counts = &status.checkpoints;
    let running = status.state == JobState::Running;
    Some(match name {
        "uptime" => if running { now - status.start_time } else { 0 }.to_string(),
        "downtime" => 0.to_string(),
        "numRestarts" => status.restarts.to_string(),
        "numberOfCompletedCheckpoints" => counts.completed.to_string(),
        "numberOfFailedCheckpoints" => counts.failed.to_string(),
        "numberOfInProgressCheckpoints" => counts.in_progress.to_string(),
        "totalNumberOfCheckpoints" => (counts.completed + counts.failed + counts.in_progress).to_string(),
        "lastCheckpointDuration" => last.map_or(-1, |c| c.duration_ms as i64).to_string(),
        "lastCheckpointSize" | "lastCheckpointFullSize" => last.map_or(-1, |c| c.size as i64).to_string(),
        "lastCompletedCheckpointId" => last.map_or(-1, |c| c.id as i64).to_string(),
        "lastCheckpointExternalPath" => last.map_or_else(|| "n/a".to_string(), |c| c.external_path.clone()),
        _ => return None,
    })
}

/// `GET /jobs/:id/metrics[?get=a,b]`: the job's metrics; without `get`, their ids.
pub(super) async fn job_metrics(
    Extract(state): Extract<Shared>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer<Vec<api::MetricValue>> {
    let status = find_job(&state, &id)?.status();
    let now = now_ms();
    ok(metric_values(&JOB_METRICS, query.get("get"), |name| job_metric(name, &status, now)))
}

/// A metrics answer: the ids of `known` without `get`, else the values of the names asked
/// for that exist (unknown names are left out, as Flink does).
pub(super) fn metric_values(
    known: &[&str],
    get: Option<&String>,
    value: impl Fn(&str) -> Option<String>,
) -> Vec<api::MetricValue> {
    match get {
        None => known.iter().map(|id| api::MetricValue { id: id.to_string(), value: None }).collect(),
        Some(get) => get
            .split(',')
            .map(str::trim)
            .filter_map(|name| value(name).map(|value| api::MetricValue { id: name.into(), value: Some(value) }))
            .collect(),
    }
}

/// `GET /jobs/:id/watermarks`: the lowest input watermark of each vertex that has one, as
/// `<vertex id>.currentInputWatermark`.
pub(super) async fn watermarks(
    Extract(state): Extract<Shared>,
    Path(id): Path<String>,
) -> Answer<Vec<api::MetricValue>> {
    let JobSnapshot { status, metrics, .. } = find_job(&state, &id)?.snapshot();
    ok(status
        .tasks
        .iter()
        .zip(metrics)
        .filter_map(|(task, metrics)| {
            let watermark = metrics.input_watermark?;
            Some(api::MetricValue {
                id: format!("{}.currentInputWatermark", task.id),
                value: Some(watermark.to_string()),
            })
        })
        .collect())
}

/// `GET /jobs/:id/resource-requirements`: each vertex's parallelism as bounds (Flink's
/// adaptive scheduler); Rheo runs a vertex at its upper bound.
pub(super) async fn resource_requirements(
    Extract(state): Extract<Shared>,
    Path(id): Path<String>,
) -> Answer<api::JobResourceRequirements> {
    let handle = find_job(&state, &id)?;
    let status = handle.status();
    ok(status
        .tasks
        .iter()
        .map(|task| {
            let bounds = api::ParallelismBounds { lower_bound: 1, upper_bound: task.parallelism as u32 };
            (task.id.clone(), api::VertexResourceRequirements { parallelism: bounds })
        })
        .collect())
}

/// `PUT /jobs/:id/resource-requirements`: rescale the job. Rheo's vertices share slots and
/// run at one job parallelism, so the job takes the largest upper bound given; the running
/// attempt stops with a synchronous checkpoint and resumes from it at that parallelism once
/// enough slots are registered (nothing is processed twice).
pub(super) async fn set_resource_requirements(
    Extract(state): Extract<Shared>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Response, Error> {
    let handle = find_job(&state, &id)?;
    let requirements: api::JobResourceRequirements = body(&bytes, "JobResourceRequirementsBody")?;
    let status = handle.status();
    if status.state.is_terminal() {
        return Err(Error(
            StatusCode::CONFLICT,
            format!("job {id} is {}; it cannot rescale", status.state.flink_name()),
        ));
    }
    let mut parallelism = 0;
    for (vertex, wanted) in &requirements {
        if !status.tasks.iter().any(|t| t.id.eq_ignore_ascii_case(vertex)) {
            return Err(Error(StatusCode::BAD_REQUEST, format!("No vertex with ID '{vertex}' exists.")));
        }
        let bounds = wanted.parallelism;
        if bounds.upper_bound == 0 || bounds.lower_bound > bounds.upper_bound {
            return Err(Error(
                StatusCode::BAD_REQUEST,
                format!(
                    "vertex {vertex}: parallelism bounds must have 1 <= upperBound and lowerBound <= upperBound, got \
                     lowerBound {} and upperBound {}",
                    bounds.lower_bound, bounds.upper_bound
                ),
            ));
        }
        parallelism = parallelism.max(bounds.upper_bound as usize);
    }
    let max = max_parallelism(&state) as usize;
    if parallelism == 0 {
        return Err(Error(StatusCode::BAD_REQUEST, "the requirements name no vertex".into()));
    }
    if parallelism > max {
        return Err(Error(
            StatusCode::BAD_REQUEST,
            format!("upperBound {parallelism} is above the job's max parallelism ({max}, pipeline.max-parallelism)"),
        ));
    }
    tracing::info!(job_id = %id, parallelism, "resource requirements changed (REST request)");
    handle.set_parallelism(parallelism);
    Ok(axum::Json(serde_json::json!({})).into_response())
}
