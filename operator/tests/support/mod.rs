//! Test doubles for the reconciler: a fake Kubernetes API server behind kube's `Client`
//! (through `tower-test`'s mock service) and a scripted JobManager. Both record every request,
//! so scenarios assert exactly what the reconciler asked for.

// Shared by several test crates; each uses a part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use http::{Request, Response, StatusCode};
use jiff::Timestamp;
use kube::Client;
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use rheo_operator::crd::FlinkJob;
use rheo_operator::jobmanager::{JmError, JmResult, JobManagerApi};
use rheo_operator::reconcile::{self, Context, Error};
use rheo_rest::*;
use serde_json::{Value, json};

pub const NS: &str = "streams";
pub const NAME: &str = "wc";
pub const UID: &str = "6232260e-7262-bc21-1b07-d58420043bd8";
/// The job id of epoch 0 (the uid without dashes), and of epochs 1 and 2.
pub const JOB0: &str = "6232260e7262bc211b07d58420043bd8";
pub const JOB1: &str = "6232260e7262bc211b07d58420043bd9";
pub const JOB2: &str = "6232260e7262bc211b07d58420043bda";
pub const FJ_PATH: &str = "/apis/rheo.io/v1alpha1/namespaces/streams/flinkjobs/wc";

pub fn now() -> Timestamp {
    "2026-11-23T12:00:00Z".parse().unwrap()
}

/// One request to the fake API server.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub content_type: String,
    pub body: Value,
}

impl Call {
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// A fake API server: an object store keyed by path, answering GET, POST, PATCH (server-side
/// apply, JSON patch, merge patch) the way the reconciler needs.
#[derive(Default)]
pub struct FakeApi {
    pub objects: Mutex<BTreeMap<String, Value>>,
    pub calls: Mutex<Vec<Call>>,
    /// Paths whose writes the server refuses, with the status code and message.
    pub refuse: Mutex<BTreeMap<String, (u16, String)>>,
}

fn not_found() -> (StatusCode, Value) {
    (
        StatusCode::NOT_FOUND,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found", "metadata": {}}),
    )
}

impl FakeApi {
    fn handle(&self, call: &Call) -> (StatusCode, Value) {
        let mut objects = self.objects.lock().unwrap();
        let (path, status_sub) = match call.path.strip_suffix("/status") {
            Some(p) => (p.to_string(), true),
            None => (call.path.clone(), false),
        };
        if let Some((code, message)) = self.refuse.lock().unwrap().get(&path)
            && call.method != "GET"
        {
            return (
                StatusCode::from_u16(*code).unwrap(),
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Invalid", "code": code, "message": message, "metadata": {}}),
            );
        }
        match call.method.as_str() {
            // A collection: every object stored under it (label selectors are not applied).
            "GET" if path.ends_with("/pods") => {
                let prefix = format!("{path}/");
                let items: Vec<Value> =
                    objects.iter().filter(|(k, _)| k.starts_with(&prefix)).map(|(_, v)| v.clone()).collect();
                (StatusCode::OK, json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}))
            }
            "GET" => objects.get(&path).cloned().map(|o| (StatusCode::OK, o)).unwrap_or_else(not_found),
            "POST" => {
                let name = call.body["metadata"]["name"].as_str().unwrap_or("x").to_string();
                let mut obj = call.body.clone();
                obj["metadata"]["resourceVersion"] = json!("1");
                objects.insert(format!("{path}/{name}"), obj.clone());
                (StatusCode::CREATED, obj)
            }
            // A replace, with the API server's optimistic concurrency on resourceVersion.
            "PUT" => {
                let Some(existing) = objects.get(&path) else { return not_found() };
                let stored = existing["metadata"]["resourceVersion"].as_str().unwrap_or("0").to_string();
                if call.body["metadata"]["resourceVersion"].as_str().is_some_and(|v| v != stored) {
                    return (
                        StatusCode::CONFLICT,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409, "message": "the object has been modified", "metadata": {}}),
                    );
                }
                let mut obj = call.body.clone();
                obj["metadata"]["resourceVersion"] = json!((stored.parse::<u64>().unwrap_or(0) + 1).to_string());
                objects.insert(path, obj.clone());
                (StatusCode::OK, obj)
            }
            "PATCH" if call.content_type.contains("apply-patch") => {
                if status_sub {
                    let Some(obj) = objects.get_mut(&path) else { return not_found() };
                    obj["status"] = call.body["status"].clone();
                    (StatusCode::OK, obj.clone())
                } else {
                    let mut obj = call.body.clone();
                    if let Some(existing) = objects.get(&path)
                        && let Some(s) = existing.get("status")
                    {
                        obj["status"] = s.clone();
                    }
                    objects.insert(path, obj.clone());
                    (StatusCode::OK, obj)
                }
            }
            "PATCH" if call.content_type.contains("json-patch") => {
                let Some(obj) = objects.get_mut(&path) else { return not_found() };
                for op in call.body.as_array().unwrap() {
                    let p = op["path"].as_str().unwrap();
                    match (op["op"].as_str().unwrap(), p) {
                        ("add", "/metadata/finalizers") => obj["metadata"]["finalizers"] = op["value"].clone(),
                        ("add", "/metadata/finalizers/-") => {
                            obj["metadata"]["finalizers"].as_array_mut().unwrap().push(op["value"].clone())
                        }
                        ("remove", p) if p.starts_with("/metadata/finalizers/") => {
                            let i: usize = p.rsplit('/').next().unwrap().parse().unwrap();
                            obj["metadata"]["finalizers"].as_array_mut().unwrap().remove(i);
                        }
                        _ => {}
                    }
                }
                (StatusCode::OK, obj.clone())
            }
            // The scale subresource (`kubectl scale`, an HPA, Rheo's autoscaler): a merge patch
            // of `spec.replicas`, stored at the spec path the CRD names.
            "PATCH" if path.ends_with("/scale") => {
                let Some(obj) = objects.get_mut(path.trim_end_matches("/scale")) else { return not_found() };
                let replicas = call.body["spec"]["replicas"].clone();
                obj["spec"]["taskManager"]["replicas"] = replicas.clone();
                let g = obj["metadata"]["generation"].as_i64().unwrap_or(1);
                obj["metadata"]["generation"] = json!(g + 1);
                let scale = json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
                    "metadata": {"name": obj["metadata"]["name"], "namespace": obj["metadata"]["namespace"]},
                    "spec": {"replicas": replicas},
                    "status": {"replicas": obj["status"]["taskManager"]["replicas"].as_i64().unwrap_or(0)}});
                (StatusCode::OK, scale)
            }
            "PATCH" => (StatusCode::OK, call.body.clone()),
            _ => (StatusCode::METHOD_NOT_ALLOWED, json!({})),
        }
    }
}

