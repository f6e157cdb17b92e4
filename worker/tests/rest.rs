//! The REST API of `rheo run` and the client commands against it, on a real process: answers
//! have the field names and JSON types of a real Flink 2.3 JobManager (the captured responses in
//! `worker/rest/tests/flink-rest/`), errors are Flink-shaped, and a savepoint taken with
//! `rheo savepoint`, a stop with `rheo stop` and a resume with `--from-savepoint` work end to end.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A `rheo run` in the background, logging at info into `<cwd>/run.log`; killed when dropped.
struct Run {
    child: Child,
    log: PathBuf,
    port: u16,
}

impl Run {
    fn start(cwd: &Path, extra: &[&str]) -> Run {
        let port = free_port();
        let log = cwd.join("run.log");
        let mut args = vec!["run", "datagen-word-count", "--rate", "2000", "--sink", "discard"];
        args.extend_from_slice(extra);
        let rest_port = format!("rest.port={port}");
        args.extend_from_slice(&["-D", &rest_port, "-D", "execution.checkpointing.interval=200ms"]);
        let child = Command::new(env!("CARGO_BIN_EXE_rheo"))
            .current_dir(cwd)
            .args(&args)
            .env("RHEO_LOG", "info")
            .env_remove("RHEO_CONF_DIR")
            .env_remove("RHEO_PARALLELISM_DEFAULT")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start rheo run");
        Run { child, log, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (bounded) for the process to exit.
    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "rheo run did not exit; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn get(&self, path: &str) -> (u16, Value) {
        http(self.port, "GET", path, None)
    }

    /// Polls `path` until `done` holds for its JSON answer.
    fn await_json(&mut self, path: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("rheo run exited ({status}) while waiting for {what}; log:\n{}", self.log());
            }
            if let Ok((200, json)) = try_http(self.port, "GET", path, None)
                && done(&json)
            {
                return json;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request; the status and the JSON body (`null` when empty or not JSON).
fn try_http(port: u16, method: &str, path: &str, body: Option<&str>) -> std::io::Result<(u16, Value)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    try_http(port, method, path, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

fn rheo(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rheo")).current_dir(cwd).args(args).env("RHEO_LOG", "warn").output().unwrap()
}

fn captured(name: &str) -> Value {
    let path = format!("{}/rest/tests/flink-rest/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap()
}

/// Fields of Flink's answers that Rheo leaves out on purpose (JSON paths, `[]` for any element).
const OMITTED: &[&str] = &[
    // The handle knows the vertices but not the edges between them.
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
    let jobs = run.await_json("/jobs", "the job to run", |j| j["jobs"][0]["status"] == "RUNNING");
    let id = jobs["jobs"][0]["id"].as_str().unwrap().to_string();
    assert!(run.log().contains(&format!("REST API at {}", run.url())), "{}", run.log());
    run.await_json(&format!("/jobs/{id}/checkpoints"), "a checkpoint", |c| c["counts"]["completed"].as_u64() > Some(0));

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
    assert!(status.success(), "rheo run after stop: {status}; log:\n{}", run.log());

    // Resume elsewhere (no checkpoints of its own there) from the stop's savepoint.
    let cwd2 = tempfile::tempdir().unwrap();
    let mut resumed = Run::start(cwd2.path(), &["--from-savepoint", &stopped_at]);
    resumed.await_json(&format!("/jobs/{id}"), "the resumed job to run", |j| j["state"] == "RUNNING");
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
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default()
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
