//! Helpers shared by the REST tests: a session cluster in this process (a [`ClusterView`] that
//! runs submitted jobs on mini-clusters), test jobs, and a small HTTP client with timeouts.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rheo::connectors::datagen::DatagenConfig;
use rheo::prelude::*;
use rheo::runtime::driver::handle::JobHandle;
use rheo::runtime::driver::minicluster::{MiniCluster, job_id_for};
use rheo_cli::jobs::{JobDef, JobRegistry};
use rheo_cluster::rest::{RestOptions, RestServer};
use rheo_cluster::view::{ClusterView, SubmitError, SubmitRequest, TaskManagerInfo};
use serde_json::Value;

/// The longest any test waits for a condition.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Generated numbers into a sink that sleeps `--sleep-us` per record: the source is
/// back-pressured. Source and sink are separate tasks (a rebalance between them).
#[derive(Debug, Clone, clap::Parser)]
pub struct SlowSink {
    #[arg(long, default_value_t = 50)]
    sleep_us: u64,
}

impl JobDef for SlowSink {
    const NAME: &'static str = "slow-sink";
    const DESCRIPTION: &'static str = "numbers into a sink that sleeps per record";

    fn build(self, env: &StreamEnv) -> anyhow::Result<()> {
        let sleep = Duration::from_micros(self.sleep_us);
        env.datagen(DatagenConfig::default(), Arc::new(|i| i)).rebalance().add_sink("sleepy", move |_| Sleepy(sleep));
        Ok(())
    }
}

struct Sleepy(Duration);

impl SinkFunction<u64> for Sleepy {
    fn invoke(&mut self, _value: u64, _timestamp: Timestamp) -> Result<(), SinkError> {
        std::thread::sleep(self.0);
        Ok(())
    }
}

/// Rate-limited numbers through a map that panics once, at record `--fail-at` (counted over
/// every attempt), into a discarding sink.
#[derive(Debug, Clone, clap::Parser)]
pub struct FailOnce {
    #[arg(long, default_value_t = 2_000)]
    fail_at: u64,
    #[arg(long, default_value_t = 5_000.0)]
    rate: f64,
    /// Fail in every attempt, so that the job fails once restarts run out.
    #[arg(long)]
    always: bool,
}

impl JobDef for FailOnce {
    const NAME: &'static str = "fail-once";
    const DESCRIPTION: &'static str = "numbers through a map that fails once";

    fn build(self, env: &StreamEnv) -> anyhow::Result<()> {
        let seen = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicBool::new(false));
        let (fail_at, always) = (self.fail_at, self.always);
        env.datagen(DatagenConfig { count: None, rate: Some(self.rate) }, Arc::new(|i| i))
            .rebalance()
            .map(move |x: u64| {
                let n = seen.fetch_add(1, Ordering::Relaxed) + 1;
                if (always && n.is_multiple_of(fail_at)) || (n >= fail_at && !failed.swap(true, Ordering::Relaxed)) {
                    panic!("injected failure at record {fail_at}");
                }
                x
            })
            .discard();
        Ok(())
    }
}

/// Rate-limited numbers, all keyed alike, through a rolling reduce that sleeps `--sleep-us` per record:
/// one subtask of the keyed reduce does all the work and the others idle.
#[derive(Debug, Clone, clap::Parser)]
pub struct Skewed {
    #[arg(long, default_value_t = 100)]
    sleep_us: u64,
    #[arg(long, default_value_t = 2_000.0)]
    rate: f64,
}

impl JobDef for Skewed {
    const NAME: &'static str = "skewed";
    const DESCRIPTION: &'static str = "numbers, all of one key, through a slow map";

    fn build(self, env: &StreamEnv) -> anyhow::Result<()> {
        let sleep = Duration::from_micros(self.sleep_us);
        env.datagen(DatagenConfig { count: None, rate: Some(self.rate) }, Arc::new(|i| i))
            .key_by(|_: &u64| 0u64)
            .reduce(move |_, x| {
                std::thread::sleep(sleep);
                x
            })
            .discard();
        Ok(())
    }
}

/// How often the sink of each `counted` job (by `--tag`) saw each record.
pub static SEEN: Mutex<Vec<(String, Vec<u32>)>> = Mutex::new(Vec::new());