/// The scripted JobManager.
pub struct FakeJm {
    pub calls: Mutex<Vec<String>>,
    /// `None`: the JobManager does not know the job; `Some(Err)`: it cannot be reached.
    pub job_state: Mutex<Option<Result<JobState, JmError>>>,
    /// Path and ack time (ms) of the newest completed checkpoint.
    pub checkpoint: Mutex<Option<(String, i64)>>,
    /// `None`: the savepoint is in progress; `Some(Ok(path))` / `Some(Err(cause))`: done.
    pub savepoint: Mutex<Option<Result<String, String>>>,
    /// The job's failures as `/jobs/:id/exceptions` lists them (stack trace, task), newest first.
    pub exceptions: Mutex<Vec<(String, Option<String>)>>,
    /// `None`: a triggered checkpoint is in progress; `Some(Ok(id))` / `Some(Err(cause))`: done.
    pub triggered_checkpoint: Mutex<Option<Result<u64, String>>>,
    /// Why a disposal fails, if it does.
    pub disposal_failure: Mutex<Option<String>>,
    /// The JobManager answers 404 for every savepoint trigger (it restarted, or the result is gone).
    pub forgets_triggers: Mutex<bool>,
    /// The newest savepoint in `/jobs/:id/checkpoints` (`latest.savepoint`), if any.
    pub stats_savepoint: Mutex<Option<String>>,
    /// Why `POST /snapshots/validation` finds a path unrestorable, by path (others are fine).
    pub unrestorable: Mutex<BTreeMap<String, String>>,
    /// A job with vertices and metrics, for the autoscaler; `None`: a job with no vertices.
    pub scripted: Mutex<Option<ScriptedJob>>,
}

