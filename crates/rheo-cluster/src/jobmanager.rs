//! The JobManager process (`rheo jobmanager`): TaskManagers register on the RPC port and offer
//! slots (the resource manager's part); each job gets a job master thread that schedules its
//! subtasks onto slots, deploys them, runs the checkpoint coordinator, and on a failed task or
//! a lost TaskManager cancels the attempt and restarts the job from its newest checkpoint once
//! enough slots are there (per the restart strategy).
//!
//! Scheduling follows Flink's defaults: slot sharing (slot `s` runs subtask `s` of every task,
//! so a job needs as many slots as its largest parallelism), slots filled TaskManager by
//! TaskManager in registration order. With `scheduler-mode: reactive` the parallelism is what
//! the registered slots allow (bounded by max parallelism), and a TaskManager joining or
//! leaving rescales the job from its newest checkpoint.
//!
//! One job runs at a time; a session JobManager refuses a second while the first runs.
//! High availability is the object store: a JobManager started for a job id resumes that job's
//! newest complete checkpoint.

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, unbounded};

use rheo_config::{Configuration, options};
use rheo_runtime::checkpoint::coordinator::{CheckpointStats, ControlSender, TaskEntry};
use rheo_runtime::checkpoint::storage::initialize_file_systems;
use rheo_runtime::driver::handle::{JobHandle, JobState};
use rheo_runtime::driver::job::{Attempt, AttemptEnd, Deployer, JobDriver, JobError};
use rheo_runtime::graph::NodeKind;
use rheo_runtime::graph::plan::ExecutionPlan;
use rheo_runtime::task::{JobShared, TaskEvent, TaskOutcome, now_ms};

use crate::jobspec::{BuiltJob, JobSpec};
use crate::registry::JobRegistry;
use crate::rpc::{self, Deployment, ToJobManager, ToTaskManager};
use crate::view::{ClusterView, SubmitError, SubmitRequest, SubtaskLocation, TaskManagerInfo};

/// How long a cancelled attempt's tasks get to report their end before the next attempt.
const CANCEL_GRACE: Duration = Duration::from_secs(30);

/// A registered TaskManager.
struct TaskManagerEntry {
    resource_id: String,
    registration: rpc::Registration,
    out: Sender<ToTaskManager>,
    last_heartbeat: i64,
}

/// What the TaskManager connections tell the job master.
enum ClusterEvent {
    Joined,
    Lost { resource_id: String, cause: String },
    Message { resource_id: String, message: ToJobManager },
}

struct Inner {
    config: Configuration,
    registry: JobRegistry,
    taskmanagers: Mutex<Vec<TaskManagerEntry>>,
    /// The running job master's event channel.
    listener: Mutex<Option<Sender<ClusterEvent>>>,
    jobs: Mutex<Vec<JobHandle>>,
    /// Slots the running job holds.
    slots_in_use: AtomicU64,
    /// Per job, where each slot of its current attempt is: (data address, TaskManager id).
    /// Subtask i of every vertex runs in slot i (slot sharing).
    slot_locations: Mutex<HashMap<String, Vec<SubtaskLocation>>>,
    next_connection: AtomicU64,
    heartbeat_timeout: Duration,
}

impl Inner {
    fn notify(&self, event: ClusterEvent) {
        if let Some(listener) = lock(&self.listener).as_ref() {
            let _ = listener.send(event);
        }
    }
}

/// A running JobManager; cheap to clone.
#[derive(Clone)]
pub struct JobManager {
    inner: Arc<Inner>,
    rpc_addr: SocketAddr,
}

