//! The embedded mini-cluster: plans a job, runs every subtask on its own thread in this
//! process, checkpoints it when configured, restarts it from the newest checkpoint after a
//! failure (per the restart strategy), and reports how the job ended.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::checkpoint::coordinator::{
    Announce, CheckpointCoordinator, CheckpointSettings, CheckpointStats, ControlSender, TaskEntry,
};
use crate::checkpoint::discover::{self, FINISHED_MARKER};
use crate::checkpoint::metadata::checkpoint_dir;
use crate::checkpoint::{CheckpointStorage, StorageError, io_runtime};
use crate::cluster::handle::{CompletedCheckpoint, JobHandle, JobState, TaskStatus};
use crate::cluster::restart::RestartStrategy;
use crate::config::{ConfigError, Configuration, keys};
use crate::graph::JobGraph;
use crate::graph::plan::{ExecutionPlan, PlanError, PlanSettings};
use crate::runtime::task::{CoordinatorLink, JobShared, Task, TaskOutcome, panic_message};
use crate::state::restore::RestoredState;

use super::progress::Progress;

/// Where `rheo run` keeps checkpoints unless `state.checkpoints.dir` says otherwise.
pub const DEFAULT_CHECKPOINTS_DIR: &str = "file://./rheo-data";
/// Where savepoints go unless `state.savepoints.dir` or the request says otherwise.
pub const DEFAULT_SAVEPOINTS_DIR: &str = "file://./rheo-data/savepoints";

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("task '{task}' failed: {message}")]
    TaskFailed { task: String, message: String },
    /// A source reported bad input: the job is not restarted.
    #[error("task '{task}' failed: {message}")]
    InputFailed { task: String, message: String },
    #[error("the job was cancelled")]
    Cancelled,
    #[error("cannot start thread for task '{task}': {source}")]
    Spawn { task: String, source: std::io::Error },
    #[error("cannot restore from {path}: {message}")]
    Restore { path: String, message: String },
}

/// What a finished job did.
#[derive(Debug, Clone)]
pub struct JobResult {
    pub job_id: String,
    pub job_name: String,
    pub records_in: u64,
    pub records_out: u64,
    pub duration: Duration,
    pub subtasks: usize,
    pub restarts: u32,
    /// The checkpoint this run resumed from, if any.
    pub restored_from: Option<u64>,
    pub checkpoints: CheckpointStats,
}

pub struct MiniCluster {
    config: Arc<Configuration>,
    job: Arc<JobShared>,
    job_id: Option<String>,
    show_progress: bool,
    handle: JobHandle,
}

/// Flink-style job id (32 hex digits) derived from a name, so reruns find their checkpoints.
pub fn job_id_for(name: &str) -> String {
    let a = crate::runtime::keygroups::hash_key(&(name, 1u8));
    let b = crate::runtime::keygroups::hash_key(&(name, 2u8));
    format!("{a:016x}{b:016x}")
}

impl MiniCluster {
    pub fn new(config: Configuration) -> Self {
        let job = Arc::new(JobShared::default());
        let savepoints = config.get(keys::SAVEPOINTS_DIR).unwrap_or(DEFAULT_SAVEPOINTS_DIR).to_string();
        let handle = JobHandle::new(String::new(), String::new(), savepoints, job.clone());
        Self { config: Arc::new(config), job, job_id: None, show_progress: false, handle }
    }

    /// A handle on the job this cluster runs: status, savepoints, cancel (for the REST API).
    pub fn handle(&self) -> JobHandle {
        self.handle.clone()
    }

    /// Shows records in/out per second on stderr while the job runs.
    pub fn with_progress(mut self, show: bool) -> Self {
        self.show_progress = show;
        self
    }

    /// The job id under which checkpoints are stored (default: derived from the job name).
    pub fn with_job_id(mut self, job_id: impl Into<String>) -> Self {
        let job_id = job_id.into();
        self.handle.set_job_id(&job_id);
        self.job_id = Some(job_id);
        self
    }

    /// The running job's shared state, e.g. to cancel it from another thread.
    pub fn job(&self) -> Arc<JobShared> {
        self.job.clone()
    }

    pub fn run(&self, job_name: &str, graph: JobGraph, settings: &PlanSettings) -> Result<JobResult, JobError> {
        let started = Instant::now();
        let job_id = self.job_id.clone().unwrap_or_else(|| job_id_for(job_name));
        self.handle.set_job_id(&job_id);
        self.handle.set_job_name(job_name);
        let result = self.run_job(&job_id, job_name, graph, settings, started);
        let state = match &result {
            Ok(_) => JobState::Finished,
            Err(JobError::Cancelled) => JobState::Cancelled,
            Err(_) => JobState::Failed,
        };
        let failure = result.as_ref().err().map(|e| e.to_string());
        self.handle.update(|s| {
            s.state = state;
            s.end_time = Some(crate::runtime::task::now_ms());
            s.failure = failure;
        });
        result
    }