/// `--count` rate-limited numbers through a rebalance into a sink that counts how often it sees
/// each (in [`SEEN`] under `--tag`): a record processed twice shows as a 2.
#[derive(Debug, Clone, clap::Parser)]
pub struct Counted {
    #[arg(long)]
    tag: String,
    #[arg(long, default_value_t = 20_000)]
    count: u64,
    #[arg(long, default_value_t = 4_000.0)]
    rate: f64,
}

impl JobDef for Counted {
    const NAME: &'static str = "counted";
    const DESCRIPTION: &'static str = "numbers into a sink that counts how often it sees each";

    fn build(self, env: &StreamEnv) -> anyhow::Result<()> {
        let (tag, count) = (self.tag.clone(), self.count as usize);
        let mut seen = SEEN.lock().unwrap();
        if !seen.iter().any(|(t, _)| *t == tag) {
            seen.push((tag.clone(), vec![0; count]));
        }
        env.datagen(DatagenConfig { count: Some(self.count), rate: Some(self.rate) }, Arc::new(|i| i))
            .rebalance()
            .add_sink("counting", move |_| CountingSink(tag.clone()));
        Ok(())
    }
}

struct CountingSink(String);

impl SinkFunction<u64> for CountingSink {
    fn invoke(&mut self, value: u64, _timestamp: Timestamp) -> Result<(), SinkError> {
        let mut seen = SEEN.lock().unwrap();
        let counts = &mut seen.iter_mut().find(|(t, _)| *t == self.0).expect("registered by build").1;
        counts[value as usize] += 1;
        Ok(())
    }
}

/// A session cluster in this process: every submitted job runs on a mini-cluster of its own.
pub struct Session {
    registry: JobRegistry,
    config: Configuration,
    jobs: Mutex<Vec<JobHandle>>,
    pub taskmanagers: Vec<TaskManagerInfo>,
    /// Every request `submit` got, accepted or not.
    pub requests: Mutex<Vec<SubmitRequest>>,
    /// Checkpoints of the jobs go under this directory.
    _dir: tempfile::TempDir,
}

impl Session {
    pub fn new(extra: &[(&str, &str)]) -> Arc<Session> {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Configuration::new();
        config.set("state.checkpoints.dir", dir.path().join("checkpoints").to_str().unwrap());
        config.set("state.savepoints.dir", dir.path().join("savepoints").to_str().unwrap());
        config.set("execution.checkpointing.interval", "100 ms");
        config.set("restart-strategy.type", "fixed-delay");
        config.set("restart-strategy.fixed-delay.attempts", "3");
        config.set("restart-strategy.fixed-delay.delay", "0 ms");
        for (key, value) in extra {
            config.set(*key, *value);
        }
        let registry = rheo_cli::jobs::builtin()
            .register::<SlowSink>()
            .register::<FailOnce>()
            .register::<Skewed>()
            .register::<Counted>();
        Arc::new(Session {
            registry,
            config,
            jobs: Mutex::new(Vec::new()),
            taskmanagers: vec![fake_taskmanager("tm-1", "10.0.0.1:6121", 4, 3)],
            requests: Mutex::new(Vec::new()),
            _dir: dir,
        })
    }

    pub fn config(&self) -> &Configuration {
        &self.config
    }

    /// Cancels every job (they end on their own threads).
    pub fn cancel_all(&self) {
        self.jobs.lock().unwrap().iter().for_each(JobHandle::cancel);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.cancel_all();
    }
}

impl ClusterView for Session {
    fn jobs(&self) -> Vec<JobHandle> {
        self.jobs.lock().unwrap().clone()
    }

    fn taskmanagers(&self) -> Vec<TaskManagerInfo> {
        self.taskmanagers.clone()
    }

    fn available_jobs(&self) -> Vec<(String, String)> {
        self.registry.iter().map(|j| (j.name.to_string(), j.description.to_string())).collect()
    }

