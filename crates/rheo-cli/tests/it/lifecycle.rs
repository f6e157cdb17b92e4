//! Lifecycles as a cluster manager drives them: a TaskManager sent SIGTERM (a pod deleted, a
//! scale-down) leaves gracefully and the job is redeployed without counting a failure; a
//! JobManager started again after its job FINISHED keeps it finished and rewrites nothing.
//! Every check compares the committed output with counts computed here from the input.

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

    #[allow(dead_code)]
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
fn a_taskmanager_sent_sigterm_leaves_and_the_job_moves_without_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("input.tsv"), dir.path().join("out"));
    let expected = write_input(&input);
    let mut cluster = Cluster::new(dir.path(), &["taskmanager.numberOfTaskSlots=1", "restart-strategy.type=none"]);
    cluster.start_jobmanager(&job_args(&input, &output, Some(2)));
    // Two TaskManagers of one slot each: both run a subtask of the job.
    for _ in 0..2 {
        cluster.start_taskmanager();
    }
    cluster.await_jm_log("deploying the job", 1, Duration::from_secs(60));
    cluster.await_jm_log("completed checkpoint", 2, Duration::from_secs(60));
    let pid = cluster.taskmanagers[0].0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let sent = Instant::now();
    let status = loop {
        if let Some(status) = cluster.taskmanagers[0].0.try_wait().unwrap() {
            break status;
        }
        assert!(sent.elapsed() < Duration::from_secs(15), "the TaskManager ignored SIGTERM:\n{}", cluster.logs());
        std::thread::sleep(Duration::from_millis(10));
    };
    eprintln!("TaskManager left {:?} after SIGTERM ({status})", sent.elapsed());
    assert!(status.success(), "a leaving TaskManager exits cleanly: {status}");
    cluster.start_taskmanager();
    cluster.await_jm_log("deploying the job", 2, Duration::from_secs(60));
    // With restart-strategy none, a failure would end the job: it must finish, exact.
    assert_exact(&cluster, &output, &expected);
    let log = cluster.jm_log();
    assert!(log.contains("a TaskManager leaves; redeploying the job"), "{log}");
    assert!(!log.contains("restarting the job"), "the leave counted as a failure:\n{log}");
}

#[test]
fn a_jobmanager_started_again_after_its_job_finished_keeps_it_finished() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("input.tsv"), dir.path().join("out"));
    let expected = write_input(&input);
    let mut cluster = Cluster::new(dir.path(), &["taskmanager.numberOfTaskSlots=2"]);
    let args = job_args(&input, &output, Some(2));
    cluster.start_jobmanager(&args);
    cluster.start_taskmanager();
    assert_exact(&cluster, &output, &expected);
    let parts = |dir: &Path| -> Vec<(PathBuf, std::time::SystemTime)> {
        let mut parts: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("part-"))
            .map(|e| (e.path(), e.metadata().unwrap().modified().unwrap()))
            .collect();
        parts.sort();
        parts
    };
    let before = parts(&output);
    cluster.kill_jobmanager();
    cluster.start_jobmanager(&args);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let log = cluster.jm_log();
        if log.contains("it stays finished") {
            break;
        }
        assert!(!log.contains("deploying the job"), "the finished job ran again:\n{log}");
        assert!(Instant::now() < deadline, "{}", cluster.logs());
        std::thread::sleep(Duration::from_millis(20));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(jobs) = std::panic::catch_unwind(|| cluster.rest("/jobs/overview"))
            && jobs["jobs"][0]["state"] == "FINISHED"
        {
            break;
        }
        assert!(Instant::now() < deadline, "not FINISHED over REST:\n{}", cluster.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(parts(&output), before, "committed part files were rewritten");
    assert_eq!(committed(&output), expected);
}
