//! The REST API of a session cluster against captured answers of a real Flink 2.3 JobManager
//! (`crates/rheo-rest/tests/flink-rest/`): for every endpoint Rheo serves that has a captured answer,
//! the field names and JSON types must be Flink's, recursively. Deliberate differences are
//! listed in [`DIFFERENCES`] with their reason.

use std::collections::HashSet;

use crate::common::*;
use serde_json::Value;

/// Differences from Flink's answers that Rheo makes on purpose: a JSON path (`[]` for any
/// element of an array) and why. The test fails when one is no longer needed.
const DIFFERENCES: &[(&str, &str)] = &[
    // Each node is compared with Flink's first, a window with inputs; as in Flink's plan, a
    // source node has none.
    ("/jobs/:id.plan.nodes[].inputs", "a source node has no inputs (nor has Flink's)"),
    ("/jobs/:id/after-cancel.plan.nodes[].inputs", "a source node has no inputs (nor has Flink's)"),
    ("/jobs/:id/plan.plan.nodes[].inputs", "a source node has no inputs (nor has Flink's)"),
    ("/v1/jobs/:id.plan.nodes[].inputs", "a source node has no inputs (nor has Flink's)"),
];

/// Arrays that may be empty where Flink's captured one is not, and why.
const MAY_BE_EMPTY: &[(&str, &str)] = &[(
    "/jobmanager/environment.jvm.options",
    "the process's command-line arguments (Rheo runs no JVM): none when it was started without any",
)];

/// Compares answers with Flink's, collecting differences and the listed ones it met.
#[derive(Default)]
struct Shapes {
    errors: Vec<String>,
    used: HashSet<&'static str>,
}

impl Shapes {
    fn excepted(&mut self, path: &str) -> bool {
        let found = DIFFERENCES.iter().find(|(p, _)| *p == path);
        if let Some((p, _)) = found {
            self.used.insert(p);
        }
        found.is_some()
    }

    /// Checks that `ours` has the keys and JSON types of `flink`, recursively: every key Flink
    /// has must be there with the same type, and no other. Arrays compare each of our elements
    /// with Flink's first, and must not be empty when Flink's is not. `null` matches anything
    /// (Flink's nullable fields).
    fn compare(&mut self, ours: &Value, flink: &Value, at: &str) {
        match (ours, flink) {
            (Value::Null, _) | (_, Value::Null) => {}
            (Value::Object(a), Value::Object(b)) => {
                for key in b.keys() {
                    let path = format!("{at}.{key}");
                    if !a.contains_key(key) && !self.excepted(&path) {
                        self.errors.push(format!("{path}: missing"));
                    }
                }
                for (key, value) in a {
                    let path = format!("{at}.{key}");
                    match b.get(key) {
                        Some(theirs) => self.compare(value, theirs, &path),
                        None if self.excepted(&path) => {}
                        None => self.errors.push(format!("{path}: not in Flink's answer")),
                    }
                }
            }
            (Value::Array(a), Value::Array(b)) => {
                if let Some(theirs) = b.first() {
                    if a.is_empty() && !MAY_BE_EMPTY.iter().any(|(p, _)| *p == at) {
                        self.errors.push(format!("{at}: empty, so its elements cannot be compared"));
                    }
                    for value in a {
                        self.compare(value, theirs, &format!("{at}[]"));
                    }
                }
            }
            (Value::Number(_), Value::Number(_))
            | (Value::String(_), Value::String(_))
            | (Value::Bool(_), Value::Bool(_)) => {}
            _ => self.errors.push(format!("{at}: {ours} where Flink has {flink}")),
        }
    }
}