impl JobManager {
    /// Listens for TaskManagers on `jobmanager.rpc.bind-address`:`jobmanager.rpc.port`.
    pub fn start(config: Configuration, registry: JobRegistry) -> Result<Self, anyhow::Error> {
        config.validate()?;
        initialize_file_systems(&config)?;
        let port = config.get(&options::JOBMANAGER_PORT)?;
        let host = config.string(&options::JOBMANAGER_BIND_ADDRESS);
        let host = host.as_str();
        let listener = TcpListener::bind((host, port))
            .map_err(|e| anyhow::anyhow!("cannot listen for TaskManagers on {host}:{port}: {e}"))?;
        let rpc_addr = listener.local_addr()?;
        let (_, heartbeat_timeout) = crate::taskmanager::heartbeat(&config)?;
        let inner = Arc::new(Inner {
            config,
            registry,
            taskmanagers: Mutex::new(Vec::new()),
            listener: Mutex::new(None),
            jobs: Mutex::new(Vec::new()),
            slots_in_use: AtomicU64::new(0),
            slot_locations: Mutex::default(),
            next_connection: AtomicU64::new(0),
            heartbeat_timeout,
        });
        let acceptor = inner.clone();
        std::thread::Builder::new().name("rheo-jm-rpc".into()).spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let inner = acceptor.clone();
                let _ = std::thread::Builder::new()
                    .name("rheo-jm-tm".into())
                    .spawn(move || serve_taskmanager(inner, stream));
            }
        })?;
        tracing::info!(rpc = %rpc_addr, "JobManager started");
        Ok(Self { inner, rpc_addr })
    }

    pub fn rpc_addr(&self) -> SocketAddr {
        self.rpc_addr
    }

    /// The job submitted last, if any.
    pub fn latest_job(&self) -> Option<JobHandle> {
        lock(&self.inner.jobs).last().cloned()
    }

    /// Starts a job on the cluster (application mode or `rheo submit`).
    pub fn submit_spec(&self, spec: JobSpec, job_id: String) -> Result<JobHandle, SubmitError> {
        spec.build(&self.inner.registry, None).map_err(|e| SubmitError::BadRequest(e.to_string()))?;
        let mut jobs = lock(&self.inner.jobs);
        if let Some(running) = jobs.iter().find(|h| !h.status().state.is_terminal()) {
            return Err(SubmitError::Conflict(format!(
                "this JobManager runs job {} already; one job at a time",
                running.job_id()
            )));
        }
        // A fixed id may name an ended job (resuming its checkpoints): the new run replaces it
        // in the list, so no lookup can find two jobs under one id.
        if let Some(ended) = jobs.iter().position(|h| h.job_id() == job_id) {
            tracing::info!(%job_id, "a new run of an ended job replaces it in the job list");
            jobs.remove(ended);
        }
        let config = spec.configuration();
        let savepoints = config.string(&options::SAVEPOINTS_DIR);
        let handle = JobHandle::new(job_id.clone(), spec.name.clone(), savepoints, Arc::new(JobShared::default()));
        jobs.push(handle.clone());
        drop(jobs);
        let (events_tx, events_rx) = unbounded();
        *lock(&self.inner.listener) = Some(events_tx);
        let master = JobMaster { inner: self.inner.clone(), spec, job_id, handle: handle.clone(), events: events_rx };
        std::thread::Builder::new()
            .name("rheo-job-master".into())
            .spawn(move || master.run())
            .map_err(|e| SubmitError::Conflict(format!("cannot start the job master: {e}")))?;
        Ok(handle)
    }

    /// The job id of application mode (`rheo jobmanager --job`) without `--job-id`: from the
    /// job's name and arguments as `rheo run` derives it ([`crate::registry::job_id_of`]: paths
    /// by what they name, flags by value), so a restarted JobManager resumes the job's
    /// checkpoints however its arguments are spelled. An error when the arguments do not parse.
    /// Session submissions get a random id instead, as in Flink.
    pub fn default_job_id(job: &crate::registry::JobEntry, args: &[String]) -> Result<String, clap::Error> {
        job.job_id_from(args)
    }
}

impl ClusterView for JobManager {
    fn jobs(&self) -> Vec<JobHandle> {
        lock(&self.inner.jobs).clone()
    }

    fn taskmanagers(&self) -> Vec<TaskManagerInfo> {
        let mut in_use = self.inner.slots_in_use.load(Ordering::Relaxed) as usize;
        lock(&self.inner.taskmanagers)
            .iter()
            .map(|tm| {
                let used = in_use.min(tm.registration.slots);
                in_use -= used;
                TaskManagerInfo {
                    id: tm.resource_id.clone(),
                    data_address: tm.registration.data_address.to_string(),
                    slots: tm.registration.slots,
                    free_slots: tm.registration.slots - used,
                    last_heartbeat: tm.last_heartbeat,
                    cpu_cores: tm.registration.cpu_cores,
                    physical_memory: tm.registration.physical_memory,
                }
            })
            .collect()
    }

    fn subtask_location(&self, job_id: &str, subtask: usize) -> Option<SubtaskLocation> {
        lock(&self.inner.slot_locations).get(job_id).and_then(|slots| slots.get(subtask)).cloned()
    }