    fn run_job(
        &self,
        job_id: &str,
        job_name: &str,
        graph: JobGraph,
        settings: &PlanSettings,
        started: Instant,
    ) -> Result<JobResult, JobError> {
        let job_id = job_id.to_string();
        let plan = ExecutionPlan::new(&graph, settings)?;
        let counters = show_vertices(&self.handle, &plan, &graph, &job_id);
        let operators: Vec<String> = graph.nodes.iter().map(|n| n.name.clone()).collect();
        let checkpointing = checkpoint_settings(&self.config, &job_id, job_name, settings.max_parallelism)?
            .map(|c| CheckpointSettings { operators: operators.clone(), ..c });
        let strategy = RestartStrategy::from_config(&self.config, checkpointing.is_some())?;
        let storage = match &checkpointing {
            Some(_) => {
                let root = self.config.get(keys::CHECKPOINTS_DIR).unwrap_or(DEFAULT_CHECKPOINTS_DIR);
                Some(CheckpointStorage::from_url(root)?.child(&job_id))
            }
            None => None,
        };
        let mut restored = initial_state(&self.config, storage.as_ref(), &operators)?.map(|r| r.state);
        let restored_from = restored.as_ref().map(|r| r.checkpoint_id);
        self.handle.update(|s| {
            s.checkpoint_interval_ms = checkpointing.as_ref().map(|c| c.interval.as_millis() as u64);
            if let Some(id) = restored_from {
                s.checkpoints.restored = 1;
                s.restored = Some(CompletedCheckpoint {
                    id,
                    trigger_timestamp: 0,
                    duration_ms: 0,
                    size: 0,
                    external_path: String::new(),
                    is_savepoint: false,
                });
            }
        });
        if let Some(id) = restored_from {
            tracing::info!(job_id = %job_id, checkpoint = id, "resuming from checkpoint");
        }
        let progress = self.show_progress.then(|| Progress::start(self.job.clone()));
        let mut restarts = 0;
        let mut stats = CheckpointStats::default();
        let outcome = loop {
            self.job.cancelled.store(false, Ordering::Relaxed);
            let next_id = restored.as_ref().map_or(1, |r| r.checkpoint_id + 1).max(stats.last_id.map_or(1, |l| l + 1));
            let tasks =
                plan.build_tasks(&graph, settings, self.config.clone(), self.job.clone(), restored.clone(), &counters);
            self.handle.update(|s| s.state = JobState::Running);
            let subtasks = tasks.len();
            tracing::info!(job = job_name, job_id = %job_id, subtasks, attempt = restarts + 1, "starting job");
            let attempt = self.run_attempt(tasks, checkpointing.as_ref().zip(storage.as_ref()), next_id);
            let (result, attempt_stats) = match attempt {
                Ok(pair) => pair,
                Err(e) => break Err(e),
            };
            stats.completed += attempt_stats.completed;
            stats.failed += attempt_stats.failed;
            stats.total_duration += attempt_stats.total_duration;
            stats.max_size = stats.max_size.max(attempt_stats.max_size);
            if attempt_stats.last_id.is_some() {
                stats.last_id = attempt_stats.last_id;
                stats.last_duration = attempt_stats.last_duration;
                stats.last_size = attempt_stats.last_size;
            }
            match result {
                Ok(()) => break Ok(subtasks),
                Err(JobError::TaskFailed { task, message }) => {
                    restarts += 1;
                    let Some(delay) = note_failure(&self.handle, &strategy, restarts, &task, &message) else {
                        break Err(JobError::TaskFailed { task, message });
                    };
                    std::thread::sleep(delay);
                    restored = match &storage {
                        Some(storage) => io_runtime().block_on(latest_checkpoint(storage))?.map(|r| r.state),
                        None => None,
                    };
                }
                Err(other) => break Err(other),
            }
        };
        if let Some(progress) = progress {
            progress.finish();
        }
        let subtasks = outcome?;
        if let Some(storage) = &storage {
            // A finished job's next run starts fresh.
            io_runtime().block_on(storage.put(FINISHED_MARKER, job_id.clone().into_bytes()))?;
        }
        Ok(JobResult {
            job_id,
            job_name: job_name.to_string(),
            records_in: self.job.records_in.load(Ordering::Relaxed),
            records_out: self.job.records_out.load(Ordering::Relaxed),
            duration: started.elapsed(),
            subtasks,
            restarts,
            restored_from,
            checkpoints: stats,
        })
    }