#[test]
fn session_cluster_answers_as_flink_does() {
    let session = Session::new(&[("s3.secret-key", "hunter2"), ("s3.access-key", "AKIA123")]);
    let server = serve(session.clone(), session.config());
    let mut shapes = Shapes::default();
    let mut compare = |name: &str, ours: &Value, file: &str| shapes.compare(ours, &captured(file), name);

    // Submit a job that fails once (one exception), restarts and checkpoints.
    let body = r#"{"entryClass":"fail-once","programArgsList":["--fail-at","3000"],"parallelism":2}"#;
    let (status, run) = http(&server, "POST", "/jars/rheo/run", Some(body));
    assert_eq!(status, 200, "{run}");
    compare("/jars/:jarid/run", &run, "jars-run.json");
    let id = run["jobid"].as_str().unwrap().to_string();
    await_json(&server, &format!("/jobs/{id}/exceptions"), "the injected failure", |e| {
        !e["exceptionHistory"]["entries"].as_array().unwrap().is_empty()
    });
    await_json(&server, &format!("/jobs/{id}"), "the restarted job", |j| j["state"] == "RUNNING");
    await_json(&server, &format!("/jobs/{id}/checkpoints"), "checkpoints in the history", |c| {
        c["history"].as_array().is_some_and(|h| h.len() >= 2)
    });
    let job = get(&server, &format!("/jobs/{id}"));
    let vertex = job["vertices"][0]["id"].as_str().unwrap().to_string();
    let taskmanager = get(&server, "/taskmanagers")["taskmanagers"][0]["id"].as_str().unwrap().to_string();

    let endpoints = [
        ("/config", "/config".to_string(), "config.json"),
        ("/overview", "/overview".to_string(), "overview.json"),
        ("/jobs", "/jobs".to_string(), "jobs.json"),
        ("/jobs/overview", "/jobs/overview".to_string(), "jobs-overview.json"),
        ("/jobs/:id", format!("/jobs/{id}"), "job.json"),
        ("/jobs/:id/checkpoints", format!("/jobs/{id}/checkpoints"), "job-checkpoints.json"),
        ("/jobs/:id/checkpoints/config", format!("/jobs/{id}/checkpoints/config"), "job-checkpoints-config.json"),
        ("/jobs/:id/exceptions", format!("/jobs/{id}/exceptions"), "job-exceptions.json"),
        (
            "/jobs/:id/vertices/:vid/backpressure",
            format!("/jobs/{id}/vertices/{vertex}/backpressure"),
            "vertex0-backpressure.json",
        ),
        (
            "/jobs/:id/vertices/:vid/metrics?get",
            format!("/jobs/{id}/vertices/{vertex}/metrics?get=numRecordsIn,busyTimeMsPerSecond,idleTimeMsPerSecond"),
            "vertex0-metrics-values.json",
        ),
        (
            "/jobs/:id/vertices/:vid/metrics",
            format!("/jobs/{id}/vertices/{vertex}/metrics"),
            "vertex0-metrics-list.json",
        ),
        ("/taskmanagers", "/taskmanagers".to_string(), "taskmanagers.json"),
        ("/jobmanager/config", "/jobmanager/config".to_string(), "jobmanager-config.json"),
        ("/jars", "/jars".to_string(), "jars.json"),
        // What the dashboard reads.
        ("/jobs/:id/plan", format!("/jobs/{id}/plan"), "job-plan.json"),
        ("/jobs/:id/config", format!("/jobs/{id}/config"), "job-config.json"),
        ("/jobs/:id/accumulators", format!("/jobs/{id}/accumulators"), "job-accumulators.json"),
        ("/jobs/:id/metrics", format!("/jobs/{id}/metrics"), "job-metrics-list.json"),
        (
            "/jobs/:id/metrics?get",
            format!(
                "/jobs/{id}/metrics?get=uptime,numRestarts,lastCheckpointDuration,numberOfCompletedCheckpoints,lastCheckpointSize"
            ),
            "job-metrics-values.json",
        ),
        ("/jobs/:id/vertices/:vid", format!("/jobs/{id}/vertices/{vertex}"), "vertex0.json"),
        (
            "/jobs/:id/vertices/:vid/subtasktimes",
            format!("/jobs/{id}/vertices/{vertex}/subtasktimes"),
            "vertex0-subtasktimes.json",
        ),
        (
            "/jobs/:id/vertices/:vid/taskmanagers",
            format!("/jobs/{id}/vertices/{vertex}/taskmanagers"),
            "vertex0-taskmanagers.json",
        ),
        (
            "/jobs/:id/vertices/:vid/subtasks/metrics?get",
            format!("/jobs/{id}/vertices/{vertex}/subtasks/metrics?get=numRecordsIn,numRecordsOut"),
            "vertex0-subtasks-metrics.json",
        ),
        (
            "/jobs/:id/vertices/:vid/subtasks/0",
            format!("/jobs/{id}/vertices/{vertex}/subtasks/0"),
            "vertex0-subtask0.json",
        ),
        ("/taskmanagers/:id", format!("/taskmanagers/{taskmanager}"), "taskmanager-detail.json"),
        ("/jobmanager/environment", "/jobmanager/environment".to_string(), "jobmanager-environment.json"),
        ("/jobmanager/metrics", "/jobmanager/metrics".to_string(), "jobmanager-metrics-list.json"),
        // Flink's client calls every path under /v1.
        ("/v1/jobs/overview", "/v1/jobs/overview".to_string(), "jobs-overview.json"),
        ("/v1/jobs/:id", format!("/v1/jobs/{id}"), "job.json"),
    ];
    for (name, path, file) in &endpoints {
        compare(name, &get(&server, path), file);
    }
    // A TaskManager's metrics in Flink are its JVM's (heap, CPU load, network buffers): Rheo
    // runs no JVM and lists none, as an array of Flink's shape; names it does not serve are
    // left out of `get`, as Flink does.
    for path in [
        format!("/taskmanagers/{taskmanager}/metrics"),
        format!("/taskmanagers/{taskmanager}/metrics?get=Status.JVM.Memory.Heap.Used,Status.JVM.CPU.Load"),
        "/taskmanagers/metrics?get=Status.JVM.Memory.Heap.Used".to_string(),
    ] {
        assert_eq!(get(&server, &path), serde_json::json!([]), "{path}");
    }
    // No capture: Flink lists its log files as {"logs": [{"name", "size", "mtime"}]}; Rheo logs
    // to stderr and has none to list.
    let logs = get(&server, "/jobmanager/logs");
    assert_eq!(logs, serde_json::json!({"logs": []}), "{logs}");
    // The same answer under /v1 as at the root.
    assert_eq!(get(&server, "/v1/jobmanager/environment")["jvm"], get(&server, "/jobmanager/environment")["jvm"]);
    let (status, missing) = http(&server, "GET", "/v1/jobs/00000000000000000000000000000000", None);
    assert_eq!(status, 404);
    compare("/v1 404", &missing, "error-404-unknown-job.json");
    let (status, missing) = http(&server, "GET", "/jobs/00000000000000000000000000000000", None);
    assert_eq!(status, 404);
    compare("404", &missing, "error-404-unknown-job.json");

    // The values behind the shapes.
    let config = get(&server, "/jobmanager/config");
    let value = |key: &str| config.as_array().unwrap().iter().find(|e| e["key"] == key).unwrap()["value"].clone();
    assert_eq!((value("s3.secret-key"), value("s3.access-key")), ("******".into(), "******".into()));
    assert_eq!(value("restart-strategy.type"), "fixed-delay");
    let exceptions = get(&server, &format!("/jobs/{id}/exceptions"));
    let entry = &exceptions["exceptionHistory"]["entries"][0];
    assert!(entry["stacktrace"].as_str().unwrap().contains("injected failure at record 3000"), "{entry}");
    assert!(entry["taskName"].as_str().unwrap().contains("Map"), "{entry}");
    let jars = get(&server, "/jars");
    let entries = jars["files"][0]["entry"].as_array().unwrap();
    assert!(entries.iter().any(|e| e["name"] == "fail-once" && e["description"].is_string()), "{jars}");
    assert_eq!(jars["files"][0]["id"], "rheo");

    // After a cancel.
    let (status, _) = http(&server, "PATCH", &format!("/jobs/{id}?mode=cancel"), None);
    assert_eq!(status, 202);
    let cancelled = await_json(&server, &format!("/jobs/{id}"), "the cancelled job", |j| j["state"] == "CANCELED");
    compare("/jobs/:id/after-cancel", &cancelled, "job-after-cancel.json");
    compare("/jobs/overview/after-cancel", &get(&server, "/jobs/overview"), "jobs-overview-after-cancel.json");
    compare("/overview/final", &get(&server, "/overview"), "overview-final.json");

    assert!(shapes.errors.is_empty(), "answers differ from Flink's:\n{}", shapes.errors.join("\n"));
    let unused: Vec<_> = DIFFERENCES.iter().filter(|(p, _)| !shapes.used.contains(p)).collect();
    assert!(unused.is_empty(), "listed differences that no answer has: {unused:?}");
}
