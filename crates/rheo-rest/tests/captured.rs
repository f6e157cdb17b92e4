//! Every captured response of a real Flink 2.3 JobManager (copied from shared/flink-rest/)
//! deserializes into the rheo-rest types, and the fields the operator and CLI read survive a
//! serialize/deserialize round trip unchanged.

use rheo_rest::*;
use serde::{Serialize, de::DeserializeOwned};

fn captured(name: &str) -> String {
    let path = format!("{}/tests/flink-rest/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Parses a captured file and checks that serializing it back gives exactly the captured JSON.
fn parse_exact<T: DeserializeOwned + Serialize>(name: &str) -> T {
    let text = captured(name);
    let typed: T = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let original: serde_json::Value = serde_json::from_str(&text).unwrap();
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(back, original, "{name} does not round-trip");
    typed
}

#[test]
fn overview() {
    let o: ClusterOverview = parse_exact("overview.json");
    assert_eq!((o.taskmanagers, o.slots_total, o.slots_available, o.jobs_running), (1, 2, 0, 1));
    assert_eq!(o.flink_version, "2.3.0");
    let idle: ClusterOverview = parse_exact("overview-idle.json");
    assert_eq!(idle.slots_available, 2);
    let fin: ClusterOverview = parse_exact("overview-final.json");
    assert_eq!((fin.jobs_finished, fin.jobs_cancelled), (1, 1));
}

#[test]
fn jobs() {
    let j: JobIdsWithStatus = parse_exact("jobs.json");
    assert_eq!(j.jobs[0].id.to_string(), "6232260e7262bc211b07d58420043bd8");
    assert_eq!(j.jobs[0].status, JobState::Running);
    let idle: JobIdsWithStatus = parse_exact("jobs-idle.json");
    assert!(idle.jobs.is_empty());
}

#[test]
fn jobs_overview() {
    let o: JobsOverview = parse_exact("jobs-overview.json");
    let job = &o.jobs[0];
    assert_eq!(job.state, JobState::Running);
    assert_eq!(job.end_time, -1);
    assert_eq!((job.tasks.running, job.tasks.total), (4, 4));
    let after: JobsOverview = parse_exact("jobs-overview-after-cancel.json");
    assert_eq!(after.jobs[0].state, JobState::Canceled);
    let fin: JobsOverview = parse_exact("jobs-overview-final.json");
    let states: Vec<_> = fin.jobs.iter().map(|j| j.state).collect();
    assert_eq!(states, [JobState::Finished, JobState::Canceled]);
}

#[test]
fn job_details() {
    let j: JobDetails = parse_exact("job.json");
    assert_eq!(j.state, JobState::Running);
    assert_eq!(j.vertices.len(), 2);
    assert_eq!(j.vertices[0].name, "Source: generator -> split");
    assert_eq!(j.vertices[0].tasks["RUNNING"], 2);
    assert_eq!(j.parallelism(), Some(2));
    assert_eq!(j.timestamps["RUNNING"], 1795464455235);
    assert!(j.plan.is_some());
    let cancelled: JobDetails = parse_exact("job-after-cancel.json");
    assert_eq!(cancelled.state, JobState::Canceled);
    assert!(cancelled.state.is_terminal());
    assert_eq!(cancelled.vertices[1].metrics.read_records, 5458443);
    let finished: JobDetails = parse_exact("job-finished.json");
    assert_eq!(finished.state, JobState::Finished);
}

#[test]
fn job_checkpoints() {
    let c: CheckpointingStatistics = parse_exact("job-checkpoints.json");
    assert_eq!((c.counts.completed, c.counts.failed, c.counts.restored), (23, 2, 1));
    let completed = c.latest.completed.as_ref().expect("latest completed");
    assert_eq!(completed.id, 23);
    assert_eq!(completed.trigger_timestamp, 1795464470475);
    assert_eq!(
        completed.external_path.as_deref(),
        Some("file:/data/flink/ckpt/6232260e7262bc211b07d58420043bd8/chk-23")
    );
    assert!(c.latest.savepoint.is_none());
    let restored = c.latest.restored.as_ref().expect("restored");
    assert_eq!(restored.id, 8);
    assert!(!restored.is_savepoint);
    assert_eq!(c.summary["end_to_end_duration"]["max"].as_f64(), Some(656.0));
}

#[test]
fn error_body() {
    let e: ErrorResponse = parse_exact("error-404-unknown-job.json");
    assert_eq!(
        e.summary(),
        "org.apache.flink.runtime.rest.NotFoundException: Job 00000000000000000000000000000000 not found"
    );
}

#[test]
fn savepoint_operation_shapes() {
    let req =
        serde_json::to_value(SavepointTriggerRequest { target_directory: Some("s3://b/sp".into()), cancel_job: false })
            .unwrap();
    assert_eq!(req, serde_json::json!({"target-directory": "s3://b/sp", "cancel-job": false}));
    let stop =
        serde_json::to_value(StopWithSavepointRequest { target_directory: Some("s3://b/sp".into()), drain: false })
            .unwrap();
    assert_eq!(stop, serde_json::json!({"targetDirectory": "s3://b/sp", "drain": false}));

    let trig: TriggerResponse = serde_json::from_str(r#"{"request-id":"abc"}"#).unwrap();
    assert_eq!(trig.request_id, "abc");
    let running: AsynchronousOperationResult = serde_json::from_str(r#"{"status":{"id":"IN_PROGRESS"}}"#).unwrap();
    assert_eq!(running.status.id, QueueStatusId::InProgress);
    assert!(running.operation.is_none());
    let done: AsynchronousOperationResult = serde_json::from_str(
        r#"{"status":{"id":"COMPLETED"},"operation":{"location":"s3://b/sp/savepoint-623226-0123456789ab"}}"#,
    )
    .unwrap();
    assert_eq!(done.operation.unwrap().location.as_deref(), Some("s3://b/sp/savepoint-623226-0123456789ab"));
    let failed: AsynchronousOperationResult = serde_json::from_str(
        r#"{"status":{"id":"COMPLETED"},"operation":{"failure-cause":{"class":"java.util.concurrent.CompletionException","stack-trace":"CheckpointException: Checkpoint expired\n\tat x"}}}"#,
    )
    .unwrap();
    assert_eq!(failed.operation.unwrap().failure_message().as_deref(), Some("CheckpointException: Checkpoint expired"));
}

#[test]
fn dashboard_config() {
    let c: DashboardConfiguration = parse_exact("config.json");
    assert_eq!(c.flink_version, "2.3.0");
    assert_eq!(c.refresh_interval, 3000);
    assert!(c.features.web_cancel && !c.features.web_history);
}

#[test]
fn checkpoint_config() {
    let c: CheckpointConfigInfo = parse_exact("job-checkpoints-config.json");
    assert_eq!((c.mode.as_str(), c.interval, c.timeout, c.max_concurrent), ("exactly_once", 1000, 600000, 1));
    assert!(!c.externalization.enabled && c.externalization.delete_on_cancellation);
    assert_eq!(c.checkpoint_storage, "FileSystemCheckpointStorage");
}

#[test]
fn job_exceptions() {
    let e: JobExceptions = parse_exact("job-exceptions.json");
    let entry = &e.exception_history.entries[0];
    assert_eq!(entry.exception_name, "java.lang.RuntimeException");
    assert!(entry.stacktrace.starts_with("java.lang.RuntimeException: FlinkBench injected failure"));
    assert_eq!(entry.task_name.as_deref(), Some("Source: generator -> split (1/2) - execution #0"));
    assert!(entry.concurrent_exceptions.is_empty());
    let none: JobExceptions = parse_exact("job-finished-exceptions.json");
    assert!(none.exception_history.entries.is_empty() && !none.exception_history.truncated);
}

/// [`parse_exact`] for types with floating-point fields, where Flink writes `2` and serde `2.0`:
/// numbers compare by value.
fn parse_numeric<T: DeserializeOwned + Serialize>(name: &str) -> T {
    fn numbers_as_f64(value: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match value {
            Value::Number(n) => serde_json::json!(n.as_f64().unwrap()),
            Value::Array(items) => Value::Array(items.into_iter().map(numbers_as_f64).collect()),
            Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, numbers_as_f64(v))).collect()),
            other => other,
        }
    }
    let text = captured(name);
    let typed: T = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let original = numbers_as_f64(serde_json::from_str(&text).unwrap());
    let back = numbers_as_f64(serde_json::to_value(&typed).unwrap());
    assert_eq!(back, original, "{name} does not round-trip");
    typed
}

#[test]
fn taskmanagers() {
    let t: TaskManagersInfo = parse_numeric("taskmanagers.json");
    let tm = &t.taskmanagers[0];
    assert_eq!(tm.id, "localhost:34155-58c331");
    assert_eq!((tm.data_port, tm.slots_number, tm.free_slots), (44273, 2, 2));
    assert_eq!(tm.total_resource.cpu_cores, 2.0);
    assert_eq!(tm.hardware.physical_memory, 25276502016);
}

#[test]
fn jobmanager_config() {
    let c: Vec<ConfigurationEntry> = parse_exact("jobmanager-config.json");
    assert!(c.iter().any(|e| e.key == "taskmanager.numberOfTaskSlots" && e.value == "2"));
}

#[test]
fn backpressure() {
    let b: JobVertexBackPressureInfo = parse_numeric("vertex0-backpressure.json");
    assert_eq!(b.status, "ok");
    assert_eq!(b.backpressure_level, Some(BackPressureLevel::Ok));
    assert_eq!(b.subtasks.len(), 2);
    assert_eq!(b.subtasks[0].ratio, 0.027);
    let _: JobVertexBackPressureInfo = parse_numeric("vertex1-backpressure.json");
    assert_eq!(BackPressureLevel::of_ratio(0.1), BackPressureLevel::Ok);
    assert_eq!(BackPressureLevel::of_ratio(0.11), BackPressureLevel::Low);
    assert_eq!(BackPressureLevel::of_ratio(0.5), BackPressureLevel::Low);
    assert_eq!(BackPressureLevel::of_ratio(0.51), BackPressureLevel::High);
}

#[test]
fn vertex_metrics() {
    let values: Vec<MetricValue> = parse_exact("vertex0-metrics-values.json");
    let busy = values.iter().find(|m| m.id == "0.busyTimeMsPerSecond").unwrap();
    assert_eq!(busy.value.as_deref(), Some("344.0"));
    let list: Vec<MetricValue> = parse_exact("vertex0-metrics-list.json");
    assert!(list.iter().all(|m| m.value.is_none()));
}

#[test]
fn jars() {
    let jars: JarListInfo = parse_exact("jars.json");
    assert_eq!(jars.files[0].name, "flinkbench.jar");
    let run: JarRunResponse = parse_exact("jars-run.json");
    assert_eq!(run.jobid.to_string(), "7c58db1e492a70a462ecc572490b5a77");
    let request: JarRunRequest = serde_json::from_str(
        r#"{"entryClass":"word-count","programArgsList":["--input","x"],"parallelism":2,"savepointPath":"/sp","allowNonRestoredState":true,"jobId":"7c58db1e492a70a462ecc572490b5a77"}"#,
    )
    .unwrap();
    assert_eq!(request.entry_class.as_deref(), Some("word-count"));
    assert_eq!(request.program_args_list.as_deref(), Some(&["--input".to_string(), "x".to_string()][..]));
    assert_eq!((request.parallelism, request.allow_non_restored_state), (Some(2), Some(true)));
}

#[test]
fn web_ui_endpoints() {
    let plan: JobPlanInfo = parse_exact("job-plan.json");
    assert_eq!(plan.plan.nodes[0].inputs[0].ship_strategy, "HASH");
    assert!(plan.plan.nodes[1].inputs.is_empty());
    let config: JobConfigInfo = parse_exact("job-config.json");
    assert_eq!(config.execution_config.job_parallelism, 2);
    let _: JobAccumulatorsInfo = parse_exact("job-accumulators.json");
    let vertex: JobVertexDetailsInfo = parse_exact("vertex0.json");
    assert_eq!(vertex.subtasks[1].metrics.write_records, 1213816);
    assert_eq!(vertex.aggregated.metrics["write-records"].sum, 2445776);
    let subtask: SubtaskExecutionAttemptDetails = parse_exact("vertex0-subtask0.json");
    assert_eq!(subtask.start_time_deprecated, subtask.start_time);
    let times: SubtasksTimesInfo = parse_exact("vertex0-subtasktimes.json");
    assert_eq!(times.subtasks[0].timestamps["RUNNING"], 1795464455474);
    let tms: JobVertexTaskManagersInfo = parse_exact("vertex0-taskmanagers.json");
    assert_eq!(tms.taskmanagers[0].status_counts["RUNNING"], 2);
    let metrics: Vec<AggregatedMetric> = parse_numeric("vertex0-subtasks-metrics.json");
    assert_eq!(metrics[1].sum, Some(2445776.0));
    let watermarks: Vec<MetricValue> = parse_exact("vertex1-watermarks.json");
    assert_eq!(watermarks[0].id, "0.currentInputWatermark");
    let tm: TaskManagerDetailsInfo = parse_exact("taskmanager-detail.json");
    assert_eq!(tm.info.slots_number, 2);
    let env: EnvironmentInfo = parse_exact("jobmanager-environment.json");
    assert!(!env.classpath.is_empty());
    let list: Vec<MetricValue> = parse_exact("job-metrics-list.json");
    assert!(list.iter().any(|m| m.id == "lastCheckpointDuration"));
    let values: Vec<MetricValue> = parse_exact("job-metrics-values.json");
    assert!(values.iter().all(|m| m.value.is_some()));
    let list: Vec<MetricValue> = parse_exact("jobmanager-metrics-list.json");
    assert!(list.iter().any(|m| m.id == "taskSlotsTotal"));
    let values: Vec<MetricValue> = parse_exact("taskmanager-metrics-values.json");
    assert!(values.iter().all(|m| m.value.is_some()));
    let _: JobAccumulatorsInfo = parse_exact("job-finished-accumulators.json");
    let _: Vec<MetricValue> = parse_exact("vertex0-watermarks.json");
    // Flink counts records out of a vertex as what its chain sends downstream: none for the
    // vertex that ends in the sink.
    let window: JobVertexDetailsInfo = parse_exact("vertex1.json");
    assert_eq!(window.aggregated.metrics["write-records"].sum, 0, "a vertex ending in a sink sends nothing");
    let _: SubtasksTimesInfo = parse_exact("vertex1-subtasktimes.json");
    let _: JobVertexTaskManagersInfo = parse_exact("vertex1-taskmanagers.json");
    let metrics: Vec<AggregatedMetric> = parse_numeric("vertex1-subtasks-metrics.json");
    assert_eq!(metrics[1].sum, Some(0.0), "numRecordsOut of the sink's vertex");
}

#[test]
fn aggregated_statistics_interpolate_percentiles_as_flink() {
    let s = AggregatedStatistics::of(&[1213816, 1231960]);
    assert_eq!(
        (s.min, s.p25, s.median, s.avg, s.p75, s.max, s.sum),
        (1213816, 1213816, 1222888, 1222888, 1231960, 1231960, 2445776)
    );
}
