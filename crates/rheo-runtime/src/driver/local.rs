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
        // A cancel already requested: start nothing, and leave the stop flag set whoever
        // cleared it.
        if attempt.handle.is_cancel_requested() {
            attempt.handle.shared().stop();
            return Ok((AttemptEnd::Cancelled, CheckpointStats::default()));
        }
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

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;
    use crate::graph::{Node, NodeKind, OperatorContext, TypeOf, unerase};
    use crate::task::{JobShared, SourceError, SourceFunction, SourceOutput, SourceStatus, SourceTask, Task};

    /// A source that never ends by itself: only the stop flag ends its task.
    struct Endless;

    impl SourceFunction<u64> for Endless {
        fn poll(&mut self, _out: &mut SourceOutput<'_, u64>) -> Result<SourceStatus, SourceError> {
            std::thread::sleep(Duration::from_millis(1));
            Ok(SourceStatus::Idle)
        }
    }

    fn endless_job() -> JobGraph {
        let factory = Arc::new(|ctx: &OperatorContext, mut outs: Vec<Box<dyn std::any::Any>>| -> Box<dyn Task> {
            Box::new(SourceTask {
                info: ctx.info.clone(),
                node: ctx.node,
                source: Box::new(Endless),
                chain: unerase::<u64>(outs.remove(0)),
                link: None,
            })
        });
        let mut graph = JobGraph::default();
        graph.add(Node {
            name: "Source: endless".into(),
            parallelism: None,
            non_parallel: false,
            kind: NodeKind::Source(factory),
            inputs: Vec::new(),
            ports: vec![TypeOf::<u64>::arc()],
        });
        graph
    }

    #[test]
    fn an_attempt_started_after_a_cancel_runs_nothing_and_keeps_its_stop_flag() {
        let handle = JobHandle::new(
            "0123456789abcdef0123456789abcdef".into(),
            "test".into(),
            String::new(),
            Arc::new(JobShared::default()),
        );
        handle.cancel();
        // The flag cleared after the cancel, as a driver that checks before it clears would.
        handle.shared().resume();
        let (done_tx, done_rx) = mpsc::channel();
        let attempt_handle = handle.clone();
        std::thread::spawn(move || {
            let graph = endless_job();
            let settings = PlanSettings { default_parallelism: 2, max_parallelism: 128, chaining: true };
            let plan = ExecutionPlan::new(&graph, &settings).unwrap();
            let mut deployer = LocalDeployer {
                graph: &graph,
                plan: &plan,
                settings: &settings,
                config: Arc::new(Configuration::new()),
            };
            let attempt = Attempt {
                number: 1,
                handle: &attempt_handle,
                restore: None,
                checkpointing: None,
                next_checkpoint_id: 1,
            };
            let _ = done_tx.send(deployer.run_attempt(&attempt).map(|(end, _)| end));
        });
        let end = done_rx.recv_timeout(Duration::from_secs(30)).expect("the attempt ran on after the cancel");
        assert!(matches!(end, Ok(AttemptEnd::Cancelled)), "{end:?}");
        assert!(handle.shared().is_stopping());
        assert!(handle.status().tasks.is_empty(), "the attempt deployed tasks: {:?}", handle.status().tasks);
    }
}
