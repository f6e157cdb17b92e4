//! The embedded mini-cluster: plans a job, runs every subtask on its own thread in this
//! process, and reports how the job ended.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::config::{ConfigError, Configuration};
use crate::graph::JobGraph;
use crate::graph::plan::{ExecutionPlan, PlanError, PlanSettings};
use crate::runtime::task::{JobShared, TaskOutcome, panic_message};

use super::progress::Progress;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("task '{task}' failed: {message}")]
    TaskFailed { task: String, message: String },
    #[error("the job was cancelled")]
    Cancelled,
    #[error("cannot start thread for task '{task}': {source}")]
    Spawn { task: String, source: std::io::Error },
}

/// What a finished job did.
#[derive(Debug, Clone)]
pub struct JobResult {
    pub job_name: String,
    pub records_in: u64,
    pub records_out: u64,
    pub duration: Duration,
    pub subtasks: usize,
}

pub struct MiniCluster {
    config: Arc<Configuration>,
    job: Arc<JobShared>,
    show_progress: bool,
}

impl MiniCluster {
    pub fn new(config: Configuration) -> Self {
        Self { config: Arc::new(config), job: Arc::new(JobShared::default()), show_progress: false }
    }

    /// Shows records in/out per second on stderr while the job runs.
    pub fn with_progress(mut self, show: bool) -> Self {
        self.show_progress = show;
        self
    }

    /// The running job's shared state, e.g. to cancel it from another thread.
    pub fn job(&self) -> Arc<JobShared> {
        self.job.clone()
    }

    pub fn run(&self, job_name: &str, graph: JobGraph, settings: &PlanSettings) -> Result<JobResult, JobError> {
        let started = Instant::now();
        let plan = ExecutionPlan::new(&graph, settings)?;
        let tasks = plan.build_tasks(&graph, settings, self.config.clone(), self.job.clone(), None);
        drop(graph);
        let subtasks = tasks.len();
        tracing::info!(job = job_name, subtasks, "starting job on the embedded mini-cluster");
        let progress = self.show_progress.then(|| Progress::start(self.job.clone()));
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
            }
        }
        if let Some(progress) = progress {
            progress.finish();
        }
        if let Some(failure) = failure {
            return Err(failure);
        }
        if cancelled {
            return Err(JobError::Cancelled);
        }
        Ok(JobResult {
            job_name: job_name.to_string(),
            records_in: self.job.records_in.load(Ordering::Relaxed),
            records_out: self.job.records_out.load(Ordering::Relaxed),
            duration: started.elapsed(),
            subtasks,
        })
    }
}
