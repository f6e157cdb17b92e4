//! The REST API of `rheo run` and the client commands against it, on a real process: answers
//! have the field names and JSON types of a real Flink 2.3 JobManager (the captured responses in
//! `crates/rheo-rest/tests/flink-rest/`), errors are Flink-shaped, and a savepoint taken with
//! `rheo savepoint`, a stop with `rheo stop` and a resume with `--from-savepoint` work end to end.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output};

use std::collections::BTreeSet;

use rheo::runtime::checkpoint::discover;
use rheo::runtime::checkpoint::metadata::CheckpointMetadata;
use rheo::runtime::checkpoint::{CheckpointStorage, io_runtime};
use rheo_testkit::{Cluster, JobState};
use serde_json::Value;

fn free_port() -> u16 {
    rheo_testkit::free_port().unwrap()
}

/// A `rheo run` in the background (a one-process [`Cluster`]), logging at info into
/// `<cwd>/run-1.log`; killed when dropped.
struct Run {
    cluster: Cluster,
    port: u16,
}

impl Run {
    fn start(cwd: &Path, extra: &[&str]) -> Run {
        let mut cluster = Cluster::new(env!("CARGO_BIN_EXE_rheo"), cwd)
            .unwrap()
            .with_config(&["execution.checkpointing.interval=200ms"]);
        let mut args = vec!["datagen-word-count", "--rate", "2000", "--sink", "discard"];
        args.extend_from_slice(extra);
        cluster.start_run(&args).unwrap();
        let port = cluster.rest_url().rsplit(':').next().unwrap().parse().unwrap();
        Run { cluster, port }
    }

    fn url(&self) -> String {
        self.cluster.rest_url().to_string()
    }

    fn log(&mut self) -> String {
        self.cluster.jobmanager().log()
    }

    /// Waits (bounded) for the process to exit.
    fn wait(&mut self) -> ExitStatus {
        self.cluster.jobmanager().wait().unwrap()
    }

    fn get(&self, path: &str) -> (u16, Value) {
        http(self.port, "GET", path, None)
    }
}

/// One request to `rheo run`'s REST port; a body that is not JSON reads as `null` (the shape
/// comparison below skips it).
fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let (status, answer) =
        crate::common::try_http(addr, method, path, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    (status, if answer.is_string() { Value::Null } else { answer })
}

fn rheo(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rheo")).current_dir(cwd).args(args).env("RHEO_LOG", "warn").output().unwrap()
}