/// The running job as the autoscaler sees it, set by the scenario step by step.
#[derive(Clone, Debug, Default)]
pub struct ScriptedJob {
    /// (id, name) of each vertex, in topological order: each reads the one before it.
    pub vertices: Vec<(String, String)>,
    /// The parallelism every vertex runs at.
    pub parallelism: u32,
    /// Every subtask runs (false while the job redeploys).
    pub running: bool,
    /// TaskManagers registered with the JobManager, and their slots.
    pub taskmanagers: u32,
    pub slots: u32,
    /// `/jobs/:id/vertices/:vid/subtasks/metrics` per vertex id: (metric, sum, avg).
    pub metrics: BTreeMap<String, Vec<(String, f64, f64)>>,
    /// The parallelism of the newest `PUT /jobs/:id/resource-requirements`.
    pub requested: Option<u32>,
}

impl Default for FakeJm {
    fn default() -> Self {
        FakeJm {
            calls: Mutex::default(),
            job_state: Mutex::new(Some(Ok(JobState::Running))),
            checkpoint: Mutex::default(),
            savepoint: Mutex::default(),
            exceptions: Mutex::default(),
            triggered_checkpoint: Mutex::default(),
            disposal_failure: Mutex::default(),
            unrestorable: Mutex::default(),
            forgets_triggers: Mutex::default(),
            stats_savepoint: Mutex::default(),
            scripted: Mutex::default(),
        }
    }
}