    /// Runs one attempt of the job: all tasks, and the coordinator if checkpointing is on.
    fn run_attempt(
        &self,
        mut tasks: Vec<Box<dyn Task>>,
        checkpointing: Option<(&CheckpointSettings, &CheckpointStorage)>,
        next_checkpoint_id: u64,
    ) -> Result<(Result<(), JobError>, CheckpointStats), JobError> {
        let coordinator = checkpointing.map(|(settings, storage)| {
            let (events_tx, events_rx) = crossbeam_channel::unbounded();
            let mut entries = Vec::with_capacity(tasks.len());
            for (index, task) in tasks.iter_mut().enumerate() {
                let (control_tx, control_rx) = crossbeam_channel::unbounded();
                entries.push(TaskEntry {
                    is_source: task.is_source(),
                    parallelism: task.info().parallelism,
                    control: ControlSender::Local(control_tx),
                });
                task.attach(CoordinatorLink { task: index, control: control_rx, events: events_tx.clone() });
            }
            start_coordinator(&self.handle, settings, storage, entries, events_rx, next_checkpoint_id, None)
        });
        let coordinator = coordinator.transpose()?;
        let mut handles = Vec::with_capacity(tasks.len());
        for task in tasks {
            let name = task.info().display_name();
            let handle = std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || task.run())
                .map_err(|source| JobError::Spawn { task: name.clone(), source })?;
            handles.push((name, handle));
        }
        let mut failure = None;
        let mut cancelled = false;
        for (name, handle) in handles {
            let outcome = handle.join().unwrap_or_else(|p| TaskOutcome::Failed(panic_message(p.as_ref())));
            match outcome {
                TaskOutcome::Finished => {}
                TaskOutcome::Cancelled => cancelled = true,
                TaskOutcome::Failed(message) => {
                    tracing::error!(task = %name, %message, "task failed");
                    failure.get_or_insert(JobError::TaskFailed { task: name, message });
                }
                TaskOutcome::FailedPermanently(message) => {
                    tracing::error!(task = %name, %message, "task failed on its input; not restarting");
                    failure = Some(JobError::InputFailed { task: name, message });
                }
            }
        }
        self.handle.set_coordinator(None);
        let stats = coordinator.map(|c| c.join().unwrap_or_default()).unwrap_or_default();
        let result = match (failure, cancelled) {
            (Some(failure), _) => Err(failure),
            (None, true) => Err(JobError::Cancelled),
            (None, false) => Ok(()),
        };
        Ok((result, stats))
    }
}

/// Checkpointing of a job per `execution.checkpointing.*`; `None` when it is off.
pub(crate) fn checkpoint_settings(
    config: &Configuration,
    job_id: &str,
    job_name: &str,
    max_parallelism: usize,
) -> Result<Option<CheckpointSettings>, ConfigError> {
    let Some(interval) = config.duration(keys::CHECKPOINT_INTERVAL)? else { return Ok(None) };
    if interval.is_zero() {
        return Ok(None);
    }
    Ok(Some(CheckpointSettings {
        interval,
        timeout: config.duration("execution.checkpointing.timeout")?.unwrap_or(Duration::from_secs(600)),
        retained: config.parse_or(keys::CHECKPOINTS_RETAINED, 1, "a positive integer")?,
        job_id: job_id.to_string(),
        job_name: job_name.to_string(),
        max_parallelism,
        operators: Vec::new(),
    }))
}

/// Starts the checkpoint coordinator of an attempt on its own thread, taking the job's
/// savepoint requests; its statistics come back when the attempt's tasks are all gone.
pub(crate) fn start_coordinator(
    handle: &JobHandle,
    settings: &CheckpointSettings,
    storage: &CheckpointStorage,
    tasks: Vec<TaskEntry>,
    events: crossbeam_channel::Receiver<crate::runtime::task::TaskEvent>,
    next_checkpoint_id: u64,
    announce: Option<Announce>,
) -> Result<std::thread::JoinHandle<CheckpointStats>, JobError> {
    let (savepoints_tx, savepoints_rx) = crossbeam_channel::unbounded();
    handle.set_coordinator(Some(savepoints_tx));
    let mut coordinator = CheckpointCoordinator::new(
        settings.clone(),
        storage.clone(),
        tasks,
        events,
        savepoints_rx,
        handle.clone(),
        next_checkpoint_id,
    );
    if let Some(announce) = announce {
        coordinator = coordinator.with_announce(announce);
    }
    std::thread::Builder::new()
        .name("checkpoint-coordinator".into())
        .spawn(move || coordinator.run())
        .map_err(|source| JobError::Spawn { task: "checkpoint coordinator".into(), source })
}

