//! The standalone cluster as separate processes on 127.0.0.1: `rheo jobmanager` and
//! `rheo taskmanager`s run the exactly-once event-time word count while processes are killed
//! with SIGKILL; every committed record is checked against counts computed here from the input.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

const LINES: usize = 120_000;
/// Lines per second over all sources: the job runs for ~6 s, long enough to kill things.
const RATE: &str = "20000";

/// `ts<TAB>text` lines, 40 per millisecond of event time, 4 words each from 60.
fn write_input(path: &Path) -> BTreeMap<(String, String), u64> {
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(11);
    let mut text = String::with_capacity(LINES * 24);
    let mut expected = BTreeMap::new();
    for i in 0..LINES {
        let ts = i / 40;
        text.push_str(&format!("{ts}\t"));
        for k in 0..4 {
            let word = format!("w{}", rng.random_range(0..60));
            if k > 0 {
                text.push(' ');
            }
            text.push_str(&word);
            let window_end = (ts / 1000 + 1) * 1000;
            *expected.entry((window_end.to_string(), word)).or_insert(0) += 1;
        }
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
    expected
}

/// Every committed line of the part files under `dir`; fails on a line committed twice.
fn committed(dir: &Path) -> BTreeMap<(String, String), u64> {
    let mut counts = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return counts };
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with('.') || !name.starts_with("part-") {
            continue;
        }
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let fields: Vec<&str> = line.split(',').collect();
            assert_eq!(fields.len(), 3, "CSV line '{line}' in {name}");
            let key = (fields[0].to_string(), fields[1].to_string());
            let previous = counts.insert(key.clone(), fields[2].parse().unwrap());
            assert!(previous.is_none(), "{key:?} committed twice (again in {name})");
        }
    }
    counts
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A JobManager and its TaskManagers, each a `rheo` process logging to a file; all are killed
/// when the cluster is dropped.
struct Cluster {
    dir: PathBuf,
    rest_port: u16,
    config: Vec<String>,
    jobmanager: Option<(Child, PathBuf)>,
    jm_starts: usize,
    taskmanagers: Vec<(Child, PathBuf)>,
}

impl Cluster {
    fn new(dir: &Path, extra: &[&str]) -> Self {
        let (rpc_port, rest_port) = (free_port(), free_port());
        let mut config: Vec<String> = vec![
            format!("jobmanager.rpc.port={rpc_port}"),
            "jobmanager.rpc.address=127.0.0.1".into(),
            format!("rest.port={rest_port}"),
            "execution.checkpointing.interval=300ms".into(),
            format!("state.checkpoints.dir=file://{}/chk", dir.display()),
            "heartbeat.interval=200ms".into(),
            "heartbeat.timeout=3s".into(),
            "restart-strategy.type=fixed-delay".into(),
            "restart-strategy.fixed-delay.attempts=20".into(),
            "restart-strategy.fixed-delay.delay=100ms".into(),
            "taskmanager.data.port=0".into(),
        ];
        config.extend(extra.iter().map(|s| s.to_string()));
        Self { dir: dir.to_path_buf(), rest_port, config, jobmanager: None, jm_starts: 0, taskmanagers: Vec::new() }
    }