impl FakeJm {
    fn record(&self, line: String) {
        self.calls.lock().unwrap().push(line);
    }
    fn reachable(&self) -> JmResult<()> {
        match &*self.job_state.lock().unwrap() {
            Some(Err(e)) => Err(e.clone()),
            _ => Ok(()),
        }
    }
    pub fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

fn checkpoint_stats(path: &str, ack: i64) -> CheckpointStatistics {
    serde_json::from_value(json!({
        "className": "completed", "id": 7, "status": "COMPLETED", "is_savepoint": false, "savepointFormat": null,
        "trigger_timestamp": ack - 100, "latest_ack_timestamp": ack, "checkpointed_size": 1, "state_size": 1,
        "end_to_end_duration": 100, "alignment_buffered": 0, "processed_data": 0, "persisted_data": 0,
        "num_subtasks": 2, "num_acknowledged_subtasks": 2, "checkpoint_type": "CHECKPOINT", "tasks": {},
        "external_path": path, "discarded": false
    }))
    .unwrap()
}

impl JobManagerApi for FakeJm {
    fn job<'a>(&'a self, _base: &'a str, job_id: &'a str) -> BoxFuture<'a, JmResult<JobDetails>> {
        Box::pin(async move {
            self.record(format!("GET /jobs/{job_id}"));
            let state = match self.job_state.lock().unwrap().clone() {
                None => return Err(JmError::NotFound(format!("Job {job_id} not found"))),
                Some(s) => s?,
            };
            let scripted = self.scripted.lock().unwrap().clone().unwrap_or_default();
            let vertices = scripted
                .vertices
                .iter()
                .map(|(id, name)| JobVertexSummary {
                    id: id.clone(),
                    slot_sharing_group_id: None,
                    name: name.clone(),
                    max_parallelism: 128,
                    parallelism: scripted.parallelism,
                    status: "RUNNING".into(),
                    start_time: 0,
                    end_time: -1,
                    duration: 1,
                    tasks: [("RUNNING".to_string(), if scripted.running { scripted.parallelism } else { 0 })].into(),
                    metrics: Default::default(),
                })
                .collect();
            Ok(JobDetails {
                jid: job_id.parse().expect("the operator asks for job ids"),
                application_id: None,
                name: "word-count".into(),
                is_stoppable: false,
                state,
                job_type: Some("STREAMING".into()),
                scheduler_type: None,
                start_time: 0,
                end_time: -1,
                duration: 1,
                max_parallelism: -1,
                now: 1,
                timestamps: BTreeMap::new(),
                vertices,
                status_counts: BTreeMap::new(),
                plan: None,
                pending_operators: None,
            })
        })
    }
    fn checkpoints<'a>(&'a self, _base: &'a str, job_id: &'a str) -> BoxFuture<'a, JmResult<CheckpointingStatistics>> {
        Box::pin(async move {
            self.record(format!("GET /jobs/{job_id}/checkpoints"));
            self.reachable()?;
            let completed = self.checkpoint.lock().unwrap().clone().map(|(p, t)| checkpoint_stats(&p, t));
            let savepoint =
                self.stats_savepoint.lock().unwrap().clone().map(|p| checkpoint_stats(&p, 1_795_464_470_622));
            Ok(CheckpointingStatistics {
                counts: CheckpointCounts::default(),
                summary: BTreeMap::new(),
                latest: LatestCheckpoints { completed, savepoint, ..Default::default() },
                history: vec![],
            })
        })
    }
    fn exceptions<'a>(&'a self, _base: &'a str, job_id: &'a str) -> BoxFuture<'a, JmResult<JobExceptions>> {
        Box::pin(async move {
            self.record(format!("GET /jobs/{job_id}/exceptions"));
            self.reachable()?;
            let entries: Vec<Value> = self
                .exceptions
                .lock()
                .unwrap()
                .iter()
                .enumerate()
                .map(|(i, (trace, task))| {
                    json!({"exceptionName": trace.lines().next().unwrap_or_default(), "stacktrace": trace,
                           "timestamp": 1_795_464_470_000i64 - i as i64, "taskName": task})
                })
                .collect();
            Ok(serde_json::from_value(json!({"exceptionHistory": {"entries": entries, "truncated": false}})).unwrap())
        })
    }
    fn trigger_savepoint<'a>(
        &'a self,
        _base: &'a str,
        job_id: &'a str,
        request: SavepointTriggerRequest,
    ) -> BoxFuture<'a, JmResult<TriggerResponse>> {
        Box::pin(async move {
            self.record(format!("POST /jobs/{job_id}/savepoints {}", serde_json::to_string(&request).unwrap()));
            self.reachable()?;
            Ok(TriggerResponse { request_id: "trigger-1".into() })
        })
    }
    fn stop_with_savepoint<'a>(
        &'a self,
        _base: &'a str,
        job_id: &'a str,
        request: StopWithSavepointRequest,
    ) -> BoxFuture<'a, JmResult<TriggerResponse>> {
        Box::pin(async move {
            self.record(format!("POST /jobs/{job_id}/stop {}", serde_json::to_string(&request).unwrap()));
            self.reachable()?;
            Ok(TriggerResponse { request_id: "stop-1".into() })
        })
    }
    fn savepoint_status<'a>(
        &'a self,
        _base: &'a str,
        job_id: &'a str,
        trigger_id: &'a str,
    ) -> BoxFuture<'a, JmResult<AsynchronousOperationResult>> {
        Box::pin(async move {
            self.record(format!("GET /jobs/{job_id}/savepoints/{trigger_id}"));
            self.reachable()?;
            if *self.forgets_triggers.lock().unwrap() {
                return Err(JmError::NotFound(format!("no savepoint with triggerId={trigger_id}")));
            }
            let v = match self.savepoint.lock().unwrap().clone() {
                None => json!({"status": {"id": "IN_PROGRESS"}}),
                Some(Ok(loc)) => json!({"status": {"id": "COMPLETED"}, "operation": {"location": loc}}),
                Some(Err(cause)) => {
                    json!({"status": {"id": "COMPLETED"}, "operation": {"failure-cause": {"stack-trace": cause}}})
                }
            };
            Ok(serde_json::from_value(v).unwrap())
        })
    }
    fn cancel<'a>(&'a self, _base: &'a str, job_id: &'a str) -> BoxFuture<'a, JmResult<()>> {
        Box::pin(async move {
            self.record(format!("PATCH /jobs/{job_id}?mode=cancel"));
            self.reachable()
        })
    }
    fn trigger_checkpoint<'a>(
        &'a self,
        _base: &'a str,
        job_id: &'a str,
        request: CheckpointTriggerRequest,
    ) -> BoxFuture<'a, JmResult<TriggerResponse>> {
        Box::pin(async move {
            self.record(format!("POST /jobs/{job_id}/checkpoints {}", serde_json::to_string(&request).unwrap()));
            self.reachable()?;
            Ok(TriggerResponse { request_id: request.trigger_id.unwrap_or_else(|| "checkpoint-1".into()) })
        })
    }
    fn checkpoint_status<'a>(
        &'a self,
        _base: &'a str,
        job_id: &'a str,
        trigger_id: &'a str,
    ) -> BoxFuture<'a, JmResult<CheckpointTriggerResult>> {
        Box::pin(async move {
            self.record(format!("GET /jobs/{job_id}/checkpoints/{trigger_id}"));
            self.reachable()?;
            let v = match self.triggered_checkpoint.lock().unwrap().clone() {
                None => json!({"status": {"id": "IN_PROGRESS"}}),
                Some(Ok(id)) => json!({"status": {"id": "COMPLETED"}, "operation": {"checkpointId": id}}),
                Some(Err(cause)) => {
                    json!({"status": {"id": "COMPLETED"}, "operation": {"failure-cause": {"stack-trace": cause}}})
                }
            };
            Ok(serde_json::from_value(v).unwrap())
        })
    }
    fn dispose<'a>(&'a self, _base: &'a str, path: &'a str) -> BoxFuture<'a, JmResult<TriggerResponse>> {
        Box::pin(async move {
            self.record(format!("POST /savepoint-disposal {path}"));
            self.reachable()?;
            Ok(TriggerResponse { request_id: "disposal-1".into() })
        })
    }
    fn validate_snapshot<'a>(&'a self, _base: &'a str, path: &'a str) -> BoxFuture<'a, JmResult<SnapshotValidation>> {
        Box::pin(async move {
            self.record(format!("POST /snapshots/validation {path}"));
            self.reachable()?;
            let problem = self.unrestorable.lock().unwrap().get(path).cloned();
            Ok(SnapshotValidation { path: path.into(), restorable: problem.is_none(), problem, ..Default::default() })
        })
    }
    fn taskmanagers<'a>(&'a self, _base: &'a str) -> BoxFuture<'a, JmResult<TaskManagersInfo>> {
        Box::pin(async move {
            self.record("GET /taskmanagers".into());
            self.reachable()?;
            let scripted = self.scripted.lock().unwrap().clone().unwrap_or_default();
            let taskmanagers = (0..scripted.taskmanagers)
                .map(|i| TaskManagerInfo {
                    id: format!("tm-{i}"),
                    path: String::new(),
                    data_port: 6121,
                    jmx_port: -1,
                    time_since_last_heartbeat: 0,
                    slots_number: scripted.slots,
                    free_slots: 0,
                    assigned_tasks: 0,
                    total_resource: Default::default(),
                    free_resource: Default::default(),
                    hardware: Default::default(),
                    memory_configuration: Default::default(),
                })
                .collect();
            Ok(TaskManagersInfo { taskmanagers })
        })
    }
    fn subtasks_metrics<'a>(
        &'a self,
        _base: &'a str,
        job_id: &'a str,
        vertex_id: &'a str,
        names: &'a [&'a str],
    ) -> BoxFuture<'a, JmResult<Vec<AggregatedMetric>>> {
        Box::pin(async move {
            self.record(format!("GET /jobs/{job_id}/vertices/{vertex_id}/subtasks/metrics"));
            self.reachable()?;
            let scripted = self.scripted.lock().unwrap().clone().unwrap_or_default();
            let metrics = scripted.metrics.get(vertex_id).cloned().unwrap_or_default();
            Ok(metrics
                .into_iter()
                .filter(|(name, _, _)| names.contains(&name.as_str()))
                // Every subtask alike: the busiest is the average.
                .map(|(id, sum, avg)| AggregatedMetric {
                    id,
                    min: Some(avg),
                    max: Some(avg),
                    avg: Some(avg),
                    sum: Some(sum),
                    skew: None,
                })
                .collect())
        })
    }
    fn set_resource_requirements<'a>(
        &'a self,
        _base: &'a str,
        job_id: &'a str,
        requirements: JobResourceRequirements,
    ) -> BoxFuture<'a, JmResult<()>> {
        Box::pin(async move {
            let parallelism = requirements.values().map(|r| r.parallelism.upper_bound).max().unwrap_or(0);
            self.record(format!("PUT /jobs/{job_id}/resource-requirements {parallelism}"));
            self.reachable()?;
            if let Some(job) = self.scripted.lock().unwrap().as_mut() {
                job.requested = Some(parallelism);
            }
            Ok(())
        })
    }
    fn disposal_status<'a>(
        &'a self,
        _base: &'a str,
        trigger_id: &'a str,
    ) -> BoxFuture<'a, JmResult<AsynchronousOperationResult>> {
        Box::pin(async move {
            self.record(format!("GET /savepoint-disposal/{trigger_id}"));
            self.reachable()?;
            let v = match self.disposal_failure.lock().unwrap().clone() {
                None => json!({"status": {"id": "COMPLETED"}, "operation": {}}),
                Some(cause) => {
                    json!({"status": {"id": "COMPLETED"}, "operation": {"failure-cause": {"stack-trace": cause}}})
                }
            };
            Ok(serde_json::from_value(v).unwrap())
        })
    }
}

