//! A handle on a running job, for the REST API and the CLI: its status, savepoints, cancel.
//!
//! The mini-cluster and the checkpoint coordinator keep the status up to date; requests
//! (savepoints, stop-with-savepoint) go to the coordinator of the current attempt.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};

use crossbeam_channel::Sender;

use crate::task::{JobShared, TaskMetrics, VertexCounters, now_ms};

/// Completed checkpoints and savepoints kept for `/jobs/:id/checkpoints` (Flink's
/// `web.checkpoints.history` default).
pub const CHECKPOINT_HISTORY: usize = 10;
/// Failures kept for `/jobs/:id/exceptions` (Flink's `web.exception-history-size` default).
pub const EXCEPTION_HISTORY: usize = 16;

/// Flink's job states (the subset a mini-cluster goes through).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Created,
    Running,
    Restarting,
    Finished,
    Failed,
    Cancelled,
}

impl JobState {
    /// The name Flink's REST API uses.
    pub fn flink_name(&self) -> &'static str {
        match self {
            JobState::Created => "CREATED",
            JobState::Running => "RUNNING",
            JobState::Restarting => "RESTARTING",
            JobState::Finished => "FINISHED",
            JobState::Failed => "FAILED",
            JobState::Cancelled => "CANCELED",
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self, JobState::Finished | JobState::Failed | JobState::Cancelled)
    }
}

/// One vertex (a chain of operators) of the running job.
#[derive(Debug, Clone)]
pub struct TaskStatus {
    /// 32 hex digits, stable for the job.
    pub id: String,
    pub name: String,
    pub parallelism: usize,
    /// Records read from upstream tasks (0 for sources).
    pub records_in: u64,
    /// Records a source emitted (0 for other tasks).
    pub records_out: u64,
    /// The vertex's inputs, in the order of its input edges.
    pub inputs: Vec<TaskInput>,
}

/// An edge into a vertex from an upstream vertex (Flink's plan `inputs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInput {
    /// The upstream vertex's index in [`JobStatus::tasks`].
    pub task: usize,
    /// How records are distributed: `FORWARD`, `REBALANCE` or `HASH`, as Flink names them.
    pub ship_strategy: &'static str,
}

#[derive(Debug, Clone, Default)]
pub struct CheckpointCounts {
    pub completed: u64,
    pub failed: u64,
    pub in_progress: u64,
    pub restored: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedCheckpoint {
    pub id: u64,
    pub trigger_timestamp: i64,
    pub duration_ms: u64,
    pub size: u64,
    /// Where its `_metadata` is (a directory URL).
    pub external_path: String,
    pub is_savepoint: bool,
}

#[derive(Debug, Clone)]
pub struct JobStatus {
    pub state: JobState,
    pub start_time: i64,
    pub end_time: Option<i64>,
    pub tasks: Vec<TaskStatus>,
    pub checkpoints: CheckpointCounts,
    pub checkpoint_interval_ms: Option<u64>,
    pub last_checkpoint: Option<CompletedCheckpoint>,
    pub last_savepoint: Option<CompletedCheckpoint>,
    pub restored: Option<CompletedCheckpoint>,
    pub failure: Option<String>,
    pub restarts: u32,
    /// The latest completed checkpoints and savepoints, newest first (at most
    /// [`CHECKPOINT_HISTORY`]).
    pub checkpoint_history: Vec<CompletedCheckpoint>,
    /// Task failures and the job's final failure, newest first (at most [`EXCEPTION_HISTORY`]).
    pub exceptions: Vec<JobException>,
    /// Whether older exceptions were dropped.
    pub exceptions_truncated: bool,
}

/// A job's status and its metrics at one moment ([`JobHandle::snapshot`]).
#[derive(Debug, Clone)]
pub struct JobSnapshot {
    pub job_id: String,
    /// Its tasks' `records_in` and `records_out` are those of `metrics`.
    pub status: JobStatus,
    /// The metrics of each vertex (summed over its subtasks; the lowest watermark), indexed
    /// like `status.tasks`.
    pub metrics: Vec<TaskMetrics>,
    /// The metrics of each subtask of each vertex: indexed like `status.tasks`, then by
    /// subtask index, as many as the vertex's parallelism.
    pub subtask_metrics: Vec<Vec<TaskMetrics>>,
}

/// A failure of a task (a cause of a restart) or of the whole job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobException {
    /// What failed, in place of Flink's exception class, e.g. `rheo::TaskFailure`.
    pub name: String,
    pub message: String,
    /// The failed subtask, e.g. `Flat Map (2/4)`; `None` for a failure of the whole job.
    pub task: Option<String>,
    /// `host:port` of the TaskManager the subtask ran on.
    pub endpoint: Option<String>,
    pub task_manager_id: Option<String>,
    /// Epoch millis.
    pub timestamp: i64,
}