    fn spawn(&self, name: &str, args: &[String]) -> (Child, PathBuf) {
        let log = self.dir.join(format!("{name}.log"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_rheo"));
        command.current_dir(&self.dir).arg(&args[0]);
        for kv in &self.config {
            command.arg("-D").arg(kv);
        }
        let child = command
            .args(&args[1..])
            .env("RHEO_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        (child, log)
    }

    fn start_jobmanager(&mut self, job_args: &[String]) {
        self.jm_starts += 1;
        let mut args = vec!["jobmanager".to_string()];
        args.extend(job_args.iter().cloned());
        self.jobmanager = Some(self.spawn(&format!("jobmanager-{}", self.jm_starts), &args));
    }

    fn start_taskmanager(&mut self) {
        let name = format!("taskmanager-{}", self.taskmanagers.len());
        let tm = self.spawn(&name, &["taskmanager".to_string()]);
        self.taskmanagers.push(tm);
    }

    fn kill_taskmanager(&mut self, index: usize) {
        let child = &mut self.taskmanagers[index].0;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }

    fn kill_jobmanager(&mut self) {
        let (child, _) = self.jobmanager.as_mut().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn jm_log(&self) -> String {
        std::fs::read_to_string(&self.jobmanager.as_ref().unwrap().1).unwrap_or_default()
    }

    /// Waits until the JobManager's log has `count` lines containing `pattern`.
    fn await_jm_log(&self, pattern: &str, count: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let log = self.jm_log();
            if log.matches(pattern).count() >= count {
                return;
            }
            if log.contains("job ended") {
                panic!("the job ended while waiting for '{pattern}':\n{}", self.logs());
            }
            assert!(Instant::now() < deadline, "no '{pattern}' (x{count}) within {within:?}:\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A GET on the JobManager's REST API: the JSON body.
    fn rest(&self, path: &str) -> serde_json::Value {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.rest_port)).unwrap();
        write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let body = response.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
        serde_json::from_str(body).unwrap_or_else(|e| panic!("GET {path}: {e}: {response}"))
    }

    fn logs(&self) -> String {
        let mut all = String::new();
        for entry in std::fs::read_dir(&self.dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                all.push_str(&format!("==> {} <==\n", path.display()));
                for line in tail.into_iter().rev() {
                    all.push_str(line);
                    all.push('\n');
                }
            }
        }
        all
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (child, _) in self.taskmanagers.iter_mut().chain(self.jobmanager.as_mut()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn job_args(input: &Path, output: &Path, parallelism: Option<usize>) -> Vec<String> {
    let mut args: Vec<String> = vec!["--job".into(), "word-count".into()];
    if let Some(p) = parallelism {
        args.extend(["-p".into(), p.to_string()]);
    }
    args.push("--".into());
    for a in ["--event-time", "--window", "1s", "--rate", RATE, "--input"] {
        args.push(a.into());
    }
    args.push(input.display().to_string());
    args.push("--output".into());
    args.push(format!("file://{}", output.display()));
    args
}

/// The output, once the job finished, must be exactly the expected counts.
fn assert_exact(cluster: &Cluster, output: &Path, expected: &BTreeMap<(String, String), u64>) {
    cluster.await_jm_log("job finished", 1, Duration::from_secs(120));
    let got = committed(output);
    let missing = expected.iter().filter(|(k, v)| got.get(*k) != Some(v)).count();
    let extra = got.keys().filter(|k| !expected.contains_key(*k)).count();
    assert!(missing == 0 && extra == 0, "{missing} counts wrong or missing, {extra} unexpected\n{}", cluster.logs());
}

#[test]
fn a_killed_taskmanager_is_replaced_and_the_output_stays_exact() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("input.tsv"), dir.path().join("out"));
    let expected = write_input(&input);
    let mut cluster = Cluster::new(dir.path(), &["taskmanager.numberOfTaskSlots=1"]);
    cluster.start_jobmanager(&job_args(&input, &output, Some(3)));
    for _ in 0..3 {
        cluster.start_taskmanager();
    }
    cluster.await_jm_log("deploying the job", 1, Duration::from_secs(60));
    cluster.await_jm_log("completed checkpoint", 2, Duration::from_secs(60));
    cluster.kill_taskmanager(1);
    cluster.await_jm_log("TaskManager lost", 1, Duration::from_secs(30));
    cluster.start_taskmanager();
    cluster.await_jm_log("deploying the job", 2, Duration::from_secs(60));
    assert_exact(&cluster, &output, &expected);
    let log = cluster.jm_log();
    assert!(log.contains("restarting the job"), "the job never restarted:\n{log}");
    // The REST API tells the story: three TaskManagers, the job finished, the loss recorded.
    assert_eq!(cluster.rest("/overview")["taskmanagers"], 3);
    let jobs = cluster.rest("/jobs/overview");
    let job = &jobs["jobs"][0];
    assert_eq!(job["state"], "FINISHED", "{jobs}");
    let exceptions = cluster.rest(&format!("/jobs/{}/exceptions", job["jid"].as_str().unwrap()));
    assert!(exceptions.to_string().contains("lost"), "no TaskManager loss in {exceptions}");
}

#[test]
fn a_restarted_jobmanager_resumes_from_the_newest_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("input.tsv"), dir.path().join("out"));
    let expected = write_input(&input);
    let mut cluster = Cluster::new(dir.path(), &["taskmanager.numberOfTaskSlots=2"]);
    let args = job_args(&input, &output, Some(2));
    cluster.start_jobmanager(&args);
    cluster.start_taskmanager();
    cluster.await_jm_log("completed checkpoint", 3, Duration::from_secs(60));
    cluster.kill_jobmanager();
    cluster.start_jobmanager(&args);
    cluster.await_jm_log("resuming from checkpoint", 1, Duration::from_secs(30));
    assert_exact(&cluster, &output, &expected);
}

#[test]
fn reactive_mode_rescales_when_a_taskmanager_joins() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("input.tsv"), dir.path().join("out"));
    let expected = write_input(&input);
    let mut cluster = Cluster::new(dir.path(), &["taskmanager.numberOfTaskSlots=1", "scheduler-mode=reactive"]);
    cluster.start_jobmanager(&job_args(&input, &output, None));
    cluster.start_taskmanager();
    cluster.await_jm_log("slots=1 taskmanagers=1", 1, Duration::from_secs(60));
    cluster.await_jm_log("completed checkpoint", 2, Duration::from_secs(60));
    cluster.start_taskmanager();
    cluster.await_jm_log("slots=2 taskmanagers=2", 1, Duration::from_secs(60));
    assert_exact(&cluster, &output, &expected);
    assert!(cluster.jm_log().contains("rescaling"), "no rescale:\n{}", cluster.jm_log());
}