/// A fake cluster with one FlinkJob, the fake JobManager and a reconcile context.
pub struct Env {
    pub api: Arc<FakeApi>,
    pub jm: Arc<FakeJm>,
    pub ctx: Arc<Context>,
    clock: Arc<Mutex<Timestamp>>,
}

impl Env {
    /// A cluster holding `manifest` (YAML) as `streams/wc`, with our finalizer already on it.
    pub fn new(manifest: &str) -> Self {
        let mut fj: Value = serde_yaml::from_str(manifest).unwrap();
        fj["apiVersion"] = json!("rheo.io/v1alpha1");
        fj["kind"] = json!("FlinkJob");
        let meta = &mut fj["metadata"];
        meta["name"] = json!(NAME);
        meta["namespace"] = json!(NS);
        meta["uid"] = json!(UID);
        if meta.get("generation").is_none() {
            meta["generation"] = json!(1);
        }
        if meta.get("finalizers").is_none() {
            meta["finalizers"] = json!([reconcile::FINALIZER]);
        }
        let api = Arc::new(FakeApi::default());
        api.objects.lock().unwrap().insert(FJ_PATH.into(), fj);

        let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let served = api.clone();
        tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                let (parts, body) = req.into_parts();
                let bytes = body.collect_bytes().await.unwrap();
                let call = Call {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_string(),
                    content_type: parts
                        .headers
                        .get(http::header::CONTENT_TYPE)
                        .map(|v| v.to_str().unwrap().to_string())
                        .unwrap_or_default(),
                    body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                };
                let (status, resp) = served.handle(&call);
                served.calls.lock().unwrap().push(call);
                send.send_response(
                    Response::builder().status(status).body(Body::from(serde_json::to_vec(&resp).unwrap())).unwrap(),
                );
            }
        });
        let client = Client::new(svc, "default");
        let jm = Arc::new(FakeJm::default());
        let clock = Arc::new(Mutex::new(now()));
        let reading = clock.clone();
        let ctx = Arc::new(Context {
            client: client.clone(),
            recorder: Recorder::new(client, Reporter { controller: "rheo-operator".into(), instance: None }),
            jobmanagers: jm.clone(),
            now: Arc::new(move || *reading.lock().unwrap()),
            autoscaler: Default::default(),
        });
        Env { api, jm, ctx, clock }
    }

    /// Moves the clock the reconciler reads forward.
    pub fn advance(&self, by: std::time::Duration) {
        let mut t = self.clock.lock().unwrap();
        *t += jiff::SignedDuration::try_from(by).unwrap();
    }

    /// The clock the reconciler reads.
    pub fn time(&self) -> Timestamp {
        *self.clock.lock().unwrap()
    }

    /// The FlinkJob as stored.
    pub fn flinkjob(&self) -> Value {
        self.api.objects.lock().unwrap()[FJ_PATH].clone()
    }

    pub fn status(&self) -> Value {
        self.flinkjob()["status"].clone()
    }

    pub fn object(&self, path: &str) -> Option<Value> {
        self.api.objects.lock().unwrap().get(path).cloned()
    }

    /// Changes the stored FlinkJob (as a user's `kubectl edit` would) and bumps its generation.
    pub fn edit(&self, f: impl FnOnce(&mut Value)) {
        let mut objects = self.api.objects.lock().unwrap();
        let fj = objects.get_mut(FJ_PATH).unwrap();
        f(fj);
        let g = fj["metadata"]["generation"].as_i64().unwrap();
        fj["metadata"]["generation"] = json!(g + 1);
    }

    /// One reconcile pass over the stored FlinkJob.
    pub async fn reconcile(&self) -> Result<Action, Error> {
        let fj: FlinkJob = serde_json::from_value(self.flinkjob()).unwrap();
        reconcile::reconcile(Arc::new(fj), self.ctx.clone()).await
    }

    /// One reconcile pass with a new Recorder: no Event of an earlier pass is folded into a series.
    pub async fn reconcile_with_fresh_recorder(&self) -> Result<Action, Error> {
        let fj: FlinkJob = serde_json::from_value(self.flinkjob()).unwrap();
        let ctx = Arc::new(Context {
            client: self.ctx.client.clone(),
            recorder: Recorder::new(
                self.ctx.client.clone(),
                Reporter { controller: "rheo-operator".into(), instance: None },
            ),
            jobmanagers: self.ctx.jobmanagers.clone(),
            now: self.ctx.now.clone(),
            autoscaler: Default::default(),
        });
        reconcile::reconcile(Arc::new(fj), ctx).await
    }

    /// The API calls since the last take.
    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut *self.api.calls.lock().unwrap())
    }
}

