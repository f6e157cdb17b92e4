//! The in-process deployer: every subtask of an attempt runs as a thread of this process.

use std::sync::Arc;

use rheo_config::Configuration;

use super::job::{Attempt, AttemptEnd, Deployer, JobError};
use crate::checkpoint::coordinator::{CheckpointStats, ControlSender, TaskEntry};
use crate::graph::JobGraph;
use crate::graph::plan::{ExecutionPlan, PlanSettings};
use crate::task::{CoordinatorLink, TaskOutcome, panic_message};

pub struct LocalDeployer<'a> {
    pub graph: &'a JobGraph,
    pub plan: &'a ExecutionPlan,
    pub settings: &'a PlanSettings,
    pub config: Arc<Configuration>,
}

impl Deployer for LocalDeployer<'_> {
    fn run_attempt(&mut self, attempt: &Attempt<'_>) -> Result<(AttemptEnd, CheckpointStats), JobError> {
        let counters = attempt.show_vertices(self.plan, self.graph);
        let restored = attempt.restore.map(|r| r.state.clone());
        let shared = attempt.handle.shared();
        let mut tasks =
            self.plan.build_tasks(self.graph, self.settings, self.config.clone(), shared, restored, &counters);
        let (events_tx, events_rx) = crossbeam_channel::unbounded();
        let mut entries = Vec::with_capacity(tasks.len());
        if attempt.checkpointing.is_some() {
            for (index, task) in tasks.iter_mut().enumerate() {
                let (control_tx, control_rx) = crossbeam_channel::unbounded();
                entries.push(TaskEntry {
                    is_source: task.is_source(),
                    parallelism: task.info().parallelism,
                    control: ControlSender::Local(control_tx),
                });
                task.attach(CoordinatorLink { task: index, control: control_rx, events: events_tx.clone() });
            }
        }
        drop(events_tx);
        let coordinator = attempt.start_coordinator(entries, events_rx, None)?;
        attempt.handle.update(|s| s.state = super::handle::JobState::Running);
        tracing::info!(job_id = %attempt.handle.job_id(), subtasks = tasks.len(), attempt = attempt.number, "starting job");

        let mut threads = Vec::with_capacity(tasks.len());
        let mut spawn_error = None;
        for task in tasks {
            let name = task.info().display_name();
            match std::thread::Builder::new().name(name.clone()).spawn(move || task.run()) {
                Ok(thread) => threads.push((name, thread)),
                Err(source) => {
                    // Stop what already runs, then report: no restart can make threads.
                    attempt.handle.shared().stop();
                    spawn_error = Some(JobError::Spawn { task: name, source });
                    break;
                }
            }
        }
        let mut failure = None;
        let mut cancelled = false;
        let mut output_closed = false;
        for (name, thread) in threads {
            let outcome = thread.join().unwrap_or_else(|p| TaskOutcome::Failed(panic_message(p.as_ref())));
            match outcome {
                TaskOutcome::Finished => {}
                TaskOutcome::Cancelled => cancelled = true,
                TaskOutcome::OutputClosed => output_closed = true,
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
        attempt.handle.set_coordinator(None);
        let stats = coordinator.map(|c| c.join().unwrap_or_default()).unwrap_or_default();
        if let Some(error) = spawn_error {
            return Err(error);
        }
        let end = match (failure, cancelled) {
            (Some(failure), _) => AttemptEnd::Failed(failure),
            // The other tasks stopped because the output was closed.
            (None, _) if output_closed => AttemptEnd::Finished,
            (None, true) => AttemptEnd::Cancelled,
            (None, false) => AttemptEnd::Finished,
        };
        Ok((end, stats))
    }
}