/// The job's newest complete checkpoint under its directory `storage`.
pub(crate) async fn latest_checkpoint(storage: &CheckpointStorage) -> Result<Option<Restore>, StorageError> {
    Ok(discover::latest(storage).await?.map(|d| Restore {
        url: storage.child(&checkpoint_dir(d.state.checkpoint_id)).url().to_string(),
        state: Arc::new(d.state),
    }))
}

/// A checkpoint or savepoint to start from.
pub(crate) struct Restore {
    pub state: Arc<RestoredState>,
    /// Its directory, for TaskManagers that load it themselves.
    pub url: String,
}

/// The state to start from, as Flink decides it: the job's own newest checkpoint (so a
/// restarted JobManager never rewinds to the savepoint it was first started from), else the
/// savepoint given by `execution.savepoint.path`, else nothing. A job that finished last
/// time starts fresh.
pub(crate) fn initial_state(
    config: &Configuration,
    storage: Option<&CheckpointStorage>,
    operators: &[String],
) -> Result<Option<Restore>, JobError> {
    if let Some(storage) = storage {
        let own = io_runtime().block_on(async {
            if storage.get_if_exists(FINISHED_MARKER).await?.is_some() {
                tracing::info!(dir = storage.url(), "the job finished last time; starting fresh");
                storage.delete_all("").await?;
                return Ok::<_, StorageError>(None);
            }
            latest_checkpoint(storage).await
        })?;
        if own.is_some() {
            return Ok(own);
        }
    }
    let Some(path) = config.get("execution.savepoint.path") else { return Ok(None) };
    let dir = CheckpointStorage::from_url(path)?;
    let mut state = match io_runtime().block_on(discover::load(&dir)) {
        Ok(Some(found)) => found.state,
        Ok(None) => return Err(JobError::Restore { path: path.into(), message: "no _metadata there".into() }),
        Err(message) => return Err(JobError::Restore { path: path.into(), message }),
    };
    let unclaimed = state.unclaimed(operators);
    if !unclaimed.is_empty() {
        if !config.parse_or("execution.savepoint.ignore-unclaimed-state", false, "true or false")? {
            return Err(JobError::Restore {
                path: path.into(),
                message: format!(
                    "it holds state of {} that this job does not have; \
                     pass --allow-non-restored-state to drop it",
                    unclaimed.join(", ")
                ),
            });
        }
        tracing::warn!(dropped = %unclaimed.join(", "), "dropping state the job does not have");
        state.drop_unclaimed(operators);
    }
    tracing::info!(path, checkpoint = state.checkpoint_id, "restoring from savepoint");
    Ok(Some(Restore { state: Arc::new(state), url: path.to_string() }))
}

/// Shows the job's vertices (tasks) on its handle, with fresh record counters for an attempt.
pub(crate) fn show_vertices(
    handle: &JobHandle,
    plan: &ExecutionPlan,
    graph: &JobGraph,
    job_id: &str,
) -> Vec<Arc<crate::runtime::task::TaskCounters>> {
    let counters: Vec<Arc<crate::runtime::task::TaskCounters>> = plan.heads.iter().map(|_| Arc::default()).collect();
    handle.set_tasks(
        plan.heads
            .iter()
            .zip(&counters)
            .map(|(&head, counters)| {
                let status = TaskStatus {
                    id: job_id_for(&format!("{job_id}/{head}")),
                    name: plan.task_name(graph, head),
                    parallelism: plan.parallelism[head],
                    records_in: 0,
                    records_out: 0,
                };
                (status, counters.clone())
            })
            .collect(),
    );
    counters
}

/// Records a failed attempt on the handle; the delay before restart number `restarts`, or
/// `None` when the restart strategy allows no more.
pub(crate) fn note_failure(
    handle: &JobHandle,
    strategy: &RestartStrategy,
    restarts: u32,
    task: &str,
    message: &str,
) -> Option<Duration> {
    handle.record_exception(message, Some(task), crate::runtime::task::now_ms());
    let delay = strategy.delay(restarts)?;
    tracing::warn!(%task, %message, restart = restarts, delay_ms = delay.as_millis() as u64, "task failed; restarting the job");
    handle.update(|s| {
        s.state = JobState::Restarting;
        s.restarts = restarts;
    });
    Some(delay)
}