    fn available_jobs(&self) -> Vec<(String, String)> {
        self.inner.registry.iter().map(|j| (j.name.to_string(), j.description.to_string())).collect()
    }

    fn submit(&self, request: SubmitRequest) -> Result<String, SubmitError> {
        let mut config = self.inner.config.clone();
        for (key, value) in &request.config {
            config.set(key, value.as_str());
        }
        if let Some(path) = &request.savepoint_path {
            config.set(options::SAVEPOINT_PATH.key, path.as_str());
            config.set(options::SAVEPOINT_IGNORE_UNCLAIMED_STATE.key, request.allow_non_restored_state.to_string());
        }
        if request.parallelism == Some(0) {
            return Err(SubmitError::BadRequest("parallelism must be at least 1".into()));
        }
        let job_id = match request.job_id {
            Some(id) => match id.parse::<rheo_types::JobId>() {
                Ok(id) => id.to_string(),
                Err(e) => return Err(SubmitError::BadRequest(format!("jobId: {e}"))),
            },
            None => rheo_types::JobId::random().to_string(),
        };
        let spec = JobSpec {
            name: request.job,
            args: request.args,
            config: config.entries().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            parallelism: request.parallelism,
        };
        self.submit_spec(spec, job_id.clone()).map(|_| job_id)
    }
}

/// One TaskManager's connection: registration, heartbeats, messages for the job master.
fn serve_taskmanager(inner: Arc<Inner>, stream: std::net::TcpStream) {
    let (mut reader, mut writer) = match rpc::accept(stream) {
        Ok(pair) => pair,
        Err(e) => return tracing::warn!("refused a connection on the RPC port: {e}"),
    };
    let registration = match reader.recv::<ToJobManager>() {
        Ok(Some(ToJobManager::Register(registration))) => registration,
        Ok(_) => return tracing::warn!("a TaskManager did not register first"),
        Err(e) => return tracing::warn!("{e}"),
    };
    let connection = inner.next_connection.fetch_add(1, Ordering::Relaxed);
    let resource_id = format!("{}-{connection}", registration.data_address);
    let (out, out_rx) = unbounded::<ToTaskManager>();
    let _ = out.send(ToTaskManager::Registered { resource_id: resource_id.clone() });
    let peer = resource_id.clone();
    let writer_thread = std::thread::Builder::new().name("rheo-jm-tm-out".into()).spawn(move || {
        while let Ok(message) = out_rx.recv() {
            if let Err(e) = writer.send(&message) {
                tracing::warn!(taskmanager = %peer, "{e}");
                break;
            }
        }
        writer.shutdown();
    });
    tracing::info!(taskmanager = %resource_id, slots = registration.slots, "TaskManager registered");
    lock(&inner.taskmanagers).push(TaskManagerEntry {
        resource_id: resource_id.clone(),
        registration,
        out: out.clone(),
        last_heartbeat: now_ms(),
    });
    inner.notify(ClusterEvent::Joined);
    reader.set_timeout(Some(inner.heartbeat_timeout));
    let cause = loop {
        match reader.recv::<ToJobManager>() {
            Ok(Some(message)) => {
                if let ToJobManager::Leaving = message {
                    tracing::info!(taskmanager = %resource_id, "TaskManager leaving (SIGTERM); scheduling nothing more on it");
                    lock(&inner.taskmanagers).retain(|t| t.resource_id != resource_id);
                }
                if let ToJobManager::Heartbeat { .. } = message {
                    if let Some(tm) = lock(&inner.taskmanagers).iter_mut().find(|t| t.resource_id == resource_id) {
                        tm.last_heartbeat = now_ms();
                    }
                    let _ = out.send(ToTaskManager::HeartbeatAck);
                }
                inner.notify(ClusterEvent::Message { resource_id: resource_id.clone(), message });
            }
            Ok(None) => break "the connection was closed".to_string(),
            Err(rpc::RpcError::Io { source, .. })
                if matches!(source.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
            {
                break format!("no heartbeat within heartbeat.timeout ({:?})", inner.heartbeat_timeout);
            }
            Err(e) => break e.to_string(),
        }
    };
    tracing::warn!(taskmanager = %resource_id, %cause, "TaskManager lost");
    lock(&inner.taskmanagers).retain(|t| t.resource_id != resource_id);
    inner.notify(ClusterEvent::Lost { resource_id, cause });
    // The writer ends once the job master drops its senders or its next write fails.
    drop((out, writer_thread));
}

/// Schedules, runs and restarts one job.
struct JobMaster {
    inner: Arc<Inner>,
    spec: JobSpec,
    job_id: String,
    handle: JobHandle,
    events: Receiver<ClusterEvent>,
}

/// The TaskManagers and slots of one attempt.
struct Placement {
    /// Data address per slot.
    slots: Vec<SocketAddr>,
    /// Resource id and connection of the TaskManager holding each slot.
    holders: Vec<(String, Sender<ToTaskManager>)>,
}

impl Placement {
    fn taskmanagers(&self) -> Vec<(String, Sender<ToTaskManager>)> {
        let mut seen = HashSet::new();
        self.holders.iter().filter(|(id, _)| seen.insert(id.clone())).cloned().collect()
    }
}

impl JobMaster {
    fn run(self) {
        let started = Instant::now();
        let result = self.run_job();
        match &result {
            Ok(()) => tracing::info!(job_id = %self.job_id, elapsed = ?started.elapsed(), "job finished"),
            Err(e) => tracing::warn!(job_id = %self.job_id, "job ended: {e}"),
        }
        self.inner.slots_in_use.store(0, Ordering::Relaxed);
        *lock(&self.inner.listener) = None;
    }

    fn run_job(&self) -> Result<(), JobError> {
        let config = Arc::new(self.spec.configuration());
        let built = match self.spec.build(&self.inner.registry, None) {
            Ok(built) => built,
            Err(e) => {
                let error = JobError::TaskFailed { task: "job graph".into(), message: e.to_string() };
                self.handle.update(|s| {
                    s.state = JobState::Failed;
                    s.end_time = Some(now_ms());
                    s.failure = Some(error.to_string());
                });
                return Err(error);
            }
        };
        let driver = JobDriver {
            config: config.clone(),
            job_name: self.spec.name.clone(),
            operators: built.graph.nodes.iter().map(|n| n.name.clone()).collect(),
            max_parallelism: built.settings.max_parallelism,
            handle: self.handle.clone(),
            output_checks: built.graph.output_checks.clone(),
            rerun_finished: false,
        };
        let reactive = config.get(&options::SCHEDULER_MODE)?.is_some_and(|mode| mode.eq_ignore_ascii_case("reactive"));
        let slot_timeout = config.get(&options::SLOT_REQUEST_TIMEOUT)?;
        let mut deployer = RemoteDeployer { master: self, built, reactive, slot_timeout };
        driver.run(&mut deployer).map(|_| ())
    }
}

/// Deploys attempts of a job to the TaskManagers that registered with this JobManager.
struct RemoteDeployer<'a> {
    master: &'a JobMaster,
    built: BuiltJob,
    reactive: bool,
    slot_timeout: Duration,
}

