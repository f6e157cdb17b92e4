//! A handle on a running job, for the REST API and the CLI: its status, savepoints, cancel.
//!
//! The mini-cluster and the checkpoint coordinator keep the status up to date; requests
//! (savepoints, stop-with-savepoint) go to the coordinator of the current attempt.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use crossbeam_channel::Sender;

use crate::runtime::task::{JobShared, now_ms};

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
}

#[derive(Debug, Clone, Default)]
pub struct CheckpointCounts {
    pub completed: u64,
    pub failed: u64,
    pub in_progress: u64,
    pub restored: u64,
}

#[derive(Debug, Clone)]
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
}

struct Shared {
    job_id: String,
    job_name: String,
    default_savepoint_dir: String,
    status: JobStatus,
    savepoints: HashMap<String, SavepointStatus>,
    /// The coordinator of the running attempt, when checkpointing is on.
    coordinator: Option<Sender<SavepointRequest>>,
    next_trigger: u64,
}

/// Cheap to clone; shared by the mini-cluster, its coordinator and the REST server.
#[derive(Clone)]
pub struct JobHandle {
    shared: Arc<Mutex<Shared>>,
    job: Arc<JobShared>,
    /// Per-vertex record counters, indexed like `JobStatus::tasks`.
    counters: Arc<Mutex<Vec<Arc<crate::runtime::task::TaskCounters>>>>,
}

impl JobHandle {
    pub(crate) fn new(job_id: String, job_name: String, default_savepoint_dir: String, job: Arc<JobShared>) -> Self {
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
        };
        let shared = Shared {
            job_id,
            job_name,
            default_savepoint_dir,
            status,
            savepoints: HashMap::new(),
            coordinator: None,
            next_trigger: 0,
        };
        Self { shared: Arc::new(Mutex::new(shared)), job, counters: Arc::new(Mutex::new(Vec::new())) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn job_id(&self) -> String {
        self.lock().job_id.clone()
    }

    pub fn job_name(&self) -> String {
        self.lock().job_name.clone()
    }

    pub fn status(&self) -> JobStatus {
        let mut status = self.lock().status.clone();
        let counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        for (task, counters) in status.tasks.iter_mut().zip(counters.iter()) {
            task.records_in = counters.records_in.load(Ordering::Relaxed);
            task.records_out = counters.records_out.load(Ordering::Relaxed);
        }
        status
    }

    /// Starts a savepoint (Flink's `POST /jobs/:id/savepoints`); returns its trigger id.
    pub fn trigger_savepoint(&self, target_dir: Option<String>, stop: bool) -> Result<String, String> {
        let mut shared = self.lock();
        if shared.status.state != JobState::Running {
            return Err(format!("job {} is {}, not RUNNING", shared.job_id, shared.status.state.flink_name()));
        }
        let Some(coordinator) = shared.coordinator.clone() else {
            return Err("checkpointing is off (execution.checkpointing.interval): savepoints need it".into());
        };
        shared.next_trigger += 1;
        let trigger_id = format!(
            "{:032x}",
            crate::runtime::keygroups::hash_key(&(shared.job_id.as_str(), shared.next_trigger, now_ms())) as u128
        );
        let target_dir = target_dir.unwrap_or_else(|| shared.default_savepoint_dir.clone());
        shared.savepoints.insert(trigger_id.clone(), SavepointStatus::InProgress);
        drop(shared);
        let request = SavepointRequest { trigger_id: trigger_id.clone(), target_dir, stop };
        coordinator.send(request).map_err(|_| "the job is ending".to_string())?;
        Ok(trigger_id)
    }

    pub fn savepoint_status(&self, trigger_id: &str) -> Option<SavepointStatus> {
        self.lock().savepoints.get(trigger_id).cloned()
    }

    /// Cancels the job (Flink's `PATCH /jobs/:id?mode=cancel`).
    pub fn cancel(&self) {
        self.job.cancel();
    }

    /// Whether someone asked to cancel the job.
    pub fn is_cancel_requested(&self) -> bool {
        self.job.is_cancelled()
    }

    // ---- updated by the mini-cluster and the coordinator ----

    pub(crate) fn set_job_id(&self, job_id: &str) {
        self.lock().job_id = job_id.to_string();
    }

    pub(crate) fn set_job_name(&self, job_name: &str) {
        self.lock().job_name = job_name.to_string();
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut JobStatus)) {
        f(&mut self.lock().status);
    }

    pub(crate) fn set_tasks(&self, tasks: Vec<(TaskStatus, Arc<crate::runtime::task::TaskCounters>)>) {
        let (statuses, counters): (Vec<_>, Vec<_>) = tasks.into_iter().unzip();
        self.lock().status.tasks = statuses;
        *self.counters.lock().unwrap_or_else(|p| p.into_inner()) = counters;
    }

    pub(crate) fn set_coordinator(&self, coordinator: Option<Sender<SavepointRequest>>) {
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
        }
    }

    pub(crate) fn savepoint_done(&self, trigger_id: &str, status: SavepointStatus) {
        self.lock().savepoints.insert(trigger_id.to_string(), status);
    }
}
