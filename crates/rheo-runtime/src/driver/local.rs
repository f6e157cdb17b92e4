//! The in-process deployer: every subtask of an attempt runs as a thread of this process.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rheo_config::Configuration;

use super::handle::{JobHandle, SavepointStatus};
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
        // A parallelism asked for through the REST API replaces the job's default.
        let rescaled = match attempt.handle.requested_parallelism() {
            Some(p) if p != self.settings.default_parallelism => {
                let settings = PlanSettings { default_parallelism: p, ..self.settings.clone() };
                let plan = ExecutionPlan::new(self.graph, &settings)?;
                Some((plan, settings))
            }
            _ => None,
        };
        let (plan, settings) = match &rescaled {
            Some((plan, settings)) => (plan, settings),
            None => (self.plan, self.settings),
        };
        let counters = attempt.show_vertices(plan, self.graph);
        let restored = attempt.restore.map(|r| r.state.clone());
        let shared = attempt.handle.shared();
        let mut tasks = plan.build_tasks(self.graph, settings, self.config.clone(), shared, restored, &counters);
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
        let (ended, rescaling) = (AtomicBool::new(false), AtomicBool::new(false));
        let outcomes = std::thread::scope(|scope| {
            let (handle, running, ended, rescaling) = (attempt.handle, plan.slots_needed(), &ended, &rescaling);
            scope.spawn(move || watch_for_rescale(handle, running, ended, rescaling));
            let outcomes: Vec<_> = threads
                .into_iter()
                .map(|(name, thread)| {
                    (name, thread.join().unwrap_or_else(|p| TaskOutcome::Failed(panic_message(p.as_ref()))))
                })
                .collect();
            ended.store(true, Ordering::SeqCst);
            outcomes
        });
        for (name, outcome) in outcomes {
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
            (None, _) if rescaling.load(Ordering::SeqCst) && !attempt.handle.is_cancel_requested() => {
                AttemptEnd::Rescale
            }
            // The other tasks stopped because the output was closed.
            (None, _) if output_closed => AttemptEnd::Finished,
            (None, true) => AttemptEnd::Cancelled,
            (None, false) => AttemptEnd::Finished,
        };
        Ok((end, stats))
    }
}

/// Rescales the running attempt when another parallelism than `running` is asked for, until
/// `ended`: stops it with a synchronous checkpoint (no record is processed twice), or, when
/// none can be taken, stops its sources so the next attempt resumes from the newest checkpoint.
fn watch_for_rescale(handle: &JobHandle, running: usize, ended: &AtomicBool, rescaling: &AtomicBool) {
    const POLL: Duration = Duration::from_millis(10);
    let mut trigger: Option<String> = None;
    while !ended.load(Ordering::SeqCst) {
        match &trigger {
            None if handle.requested_parallelism().is_some_and(|p| p != running) => {
                rescaling.store(true, Ordering::SeqCst);
                match handle.stop_for_rescale() {
                    Ok(id) => {
                        tracing::info!(from = running, to = ?handle.requested_parallelism(), "rescaling: stopping with a checkpoint");
                        trigger = Some(id);
                    }
                    Err(cause) => {
                        tracing::warn!(%cause, "rescaling from the newest checkpoint");
                        handle.shared().stop();
                        return;
                    }
                }
            }
            Some(id) => {
                if let Some(SavepointStatus::Failed { cause }) = handle.savepoint_status(id) {
                    tracing::warn!(%cause, "the rescale's checkpoint failed; rescaling from the newest checkpoint");
                    handle.shared().stop();
                    return;
                }
            }
            None => {}
        }
        std::thread::sleep(POLL);
    }
}
