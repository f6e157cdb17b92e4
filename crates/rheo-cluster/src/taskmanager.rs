//! A TaskManager process (`rheo taskmanager`): offers its slots to the JobManager, runs the
//! subtasks deployed to it on its own threads, exchanges records with other TaskManagers over
//! its data port, uploads its tasks' checkpoint state to the object store itself, and reports
//! to the JobManager: heartbeats with record counters, checkpoint acknowledgements, task ends.
//!
//! If the JobManager goes away (connection closed, or silent for `heartbeat.timeout`) the
//! TaskManager cancels what it runs, as Flink's does, and registers again with whichever
//! JobManager answers at the configured address: that is how a restarted JobManager gets its
//! TaskManagers back.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select, unbounded};

use crate::registry::JobRegistry;
use crate::rpc::{self, Deployment, Registration, RpcError, ToJobManager, ToTaskManager};
use rheo_config::{ConfigError, Configuration, options};
use rheo_network::{NetworkConfig, NetworkEnvironment};
use rheo_runtime::checkpoint::coordinator::{UploadTarget, upload_snapshot};
use rheo_runtime::checkpoint::storage::initialize_file_systems;
use rheo_runtime::checkpoint::{CheckpointStorage, discover, io_runtime};
use rheo_runtime::graph::plan::{ExecutionPlan, Remote};
use rheo_runtime::task::{Control, CoordinatorLink, JobShared, TaskEvent, TaskMetrics, TaskOutcome, VertexCounters};

#[derive(Debug, thiserror::Error)]
pub enum TaskManagerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on the data port {addr}: {source}")]
    DataPort { addr: String, source: std::io::Error },
}

/// How a TaskManager is set up, from the configuration.
#[derive(Debug, Clone)]
pub struct TaskManagerSettings {
    /// `jobmanager.rpc.address:jobmanager.rpc.port`.
    pub jobmanager: String,
    pub slots: usize,
    /// Where the data port listens (port 0: any free port).
    pub data_bind: SocketAddr,
    /// The host other TaskManagers reach this one at; default: this side's address of the
    /// connection to the JobManager (the pod IP on Kubernetes).
    pub host: Option<String>,
    pub heartbeat_interval: Duration,
    pub heartbeat_timeout: Duration,
}

impl TaskManagerSettings {
    pub fn from_config(config: &Configuration) -> Result<Self, ConfigError> {
        config.validate()?;
        initialize_file_systems(config)?;
        let host = config.string(&options::JOBMANAGER_ADDRESS);
        let port = config.get(&options::JOBMANAGER_PORT)?;
        let data_port = config.get(&options::DATA_PORT)?;
        let slots = config.get(&options::TASK_SLOTS)?;
        let (interval, timeout) = heartbeat(config)?;
        Ok(Self {
            jobmanager: format!("{host}:{port}"),
            slots,
            data_bind: SocketAddr::from(([0, 0, 0, 0], data_port)),
            host: config.get(&options::TASKMANAGER_HOST)?,
            heartbeat_interval: interval,
            heartbeat_timeout: timeout,
        })
    }
}

/// `heartbeat.interval` and `heartbeat.timeout` (Flink's defaults: 10 s and 50 s).
pub fn heartbeat(config: &Configuration) -> Result<(Duration, Duration), ConfigError> {
    let interval = config.get(&options::HEARTBEAT_INTERVAL)?;
    let timeout = config.get(&options::HEARTBEAT_TIMEOUT)?;
    Ok((interval.max(Duration::from_millis(10)), timeout.max(interval)))
}