impl Deployer for RemoteDeployer<'_> {
    fn run_attempt(&mut self, attempt: &Attempt<'_>) -> Result<(AttemptEnd, CheckpointStats), JobError> {
        let requested = attempt.handle.requested_parallelism();
        let placement = match self.master.wait_for_slots(self.reactive, requested, &self.built, self.slot_timeout) {
            Ok(placement) => placement,
            Err(JobError::Cancelled) => return Ok((AttemptEnd::Cancelled, CheckpointStats::default())),
            Err(e @ JobError::TaskFailed { .. }) => return Ok((AttemptEnd::Failed(e), CheckpointStats::default())),
            Err(e) => return Err(e),
        };
        let parallelism = if self.reactive { Some(placement.slots.len()) } else { requested };
        self.master.run_attempt(attempt, parallelism, self.reactive, &placement)
    }
}

impl JobMaster {
    /// Waits until the registered TaskManagers offer the slots the job needs, then picks them.
    /// `requested`: the parallelism asked for through the REST API, which replaces the job's
    /// own (and bounds the slots reactive mode takes).
    fn wait_for_slots(
        &self,
        reactive: bool,
        requested: Option<usize>,
        built: &crate::jobspec::BuiltJob,
        timeout: Duration,
    ) -> Result<Placement, JobError> {
        let deadline = Instant::now() + timeout;
        let fixed = match requested {
            Some(p) => {
                let built = self
                    .spec
                    .build(&self.inner.registry, Some(p))
                    .map_err(|e| JobError::TaskFailed { task: "job graph".into(), message: e.to_string() })?;
                ExecutionPlan::new(&built.graph, &built.settings)?.slots_needed()
            }
            None => ExecutionPlan::new(&built.graph, &built.settings)?.slots_needed(),
        };
        let reactive_bound = requested.unwrap_or(usize::MAX).min(built.settings.max_parallelism);
        let mut logged = false;
        loop {
            if self.handle.is_cancel_requested() {
                return Err(JobError::Cancelled);
            }
            {
                let taskmanagers = lock(&self.inner.taskmanagers);
                let total: usize = taskmanagers.iter().map(|t| t.registration.slots).sum();
                let needed = if reactive { total.min(reactive_bound) } else { fixed };
                if needed > 0 && total >= needed {
                    let mut placement = Placement { slots: Vec::new(), holders: Vec::new() };
                    'fill: for tm in taskmanagers.iter() {
                        for _ in 0..tm.registration.slots {
                            if placement.slots.len() == needed {
                                break 'fill;
                            }
                            placement.slots.push(tm.registration.data_address);
                            placement.holders.push((tm.resource_id.clone(), tm.out.clone()));
                        }
                    }
                    self.inner.slots_in_use.store(needed as u64, Ordering::Relaxed);
                    return Ok(placement);
                }
                if !logged {
                    tracing::info!(job_id = %self.job_id, needed = fixed, available = total, "waiting for task slots");
                    logged = true;
                }
            }
            if Instant::now() > deadline {
                return Err(JobError::TaskFailed {
                    task: "scheduler".into(),
                    message: format!("could not get {fixed} task slots within slot.request.timeout ({timeout:?})"),
                });
            }
            // Joins and losses wake us; other messages of a previous attempt are stale.
            let _ = self.events.recv_timeout(Duration::from_millis(100));
        }
    }

    /// Deploys one attempt and follows it to its end.
    fn run_attempt(
        &self,
        current: &Attempt<'_>,
        parallelism: Option<usize>,
        reactive: bool,
        placement: &Placement,
    ) -> Result<(AttemptEnd, CheckpointStats), JobError> {
        let attempt = current.number;
        let built = self
            .spec
            .build(&self.inner.registry, parallelism)
            .map_err(|e| JobError::TaskFailed { task: "job graph".into(), message: e.to_string() })?;
        let plan = ExecutionPlan::new(&built.graph, &built.settings)?;
        let subtasks = plan.subtasks();
        let counters = current.show_vertices(&plan, &built.graph);
        let holder_of = |task: usize| &placement.holders[subtasks[task].1];
        let locations = placement
            .slots
            .iter()
            .zip(&placement.holders)
            .map(|(address, (resource_id, _))| SubtaskLocation {
                endpoint: address.to_string(),
                taskmanager_id: resource_id.clone(),
            })
            .collect();
        lock(&self.inner.slot_locations).insert(self.job_id.clone(), locations);
        let taskmanagers = placement.taskmanagers();
        let (events_tx, events_rx) = unbounded::<TaskEvent>();
        let coordinator = if current.checkpointing.is_some() {
            let entries = subtasks
                .iter()
                .enumerate()
                .map(|(task, &(head, _))| {
                    let out = holder_of(task).1.clone();
                    TaskEntry {
                        is_source: matches!(built.graph.nodes[head].kind, NodeKind::Source(_)),
                        parallelism: plan.parallelism[head],
                        control: ControlSender::Remote(Box::new(move |control| {
                            let _ = out.send(ToTaskManager::Control { attempt, task, control });
                        })),
                    }
                })
                .collect();
            let outs: Vec<Sender<ToTaskManager>> = taskmanagers.iter().map(|(_, out)| out.clone()).collect();
            let announce = Box::new(move |checkpoint_id: u64, dir: &str| {
                for out in &outs {
                    let _ = out.send(ToTaskManager::CheckpointTarget { attempt, checkpoint_id, dir: dir.to_string() });
                }
            });
            current.start_coordinator(entries, events_rx, Some(announce))?
        } else {
            None
        };
        let deployment = Deployment {
            attempt,
            job_id: self.job_id.clone(),
            job: self.spec.clone(),
            parallelism,
            slots: placement.slots.clone(),
            restore: current.restore.map(|r| r.url.clone()),
            checkpointing: coordinator.is_some(),
        };
        tracing::info!(
            job_id = %self.job_id,
            attempt,
            subtasks = subtasks.len(),
            slots = placement.slots.len(),
            taskmanagers = taskmanagers.len(),
            "deploying the job"
        );
        for (_, out) in &taskmanagers {
            let _ = out.send(ToTaskManager::Deploy(deployment.clone()));
        }
        // The job is RUNNING once every task runs (as Flink's job with all subtasks RUNNING):
        // a task that fails as it opens (a missing input file) fails the job before that.
        let mut running: HashSet<usize> = HashSet::new();

        // Follow the attempt until every task has reported its end.
        let mut ended: HashSet<usize> = HashSet::new();
        let mut end: Option<AttemptEnd> = None;
        let mut cancel_sent: Option<Instant> = None;
        let in_attempt: HashSet<String> = taskmanagers.iter().map(|(id, _)| id.clone()).collect();
        let cancel_all = |cancel_sent: &mut Option<Instant>| {
            if cancel_sent.is_none() {
                for (_, out) in &taskmanagers {
                    let _ = out.send(ToTaskManager::Cancel { attempt });
                }
                *cancel_sent = Some(Instant::now());
            }
        };
        let running_parallelism = plan.slots_needed();
        // The stop-with-checkpoint of a running rescale.
        let mut rescale: Option<String> = None;
        // Ends the attempt for a rescale: stopped with a synchronous checkpoint that the next
        // attempt restores, so nothing is processed twice; cancelled (the next attempt resumes
        // the newest checkpoint) only when no such checkpoint can be taken.
        let rescale_now = |end: &mut Option<AttemptEnd>,
                           rescale: &mut Option<String>,
                           cancel_sent: &mut Option<Instant>| {
            if end.is_some() {
                return;
            }
            *end = Some(AttemptEnd::Rescale);
            match self.handle.stop_for_rescale() {
                Ok(trigger) => *rescale = Some(trigger),
                Err(cause) => {
                    tracing::warn!(attempt, %cause, "cannot stop with a checkpoint; rescaling from the newest checkpoint");
                    cancel_all(cancel_sent);
                }
            }
        };
        while ended.len() < subtasks.len() {
            if end.is_none()
                && let Some(requested) = self.handle.requested_parallelism()
            {
                // Slots come before a rescale to more: the requirement waits for them.
                let slots: usize = lock(&self.inner.taskmanagers).iter().map(|t| t.registration.slots).sum();
                let wanted =
                    if reactive { requested.min(slots).min(built.settings.max_parallelism) } else { requested };
                if wanted != running_parallelism && wanted <= slots {
                    tracing::info!(
                        attempt,
                        from = running_parallelism,
                        to = wanted,
                        "rescaling (resource requirements)"
                    );
                    rescale_now(&mut end, &mut rescale, &mut cancel_sent);
                }
            }
            if let Some(trigger) = &rescale
                && let Some(rheo_runtime::driver::handle::SavepointStatus::Failed { cause }) =
                    self.handle.savepoint_status(trigger)
            {
                tracing::warn!(attempt, %cause, "the rescale's checkpoint failed; rescaling from the newest checkpoint");
                rescale = None;
                cancel_all(&mut cancel_sent);
            }
            if cancel_sent.is_some_and(|at| at.elapsed() > CANCEL_GRACE) {
                tracing::warn!(attempt, "tasks did not report their end after cancelling; going on without them");
                break;
            }
            if current.handle.is_cancel_requested() && end.is_none() {
                end = Some(AttemptEnd::Cancelled);
                cancel_all(&mut cancel_sent);
            }
            let event = match self.events.recv_timeout(Duration::from_millis(50)) {
                Ok(event) => event,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            match event {
                ClusterEvent::Joined => {
                    if reactive && end.is_none() {
                        let total: usize = lock(&self.inner.taskmanagers).iter().map(|t| t.registration.slots).sum();
                        let bound = self.handle.requested_parallelism().unwrap_or(usize::MAX);
                        if total.min(built.settings.max_parallelism).min(bound) > placement.slots.len() {
                            tracing::info!(attempt, slots = total, "a TaskManager joined; rescaling");
                            rescale_now(&mut end, &mut rescale, &mut cancel_sent);
                        }
                    }
                }
                ClusterEvent::Lost { resource_id, cause } => {
                    if !in_attempt.contains(&resource_id) {
                        continue;
                    }
                    for (task, _) in subtasks.iter().enumerate() {
                        if holder_of(task).0 == resource_id {
                            ended.insert(task);
                        }
                    }
                    if end.is_none() {
                        end = Some(AttemptEnd::Failed(JobError::TaskFailed {
                            task: format!("TaskManager {resource_id}"),
                            message: format!("lost: {cause}"),
                        }));
                    }
                    cancel_all(&mut cancel_sent);
                }
                ClusterEvent::Message { resource_id, message } => match message {
                    ToJobManager::Leaving if in_attempt.contains(&resource_id) && end.is_none() => {
                        // The same path as a rescale: stopped with a synchronous checkpoint, the
                        // leaving TaskManager still taking part, then redeployed without it.
                        tracing::info!(attempt, taskmanager = %resource_id, "a TaskManager leaves; redeploying the job");
                        rescale_now(&mut end, &mut rescale, &mut cancel_sent);
                    }
                    ToJobManager::Heartbeat { attempt: Some(a), subtasks } if a == attempt => {
                        // Each subtask runs on one TaskManager: its report replaces the last.
                        for (vertex, subtask, m) in subtasks {
                            if let Some(counters) = counters.get(vertex) {
                                counters.subtask(subtask).set(subtask, &m);
                            }
                        }
                    }
                    ToJobManager::EndOfInput { attempt: a, task } if a == attempt => {
                        let _ = events_tx.send(TaskEvent::EndOfInput { task });
                    }
                    ToJobManager::Uploaded { attempt: a, task, checkpoint_id, states } if a == attempt => {
                        let _ = events_tx.send(TaskEvent::Uploaded { task, checkpoint_id, states });
                    }
                    ToJobManager::TaskRunning { attempt: a, task } if a == attempt => {
                        running.insert(task);
                        if running.len() == subtasks.len() && end.is_none() {
                            tracing::info!(job_id = %self.job_id, attempt, "all tasks run");
                            self.handle.update(|s| s.state = JobState::Running);
                        }
                    }
                    ToJobManager::TaskEnded { attempt: a, task, outcome } if a == attempt => {
                        ended.insert(task);
                        let name = || {
                            let (head, subtask) = subtasks[task];
                            format!(
                                "{} ({}/{})",
                                plan.task_name(&built.graph, head),
                                subtask + 1,
                                plan.parallelism[head]
                            )
                        };
                        let failure = match outcome {
                            TaskOutcome::Finished | TaskOutcome::Cancelled => None,
                            TaskOutcome::OutputClosed => {
                                // Nobody reads the output anymore: the job ends as finished.
                                if end.is_none() {
                                    end = Some(AttemptEnd::Finished);
                                    cancel_all(&mut cancel_sent);
                                }
                                None
                            }
                            TaskOutcome::Failed(message) => Some(JobError::TaskFailed { task: name(), message }),
                            TaskOutcome::FailedPermanently(message) => {
                                Some(JobError::InputFailed { task: name(), message })
                            }
                        };
                        if let Some(failure) = failure {
                            // Bad input outranks what it caused; otherwise the first cause wins.
                            let replace = match &end {
                                None => true,
                                Some(AttemptEnd::Failed(JobError::InputFailed { .. })) => false,
                                Some(_) => matches!(failure, JobError::InputFailed { .. }),
                            };
                            if replace {
                                end = Some(AttemptEnd::Failed(failure));
                            }
                            cancel_all(&mut cancel_sent);
                        }
                    }
                    ToJobManager::DeployFailed { attempt: a, message } if a == attempt => {
                        if end.is_none() {
                            end = Some(AttemptEnd::Failed(JobError::TaskFailed {
                                task: format!("deployment on {resource_id}"),
                                message,
                            }));
                        }
                        for (task, _) in subtasks.iter().enumerate() {
                            if holder_of(task).0 == resource_id {
                                ended.insert(task);
                            }
                        }
                        cancel_all(&mut cancel_sent);
                    }
                    _ => {}
                },
            }
        }
        drop(events_tx);
        self.handle.set_coordinator(None);
        let stats = coordinator.map(|c| c.join().unwrap_or_default()).unwrap_or_default();
        self.inner.slots_in_use.store(0, Ordering::Relaxed);
        let end = match end {
            Some(end) => end,
            None if ended.len() == subtasks.len() => AttemptEnd::Finished,
            None => AttemptEnd::Failed(JobError::TaskFailed {
                task: "job master".into(),
                message: "lost contact with the TaskManagers".into(),
            }),
        };
        Ok((end, stats))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