    fn submit(&self, request: SubmitRequest) -> Result<String, SubmitError> {
        self.requests.lock().unwrap().push(request.clone());
        let Some(entry) = self.registry.get(&request.job).cloned() else {
            return Err(SubmitError::BadRequest(format!("unknown job '{}'", request.job)));
        };
        let job_id = request.job_id.clone().unwrap_or_else(|| {
            job_id_for(&format!("{}/{:?}/{}", request.job, request.args, self.jobs.lock().unwrap().len()))
        });
        if self.jobs().iter().any(|j| j.job_id() == job_id && !j.status().state.is_terminal()) {
            return Err(SubmitError::Conflict(format!("job {job_id} is running already")));
        }
        let mut config = self.config.clone();
        if let Some(path) = &request.savepoint_path {
            config.set("execution.savepoint.path", path.as_str());
        }
        // StreamEnv is not Send: build and run the job on a thread of its own.
        let (built_tx, built_rx) = std::sync::mpsc::channel();
        let id = job_id.clone();
        std::thread::spawn(move || {
            let mut env = StreamEnv::new(config.clone());
            if let Some(p) = request.parallelism {
                env.set_parallelism(p);
            }
            if let Err(e) = entry.build_from(&env, &request.args) {
                let _ = built_tx.send(Err(e.to_string()));
                return;
            }
            let cluster = MiniCluster::new(config).with_job_id(id);
            let _ = built_tx.send(Ok(cluster.handle()));
            let _ = env.execute_on(&cluster, entry.name);
        });
        let handle = built_rx.recv().unwrap().map_err(SubmitError::BadRequest)?;
        self.jobs.lock().unwrap().push(handle);
        Ok(job_id)
    }
}

pub fn fake_taskmanager(id: &str, data_address: &str, slots: usize, free_slots: usize) -> TaskManagerInfo {
    TaskManagerInfo {
        id: id.to_string(),
        data_address: data_address.to_string(),
        slots,
        free_slots,
        last_heartbeat: 1_795_464_444_106,
        cpu_cores: 8,
        physical_memory: 16 << 30,
    }
}

/// Serves `view` on a free local port.
pub fn serve(view: Arc<dyn ClusterView>, config: &Configuration) -> RestServer {
    let options = RestOptions { job_name: None, config: config.clone() };
    rheo_cluster::rest::serve_cluster(view, "127.0.0.1:0".parse().unwrap(), options).unwrap()
}

/// One HTTP/1.1 request; the status and the JSON body (`null` when empty or not JSON).
pub fn try_http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> std::io::Result<(u16, Value)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
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
    Ok((status, serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_string()))))
}

pub fn http(server: &RestServer, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    try_http(server.local_addr(), method, path, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

pub fn get(server: &RestServer, path: &str) -> Value {
    let (status, body) = http(server, "GET", path, None);
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// Polls `GET path` until `done` holds for its answer; the answer.
pub fn await_json(server: &RestServer, path: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + DEADLINE;
    let mut last = Value::Null;
    loop {
        if let Ok((200, json)) = try_http(server.local_addr(), "GET", path, None) {
            if done(&json) {
                return json;
            }
            last = json;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; last answer of {path}: {last}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the `rheo` binary with a deadline; killed when it does not exit in time.
pub fn rheo(args: &[&str]) -> std::process::Output {
    let cwd = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rheo"))
        .current_dir(cwd.path())
        .args(args)
        .env("RHEO_LOG", "warn")
        .env_remove("RHEO_JOBMANAGER")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read both pipes on threads, so a chatty child cannot block on a full pipe.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rheo {args:?} did not exit in {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::process::Output { status, stdout: stdout.join().unwrap(), stderr: stderr.join().unwrap() }
}

/// The captured Flink 2.3 answer `name`.
pub fn captured(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../rheo-rest/tests/flink-rest").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// The S3 endpoint of the test environment (`scripts/services/s3.sh start`, or the command
/// under `scripts/with-s3.sh`). Without it the test fails, unless skipping is allowed
/// ([`rheo_testkit::skip_or_fail`]): then `None`.
pub fn s3_root() -> Option<String> {
    match std::env::var("RHEO_TEST_S3") {
        Ok(root) => Some(root),
        Err(_) => {
            rheo_testkit::skip_or_fail("the S3 variant", "RHEO_TEST_S3 is not set (run under scripts/with-s3.sh)");
            None
        }
    }
}