/// Runs a TaskManager until the process is stopped.
pub fn run(settings: TaskManagerSettings, registry: JobRegistry) -> Result<(), TaskManagerError> {
    let net = NetworkEnvironment::start(settings.data_bind, NetworkConfig::default())
        .map_err(|source| TaskManagerError::DataPort { addr: settings.data_bind.to_string(), source })?;
    tracing::info!(slots = settings.slots, data_port = net.local_addr().port(), "TaskManager started");
    let leave = Arc::new(Leave::default());
    watch_sigterm(leave.clone());
    let tm = TaskManager { settings, registry, net, leave };
    let mut failures = 0u32;
    loop {
        if tm.leave.requested.load(Ordering::SeqCst) {
            tracing::info!("TaskManager left the cluster");
            return Ok(());
        }
        match rpc::connect(&tm.settings.jobmanager, Duration::from_secs(5)) {
            Ok((reader, writer)) => {
                failures = 0;
                match tm.session(reader, writer) {
                    Ok(()) => {
                        tracing::warn!(jobmanager = %tm.settings.jobmanager, "the JobManager closed the connection")
                    }
                    Err(e) => tracing::warn!("lost the JobManager: {e}"),
                }
            }
            Err(e) => {
                if failures.is_multiple_of(10) {
                    tracing::info!("waiting for the JobManager: {e}");
                }
                failures += 1;
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

struct TaskManager {
    settings: TaskManagerSettings,
    registry: JobRegistry,
    net: NetworkEnvironment,
    leave: Arc<Leave>,
}

/// A SIGTERM (a pod being deleted, a scale-down): tell the JobManager, let it move the tasks
/// elsewhere, and exit once none runs here, instead of ending as a failure.
#[derive(Default)]
struct Leave {
    requested: AtomicBool,
    /// The current session's messages to the JobManager.
    outbox: Mutex<Option<Sender<ToJobManager>>>,
    since: Mutex<Option<Instant>>,
}

/// How long a leaving TaskManager waits for the JobManager to take its tasks away.
const LEAVE_GRACE: Duration = Duration::from_secs(20);

impl Leave {
    /// Whether the TaskManager may exit now: leaving, and nothing of `attempt` runs here.
    fn may_exit(&self, attempt: &Mutex<Option<Attempt>>) -> bool {
        if !self.requested.load(Ordering::SeqCst) {
            return false;
        }
        let idle = lock(attempt).as_ref().is_none_or(|a| a.running.load(Ordering::SeqCst) == 0);
        idle || lock(&self.since).is_some_and(|since| since.elapsed() > LEAVE_GRACE)
    }
}

fn watch_sigterm(leave: Arc<Leave>) {
    rheo_runtime::checkpoint::io_runtime().spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = match signal(SignalKind::terminate()) {
            Ok(terminate) => terminate,
            Err(e) => return tracing::warn!(error = %e, "cannot handle SIGTERM"),
        };
        if terminate.recv().await.is_none() {
            return;
        }
        tracing::info!("SIGTERM: leaving the cluster once the JobManager moved the tasks away");
        *lock(&leave.since) = Some(Instant::now());
        leave.requested.store(true, Ordering::SeqCst);
        if let Some(outbox) = lock(&leave.outbox).as_ref() {
            let _ = outbox.send(ToJobManager::Leaving);
        }
    });
}

/// What the TaskManager runs of one attempt.
struct Attempt {
    id: u64,
    job: Arc<JobShared>,
    /// Control channels of the local tasks, by global task index.
    controls: HashMap<usize, Sender<Control>>,
    /// Checkpoint directories, passed to the uploader.
    targets: Sender<(u64, String)>,
    /// Record counters per task (vertex), by head index.
    counters: Vec<Arc<VertexCounters>>,
    /// The (vertex index, subtask index) of each subtask that runs here.
    local: Vec<(usize, usize)>,
    running: Arc<AtomicUsize>,
}

impl TaskManager {
    /// One registration with a JobManager, until the connection is lost.
    fn session(&self, mut reader: rpc::RpcReader, mut writer: rpc::RpcWriter) -> Result<(), RpcError> {
        let host = self.settings.host.clone().or_else(|| rpc::local_ip(&writer).map(|ip| ip.to_string()));
        let host = host.unwrap_or_else(|| "127.0.0.1".into());
        let data_address = format!("{host}:{}", self.net.local_addr().port());
        let data_address: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(&data_address)
            .ok()
            .and_then(|mut a| a.next())
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], self.net.local_addr().port())));
        writer.send(&ToJobManager::Register(Registration {
            data_address,
            slots: self.settings.slots,
            cpu_cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            physical_memory: 0,
        }))?;
        reader.set_timeout(Some(self.settings.heartbeat_timeout));
        let (outbox, outbox_rx) = unbounded::<ToJobManager>();
        *lock(&self.leave.outbox) = Some(outbox.clone());
        if self.leave.requested.load(Ordering::SeqCst) {
            let _ = outbox.send(ToJobManager::Leaving);
        }
        let session_over = Arc::new(AtomicBool::new(false));
        let writer_thread = {
            let session_over = session_over.clone();
            std::thread::Builder::new()
                .name("rheo-tm-rpc-out".into())
                .spawn(move || {
                    while let Ok(message) = outbox_rx.recv() {
                        if let Err(e) = writer.send(&message) {
                            tracing::warn!("cannot reach the JobManager: {e}");
                            break;
                        }
                    }
                    session_over.store(true, Ordering::SeqCst);
                    writer.shutdown();
                })
                .expect("cannot start the RPC writer thread")
        };
        let attempt: Arc<Mutex<Option<Attempt>>> = Arc::new(Mutex::new(None));
        let heartbeat = {
            let (outbox, attempt, session_over) = (outbox.clone(), attempt.clone(), session_over.clone());
            // Heartbeats carry the record counters, which the REST API shows: at least every second.
            let interval = self.settings.heartbeat_interval.min(Duration::from_secs(1));
            std::thread::Builder::new()
                .name("rheo-tm-heartbeat".into())
                .spawn(move || {
                    while !session_over.load(Ordering::SeqCst) {
                        let (id, subtasks) = match &*lock(&attempt) {
                            Some(a) => (Some(a.id), a.subtask_metrics()),
                            None => (None, Vec::new()),
                        };
                        if outbox.send(ToJobManager::Heartbeat { attempt: id, subtasks }).is_err() {
                            break;
                        }
                        let until = Instant::now() + interval;
                        while Instant::now() < until && !session_over.load(Ordering::SeqCst) {
                            std::thread::sleep(Duration::from_millis(20).min(interval));
                        }
                    }
                })
                .expect("cannot start the heartbeat thread")
        };
        let result = self.serve(&mut reader, data_address, &outbox, &attempt);
        *lock(&self.leave.outbox) = None;
        // The JobManager is gone (or this TaskManager leaves): stop what runs for it, as nothing can checkpoint or commit it.
        session_over.store(true, Ordering::SeqCst);
        if let Some(current) = lock(&attempt).take() {
            cancel(&current);
            wait_until_ended(&current, Duration::from_secs(30));
        }
        drop(outbox);
        let _ = heartbeat.join();
        let _ = writer_thread.join();
        result
    }

    fn serve(
        &self,
        reader: &mut rpc::RpcReader,
        data_address: SocketAddr,
        outbox: &Sender<ToJobManager>,
        attempt: &Arc<Mutex<Option<Attempt>>>,
    ) -> Result<(), RpcError> {
        while let Some(message) = reader.recv::<ToTaskManager>()? {
            // Heartbeat acknowledgements wake this loop regularly.
            if self.leave.may_exit(attempt) {
                return Ok(());
            }
            match message {
                ToTaskManager::Registered { resource_id } => {
                    tracing::info!(%resource_id, jobmanager = %self.settings.jobmanager, "registered with the JobManager")
                }
                ToTaskManager::HeartbeatAck => {}
                ToTaskManager::Deploy(deployment) => {
                    let previous = lock(attempt).take();
                    if let Some(previous) = previous {
                        cancel(&previous);
                        wait_until_ended(&previous, Duration::from_secs(30));
                    }
                    let id = deployment.attempt;
                    match self.deploy(deployment, data_address, outbox.clone()) {
                        Ok(started) => *lock(attempt) = Some(started),
                        Err(message) => {
                            tracing::error!(attempt = id, %message, "cannot deploy");
                            let _ = outbox.send(ToJobManager::DeployFailed { attempt: id, message });
                        }
                    }
                }
                ToTaskManager::CheckpointTarget { attempt: id, checkpoint_id, dir } => {
                    if let Some(current) = lock(attempt).as_ref().filter(|a| a.id == id) {
                        let _ = current.targets.send((checkpoint_id, dir));
                    }
                }
                ToTaskManager::Control { attempt: id, task, control } => {
                    if let Some(tx) = lock(attempt).as_ref().filter(|a| a.id == id).and_then(|a| a.controls.get(&task))
                    {
                        let _ = tx.send(control);
                    }
                }
                ToTaskManager::Cancel { attempt: id } => {
                    if let Some(current) = lock(attempt).as_ref().filter(|a| a.id == id) {
                        tracing::info!(attempt = id, "cancelling tasks");
                        cancel(current);
                    }
                }
            }
        }
        Ok(())
    }

    /// Builds this TaskManager's subtasks of an attempt and starts them; `me` is the data
    /// address it registered with, which names its slots in the deployment.
    fn deploy(&self, deployment: Deployment, me: SocketAddr, outbox: Sender<ToJobManager>) -> Result<Attempt, String> {
        let Deployment { attempt, job_id, job, parallelism, slots, restore, checkpointing } = deployment;
        let built = job.build(&self.registry, parallelism).map_err(|e| e.to_string())?;
        let plan = ExecutionPlan::new(&built.graph, &built.settings).map_err(|e| e.to_string())?;
        let restored = match &restore {
            None => None,
            Some(url) => {
                let dir = CheckpointStorage::from_url(url).map_err(|e| e.to_string())?;
                match io_runtime().block_on(discover::load(&dir))? {
                    Some(found) => Some(Arc::new(found.state)),
                    None => return Err(format!("{url}: no _metadata there")),
                }
            }
        };
        let shared = Arc::new(JobShared::default());
        let counters: Vec<Arc<VertexCounters>> =
            plan.heads.iter().map(|&head| Arc::new(VertexCounters::new(plan.parallelism[head]))).collect();
        let remote = Remote { net: &self.net, slots: &slots, me, attempt_key: attempt_key(&job_id, attempt) };
        let config = Arc::new(built.config.clone());
        let tasks = plan
            .build_placed_tasks(
                &built.graph,
                &built.settings,
                config,
                shared.clone(),
                restored,
                &counters,
                Some(&remote),
            )
            .map_err(|e| e.to_string())?;
        let subtasks = plan.subtasks();
        let operators: Vec<String> = built.graph.nodes.iter().map(|n| n.name.clone()).collect();
        let (events_tx, events_rx) = unbounded::<TaskEvent>();
        let (targets_tx, targets_rx) = unbounded::<(u64, String)>();
        let mut controls = HashMap::new();
        let running = Arc::new(AtomicUsize::new(tasks.len()));
        let mut started = Vec::new();
        let vertex_of: HashMap<usize, usize> = plan.heads.iter().enumerate().map(|(v, &h)| (h, v)).collect();
        let local: Vec<(usize, usize)> = tasks
            .iter()
            .map(|(index, _)| {
                let (head, subtask) = subtasks[*index];
                (vertex_of[&head], subtask)
            })
            .collect();
        for (index, mut task) in tasks {
            if checkpointing {
                let (control_tx, control_rx) = unbounded();
                controls.insert(index, control_tx);
                task.attach(CoordinatorLink { task: index, control: control_rx, events: events_tx.clone() });
            }
            started.push((index, task));
        }
        drop(events_tx);
        let subtasks_of = subtasks.clone();
        let parallelism_of = move |task: usize| plan.parallelism[subtasks[task].0];
        let uploader =
            Uploader { attempt, outbox: outbox.clone(), operators, pending: HashMap::new(), targets: HashMap::new() };
        std::thread::Builder::new()
            .name("rheo-tm-uploader".into())
            .spawn(move || uploader.run(events_rx, targets_rx, parallelism_of))
            .map_err(|e| format!("cannot start the uploader thread: {e}"))?;
        tracing::info!(attempt, job = %job.name, %job_id, subtasks = started.len(), "deploying tasks");
        for (index, task) in started {
            let name = task.info().display_name();
            let (task_outbox, task_running) = (outbox.clone(), running.clone());
            let (head, subtask) = subtasks_of[index];
            let (vertex, task_counters) = (vertex_of[&head], task.info().counters.clone());
            let running_outbox = outbox.clone();
            task_counters.on_running(move || {
                let _ = running_outbox.send(ToJobManager::TaskRunning { attempt, task: index });
            });
            let spawned = std::thread::Builder::new().name(name.clone()).spawn(move || {
                let outcome = task.run();
                if let TaskOutcome::Failed(message) | TaskOutcome::FailedPermanently(message) = &outcome {
                    tracing::error!(task = %name, %message, "task failed");
                }
                // The subtask's final counters, so the JobManager's are exact at its end.
                let subtasks = vec![(vertex, subtask, task_counters.metrics())];
                let _ = task_outbox.send(ToJobManager::Heartbeat { attempt: Some(attempt), subtasks });
                let _ = task_outbox.send(ToJobManager::TaskEnded { attempt, task: index, outcome });
                task_running.fetch_sub(1, Ordering::SeqCst);
            });
            if let Err(e) = spawned {
                shared.stop();
                running.fetch_sub(1, Ordering::SeqCst);
                let outcome = TaskOutcome::Failed(format!("cannot start a thread: {e}"));
                let _ = outbox.send(ToJobManager::TaskEnded { attempt, task: index, outcome });
            }
        }
        Ok(Attempt { id: attempt, job: shared, controls, targets: targets_tx, counters, local, running })
    }
}