impl JobException {
    /// A failure of subtask `task` (or of the whole job when `None`).
    pub fn new(message: impl Into<String>, task: Option<&str>, timestamp: i64) -> Self {
        let name = if task.is_some() { "rheo::TaskFailure" } else { "rheo::JobError" };
        JobException {
            name: name.to_string(),
            message: message.into(),
            task: task.map(str::to_string),
            endpoint: None,
            task_manager_id: None,
            timestamp,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SavepointStatus {
    InProgress,
    Completed { location: String },
    Failed { cause: String },
}

/// A savepoint asked of the coordinator.
#[derive(Debug, Clone)]
pub struct SavepointRequest {
    pub trigger_id: String,
    /// The directory under which `savepoint-<job>-<id>/` is created.
    pub target_dir: String,
    /// Stop the job once the savepoint completes (sources emit nothing after its barrier).
    pub stop: bool,
    /// Write it as the job's newest checkpoint (`chk-<n>` under the checkpoint directory)
    /// instead of a savepoint: the stop of a rescale, which the next attempt restores from.
    pub as_checkpoint: bool,
}

/// A snapshot asked of the coordinator out of its schedule.
#[derive(Debug, Clone)]
pub enum SnapshotRequest {
    Savepoint(SavepointRequest),
    /// A checkpoint now (Flink's `POST /jobs/:id/checkpoints`): written and retained like a
    /// periodic one, so a restore from the job's checkpoint directory finds it.
    Checkpoint {
        trigger_id: String,
        /// Flink's `checkpointType: FULL`: keyed state written whole even with incremental
        /// checkpoints on (`CONFIGURED` and `INCREMENTAL` take the configured kind).
        full: bool,
    },
}

/// Where a checkpoint asked for through [`JobHandle::trigger_checkpoint`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointTriggerStatus {
    InProgress,
    Completed { checkpoint_id: u64, location: String },
    Failed { cause: String },
}

struct Shared {
    job_id: String,
    job_name: String,
    default_savepoint_dir: String,
    status: JobStatus,
    savepoints: HashMap<String, SavepointStatus>,
    checkpoint_triggers: HashMap<String, CheckpointTriggerStatus>,
    /// The coordinator of the running attempt, when checkpointing is on.
    coordinator: Option<Sender<SnapshotRequest>>,
    next_trigger: u64,
    /// When the job last entered RUNNING (epoch millis): exceptions recorded since belong to
    /// the current attempt.
    attempt_started: i64,
    /// Per-vertex record counters, indexed like `status.tasks`: under the same lock, so a
    /// reader never sees the tasks of one attempt with the counters of another.
    counters: Vec<Arc<VertexCounters>>,
    /// The parallelism asked for through the REST API (Flink's resource requirements), which
    /// the next attempts run at instead of the job's own.
    parallelism: Option<usize>,
    /// The running rescale: the trigger id of its stop-with-checkpoint.
    rescale: Option<String>,
}

impl Shared {
    fn push_checkpoint(&mut self, checkpoint: CompletedCheckpoint) {
        let history = &mut self.status.checkpoint_history;
        history.insert(0, checkpoint);
        history.truncate(CHECKPOINT_HISTORY);
    }

    fn push_exception(&mut self, exception: JobException) {
        let status = &mut self.status;
        status.exceptions.insert(0, exception);
        if status.exceptions.len() > EXCEPTION_HISTORY {
            status.exceptions.truncate(EXCEPTION_HISTORY);
            status.exceptions_truncated = true;
        }
    }
}

/// Cheap to clone; shared by the mini-cluster, its coordinator and the REST server.
#[derive(Clone)]
pub struct JobHandle {
    shared: Arc<Mutex<Shared>>,
    job: Arc<JobShared>,
    /// The job-wide cancel request: unlike the per-attempt stop flag of [`JobShared`], it
    /// outlives attempts, so a cancel during a restart backoff is never lost.
    cancel: Arc<CancelRequest>,
}

#[derive(Default)]
struct CancelRequest {
    requested: Mutex<bool>,
    wake: Condvar,
}

impl JobHandle {
    pub fn new(job_id: String, job_name: String, default_savepoint_dir: String, job: Arc<JobShared>) -> Self {
        let status = JobStatus {
            state: JobState::Created,
            start_time: now_ms(),
            end_time: None,
            tasks: Vec::new(),
            checkpoints: CheckpointCounts::default(),
            checkpoint_interval_ms: None,
            last_checkpoint: None,
            last_savepoint: None,
            restored: None,
            failure: None,
            restarts: 0,
            checkpoint_history: Vec::new(),
            exceptions: Vec::new(),
            exceptions_truncated: false,
        };
        let attempt_started = status.start_time;
        let shared = Shared {
            job_id,
            job_name,
            default_savepoint_dir,
            status,
            savepoints: HashMap::new(),
            checkpoint_triggers: HashMap::new(),
            coordinator: None,
            next_trigger: 0,
            attempt_started,
            counters: Vec::new(),
            parallelism: None,
            rescale: None,
        };
        Self { shared: Arc::new(Mutex::new(shared)), job, cancel: Arc::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// What every task of the job's current attempt shares: counters and the stop flag.
    pub fn shared(&self) -> Arc<JobShared> {
        self.job.clone()
    }

    pub fn job_id(&self) -> String {
        self.lock().job_id.clone()
    }

    pub fn job_name(&self) -> String {
        self.lock().job_name.clone()
    }

    pub fn status(&self) -> JobStatus {
        let shared = self.lock();
        let mut status = shared.status.clone();
        for (task, counters) in status.tasks.iter_mut().zip(shared.counters.iter()) {
            task.records_in = counters.records_in();
            task.records_out = counters.records_out();
        }
        status
    }

    /// The status and the metrics of every vertex and subtask, read under one lock: the
    /// metrics are those of the attempt whose tasks the status shows (two calls, to
    /// [`JobHandle::status`] and [`JobHandle::task_metrics`], may straddle a new attempt).
    pub fn snapshot(&self) -> JobSnapshot {
        let shared = self.lock();
        let mut status = shared.status.clone();
        let subtask_metrics: Vec<Vec<TaskMetrics>> = status
            .tasks
            .iter()
            .enumerate()
            .map(|(index, task)| {
                let mut metrics = shared.counters.get(index).map(|c| c.subtask_metrics()).unwrap_or_default();
                metrics.resize(task.parallelism, TaskMetrics::default());
                metrics
            })
            .collect();
        let metrics: Vec<TaskMetrics> = subtask_metrics
            .iter()
            .map(|subtasks| {
                let mut sum = TaskMetrics::default();
                subtasks.iter().for_each(|m| sum.add(m));
                sum
            })
            .collect();
        for (task, metrics) in status.tasks.iter_mut().zip(&metrics) {
            task.records_in = metrics.records_in;
            task.records_out = metrics.records_out;
        }
        JobSnapshot { job_id: shared.job_id.clone(), status, metrics, subtask_metrics }
    }

    /// The metrics of each vertex (records, busy/idle/back-pressured time), indexed like
    /// `JobStatus::tasks`.
    pub fn task_metrics(&self) -> Vec<TaskMetrics> {
        self.lock().counters.iter().map(|c| c.metrics()).collect()
    }

    /// The metrics of each subtask of each vertex, indexed like `JobStatus::tasks` and then
    /// by subtask index.
    pub fn subtask_metrics(&self) -> Vec<Vec<TaskMetrics>> {
        self.lock().counters.iter().map(|c| c.subtask_metrics()).collect()
    }

    /// Starts a savepoint (Flink's `POST /jobs/:id/savepoints`); returns its trigger id.
    pub fn trigger_savepoint(&self, target_dir: Option<String>, stop: bool) -> Result<String, String> {
        let (coordinator, trigger_id, default_dir) = self.new_trigger("savepoints")?;
        let target_dir = target_dir.unwrap_or(default_dir);
        self.lock().savepoints.insert(trigger_id.clone(), SavepointStatus::InProgress);
        let request = SavepointRequest { trigger_id: trigger_id.clone(), target_dir, stop, as_checkpoint: false };
        coordinator.send(SnapshotRequest::Savepoint(request)).map_err(|_| "the job is ending".to_string())?;
        Ok(trigger_id)
    }

    /// Starts a checkpoint now (Flink's `POST /jobs/:id/checkpoints`); returns its trigger id.
    /// A `trigger_id` given by the caller that is already known takes no second checkpoint, so
    /// a client that retries a request it got no answer to is safe. `full`: keyed state is
    /// written whole, building on no earlier checkpoint, even with incremental checkpoints on.
    pub fn trigger_checkpoint(&self, trigger_id: Option<String>, full: bool) -> Result<String, String> {
        if let Some(id) = &trigger_id
            && self.lock().checkpoint_triggers.contains_key(id)
        {
            return Ok(id.clone());
        }
        let (coordinator, fresh_id, _) = self.new_trigger("checkpoints")?;
        let trigger_id = trigger_id.unwrap_or(fresh_id);
        self.lock().checkpoint_triggers.insert(trigger_id.clone(), CheckpointTriggerStatus::InProgress);
        let request = SnapshotRequest::Checkpoint { trigger_id: trigger_id.clone(), full };
        coordinator.send(request).map_err(|_| "the job is ending".to_string())?;
        Ok(trigger_id)
    }

    /// The coordinator to send a triggered snapshot to, a fresh trigger id, and the default
    /// savepoint directory; an error when the job cannot take `what` now.
    fn new_trigger(&self, what: &str) -> Result<(Sender<SnapshotRequest>, String, String), String> {
        let mut shared = self.lock();
        if shared.status.state != JobState::Running {
            return Err(format!("job {} is {}, not RUNNING", shared.job_id, shared.status.state.flink_name()));
        }
        let Some(coordinator) = shared.coordinator.clone() else {
            return Err(format!("checkpointing is off (execution.checkpointing.interval): {what} need it"));
        };
        shared.next_trigger += 1;
        let trigger_id = format!(
            "{:032x}",
            rheo_types::keygroups::hash_key(&(shared.job_id.as_str(), shared.next_trigger, now_ms())) as u128
        );
        Ok((coordinator, trigger_id, shared.default_savepoint_dir.clone()))
    }

    /// Asks the next attempts to run at `parallelism` (Flink's `PUT
    /// /jobs/:id/resource-requirements`); the deployer rescales the running attempt.
    pub fn set_parallelism(&self, parallelism: usize) {
        self.lock().parallelism = Some(parallelism);
    }

    /// The parallelism asked for with [`JobHandle::set_parallelism`], if any.
    pub fn requested_parallelism(&self) -> Option<usize> {
        self.lock().parallelism
    }

    /// Starts a rescale without replay: a synchronous checkpoint (every source stops at its
    /// barrier and emits nothing after it) that the next attempt restores from. Returns its
    /// trigger id, to follow with [`JobHandle::savepoint_status`]; an error when the job cannot
    /// take one (not running, checkpointing off), in which case the caller rescales from the
    /// newest checkpoint instead.
    pub fn stop_for_rescale(&self) -> Result<String, String> {
        let mut shared = self.lock();
        if let Some(running) = &shared.rescale
            && shared.savepoints.get(running) == Some(&SavepointStatus::InProgress)
        {
            return Ok(running.clone());
        }
        if shared.status.state != JobState::Running {
            return Err(format!("job {} is {}, not RUNNING", shared.job_id, shared.status.state.flink_name()));
        }
        let Some(coordinator) = shared.coordinator.clone() else {
            return Err("checkpointing is off (execution.checkpointing.interval)".into());
        };
        shared.next_trigger += 1;
        let trigger_id = format!(
            "{:032x}",
            rheo_types::keygroups::hash_key(&("rescale", shared.job_id.as_str(), shared.next_trigger, now_ms()))
                as u128
        );
        shared.savepoints.insert(trigger_id.clone(), SavepointStatus::InProgress);
        shared.rescale = Some(trigger_id.clone());
        drop(shared);
        let request = SavepointRequest {
            trigger_id: trigger_id.clone(),
            target_dir: String::new(),
            stop: true,
            as_checkpoint: true,
        };
        coordinator.send(SnapshotRequest::Savepoint(request)).map_err(|_| "the job is ending".to_string())?;
        Ok(trigger_id)
    }

    pub fn savepoint_status(&self, trigger_id: &str) -> Option<SavepointStatus> {
        self.lock().savepoints.get(trigger_id).cloned()
    }

    pub fn checkpoint_trigger_status(&self, trigger_id: &str) -> Option<CheckpointTriggerStatus> {
        self.lock().checkpoint_triggers.get(trigger_id).cloned()
    }

    /// Cancels the job (Flink's `PATCH /jobs/:id?mode=cancel`).
    pub fn cancel(&self) {
        let mut requested = self.cancel.requested.lock().unwrap_or_else(|p| p.into_inner());
        *requested = true;
        // Under the lock, as [`JobHandle::begin_attempt`] clears it: an attempt that begins
        // now either sees the request or has cleared the flag before it is set here.
        self.job.stop();
        drop(requested);
        self.cancel.wake.notify_all();
    }

    /// Clears the per-attempt stop flag for a new attempt, unless the job is to be cancelled:
    /// then the flag stays set and this returns false. The check and the clearing happen under
    /// the lock [`JobHandle::cancel`] takes, so a cancel is never undone by a new attempt.
    pub fn begin_attempt(&self) -> bool {
        let requested = self.cancel.requested.lock().unwrap_or_else(|p| p.into_inner());
        if *requested {
            return false;
        }
        self.job.resume();
        true
    }

    /// Whether someone asked to cancel the job.
    pub fn is_cancel_requested(&self) -> bool {
        *self.cancel.requested.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits up to `timeout` for a cancel request; true when the job is to be cancelled.
    pub fn wait_for_cancel(&self, timeout: std::time::Duration) -> bool {
        let requested = self.cancel.requested.lock().unwrap_or_else(|p| p.into_inner());
        let (requested, _) = self
            .cancel
            .wake
            .wait_timeout_while(requested, timeout, |requested| !*requested)
            .unwrap_or_else(|p| p.into_inner());
        *requested
    }

    // ---- updated by the job driver, its deployers and the coordinator ----

    pub fn set_job_id(&self, job_id: &str) {
        self.lock().job_id = job_id.to_string();
    }

    pub fn set_job_name(&self, job_name: &str) {
        self.lock().job_name = job_name.to_string();
    }

    /// Changes the status. Derived history follows the change: a new `last_checkpoint` or
    /// `last_savepoint` enters the checkpoint history, and a change to FAILED whose cause no
    /// [`JobHandle::record_exception`] of the last attempt reported enters the exceptions.
    pub fn update(&self, f: impl FnOnce(&mut JobStatus)) {
        let mut shared = self.lock();
        let before = (shared.status.state, shared.status.last_checkpoint.clone(), shared.status.last_savepoint.clone());
        f(&mut shared.status);
        let status = &shared.status;
        let mut completed: Vec<CompletedCheckpoint> =
            [(&before.1, &status.last_checkpoint), (&before.2, &status.last_savepoint)]
                .into_iter()
                .filter(|(old, new)| new.is_some() && old != new)
                .filter_map(|(_, new)| new.clone())
                .collect();
        completed.sort_by_key(|c| c.id);
        for checkpoint in completed {
            shared.push_checkpoint(checkpoint);
        }
        let state = shared.status.state;
        if state != before.0 && state == JobState::Running {
            shared.attempt_started = now_ms();
        }
        if state != before.0
            && state == JobState::Failed
            && let Some(failure) = shared.status.failure.clone()
        {
            let reported = shared.status.exceptions.first().is_some_and(|e| e.timestamp >= shared.attempt_started);
            if !reported {
                let timestamp = shared.status.end_time.unwrap_or_else(now_ms);
                shared.push_exception(JobException::new(failure, None, timestamp));
            }
        }
    }

    /// Records a completed checkpoint or savepoint: counts, latest and history.
    pub fn record_checkpoint(&self, checkpoint: CompletedCheckpoint) {
        let mut shared = self.lock();
        let status = &mut shared.status;
        status.checkpoints.completed += 1;
        status.checkpoints.in_progress = 0;
        if checkpoint.is_savepoint {
            status.last_savepoint = Some(checkpoint.clone());
        } else {
            status.last_checkpoint = Some(checkpoint.clone());
        }
        shared.push_checkpoint(checkpoint);
    }

    /// Records a task failure (a cause of a restart, or of the job's failure): `message`, the
    /// failed subtask (`None`: the whole job) and when (epoch millis).
    pub fn record_exception(&self, message: &str, task: Option<&str>, timestamp: i64) {
        self.record_exception_info(JobException::new(message, task, timestamp));
    }

    /// [`JobHandle::record_exception`] with every field, e.g. the TaskManager of the subtask.
    pub fn record_exception_info(&self, exception: JobException) {
        self.lock().push_exception(exception);
    }

    pub fn set_tasks(&self, tasks: Vec<(TaskStatus, Arc<VertexCounters>)>) {
        let (statuses, counters): (Vec<_>, Vec<_>) = tasks.into_iter().unzip();
        let mut shared = self.lock();
        shared.status.tasks = statuses;
        shared.counters = counters;
    }

    pub fn set_coordinator(&self, coordinator: Option<Sender<SnapshotRequest>>) {
        let mut shared = self.lock();
        shared.coordinator = coordinator;
        if shared.coordinator.is_none() {
            // Savepoints still pending when an attempt ends cannot complete any more.
            for status in shared.savepoints.values_mut() {
                if *status == SavepointStatus::InProgress {
                    *status = SavepointStatus::Failed {
                        cause: "the job attempt ended before the savepoint completed".into(),
                    };
                }
            }
            for status in shared.checkpoint_triggers.values_mut() {
                if *status == CheckpointTriggerStatus::InProgress {
                    *status = CheckpointTriggerStatus::Failed {
                        cause: "the job attempt ended before the checkpoint completed".into(),
                    };
                }
            }
        }
    }

    pub fn checkpoint_trigger_done(&self, trigger_id: &str, status: CheckpointTriggerStatus) {
        self.lock().checkpoint_triggers.insert(trigger_id.to_string(), status);
    }

    pub fn savepoint_done(&self, trigger_id: &str, status: SavepointStatus) {
        self.lock().savepoints.insert(trigger_id.to_string(), status);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle() -> JobHandle {
        JobHandle::new("0123456789abcdef0123456789abcdef".into(), "test".into(), String::new(), Arc::default())
    }

    /// Shows attempt `n`'s vertices: `n % 3 + 1` of them at parallelism `n % 4 + 1`, each
    /// subtask's counters holding `n` records.
    fn show_attempt(handle: &JobHandle, n: u64) {
        let (vertices, parallelism) = (n as usize % 3 + 1, n as usize % 4 + 1);
        let tasks = (0..vertices)
            .map(|v| {
                let counters = Arc::new(VertexCounters::new(parallelism));
                for subtask in 0..parallelism {
                    counters.subtask(subtask).records_in.store(n, std::sync::atomic::Ordering::Relaxed);
                }
                let status = TaskStatus {
                    id: format!("{v:032x}"),
                    name: format!("vertex {v} of attempt {n}"),
                    parallelism,
                    records_in: 0,
                    records_out: 0,
                    inputs: Vec::new(),
                };
                (status, counters)
            })
            .collect();
        handle.set_tasks(tasks);
    }

    #[test]
    fn a_snapshot_shows_the_status_and_metrics_of_one_attempt() {
        let handle = handle();
        show_attempt(&handle, 0);
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let attempts = {
            let (handle, done) = (handle.clone(), done.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    show_attempt(&handle, n);
                }
                n
            })
        };
        for _ in 0..20_000 {
            let snapshot = handle.snapshot();
            let tasks = &snapshot.status.tasks;
            assert_eq!(tasks.len(), snapshot.metrics.len());
            assert_eq!(tasks.len(), snapshot.subtask_metrics.len());
            let attempt: u64 = tasks[0].name.rsplit(' ').next().unwrap().parse().unwrap();
            assert_eq!(tasks.len(), attempt as usize % 3 + 1, "vertices of another attempt");
            for ((task, metrics), subtasks) in tasks.iter().zip(&snapshot.metrics).zip(&snapshot.subtask_metrics) {
                assert_eq!(task.parallelism, attempt as usize % 4 + 1);
                assert_eq!(subtasks.len(), task.parallelism);
                assert!(subtasks.iter().all(|m| m.records_in == attempt), "{task:?}: {subtasks:?}");
                assert_eq!(metrics.records_in, attempt * task.parallelism as u64);
                assert_eq!(task.records_in, metrics.records_in);
            }
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(attempts.join().unwrap() > 0);
    }

    #[test]
    fn a_pending_cancel_refuses_a_new_attempt_and_keeps_its_stop_flag() {
        let handle = handle();
        // The previous attempt stopped its sources; the next one starts clear.
        handle.shared().stop();
        assert!(handle.begin_attempt());
        assert!(!handle.shared().is_stopping());
        handle.cancel();
        assert!(handle.shared().is_stopping());
        assert!(!handle.begin_attempt(), "an attempt began after the cancel");
        assert!(handle.shared().is_stopping(), "a new attempt cleared the stop flag of a cancelled job");
    }
}