/// Calls as `METHOD path` lines, Events as `EVENT reason`.
pub fn lines(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .map(|c| {
            if c.path.ends_with("/events") {
                format!("EVENT {}", c.body["reason"].as_str().unwrap_or_default())
            } else {
                c.line()
            }
        })
        .collect()
}

/// The body of the only call to `path` with `method`.
pub fn body_of<'a>(calls: &'a [Call], method: &str, path: &str) -> &'a Value {
    let found: Vec<_> = calls.iter().filter(|c| c.method == method && c.path == path).collect();
    assert_eq!(found.len(), 1, "expected one {method} {path} in {:#?}", lines(calls));
    &found[0].body
}

pub fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == type_).unwrap()
}

pub const JM_DEPLOY: &str = "/apis/apps/v1/namespaces/streams/deployments/wc-jobmanager";
pub const TM_DEPLOY: &str = "/apis/apps/v1/namespaces/streams/deployments/wc-taskmanager";
pub const CONFIG_MAP: &str = "/api/v1/namespaces/streams/configmaps/wc-config";
pub const RPC_SVC: &str = "/api/v1/namespaces/streams/services/wc-jobmanager";
pub const REST_SVC: &str = "/api/v1/namespaces/streams/services/wc-rest";
pub const PODS: &str = "/api/v1/namespaces/streams/pods";
pub const FJ_STATUS: &str = "/apis/rheo.io/v1alpha1/namespaces/streams/flinkjobs/wc/status";