impl Attempt {
    /// The metrics of the subtasks running here, as heartbeats carry them.
    fn subtask_metrics(&self) -> Vec<(usize, usize, TaskMetrics)> {
        self.local
            .iter()
            .map(|&(vertex, subtask)| (vertex, subtask, self.counters[vertex].subtask(subtask).metrics()))
            .collect()
    }
}

/// Uploads the snapshots local tasks take, once the JobManager has said where they go, and
/// passes task events on to the JobManager.
struct Uploader {
    attempt: u64,
    outbox: Sender<ToJobManager>,
    operators: Vec<String>,
    /// Snapshots that arrived before their checkpoint's directory.
    pending: HashMap<u64, Vec<(usize, usize, rheo_runtime::output::TaskSnapshot)>>,
    targets: HashMap<u64, String>,
}

impl Uploader {
    fn run(
        mut self,
        events: Receiver<TaskEvent>,
        targets: Receiver<(u64, String)>,
        parallelism_of: impl Fn(usize) -> usize,
    ) {
        loop {
            select! {
                recv(events) -> event => match event {
                    Ok(TaskEvent::Acknowledge { task, checkpoint_id, subtask, snapshot }) => {
                        match self.targets.get(&checkpoint_id).cloned() {
                            Some(dir) => self.upload(&dir, checkpoint_id, task, subtask, parallelism_of(task), snapshot),
                            None => self.pending.entry(checkpoint_id).or_default().push((task, subtask, snapshot)),
                        }
                    }
                    Ok(TaskEvent::EndOfInput { task }) => {
                        let _ = self.outbox.send(ToJobManager::EndOfInput { attempt: self.attempt, task });
                    }
                    Ok(TaskEvent::Uploaded { .. }) => {}
                    Err(_) => return,
                },
                recv(targets) -> target => {
                    let Ok((checkpoint_id, dir)) = target else { continue };
                    // Older checkpoints can no longer complete.
                    self.targets.retain(|&id, _| id + 8 > checkpoint_id);
                    self.pending.retain(|&id, _| id + 8 > checkpoint_id);
                    for (task, subtask, snapshot) in self.pending.remove(&checkpoint_id).unwrap_or_default() {
                        self.upload(&dir, checkpoint_id, task, subtask, parallelism_of(task), snapshot);
                    }
                    self.targets.insert(checkpoint_id, dir);
                }
            }
        }
    }