fn captured(name: &str) -> Value {
    let path = format!("{}/../rheo-rest/tests/flink-rest/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap()
}

/// Fields of Flink's answers that Rheo's may lack (JSON paths, `[]` for any element).
const OMITTED: &[&str] = &[
    // Each node is compared with Flink's first, which has inputs; a source node has none, in
    // Flink's plan as in Rheo's.
    "/jobs/:id.plan.nodes[].inputs",
];

/// Checks that `ours` has the keys and JSON types of `flink`, recursively. Arrays compare each of
/// our elements with Flink's first; `null` matches anything (Flink's nullable fields).
fn same_shape(ours: &Value, flink: &Value, at: &str, errors: &mut Vec<String>) {
    match (ours, flink) {
        (Value::Null, _) | (_, Value::Null) => {}
        (Value::Object(a), Value::Object(b)) => {
            for key in b.keys() {
                let path = format!("{at}.{key}");
                if !a.contains_key(key) && !OMITTED.contains(&path.as_str()) {
                    errors.push(format!("{path}: missing"));
                }
            }
            for (key, value) in a {
                match b.get(key) {
                    Some(theirs) => same_shape(value, theirs, &format!("{at}.{key}"), errors),
                    None => errors.push(format!("{at}.{key}: not in Flink's answer")),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if let Some(theirs) = b.first() {
                for value in a {
                    same_shape(value, theirs, &format!("{at}[]"), errors);
                }
            }
        }
        (Value::Number(_), Value::Number(_))
        | (Value::String(_), Value::String(_))
        | (Value::Bool(_), Value::Bool(_)) => {}
        _ => errors.push(format!("{at}: {ours} where Flink has {flink}")),
    }
}

fn savepoint_path(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find_map(|l| l.strip_prefix("Savepoint completed. Path: "));
    line.unwrap_or_else(|| panic!("no savepoint path in {text:?}, stderr {}", String::from_utf8_lossy(&out.stderr)))
        .to_string()
}

/// `file:///a/b` → `/a/b`.
fn local(url: &str) -> PathBuf {
    PathBuf::from(url.strip_prefix("file://").unwrap_or(url))
}

/// Checks a savepoint directory: `savepoint-<job[0..6]>-<12 hex>` holding `_metadata`.
fn check_savepoint_dir(location: &str, job_id: &str) {
    let dir = local(location);
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let suffix = name.strip_prefix(&format!("savepoint-{}-", &job_id[..6])).unwrap_or_else(|| panic!("{name}"));
    assert!(suffix.len() == 12 && suffix.bytes().all(|b| b.is_ascii_hexdigit()), "{name}");
    assert!(dir.join("_metadata").is_file(), "{} has no _metadata", dir.display());
}

#[test]
fn rest_api_savepoint_stop_and_resume() {
    let cwd = tempfile::tempdir().unwrap();
    let mut run = Run::start(cwd.path(), &[]);
    let id = run.cluster.await_job().unwrap();
    run.cluster.await_state(&id, JobState::Running).unwrap();
    let log = run.log();
    assert!(log.contains(&format!("REST API at {}", run.url())), "{log}");
    run.cluster.await_checkpoints(&id, 1).unwrap();

    // Field names and JSON types as Flink's, endpoint by endpoint.
    let endpoints = [
        ("/config", "/config".to_string(), "config.json"),
        ("/overview", "/overview".to_string(), "overview.json"),
        ("/jobs", "/jobs".to_string(), "jobs.json"),
        ("/jobs/overview", "/jobs/overview".to_string(), "jobs-overview.json"),
        ("/jobs/:id", format!("/jobs/{id}"), "job.json"),
        ("/jobs/:id/checkpoints", format!("/jobs/{id}/checkpoints"), "job-checkpoints.json"),
        ("/jobs/:id/checkpoints/config", format!("/jobs/{id}/checkpoints/config"), "job-checkpoints-config.json"),
        ("/jobs/:id/exceptions", format!("/jobs/{id}/exceptions"), "job-exceptions.json"),
    ];
    let mut errors = Vec::new();
    for (name, path, file) in endpoints {
        let (status, ours) = run.get(&path);
        assert_eq!(status, 200, "{path}: {ours}");
        same_shape(&ours, &captured(file), name, &mut errors);
    }
    assert!(errors.is_empty(), "answers differ from Flink's:\n{}", errors.join("\n"));
    let (_, job) = run.get(&format!("/jobs/{id}"));
    assert_eq!(job["state"], "RUNNING");
    assert!(job["vertices"][0]["metrics"]["write-records"].as_u64() > Some(0), "{job}");

    let metrics = ureq_text(run.port, "/metrics");
    assert!(metrics.contains(&format!("flink_taskmanager_job_task_numRecordsOut{{job_id=\"{id}\"")), "{metrics}");

    // The dashboard, at the root and with its assets, as a JobManager serves it.
    let (head, page) = ureq_answer(run.port, "/");
    assert!(
        head.starts_with("HTTP/1.1 200") && head.to_ascii_lowercase().contains("content-type: text/html"),
        "{head}"
    );
    assert!(page.contains("<title>Rheo Dashboard</title>") && page.contains("/web/app.js"), "{page}");
    let (head, _) = ureq_answer(run.port, "/web/app.js");
    assert!(head.starts_with("HTTP/1.1 200") && head.contains("text/javascript"), "{head}");
    assert!(metrics.contains("flink_jobmanager_job_numberOfCompletedCheckpoints{"), "{metrics}");

    // Flink-shaped errors.
    let unknown = "00000000000000000000000000000000";
    for (method, path) in [
        ("GET", format!("/jobs/{unknown}")),
        ("GET", format!("/jobs/{unknown}/checkpoints")),
        ("PATCH", format!("/jobs/{unknown}")),
    ] {
        let (status, body) = http(run.port, method, &path, None);
        assert_eq!(status, 404, "{method} {path}: {body}");
        assert_eq!(body["errors"][0], format!("Job {unknown} not found"), "{body}");
    }
    let (status, body) = http(run.port, "POST", &format!("/jobs/{id}/savepoints"), Some(r#"{"cancel-job":"yes"}"#));
    assert_eq!(status, 400, "{body}");
    assert!(body["errors"][0].as_str().unwrap().contains("'cancel-job'"), "{body}");
    let (status, body) = http(run.port, "POST", &format!("/jobs/{id}/stop"), Some("not json"));
    assert_eq!(status, 400, "{body}");
    // A store Rheo cannot write to is refused before anything is triggered.
    let (status, body) =
        http(run.port, "POST", &format!("/jobs/{id}/savepoints"), Some(r#"{"target-directory":"ftp://host/sp"}"#));
    assert_eq!(status, 400, "{body}");
    assert!(body["errors"][0].as_str().unwrap().contains("unsupported scheme 'ftp'"), "{body}");
    let (status, body) = http(run.port, "GET", &format!("/jobs/{id}/savepoints/nosuchtrigger"), None);
    assert_eq!(status, 404, "{body}");
    let (status, _) = http(run.port, "GET", "/jobs/not-a-job-id", None);
    assert_eq!(status, 400);

    // The client commands.
    let jm = run.url();
    let list = rheo(cwd.path(), &["list", "--jobmanager", &jm]);
    assert!(list.status.success(), "{list:?}");
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(listed.contains(&format!(" : {id} : datagen-word-count (RUNNING)")), "{listed}");

    let savepoints = cwd.path().join("savepoints");
    let out = rheo(cwd.path(), &["savepoint", &id, savepoints.to_str().unwrap(), "--jobmanager", &jm]);
    assert!(out.status.success(), "{out:?}");
    let location = savepoint_path(&out);
    assert!(local(&location).starts_with(&savepoints), "{location}");
    check_savepoint_dir(&location, &id);
    let (_, checkpoints) = run.get(&format!("/jobs/{id}/checkpoints"));
    assert_eq!(checkpoints["latest"]["savepoint"]["external_path"], location.as_str(), "{checkpoints}");

    let out = rheo(cwd.path(), &["stop", &id, "--jobmanager", &jm]);
    assert!(out.status.success(), "{out:?}");
    let stopped_at = savepoint_path(&out);
    check_savepoint_dir(&stopped_at, &id);
    let status = run.wait();
    let log = run.log();
    assert!(status.success(), "rheo run after stop: {status}; log:\n{log}");

    // Resume elsewhere (no checkpoints of its own there) from the stop's savepoint.
    let cwd2 = tempfile::tempdir().unwrap();
    let mut resumed = Run::start(cwd2.path(), &["--from-savepoint", &stopped_at]);
    resumed.cluster.await_state(&id, JobState::Running).unwrap();
    let log = resumed.log();
    assert!(log.contains("restoring from savepoint"), "{log}");
    let (_, checkpoints) = resumed.get(&format!("/jobs/{id}/checkpoints"));
    assert_eq!(checkpoints["counts"]["restored"], 1, "{checkpoints}");

    // Cancel over REST: 202 with `{}`, then the process ends.
    let (status, body) = http(resumed.port, "PATCH", &format!("/jobs/{id}?mode=cancel"), None);
    assert_eq!((status, body), (202, serde_json::json!({})));
    resumed.wait();
}

/// The body of a GET as text.
fn ureq_text(port: u16, path: &str) -> String {
    ureq_answer(port, path).1
}

/// The status line and headers, and the body, of a GET.
fn ureq_answer(port: u16, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (head.to_string(), body.to_string())
}

#[test]
fn taken_port_warns_and_runs_without_rest() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let cwd = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rheo"))
        .current_dir(cwd.path())
        .args(["run", "datagen-word-count", "--count", "1000", "--sink", "discard", "-D", &format!("rest.port={port}")])
        .env("RHEO_LOG", "warn")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")) && err.contains("without"), "{err}");
}

#[test]
fn client_commands_name_an_unreachable_jobmanager() {
    let port = free_port();
    let cwd = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{port}");
    for args in [vec!["list"], vec!["cancel", "00000000000000000000000000000000"]] {
        let mut args = args.clone();
        args.extend(["--jobmanager", &url]);
        let out = rheo(cwd.path(), &args);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(&url), "{err}");
    }
    // Through the environment variable, and a Flink-shaped 404 as one line.
    let out = Command::new(env!("CARGO_BIN_EXE_rheo"))
        .current_dir(cwd.path())
        .args(["list"])
        .env("RHEO_JOBMANAGER", &url)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains(&url));
}

// ---- A session cluster in this process (see `common`): errors, submission, TaskManagers,
// configuration, back pressure and `rheo submit`.

use std::sync::Arc;

use crate::common::{self, Session, await_json, fake_taskmanager, get};
use rheo::config::Configuration;
use rheo::runtime::driver::handle::JobHandle;
use rheo_cluster::view::{ClusterView, SubmitError, SubmitRequest, TaskManagerInfo};

/// A cluster with TaskManagers and no jobs; `submit` refuses or accepts without running.
struct FakeView {
    taskmanagers: Vec<TaskManagerInfo>,
    answer: Result<String, SubmitError>,
    requests: std::sync::Mutex<Vec<SubmitRequest>>,
}

impl FakeView {
    fn new(taskmanagers: Vec<TaskManagerInfo>, answer: Result<String, SubmitError>) -> Arc<FakeView> {
        Arc::new(FakeView { taskmanagers, answer, requests: Default::default() })
    }
}

impl ClusterView for FakeView {
    fn jobs(&self) -> Vec<JobHandle> {
        Vec::new()
    }
    fn taskmanagers(&self) -> Vec<TaskManagerInfo> {
        self.taskmanagers.clone()
    }
    fn available_jobs(&self) -> Vec<(String, String)> {
        vec![("word-count".into(), "counts words".into())]
    }
    fn submit(&self, request: SubmitRequest) -> Result<String, SubmitError> {
        self.requests.lock().unwrap().push(request);
        self.answer.clone()
    }
}

fn error_of(body: &Value) -> String {
    body["errors"][0].as_str().unwrap_or_else(|| panic!("not a Flink error: {body}")).to_string()
}

#[test]
fn taskmanagers_and_overview_come_from_the_view() {
    let view = FakeView::new(
        vec![fake_taskmanager("tm-a", "10.0.0.1:6121", 4, 1), fake_taskmanager("tm-b", "tm-b.svc:6122", 2, 2)],
        Ok("0".repeat(32)),
    );
    let server = common::serve(view, &Configuration::new());
    let tms = get(&server, "/taskmanagers");
    let tms = tms["taskmanagers"].as_array().unwrap();
    assert_eq!(tms.len(), 2);
    assert_eq!(tms[0]["id"], "tm-a");
    assert_eq!((tms[0]["dataPort"].as_i64(), tms[1]["dataPort"].as_i64()), (Some(6121), Some(6122)));
    assert_eq!((tms[0]["slotsNumber"].as_u64(), tms[0]["freeSlots"].as_u64()), (Some(4), Some(1)));
    assert_eq!(tms[0]["assignedTasks"], 3);
    assert_eq!(tms[0]["timeSinceLastHeartbeat"], 1_795_464_444_106_i64);
    assert_eq!(
        (tms[0]["hardware"]["cpuCores"].as_u64(), tms[0]["totalResource"]["cpuCores"].as_f64()),
        (Some(8), Some(8.0))
    );
    assert_eq!(tms[0]["freeResource"]["cpuCores"].as_f64(), Some(2.0));
    assert_eq!(tms[1]["hardware"]["physicalMemory"], 16_i64 << 30);
    let overview = get(&server, "/overview");
    assert_eq!((overview["taskmanagers"].as_u64(), overview["slots-total"].as_u64()), (Some(2), Some(6)));
    assert_eq!((overview["slots-available"].as_u64(), overview["jobs-running"].as_u64()), (Some(3), Some(0)));
    assert_eq!(get(&server, "/jobs"), serde_json::json!({"jobs": []}));
}

#[test]
fn jobmanager_config_masks_secrets() {
    let mut config = Configuration::new();
    config.set("s3.access-key", "AKIA0000");
    config.set("s3.secret-key", "hunter2");
    config.set("fs.azure.account.key.acc.blob.core.windows.net", "azure");
    config.set("ssl.rest.keystore-password", "pw");
    config.set("rest.port", "8081");
    config.set("state.checkpoints.dir", "s3://bucket/ckpt");
    let server = common::serve(FakeView::new(Vec::new(), Ok(String::new())), &config);
    let entries = get(&server, "/jobmanager/config");
    let values: std::collections::BTreeMap<String, String> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["key"].as_str().unwrap().to_string(), e["value"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(values.len(), 6, "{entries}");
    for key in [
        "s3.access-key",
        "s3.secret-key",
        "fs.azure.account.key.acc.blob.core.windows.net",
        "ssl.rest.keystore-password",
    ] {
        assert_eq!(values[key], "******", "{key}");
    }
    assert_eq!(values["rest.port"], "8081");
    assert_eq!(values["state.checkpoints.dir"], "s3://bucket/ckpt");
    let text = entries.to_string();
    assert!(!text.contains("hunter2") && !text.contains("AKIA0000"), "{text}");
}

#[test]
fn errors_are_flink_shaped_and_name_the_field() {
    let session = Session::new(&[]);
    let server = common::serve(session.clone(), session.config());
    let unknown = "00000000000000000000000000000000";
    let (status, run) = common::http(&server, "POST", "/jars/rheo/run", Some(r#"{"entryClass":"slow-sink"}"#));
    assert_eq!(status, 200, "{run}");
    let id = run["jobid"].as_str().unwrap().to_string();
    let job = await_json(&server, &format!("/jobs/{id}"), "the job's vertices", |j| j["vertices"][0]["id"].is_string());
    let vertex = job["vertices"][0]["id"].as_str().unwrap().to_string();

    // 404: unknown job (on every job endpoint), vertex, jar, path.
    for (method, path) in [
        ("GET", format!("/jobs/{unknown}")),
        ("PATCH", format!("/jobs/{unknown}")),
        ("GET", format!("/jobs/{unknown}/checkpoints")),
        ("GET", format!("/jobs/{unknown}/checkpoints/config")),
        ("GET", format!("/jobs/{unknown}/exceptions")),
        ("POST", format!("/jobs/{unknown}/savepoints")),
        ("POST", format!("/jobs/{unknown}/stop")),
        ("GET", format!("/jobs/{unknown}/vertices/{vertex}/backpressure")),
        ("GET", format!("/jobs/{unknown}/vertices/{vertex}/metrics")),
    ] {
        let (status, body) = common::http(&server, method, &path, None);
        assert_eq!((status, error_of(&body)), (404, format!("Job {unknown} not found")), "{method} {path}");
    }
    for path in
        [format!("/jobs/{id}/vertices/{unknown}/backpressure"), format!("/jobs/{id}/vertices/{unknown}/metrics")]
    {
        let (status, body) = common::http(&server, "GET", &path, None);
        assert_eq!(status, 404, "{path}: {body}");
        assert!(error_of(&body).contains(unknown), "{body}");
    }
    let (status, body) = common::http(&server, "POST", "/jars/flink.jar/run", Some("{}"));
    assert_eq!(status, 404, "{body}");
    assert!(error_of(&body).contains("flink.jar"), "{body}");
    let (status, body) = common::http(&server, "GET", "/no/such/path", None);
    assert_eq!((status, error_of(&body)), (404, "Not found: /no/such/path".to_string()));
    let (status, _) = common::http(&server, "GET", "/jobs/not-a-job-id/exceptions", None);
    assert_eq!(status, 400);

    // 400 naming the field of the run request.
    for (body, field) in [
        (r#"{"entryClass":"slow-sink","parallelism":"two"}"#, "'parallelism'"),
        (r#"{"entryClass":"slow-sink","parallelism":0}"#, "'parallelism'"),
        (r#"{"programArgsList":[]}"#, "'entryClass'"),
        (r#"{"entryClass":"slow-sink","jobId":"abc"}"#, "'jobId'"),
        (r#"{"entryClass":"slow-sink","programArgs":"--a","programArgsList":["--a"]}"#, "'programArgs'"),
        (r#"{"entryClass":"slow-sink","programArgs":"--name 'open"}"#, "'programArgs'"),
        (r#"{"entryClass":"slow-sink","programArgsList":"--a"}"#, "'programArgsList'"),
        (r#"{"entryClass":"slow-sink","allowNonRestoredState":"yes"}"#, "'allowNonRestoredState'"),
    ] {
        let (status, answer) = common::http(&server, "POST", "/jars/rheo/run", Some(body));
        assert_eq!(status, 400, "{body}: {answer}");
        let message = error_of(&answer);
        assert!(message.contains("JarRunRequestBody") && message.contains(field), "{body}: {message}");
    }
    let (status, answer) = common::http(&server, "POST", "/jars/rheo/run", Some("not json"));
    assert_eq!(status, 400, "{answer}");
    // The view's own refusals: an unknown job or bad job arguments (400), a running job id (409).
    let (status, answer) = common::http(&server, "POST", "/jars/rheo/run", Some(r#"{"entryClass":"no-such-job"}"#));
    assert_eq!((status, error_of(&answer)), (400, "unknown job 'no-such-job'".to_string()));
    let bad_args = r#"{"entryClass":"slow-sink","programArgs":"--no-such-flag"}"#;
    let (status, answer) = common::http(&server, "POST", "/jars/rheo/run", Some(bad_args));
    assert_eq!(status, 400, "{answer}");
    assert!(error_of(&answer).contains("--no-such-flag"), "{answer}");
    let again = format!(r#"{{"entryClass":"slow-sink","jobId":"{id}"}}"#);
    let (status, answer) = common::http(&server, "POST", "/jars/rheo/run", Some(&again));
    assert_eq!(status, 409, "{answer}");
    assert!(error_of(&answer).contains(&id), "{answer}");
}

#[test]
fn the_mini_cluster_of_rheo_run_refuses_submissions() {
    let handle = rheo::runtime::driver::minicluster::MiniCluster::new(Configuration::new()).handle();
    let server = rheo_cluster::rest::serve(handle, "127.0.0.1:0".parse().unwrap()).unwrap();
    let (status, body) = common::http(&server, "POST", "/jars/rheo/run", Some(r#"{"entryClass":"word-count"}"#));
    assert_eq!(status, 409, "{body}");
    assert!(error_of(&body).contains("rheo cluster start"), "{body}");
    assert_eq!(get(&server, "/jars")["files"][0]["entry"], serde_json::json!([]));
}

#[test]
fn submit_passes_every_field_to_the_view() {
    let id = "7c58db1e492a70a462ecc572490b5a77";
    let view = FakeView::new(Vec::new(), Ok(id.to_string()));
    let server = common::serve(view.clone(), &Configuration::new());
    let body = format!(
        r#"{{"entryClass":"word-count","programArgs":"--input '/data/my file.txt'  --event-time","parallelism":3,
            "jobId":"{}","savepointPath":"s3://b/sp/savepoint-1","allowNonRestoredState":true}}"#,
        id.to_uppercase()
    );
    let (status, answer) = common::http(&server, "POST", "/jars/rheo/run", Some(&body));
    assert_eq!((status, answer), (200, serde_json::json!({"jobid": id, "applicationId": id})));
    let request = view.requests.lock().unwrap().pop().unwrap();
    assert_eq!(request.job, "word-count");
    assert_eq!(request.args, ["--input", "/data/my file.txt", "--event-time"]);
    assert_eq!((request.parallelism, request.job_id.as_deref()), (Some(3), Some(id)));
    assert_eq!(request.savepoint_path.as_deref(), Some("s3://b/sp/savepoint-1"));
    assert!(request.allow_non_restored_state);

    // `rheo submit`: options before the job, the job's arguments after it, untouched.
    let jm = server.url();
    let out = common::rheo(&[
        "submit",
        "-m",
        &jm,
        "-p",
        "2",
        "--job-id",
        id,
        "-s",
        "/sp/1",
        "-n",
        "-D",
        "execution.checkpointing.interval=7s",
        "--detached",
        "word-count",
        "--input",
        "/x y",
        "-p",
        "7",
        "--",
        "--jobmanager",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("Job has been submitted with JobID {id}"));
    let request = view.requests.lock().unwrap().pop().unwrap();
    assert_eq!(request.job, "word-count");
    assert_eq!(request.args, ["--input", "/x y", "-p", "7", "--", "--jobmanager"]);
    assert_eq!(request.config, [("execution.checkpointing.interval".to_string(), "7s".to_string())]);
    assert_eq!((request.parallelism, request.job_id.as_deref()), (Some(2), Some(id)));
    assert_eq!((request.savepoint_path.as_deref(), request.allow_non_restored_state), (Some("/sp/1"), true));

    // A refusal is one line naming the cause.
    let refusing = FakeView::new(Vec::new(), Err(SubmitError::Conflict("the cluster is full".into())));
    let server = common::serve(refusing, &Configuration::new());
    let out = common::rheo(&["submit", "-m", &server.url(), "word-count"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("409") && err.contains("the cluster is full"), "{err}");
}

#[test]
fn submit_and_wait_reports_how_the_job_ended() {
    let session = Session::new(&[]);
    let server = common::serve(session.clone(), session.config());
    let jm = server.url();
    let out =
        common::rheo(&["submit", "--wait", "-m", &jm, "datagen-word-count", "--count", "2000", "--sink", "discard"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let id = stdout.lines().next().unwrap().strip_prefix("Job has been submitted with JobID ").unwrap().to_string();
    assert!(stdout.contains(&format!("Job with JobID {id} has finished.")), "{stdout}");
    assert_eq!(get(&server, &format!("/jobs/{id}"))["state"], "FINISHED");
    let request = session.requests.lock().unwrap().pop().unwrap();
    assert_eq!(request.args, ["--count", "2000", "--sink", "discard"]);

    // A job that fails in every attempt: exit status 1 with the cause, after the restarts.
    let out = common::rheo(&["submit", "--wait", "-m", &jm, "fail-once", "--always", "--fail-at", "500"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("failed") && err.contains("injected failure at record"), "{err}");
    let id = String::from_utf8_lossy(&out.stdout).lines().next().unwrap().rsplit(' ').next().unwrap().to_string();
    let exceptions = get(&server, &format!("/jobs/{id}/exceptions"));
    // One entry per attempt: three restarts and the final failure, newest first.
    let entries = exceptions["exceptionHistory"]["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 4, "{exceptions}");
    let times: Vec<i64> = entries.iter().map(|e| e["timestamp"].as_i64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    assert_eq!(get(&server, &format!("/jobs/{id}"))["state"], "FAILED");
}

/// `GET /jobs/:id/ready`, the JobManager pod's readiness probe: 200 while the job runs and
/// after it finished, 503 once it FAILED (where `/jobs/:id` still answers 200), 404 for a job
/// the cluster does not have yet.
#[test]
fn the_readiness_endpoint_follows_the_job_state() {
    let session = Session::new(&[]);
    let server = common::serve(session.clone(), session.config());
    let ready = |id: &str| common::http(&server, "GET", &format!("/jobs/{id}/ready"), None);
    let submit = |body: &str| {
        let (status, run) = common::http(&server, "POST", "/jars/rheo/run", Some(body));
        assert_eq!(status, 200, "{run}");
        run["jobid"].as_str().unwrap().to_string()
    };
    let running = submit(r#"{"entryClass":"slow-sink","parallelism":1}"#);
    await_json(&server, &format!("/jobs/{running}"), "the job to run", |j| j["state"] == "RUNNING");
    assert_eq!(ready(&running), (200, serde_json::json!({"ready": true, "state": "RUNNING"})));
    // Cancelled: over, but not failed. It also frees the slots for the next jobs.
    common::http(&server, "PATCH", &format!("/jobs/{running}?mode=cancel"), None);
    await_json(&server, &format!("/jobs/{running}"), "the job to cancel", |j| j["state"] == "CANCELED");
    assert_eq!(ready(&running), (200, serde_json::json!({"ready": true, "state": "CANCELED"})));

    let failing = submit(r#"{"entryClass":"fail-once","programArgs":"--always --fail-at 500"}"#);
    await_json(&server, &format!("/jobs/{failing}"), "the job to fail", |j| j["state"] == "FAILED");
    assert_eq!(ready(&failing), (503, serde_json::json!({"ready": false, "state": "FAILED"})));
    assert_eq!(common::http(&server, "GET", &format!("/jobs/{failing}"), None).0, 200, "the old probe's path");

    let finished = submit(r#"{"entryClass":"datagen-word-count","programArgs":"--count 2000 --sink discard"}"#);
    await_json(&server, &format!("/jobs/{finished}"), "the job to finish", |j| j["state"] == "FINISHED");
    assert_eq!(ready(&finished), (200, serde_json::json!({"ready": true, "state": "FINISHED"})));

    let (status, body) = ready("00000000000000000000000000000000");
    assert_eq!(status, 404, "{body}");
}

#[test]
fn serve_for_cluster_fails_when_it_cannot_bind() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut config = Configuration::new();
    config.set("rest.bind-address", "127.0.0.1");
    config.set("rest.port", port.to_string());
    let view = FakeView::new(Vec::new(), Ok(String::new()));
    let error = rheo_cluster::rest::serve_for_cluster(view.clone(), &config).err().expect("the port is taken");
    assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse);
    assert!(error.to_string().contains(&format!("127.0.0.1:{port}")), "{error}");
    config.set("rest.port", "eighty");
    let error = rheo_cluster::rest::serve_for_cluster(view.clone(), &config).err().expect("no port");
    assert!(error.to_string().contains("eighty"), "{error}");
    // A range takes the next free port.
    config.set("rest.port", format!("{port}-{}", port.saturating_add(20)));
    let server = rheo_cluster::rest::serve_for_cluster(view, &config).unwrap();
    assert_ne!(server.local_addr().port(), port);
}

/// A source feeding a sink that sleeps per record is back-pressured: its vertex reports the
/// `high` level, and the sink (busy, never blocked) `ok`.
#[test]
fn a_slow_sink_back_pressures_the_source() {
    let session = Session::new(&[]);
    let server = common::serve(session.clone(), session.config());
    let (status, run) =
        common::http(&server, "POST", "/jars/rheo/run", Some(r#"{"entryClass":"slow-sink","parallelism":1}"#));
    assert_eq!(status, 200, "{run}");
    let id = run["jobid"].as_str().unwrap().to_string();
    let job = await_json(&server, &format!("/jobs/{id}"), "the job to run", |j| j["state"] == "RUNNING");
    let vertex = |prefix: &str| {
        let vertices = job["vertices"].as_array().unwrap();
        let found = vertices.iter().find(|v| v["name"].as_str().unwrap().starts_with(prefix));
        found.unwrap_or_else(|| panic!("no vertex {prefix}: {job}"))["id"].as_str().unwrap().to_string()
    };
    let (source, sink) = (vertex("Source:"), vertex("Rebalance"));
    let backpressure = await_json(
        &server,
        &format!("/jobs/{id}/vertices/{source}/backpressure"),
        "the source to be back-pressured",
        |b| b["backpressureLevel"] == "high",
    );
    assert_eq!(backpressure["status"], "ok");
    assert_eq!(backpressure["backpressure-level"], "high");
    let subtask = &backpressure["subtasks"][0];
    assert!(subtask["ratio"].as_f64() > Some(0.5), "{backpressure}");
    let sum = ["ratio", "idleRatio", "busyRatio"].iter().map(|k| subtask[*k].as_f64().unwrap()).sum::<f64>();
    assert!((0.99..=1.01).contains(&sum), "{backpressure}");

    let sink_pressure = get(&server, &format!("/jobs/{id}/vertices/{sink}/backpressure"));
    assert_eq!(sink_pressure["backpressureLevel"], "ok", "{sink_pressure}");
    let busy = |b: &Value| b["subtasks"][0]["busyRatio"].as_f64().unwrap();
    await_json(&server, &format!("/jobs/{id}/vertices/{sink}/backpressure"), "the sink to be busy", |b| busy(b) > 0.5);

    let metrics = get(
        &server,
        &format!("/jobs/{id}/vertices/{source}/metrics?get=backPressuredTimeMsPerSecond,numRecordsOut,nope"),
    );
    let metrics = metrics.as_array().unwrap();
    assert_eq!(metrics.len(), 2, "{metrics:?}");
    assert_eq!(metrics[0]["id"], "backPressuredTimeMsPerSecond");
    assert!(metrics[0]["value"].as_str().unwrap().parse::<u64>().unwrap() > 500, "{metrics:?}");
    let details = get(&server, &format!("/jobs/{id}"));
    let source_metrics =
        &details["vertices"].as_array().unwrap().iter().find(|v| v["id"] == source.as_str()).unwrap()["metrics"];
    assert!(source_metrics["accumulated-backpressured-time"].as_u64() > Some(0), "{source_metrics}");
    let prometheus = ureq_text(server.local_addr().port(), "/metrics");
    let line = prometheus
        .lines()
        .find(|l| l.starts_with("flink_taskmanager_job_task_backPressuredTimeMsPerSecond{") && l.contains(&source))
        .unwrap_or_else(|| panic!("{prometheus}"));
    let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(value > 500.0, "{line}");

    let (status, _) = common::http(&server, "PATCH", &format!("/jobs/{id}"), None);
    assert_eq!(status, 202);
    await_json(&server, &format!("/jobs/{id}"), "the job to end", |j| j["state"] == "CANCELED");
}

/// Metrics are counted per subtask: with every record of one key, one subtask of the keyed map
/// reads them all and the other none, and every view (aggregates, subtask details, back
/// pressure, Prometheus) shows the two apart instead of their average.
#[test]
fn metrics_are_per_subtask() {
    let session = Session::new(&[]);
    let server = common::serve(session.clone(), session.config());
    let (status, run) =
        common::http(&server, "POST", "/jars/rheo/run", Some(r#"{"entryClass":"skewed","parallelism":2}"#));
    assert_eq!(status, 200, "{run}");
    let id = run["jobid"].as_str().unwrap().to_string();
    let job = await_json(&server, &format!("/jobs/{id}"), "the job to run", |j| j["state"] == "RUNNING");
    let vertices = job["vertices"].as_array().unwrap();
    let map =
        vertices.iter().find(|v| v["name"].as_str().unwrap().contains("Reduce")).unwrap_or_else(|| panic!("{job}"));
    let map = map["id"].as_str().unwrap().to_string();
    let path = format!("/jobs/{id}/vertices/{map}/subtasks/metrics?get=numRecordsIn,busyTimeMsPerSecond");
    let aggregated = await_json(&server, &path, "the map to read records", |m| m[0]["max"].as_f64() > Some(100.0));
    let records = &aggregated[0];
    assert_eq!(records["id"], "numRecordsIn");
    assert_eq!(records["min"].as_f64(), Some(0.0), "{aggregated}");
    assert_eq!(records["sum"], records["max"], "{aggregated}");
    assert!((records["skew"].as_f64().unwrap() - 100.0).abs() < 1e-9, "{aggregated}");
    // Relative, not absolute: on a loaded machine the idle subtask's few wake-ups (ticks, no
    // records) can be preempted and read as tens of busy ms per second.
    let busy = await_json(&server, &path, "one subtask to be busy", |m| m[1]["max"].as_f64() > Some(100.0));
    let (idle, working) = (busy[1]["min"].as_f64().unwrap(), busy[1]["max"].as_f64().unwrap());
    assert!(idle < working / 2.0, "the idle subtask is not as busy as the working one: {busy}");

    let details: Vec<u64> = (0..2)
        .map(|n| {
            get(&server, &format!("/jobs/{id}/vertices/{map}/subtasks/{n}"))["metrics"]["read-records"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert!(details.contains(&0) && details.iter().any(|&r| r > 0), "{details:?}");
    let one = get(&server, &format!("/jobs/{id}/vertices/{map}/subtasks/0/metrics?get=numRecordsIn"));
    assert_eq!(one[0]["id"], "numRecordsIn", "{one}");
    let backpressure = get(&server, &format!("/jobs/{id}/vertices/{map}/backpressure"));
    let busy_ratios: Vec<f64> =
        backpressure["subtasks"].as_array().unwrap().iter().map(|s| s["busyRatio"].as_f64().unwrap()).collect();
    assert_eq!(busy_ratios.len(), 2, "{backpressure}");
    assert!(busy_ratios[0] != busy_ratios[1], "{backpressure}");

    let prometheus = ureq_text(server.local_addr().port(), "/metrics");
    let lines: Vec<&str> = prometheus
        .lines()
        .filter(|l| l.starts_with("flink_taskmanager_job_task_numRecordsIn{") && l.contains(&map))
        .collect();
    assert_eq!(lines.len(), 2, "{prometheus}");
    assert!(lines.iter().any(|l| l.contains("subtask_index=\"1\"")), "{lines:?}");

    let (status, _) = common::http(&server, "PATCH", &format!("/jobs/{id}"), None);
    assert_eq!(status, 202);
    await_json(&server, &format!("/jobs/{id}"), "the job to end", |j| j["state"] == "CANCELED");
}

/// `PUT /jobs/:id/resource-requirements` rescales a running job without replay: it stops with a
/// synchronous checkpoint and resumes from it at the new parallelism, so the (not
/// transactional) sink sees every record exactly once, and no restart is counted.
#[test]
fn resource_requirements_rescale_without_replay() {
    let session = Session::new(&[]);
    let server = common::serve(session.clone(), session.config());
    let body = r#"{"entryClass":"counted","parallelism":1,"programArgsList":["--tag","rescale","--count","12000"]}"#;
    let (status, run) = common::http(&server, "POST", "/jars/rheo/run", Some(body));
    assert_eq!(status, 200, "{run}");
    let id = run["jobid"].as_str().unwrap().to_string();
    let job = await_json(&server, &format!("/jobs/{id}"), "the job to read records", |j| {
        j["state"] == "RUNNING" && j["vertices"][0]["metrics"]["write-records"].as_u64() > Some(1000)
    });
    let requirements = get(&server, &format!("/jobs/{id}/resource-requirements"));
    let source = job["vertices"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(requirements[&source]["parallelism"]["upperBound"], 1, "{requirements}");

    let (status, error) = common::http(
        &server,
        "PUT",
        &format!("/jobs/{id}/resource-requirements"),
        Some(&format!(r#"{{"{source}":{{"parallelism":{{"lowerBound":3,"upperBound":2}}}}}}"#)),
    );
    assert_eq!(status, 400, "{error}");
    assert!(error_of(&error).contains("lowerBound"), "{error}");
    let (status, answer) = common::http(
        &server,
        "PUT",
        &format!("/jobs/{id}/resource-requirements"),
        Some(&format!(r#"{{"{source}":{{"parallelism":{{"lowerBound":1,"upperBound":2}}}}}}"#)),
    );
    assert_eq!(status, 200, "{answer}");
    await_json(&server, &format!("/jobs/{id}"), "the job to run at parallelism 2", |j| {
        j["state"] == "RUNNING" && j["vertices"][0]["parallelism"] == 2
    });
    let finished = await_json(&server, &format!("/jobs/{id}"), "the job to finish", |j| j["state"] == "FINISHED");
    let seen = common::SEEN.lock().unwrap();
    let counts = &seen.iter().find(|(t, _)| t == "rescale").unwrap().1;
    let twice = counts.iter().filter(|&&c| c > 1).count();
    let missing = counts.iter().filter(|&&c| c == 0).count();
    assert_eq!((twice, missing), (0, 0), "records seen twice, records never seen: {finished}");
    let checkpoints = get(&server, &format!("/jobs/{id}/checkpoints"));
    assert!(checkpoints["counts"]["restored"].as_u64() >= Some(1), "the new attempt restored: {checkpoints}");
    let exceptions = get(&server, &format!("/jobs/{id}/exceptions"));
    assert_eq!(exceptions["exceptionHistory"]["entries"].as_array().map(Vec::len), Some(0), "{exceptions}");
}

/// Asks for a checkpoint of `kind` (`None`: an empty body) through REST and waits for it;
/// returns its `_metadata`, read back and checked (every file present, sizes and checksums).
fn checkpoint_over_rest(port: u16, job_id: &str, job_dir: &Path, kind: Option<&str>) -> CheckpointMetadata {
    let body = kind.map(|kind| format!(r#"{{"checkpointType":"{kind}"}}"#));
    let (status, answer) = http(port, "POST", &format!("/jobs/{job_id}/checkpoints"), body.as_deref());
    assert_eq!(status, 202, "{answer}");
    let trigger = answer["request-id"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let result = loop {
        let (_, result) = http(port, "GET", &format!("/jobs/{job_id}/checkpoints/{trigger}"), None);
        if result["status"]["id"] == "COMPLETED" {
            break result;
        }
        assert!(std::time::Instant::now() < deadline, "the {kind:?} checkpoint never completed: {result}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let id = result["operation"]["checkpointId"].as_u64().unwrap_or_else(|| panic!("{result}"));
    let dir = CheckpointStorage::from_url(job_dir.join(format!("chk-{id}")).to_str().unwrap()).unwrap();
    io_runtime().block_on(discover::load(&dir)).unwrap().expect("a completed checkpoint has _metadata").metadata
}

/// For each subtask of the keyed operator (the state handles in the shared area), the
/// checkpoints whose files its state is made of, in order.
fn keyed_chains(metadata: &CheckpointMetadata) -> Vec<Vec<u64>> {
    let keyed = metadata.states.iter().filter(|s| !s.shared.is_empty());
    keyed.map(|s| s.shared.iter().map(|f| f.checkpoint_id).collect()).collect()
}

/// `checkpointType: FULL` with incremental checkpoints on (the default), on the final-count
/// word count (a count per word in keyed state, two subtasks): the FULL checkpoint's keyed state
/// is files it wrote itself, none of an earlier checkpoint's; `INCREMENTAL` and `CONFIGURED`
/// build on the chain, the one after the FULL checkpoint on it alone; retention then deletes
/// the files of the chain before it, never one a retained checkpoint needs.
#[test]
fn rest_api_full_checkpoint_writes_all_keyed_state_and_the_next_builds_on_it() {
    let cwd = tempfile::tempdir().unwrap();
    let input = cwd.path().join("words.txt");
    // 20,000 cold words on the first 200 lines, then hot words only: after the first
    // checkpoint, a checkpoint changes a handful of keys, so only FULL makes one write all.
    let cold = (0..200).map(|line| (0..100).map(|w| format!("cold{}", line * 100 + w)).collect::<Vec<_>>().join(" "));
    let lines: Vec<String> = cold.chain((0..400_000).map(|i| format!("hot{} hot{}", i % 7, i % 5))).collect();
    std::fs::write(&input, lines.join("\n")).unwrap();
    let checkpoints = cwd.path().join("checkpoints");
    let mut cluster = Cluster::new(env!("CARGO_BIN_EXE_rheo"), cwd.path()).unwrap().with_config(&[
        "execution.checkpointing.interval=1h",
        "state.checkpoints.num-retained=2",
        &format!("state.checkpoints.dir={}", checkpoints.display()),
    ]);
    cluster.start_run(&["word-count", "--input", input.to_str().unwrap(), "--rate", "4000", "-p", "2"]).unwrap();
    let port: u16 = cluster.rest_url().rsplit(':').next().unwrap().parse().unwrap();
    let id = cluster.await_job().unwrap();
    cluster.await_state(&id, JobState::Running).unwrap();
    let job_dir = checkpoints.join(&id);
    // Waits until the source has read `at_least` lines, so that each checkpoint has changes.
    let records_read = |at_least: u64| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let (_, job) = http(port, "GET", &format!("/jobs/{id}"), None);
            if job["vertices"][0]["metrics"]["read-records"].as_u64() >= Some(at_least) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the source never read {at_least} lines: {job}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };

    records_read(2_000);
    let first = checkpoint_over_rest(port, &id, &job_dir, None);
    let c1 = first.checkpoint_id;
    assert_eq!(keyed_chains(&first), vec![vec![c1]; 2], "the first checkpoint is full: {first:?}");
    records_read(6_000);
    let second = checkpoint_over_rest(port, &id, &job_dir, Some("INCREMENTAL"));
    let c2 = second.checkpoint_id;
    assert_eq!(keyed_chains(&second), vec![vec![c1, c2]; 2], "INCREMENTAL builds on the first");
    assert!(second.uploaded_size() < second.total_size());

    records_read(10_000);
    let full = checkpoint_over_rest(port, &id, &job_dir, Some("FULL"));
    let c3 = full.checkpoint_id;
    assert_eq!(keyed_chains(&full), vec![vec![c3]; 2], "FULL refers to no earlier checkpoint's file: {full:?}");
    assert!(full.shared_files().all(|f| f.checkpoint_id == c3));
    assert_eq!(full.uploaded_size(), full.total_size(), "FULL wrote all it needs");
    assert!(
        full.uploaded_size() > 100 * second.uploaded_size(),
        "FULL wrote {} bytes, the incremental checkpoint {}",
        full.uploaded_size(),
        second.uploaded_size()
    );

    records_read(14_000);
    let next = checkpoint_over_rest(port, &id, &job_dir, None);
    let c4 = next.checkpoint_id;
    assert_eq!(keyed_chains(&next), vec![vec![c3, c4]; 2], "the next checkpoint builds on the FULL one alone");
    assert!(next.uploaded_size() < next.total_size());

    // Checkpoints 3 and 4 are retained: the files of 1 and 2 go, those of 3 stay.
    let referenced: BTreeSet<String> = next.shared_files().map(|f| f.path.clone()).collect();
    let shared_files = || {
        let mut files = BTreeSet::new();
        for dir in std::fs::read_dir(job_dir.join("shared")).unwrap().flatten() {
            for file in std::fs::read_dir(dir.path()).unwrap().flatten() {
                let path = file.path();
                files.insert(path.strip_prefix(&job_dir).unwrap().to_string_lossy().into_owned());
            }
        }
        files
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while job_dir.join(format!("chk-{c2}")).exists() || shared_files() != referenced {
        assert!(
            std::time::Instant::now() < deadline,
            "retention left {:?}, the retained checkpoints reference {referenced:?}",
            shared_files()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(job_dir.join(format!("chk-{c3}/_metadata")).is_file());
    let (status, validated) = http(
        port,
        "POST",
        "/snapshots/validation",
        Some(
            &serde_json::json!({ "path": format!("file://{}", job_dir.join(format!("chk-{c4}")).display()) })
                .to_string(),
        ),
    );
    assert_eq!((status, validated["restorable"].clone()), (200, true.into()), "{validated}");
    let (status, _) = http(port, "PATCH", &format!("/jobs/{id}?mode=cancel"), None);
    assert_eq!(status, 202);
    cluster.jobmanager().wait().unwrap();
}

/// `POST /jobs/:id/checkpoints` (Flink 1.19+): a checkpoint now, polled at
/// `GET /jobs/:id/checkpoints/:trigger`. With periodic checkpoints an hour apart, the one
/// checkpoint the job has is the one asked for.
#[test]
fn rest_api_triggers_a_checkpoint() {
    let cwd = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::new(env!("CARGO_BIN_EXE_rheo"), cwd.path())
        .unwrap()
        .with_config(&["execution.checkpointing.interval=1h", "state.checkpoints.num-retained=2"]);
    cluster.start_run(&["datagen-word-count", "--rate", "2000", "--sink", "discard"]).unwrap();
    let port: u16 = cluster.rest_url().rsplit(':').next().unwrap().parse().unwrap();
    let id = cluster.await_job().unwrap();
    cluster.await_state(&id, JobState::Running).unwrap();

    let (status, body) =
        http(port, "POST", &format!("/jobs/{id}/checkpoints"), Some(r#"{"checkpointType":"SOMETIMES"}"#));
    assert_eq!(status, 400, "{body}");
    assert!(body["errors"][0].as_str().unwrap().contains("checkpointType"), "{body}");
    let (status, body) = http(port, "POST", &format!("/jobs/{id}/checkpoints"), Some(r#"{"triggerId":"x"}"#));
    assert_eq!(status, 400, "{body}");
    assert!(body["errors"][0].as_str().unwrap().contains("'triggerId'"), "{body}");
    let (status, body) = http(port, "GET", &format!("/jobs/{id}/checkpoints/00000000000000000000000000000001"), None);
    assert_eq!(status, 404, "{body}");

    let trigger = "0123456789abcdef0123456789abcdef";
    let request = format!(r#"{{"checkpointType":"FULL","triggerId":"{trigger}"}}"#);
    let (status, body) = http(port, "POST", &format!("/jobs/{id}/checkpoints"), Some(&request));
    assert_eq!((status, body), (202, serde_json::json!({"request-id": trigger})));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let result = loop {
        let (status, body) = http(port, "GET", &format!("/jobs/{id}/checkpoints/{trigger}"), None);
        assert_eq!(status, 200, "{body}");
        if body["status"]["id"] == "COMPLETED" {
            break body;
        }
        assert_eq!(body["status"]["id"], "IN_PROGRESS", "{body}");
        assert!(std::time::Instant::now() < deadline, "the checkpoint never completed: {body}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let checkpoint_id = result["operation"]["checkpointId"].as_u64().unwrap_or_else(|| panic!("{result}"));
    assert!(result["operation"].get("failure-cause").is_none(), "{result}");

    // The same trigger id again takes no second checkpoint.
    let (status, body) = http(port, "POST", &format!("/jobs/{id}/checkpoints"), Some(&request));
    assert_eq!((status, body), (202, serde_json::json!({"request-id": trigger})));
    let (_, stats) = http(port, "GET", &format!("/jobs/{id}/checkpoints"), None);
    assert_eq!(stats["counts"]["completed"], 1, "{stats}");
    let latest = &stats["latest"]["completed"];
    assert_eq!(latest["id"], checkpoint_id, "{stats}");
    let path = local(latest["external_path"].as_str().unwrap());
    assert!(path.ends_with(format!("{id}/chk-{checkpoint_id}")), "{}", path.display());
    assert!(path.join("_metadata").is_file(), "{} has no _metadata", path.display());

    // An empty body asks for the configured kind, under a fresh trigger id.
    let (status, body) = http(port, "POST", &format!("/jobs/{id}/checkpoints"), None);
    assert_eq!(status, 202, "{body}");
    assert_ne!(body["request-id"], trigger, "{body}");
    let second = body["request-id"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while http(port, "GET", &format!("/jobs/{id}/checkpoints/{second}"), None).1["status"]["id"] != "COMPLETED" {
        assert!(std::time::Instant::now() < deadline, "the second checkpoint never completed");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    // `/snapshots/validation` resolves and reads a snapshot as a JobManager started from it
    // would (what the operator asks before it stops a job for an upgrade).
    let validate = |path: &str| {
        let request = serde_json::json!({ "path": path }).to_string();
        let (status, body) = http(port, "POST", "/snapshots/validation", Some(&request));
        assert_eq!(status, 200, "{body}");
        body
    };
    let job_dir_url = format!("file://{}", path.parent().unwrap().display());
    let newest = validate(&job_dir_url);
    assert_eq!(newest["restorable"], true, "{newest}");
    assert!(newest["checkpointId"].as_u64() > Some(checkpoint_id), "the newest checkpoint: {newest}");
    assert_eq!(newest["jobId"], id.as_str(), "{newest}");
    let one = validate(&format!("file://{}", path.display()));
    assert_eq!((one["restorable"].clone(), one["checkpointId"].clone()), (true.into(), checkpoint_id.into()), "{one}");
    let copy = cwd.path().join("damaged");
    std::fs::create_dir_all(&copy).unwrap();
    let mut state_file = None;
    for entry in std::fs::read_dir(&path).unwrap().flatten() {
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
        if entry.file_name().to_string_lossy().ends_with(".state") {
            state_file = Some(entry.file_name());
        }
    }
    let state_file = state_file.expect("a state file");
    std::fs::write(copy.join(&state_file), b"truncated").unwrap();
    let damaged = validate(&format!("file://{}", copy.display()));
    assert_eq!(damaged["restorable"], false, "{damaged}");
    let problem = damaged["problem"].as_str().unwrap();
    assert!(problem.contains(&*state_file.to_string_lossy()) && problem.contains("CRC32"), "{damaged}");
    let nothing = validate(&format!("file://{}", cwd.path().join("no-such-savepoint").display()));
    assert_eq!(nothing["restorable"], false, "{nothing}");
    assert!(nothing["problem"].as_str().unwrap().contains("no _metadata there"), "{nothing}");
    let (status, body) = http(port, "POST", "/snapshots/validation", Some(r#"{"path":" "}"#));
    assert_eq!(status, 400, "{body}");
    assert!(body["errors"][0].as_str().unwrap().contains("'path'"), "{body}");

    // `/savepoint-disposal` removes a job's checkpoint directory (what the operator does with
    // the directories of job epochs it no longer needs), and refuses any other directory.
    let dispose = |path: &str| {
        let request = serde_json::json!({"savepoint-path": path}).to_string();
        let (status, body) = http(port, "POST", "/savepoint-disposal", Some(&request));
        assert_eq!(status, 202, "{body}");
        let (status, result) =
            http(port, "GET", &format!("/savepoint-disposal/{}", body["request-id"].as_str().unwrap()), None);
        assert_eq!(status, 200, "{result}");
        assert_eq!(result["status"]["id"], "COMPLETED", "{result}");
        result["operation"]["failure-cause"]["stack-trace"].as_str().map(str::to_string)
    };
    let not_a_checkpoint_dir = format!("file://{}", cwd.path().display());
    let refused = dispose(&not_a_checkpoint_dir).expect("refused");
    assert!(refused.contains("is no savepoint"), "{refused}");
    assert!(cwd.path().exists());
    // A job stopped with a savepoint (an operator upgrade or suspension) finished: its directory
    // also holds the driver's marker, and is removed all the same (make e2e found it kept).
    let stopped_job_dir = cwd.path().join("stopped-job");
    std::fs::create_dir_all(stopped_job_dir.join("chk-7")).unwrap();
    std::fs::write(stopped_job_dir.join("chk-7/_metadata"), b"{}").unwrap();
    std::fs::write(stopped_job_dir.join(rheo::runtime::checkpoint::discover::FINISHED_MARKER), id.as_bytes()).unwrap();
    assert_eq!(dispose(&format!("file://{}", stopped_job_dir.display())), None);
    assert!(!stopped_job_dir.exists(), "{} is still there", stopped_job_dir.display());
    let job_dir = path.parent().unwrap().to_path_buf();
    let checkpoints = std::fs::read_dir(&job_dir).unwrap().flatten();
    let checkpoints = checkpoints.filter(|e| e.file_name().to_string_lossy().starts_with("chk-")).count();
    assert_eq!(checkpoints, 2, "two checkpoints retained (beside them, the shared area of incremental state)");
    assert_eq!(dispose(&format!("file://{}", job_dir.display())), None);
    assert!(!job_dir.exists(), "{} is still there", job_dir.display());
    let (status, _) = http(port, "PATCH", &format!("/jobs/{id}?mode=cancel"), None);
    assert_eq!(status, 202);
    cluster.jobmanager().wait().unwrap();
}

/// Records out of a vertex are what its chain sends downstream, so they equal the records the
/// next vertex reads; a source's records in are the records its source read; a vertex that ends
/// in a sink sends none (as Flink shows it). Checked on a finished bounded job, whose counts are
/// final, in `/jobs/:id`, `/jobs/:id/vertices/:vid/metrics` and `subtasks/metrics`.
#[test]
fn records_out_of_a_vertex_are_what_the_next_one_reads() {
    let session = Session::new(&[]);
    let server = common::serve(session.clone(), session.config());
    let body = r#"{"entryClass":"datagen-word-count","parallelism":2,"programArgs":"--count 3000 --sink discard"}"#;
    let (status, run) = common::http(&server, "POST", "/jars/rheo/run", Some(body));
    assert_eq!(status, 200, "{run}");
    let id = run["jobid"].as_str().unwrap().to_string();
    let job = await_json(&server, &format!("/jobs/{id}"), "the job to finish", |j| j["state"] == "FINISHED");
    let vertices = job["vertices"].as_array().unwrap();
    assert_eq!(vertices.len(), 2, "source -> flat map | window -> sink: {job}");
    let records = |v: &Value, key: &str| v["metrics"][key].as_u64().unwrap_or_else(|| panic!("{key} of {v}"));
    let (source, window) = (&vertices[0], &vertices[1]);
    assert_eq!(records(source, "read-records"), 3000, "the lines the source read: {source}");
    // 8 words per line leave the source's chain (its flat map), not the 3,000 lines it read.
    assert_eq!(records(source, "write-records"), 24_000, "{source}");
    assert_eq!(records(window, "read-records"), records(source, "write-records"), "{job}");
    assert_eq!(records(window, "write-records"), 0, "the window's chain ends in the sink: {window}");

    let source_id = source["id"].as_str().unwrap();
    let metrics = get(&server, &format!("/jobs/{id}/vertices/{source_id}/metrics?get=numRecordsIn,numRecordsOut"));
    let value = |name: &str| metrics.as_array().unwrap().iter().find(|m| m["id"] == name).unwrap()["value"].clone();
    assert_eq!((value("numRecordsIn"), value("numRecordsOut")), ("3000".into(), "24000".into()), "{metrics}");
    let per_subtask = get(&server, &format!("/jobs/{id}/vertices/{source_id}/subtasks/metrics?get=numRecordsOut"));
    assert_eq!(per_subtask[0]["sum"].as_f64(), Some(24_000.0), "{per_subtask}");
}

/// A session cluster of real processes, driven by the client commands: `rheo submit` returns
/// once every task runs, and fails with the cause for a job that fails as it starts (a missing
/// input file) instead of reporting success; `rheo list -a` shows ended jobs, plain `rheo list`
/// does not; the same `--job-id` submitted again replaces the ended run (one entry), and
/// lookups and `rheo cancel` reach the new run.
#[test]
fn client_commands_against_a_session_cluster() {
    let cwd = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::new(env!("CARGO_BIN_EXE_rheo"), cwd.path())
        .unwrap()
        .with_timeout(std::time::Duration::from_secs(60))
        .with_config(&["taskmanager.numberOfTaskSlots=2", "heartbeat.interval=200ms"]);
    cluster.start_jobmanager(&[] as &[&str]).unwrap();
    cluster.start_taskmanager().unwrap();
    cluster.await_taskmanagers(1).unwrap();
    let jm = cluster.rest_url().to_string();
    let port: u16 = jm.rsplit(':').next().unwrap().parse().unwrap();
    let stdout = |out: &Output| String::from_utf8_lossy(&out.stdout).into_owned();
    let submitted_id = |out: &Output| {
        let text = stdout(out);
        text.lines().find_map(|l| l.strip_prefix("Job has been submitted with JobID ")).unwrap().to_string()
    };

    // Fails as its source opens: the client waits for that instead of reporting success.
    let missing = cwd.path().join("no-such-input.txt");
    let out = rheo(cwd.path(), &["submit", "-m", &jm, "word-count", "--input", missing.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(err.contains("failed") && err.contains("no-such-input.txt"), "the cause: {err}");
    let failed = submitted_id(&out);
    assert_eq!(http(port, "GET", &format!("/jobs/{failed}"), None).1["state"], "FAILED");

    // A job that runs: submit returns once every subtask is RUNNING.
    let job_id = "0123456789abcdef0123456789abcdef";
    let args = ["submit", "-m", &jm, "-p", "2", "--job-id", job_id, "datagen-word-count"];
    let run_args = ["--rate", "500", "--sink", "discard"];
    let out = rheo(cwd.path(), &[&args[..], &run_args[..]].concat());
    assert!(out.status.success(), "{out:?}");
    assert_eq!(submitted_id(&out), job_id);
    let (_, job) = http(port, "GET", &format!("/jobs/{job_id}"), None);
    assert_eq!(job["state"], "RUNNING", "{job}");
    for vertex in job["vertices"].as_array().unwrap() {
        assert_eq!(vertex["tasks"]["RUNNING"], vertex["parallelism"], "every subtask runs: {vertex}");
    }

    let list = rheo(cwd.path(), &["list", "-m", &jm]);
    assert!(list.status.success(), "{list:?}");
    let (running, all) = (stdout(&list), stdout(&rheo(cwd.path(), &["list", "-a", "-m", &jm])));
    assert!(running.contains(&format!("{job_id} : datagen-word-count (RUNNING)")), "{running}");
    assert!(!running.contains(&failed), "plain list shows no ended job: {running}");
    assert!(all.contains("Terminated Jobs") && all.contains(&format!("{failed} : word-count (FAILED)")), "{all}");

    // The same id again, after the first run ended: one entry, and it is the new run.
    let out = rheo(cwd.path(), &["cancel", "-m", &jm, job_id]);
    assert!(out.status.success(), "{out:?}");
    cluster.await_state(job_id, JobState::Canceled).unwrap();
    let first_start = http(port, "GET", &format!("/jobs/{job_id}"), None).1["start-time"].as_i64().unwrap();
    let out = rheo(cwd.path(), &[&args[..], &run_args[..]].concat());
    assert!(out.status.success(), "{out:?}");
    let (_, overview) = http(port, "GET", "/jobs/overview", None);
    let entries: Vec<&Value> = overview["jobs"].as_array().unwrap().iter().filter(|j| j["jid"] == job_id).collect();
    assert_eq!(entries.len(), 1, "one entry per job id: {overview}");
    assert_eq!(entries[0]["state"], "RUNNING", "{overview}");
    let (_, job) = http(port, "GET", &format!("/jobs/{job_id}"), None);
    assert_eq!(job["state"], "RUNNING", "the lookup finds the new run: {job}");
    assert!(job["start-time"].as_i64().unwrap() > first_start, "{job}");
    let out = rheo(cwd.path(), &["cancel", "-m", &jm, job_id]);
    assert!(out.status.success(), "{out:?}");
    cluster.await_state(job_id, JobState::Canceled).unwrap();
    let all = stdout(&rheo(cwd.path(), &["list", "-a", "-m", &jm]));
    assert_eq!(all.matches(job_id).count(), 1, "{all}");
    assert!(all.contains(&format!("{job_id} : datagen-word-count (CANCELED)")), "{all}");
}