/// The children applied in one steady pass, in order.
pub fn applies() -> Vec<String> {
    [CONFIG_MAP, RPC_SVC, REST_SVC, JM_DEPLOY, TM_DEPLOY].iter().map(|p| format!("PATCH {p}")).collect()
}

/// The JobManager container's args in the stored JobManager Deployment.
pub fn jm_args(env: &Env) -> Vec<String> {
    let d = env.object(JM_DEPLOY).expect("JobManager Deployment");
    serde_json::from_value(d["spec"]["template"]["spec"]["containers"][0]["args"].clone()).unwrap()
}

impl Env {
    /// Puts a pod into the fake cluster, as the kubelet reports it.
    pub fn pod(&self, name: &str, status: Value) {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS,
            "labels": {"app.kubernetes.io/name": "rheo", "app.kubernetes.io/instance": NAME}}, "status": status});
        self.api.objects.lock().unwrap().insert(format!("{PODS}/{name}"), pod);
    }
}

/// A pod status whose `rheo` container waits for `reason`, after a last exit for `last` (if any).
pub fn waiting(reason: &str, message: &str, last: Option<&str>) -> Value {
    let mut c = json!({"name": "rheo", "ready": false, "restartCount": 4, "image": "rheo:bad", "imageID": "",
        "state": {"waiting": {"reason": reason, "message": message}}});
    if let Some(last) = last {
        c["lastState"] = json!({"terminated": {"reason": last, "exitCode": 137}});
    }
    json!({"phase": "Pending", "containerStatuses": [c]})
}
