//! A task: one subtask of a job vertex, run on its own thread. What it knows about itself
//! ([`TaskInfo`]), the state its job's tasks share ([`JobShared`]), how it talks to the
//! checkpoint coordinator ([`Control`], [`TaskEvent`]) and how it ends ([`TaskOutcome`]).
//!
//! - `source`: the API a source implements ([`SourceFunction`]) and the output it emits into,
//! - `metrics`: records and busy/idle/back-pressured time per subtask,
//! - `loops`: the two task loops, a source task pulling from its source and an input task from
//!   its input gate; both push into their operator chain, drive processing time and the buffer
//!   timeout, and end with `finish` when their input ends.

mod loops;
mod metrics;
mod panics;
mod source;

pub use loops::{InputTask, SourceTask};
pub(crate) use metrics::TimeAccount;
pub use metrics::{TaskCounters, TaskMetrics, VertexCounters};
pub use source::{SourceError, SourceFunction, SourceOutput, SourceStatus};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};

use crate::output::{CheckpointBarrier, TaskSnapshot, Timestamp};
use crate::state::restore::RestoredState;
use rheo_config::Configuration;

/// Current processing time in milliseconds since the epoch.
pub fn now_ms() -> Timestamp {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as Timestamp).unwrap_or(0)
}

/// What a subtask knows about itself and its job.
#[derive(Clone)]
pub struct TaskInfo {
    /// E.g. `Source: Socket Stream -> Flat Map`.
    pub task_name: String,
    pub subtask_index: usize,
    pub parallelism: usize,
    pub max_parallelism: usize,
    pub config: Arc<Configuration>,
    pub job: Arc<JobShared>,
    /// The checkpoint this run restores from, if any.
    pub restored: Option<Arc<RestoredState>>,
    /// This subtask's record and time counters (one entry of its vertex's [`VertexCounters`]).
    pub counters: Arc<TaskCounters>,
}

impl TaskInfo {
    /// `Name (2/4)`, as Flink names subtasks in logs.
    pub fn display_name(&self) -> String {
        format!("{} ({}/{})", self.task_name, self.subtask_index + 1, self.parallelism)
    }
}

/// State shared by all tasks of one running job.
#[derive(Default)]
pub struct JobShared {
    /// Set when this attempt is to stop (the job is cancelled, a task failed, the job
    /// rescales): sources stop reading. Cleared when the next attempt starts; the job-wide
    /// cancel request lives on the job's handle.
    stopping: AtomicBool,
    /// Records read by all sources.
    pub records_in: AtomicU64,
    /// Records written by all sinks.
    pub records_out: AtomicU64,
}

impl JobShared {
    /// Whether this attempt's tasks are to stop.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Stops this attempt's sources.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// Clears the stop flag for a new attempt.
    pub fn resume(&self) {
        self.stopping.store(false, Ordering::Relaxed);
    }
}

/// How a task ended.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum TaskOutcome {
    Finished,
    Cancelled,
    /// A panic in an operator or user function: restarting from a checkpoint may help.
    Failed(String),
    /// An error a source returned (input missing or malformed, nothing listening): the job's
    /// input is bad, and a restart would fail the same way.
    FailedPermanently(String),
    /// A sink's reader closed its output (a closed pipe): the job ends as finished.
    OutputClosed,
}

/// A task ready to run on its own thread.
pub trait Task: Send {
    fn info(&self) -> &TaskInfo;
    fn is_source(&self) -> bool;
    /// Connects the task to the checkpoint coordinator.
    fn attach(&mut self, link: CoordinatorLink);
    fn run(self: Box<Self>) -> TaskOutcome;
}

/// What the checkpoint coordinator tells a task.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub enum Control {
    /// Sources only: inject this barrier now; with `stop`, emit nothing after it (the
    /// synchronous savepoint of stop-with-savepoint).
    Trigger { barrier: CheckpointBarrier, stop: bool },
    /// A checkpoint completed: sinks commit.
    Complete(u64),
    /// Sources only: the final checkpoint is complete; close the stream.
    Finish,
}

/// What a task tells the checkpoint coordinator.
#[derive(Debug)]
pub enum TaskEvent {
    /// The task passed the barrier and captured its state.
    Acknowledge { task: usize, checkpoint_id: u64, subtask: usize, snapshot: TaskSnapshot },
    /// A source reached the end of its input and waits for the final checkpoint.
    EndOfInput { task: usize },
    /// A TaskManager uploaded a task's snapshot itself (or could not).
    Uploaded { task: usize, checkpoint_id: u64, states: Result<Vec<crate::checkpoint::metadata::StateHandle>, String> },
}

/// A task's two channels to the checkpoint coordinator.
pub struct CoordinatorLink {
    pub task: usize,
    pub control: Receiver<Control>,
    pub events: Sender<TaskEvent>,
}

impl CoordinatorLink {
    fn acknowledge(&self, info: &TaskInfo, checkpoint_id: u64, snapshot: TaskSnapshot) {
        // A coordinator that is gone means the job is ending; nothing to report to.
        let _ = self.events.send(TaskEvent::Acknowledge {
            task: self.task,
            checkpoint_id,
            subtask: info.subtask_index,
            snapshot,
        });
    }
}

/// Runs a task body, turning a panic in user code or an operator into a task failure. A
/// downstream task that went away means the job is already failing or cancelled.
pub(crate) fn run_guarded(info: &TaskInfo, body: impl FnOnce(&TaskInfo) -> Result<TaskOutcome, String>) -> TaskOutcome {
    let name = format!("{} ({}/{})", info.task_name, info.subtask_index + 1, info.parallelism);
    let outcome = panics::as_task(&name, || std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(info))));
    let outcome = match outcome {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(message)) => TaskOutcome::FailedPermanently(message),
        Err(payload) if payload.is::<crate::exchange::DownstreamGone>() => TaskOutcome::Cancelled,
        Err(payload) => match payload.downcast::<crate::sink::SinkFailed>() {
            Ok(failed) => match failed.error {
                crate::sink::SinkError::OutputClosed => {
                    tracing::info!(sink = %failed.sink, "the output was closed; ending the job");
                    TaskOutcome::OutputClosed
                }
                error => TaskOutcome::Failed(format!("{} failed: {error}", failed.sink)),
            },
            Err(payload) => TaskOutcome::Failed(panic_message(payload.as_ref())),
        },
    };
    if !matches!(outcome, TaskOutcome::Finished) {
        // Stop the sources of the whole job; channels of this task close as it returns.
        info.job.stop();
    }
    outcome
}

/// The text of a panic payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "task panicked".to_string()
    }
}
