//! What the REST API serves about a cluster besides one job's handle: every job it knows,
//! its TaskManagers, and job submission. The mini-cluster of `rheo run` is a cluster of one job
//! and one in-process TaskManager; a standalone JobManager has many of both.

use rheo_runtime::driver::handle::JobHandle;

/// A TaskManager as the JobManager sees it (Flink's `/taskmanagers` entries).
#[derive(Debug, Clone)]
pub struct TaskManagerInfo {
    /// Flink-style resource id, e.g. `127.0.0.1:6121-3f2a1c`.
    pub id: String,
    /// `host:port` of its data port.
    pub data_address: String,
    pub slots: usize,
    pub free_slots: usize,
    /// Milliseconds since the epoch.
    pub last_heartbeat: i64,
    /// CPU cores and physical memory (bytes) of its machine, 0 when unknown.
    pub cpu_cores: usize,
    pub physical_memory: u64,
}

/// Where a subtask runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubtaskLocation {
    /// `host:port` of the TaskManager's data port.
    pub endpoint: String,
    pub taskmanager_id: String,
}

/// A job to start on a session cluster (`rheo submit`, Flink's `POST /jars/:jarid/run`).
#[derive(Debug, Clone, Default)]
pub struct SubmitRequest {
    /// A job the binary carries (`rheo jobs`).
    pub job: String,
    pub args: Vec<String>,
    pub parallelism: Option<usize>,
    /// 32 hex digits; default: a random id (each submission is a job of its own).
    pub job_id: Option<String>,
    pub savepoint_path: Option<String>,
    pub allow_non_restored_state: bool,
    /// Configuration of this job (`-D key=value`), over the cluster's.
    pub config: Vec<(String, String)>,
}

/// Why a submission was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SubmitError {
    /// The request names no known job or has bad arguments: a 400.
    #[error("{0}")]
    BadRequest(String),
    /// The cluster cannot take the job now (e.g. it runs one already): a 409.
    #[error("{0}")]
    Conflict(String),
}

/// A cluster as the REST API sees it.
pub trait ClusterView: Send + Sync {
    /// Every job, running or ended, oldest first.
    fn jobs(&self) -> Vec<JobHandle>;
    fn taskmanagers(&self) -> Vec<TaskManagerInfo>;
    /// Where subtask `subtask` of the job's vertices runs, when known.
    fn subtask_location(&self, _job_id: &str, _subtask: usize) -> Option<SubtaskLocation> {
        None
    }
    /// The jobs this binary carries: (name, description).
    fn available_jobs(&self) -> Vec<(String, String)>;
    /// Starts a job; returns its id.
    fn submit(&self, request: SubmitRequest) -> Result<String, SubmitError>;
}

/// The cluster of `rheo run`: one job, one TaskManager inside this process.
pub struct SingleJob {
    pub handle: JobHandle,
}

impl ClusterView for SingleJob {
    fn jobs(&self) -> Vec<JobHandle> {
        vec![self.handle.clone()]
    }

    fn taskmanagers(&self) -> Vec<TaskManagerInfo> {
        let status = self.handle.status();
        let slots = status.tasks.iter().map(|t| t.parallelism).max().unwrap_or(0);
        vec![TaskManagerInfo {
            id: "local".to_string(),
            data_address: "in-process".to_string(),
            slots,
            // The job's slots are free again once it has ended.
            free_slots: if status.state.is_terminal() { slots } else { 0 },
            last_heartbeat: rheo_runtime::task::now_ms(),
            cpu_cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            physical_memory: 0,
        }]
    }

    fn subtask_location(&self, _job_id: &str, _subtask: usize) -> Option<SubtaskLocation> {
        Some(SubtaskLocation { endpoint: "in-process".to_string(), taskmanager_id: "local".to_string() })
    }

    fn available_jobs(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    fn submit(&self, _request: SubmitRequest) -> Result<String, SubmitError> {
        Err(SubmitError::Conflict(
            "this is the mini-cluster of 'rheo run', which runs one job; start a session cluster with 'rheo cluster start'"
                .to_string(),
        ))
    }
}
