//! The embedded mini-cluster of `rheo run` and `StreamEnv::execute`: a [`JobDriver`] over the
//! [`LocalDeployer`], which runs every subtask on its own thread in this process.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rheo_config::{Configuration, options};

use crate::checkpoint::storage::initialize_file_systems;

use super::handle::{JobHandle, JobState};
use super::job::JobDriver;
pub use super::job::JobError;
use super::local::LocalDeployer;
use crate::checkpoint::coordinator::CheckpointStats;
use crate::graph::JobGraph;
use crate::graph::plan::{ExecutionPlan, PlanSettings};
use crate::task::JobShared;

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
    handle: JobHandle,
}

/// Flink-style job id (32 hex digits) derived from a name, so reruns find their checkpoints.
pub fn job_id_for(name: &str) -> String {
    rheo_types::JobId::derived_from(name).to_string()
}

impl MiniCluster {
    pub fn new(config: Configuration) -> Self {
        let job = Arc::new(JobShared::default());
        let savepoints = config.string(&options::SAVEPOINTS_DIR);
        if let Err(e) = initialize_file_systems(&config) {
            // The job driver rejects the configuration with this error when the job starts.
            tracing::debug!(error = %e, "file system options");
        }
        let handle = JobHandle::new(String::new(), String::new(), savepoints, job.clone());
        Self { config: Arc::new(config), job, job_id: None, handle }
    }

    /// A handle on the job this cluster runs: status, savepoints, cancel (for the REST API).
    pub fn handle(&self) -> JobHandle {
        self.handle.clone()
    }

    /// The counters every task of this cluster's job updates (for a progress display).
    pub fn shared(&self) -> Arc<JobShared> {
        self.job.clone()
    }

    /// The job id under which checkpoints are stored (default: derived from the job name).
    pub fn with_job_id(mut self, job_id: impl Into<String>) -> Self {
        let job_id = job_id.into();
        self.handle.set_job_id(&job_id);
        self.job_id = Some(job_id);
        self
    }

    /// Runs the job to its end: plans it, then drives its attempts on threads of this process.
    pub fn run(&self, job_name: &str, graph: JobGraph, settings: &PlanSettings) -> Result<JobResult, JobError> {
        let started = Instant::now();
        let job_id = self.job_id.clone().unwrap_or_else(|| job_id_for(job_name));
        self.handle.set_job_id(&job_id);
        self.handle.set_job_name(job_name);
        let planned = ExecutionPlan::new(&graph, settings);
        let driver = JobDriver {
            config: self.config.clone(),
            job_name: job_name.to_string(),
            operators: graph.nodes.iter().map(|n| n.name.clone()).collect(),
            max_parallelism: settings.max_parallelism,
            handle: self.handle.clone(),
            output_checks: graph.output_checks.clone(),
            rerun_finished: true,
        };
        let plan = match planned {
            Ok(plan) => plan,
            Err(e) => {
                let error = JobError::from(e);
                self.handle.update(|s| {
                    s.state = JobState::Failed;
                    s.failure = Some(error.to_string());
                });
                return Err(error);
            }
        };
        let subtasks = plan.subtasks().len();
        let mut deployer = LocalDeployer { graph: &graph, plan: &plan, settings, config: self.config.clone() };
        let report = driver.run(&mut deployer)?;
        Ok(JobResult {
            job_id,
            job_name: job_name.to_string(),
            records_in: self.job.records_in.load(Ordering::Relaxed),
            records_out: self.job.records_out.load(Ordering::Relaxed),
            duration: started.elapsed(),
            subtasks,
            restarts: report.restarts,
            restored_from: report.restored_from,
            checkpoints: report.checkpoints,
        })
    }
}