    fn upload(
        &self,
        dir: &str,
        checkpoint_id: u64,
        task: usize,
        subtask: usize,
        parallelism: usize,
        snapshot: rheo_runtime::output::TaskSnapshot,
    ) {
        let (attempt, outbox) = (self.attempt, self.outbox.clone());
        // Shared files of incremental checkpoints go to the job's directory, the parent of the
        // checkpoint's.
        let uploads = CheckpointStorage::from_url(dir).map(|dir| {
            // Only a savepoint directory (never incremental) can lack a parent.
            let job = dir.parent().unwrap_or_else(|_| dir.clone());
            let target = UploadTarget { dir, job, checkpoint_id, subtask, parallelism };
            upload_snapshot(&target, &self.operators, snapshot)
        });
        io_runtime().spawn(async move {
            let states = match uploads {
                Err(e) => Err(e.to_string()),
                Ok(uploads) => {
                    let mut states = Vec::with_capacity(uploads.len());
                    let mut failure = None;
                    for upload in uploads {
                        match upload.await {
                            Ok(Ok(state)) => states.push(state),
                            Ok(Err(e)) => failure = Some(e.to_string()),
                            Err(e) => failure = Some(format!("upload task failed: {e}")),
                        }
                    }
                    failure.map_or(Ok(states), Err)
                }
            };
            let _ = outbox.send(ToJobManager::Uploaded { attempt, task, checkpoint_id, states });
        });
    }
}

/// Tells apart the data channels of each attempt of each job.
pub fn attempt_key(job_id: &str, attempt: u64) -> [u8; 16] {
    let a = rheo_types::keygroups::hash_key(&(job_id, attempt, 1u8));
    let b = rheo_types::keygroups::hash_key(&(job_id, attempt, 2u8));
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&a.to_le_bytes());
    key[8..].copy_from_slice(&b.to_le_bytes());
    key
}

/// Cancels an attempt's tasks: sources stop at their next batch, input tasks at their next
/// poll, and both end as their channels close.
fn cancel(attempt: &Attempt) {
    attempt.job.stop();
}

fn wait_until_ended(attempt: &Attempt, within: Duration) {
    let deadline = Instant::now() + within;
    while attempt.running.load(Ordering::SeqCst) > 0 {
        if Instant::now() > deadline {
            tracing::warn!(attempt = attempt.id, "tasks did not end within {within:?} of being cancelled");
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
