//! A real checkpoint coordinator, with the test in the place of the tasks.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::checkpoint::CheckpointStorage;
use crate::checkpoint::coordinator::{
    CheckpointCoordinator, CheckpointSettings, CheckpointStats, ControlSender, TaskEntry,
};
use crate::driver::handle::{JobHandle, JobState, JobStatus, SavepointStatus};
use crate::output::TaskSnapshot;
use crate::task::{Control, CoordinatorLink, JobShared, TaskEvent};

/// One task the coordinator knows of.
#[derive(Debug, Clone, Copy)]
pub struct TaskSpec {
    pub is_source: bool,
    pub parallelism: usize,
}

/// Runs a [`CheckpointCoordinator`] on its own thread over the tasks of `TaskSpec`s. The test
/// reads what the coordinator tells each task and answers for it, or hands a task's link to a
/// real task.
pub struct CoordinatorHarness {
    pub handle: JobHandle,
    pub storage: CheckpointStorage,
    controls: Vec<Option<Receiver<Control>>>,
    events: Option<Sender<TaskEvent>>,
    thread: Option<JoinHandle<CheckpointStats>>,
}

impl CoordinatorHarness {
    /// Starts the coordinator, writing checkpoints under `storage`. The job is RUNNING, so
    /// savepoints can be triggered through [`CoordinatorHarness::handle`].
    pub fn start(settings: CheckpointSettings, storage: CheckpointStorage, tasks: &[TaskSpec]) -> Self {
        Self::start_at(settings, storage, tasks, 1)
    }

    /// [`start`](Self::start) with the first checkpoint id `next_id`: a job's later attempt,
    /// past the ids of the checkpoints already under `storage`.
    pub fn start_at(
        settings: CheckpointSettings,
        storage: CheckpointStorage,
        tasks: &[TaskSpec],
        next_id: u64,
    ) -> Self {
        let handle = JobHandle::new(
            settings.job_id.clone(),
            settings.job_name.clone(),
            storage.url().to_string(),
            Arc::new(JobShared::default()),
        );
        handle.update(|s| s.state = JobState::Running);
        let (events_tx, events_rx) = crossbeam_channel::unbounded();
        let (savepoints_tx, savepoints_rx) = crossbeam_channel::unbounded();
        handle.set_coordinator(Some(savepoints_tx));
        let mut controls = Vec::new();
        let mut entries = Vec::new();
        for spec in tasks {
            let (tx, rx) = crossbeam_channel::unbounded();
            controls.push(Some(rx));
            entries.push(TaskEntry {
                is_source: spec.is_source,
                parallelism: spec.parallelism,
                control: ControlSender::Local(tx),
            });
        }
        let coordinator = CheckpointCoordinator::new(
            settings,
            storage.clone(),
            entries,
            events_rx,
            savepoints_rx,
            handle.clone(),
            next_id,
        );
        let thread = std::thread::Builder::new()
            .name("checkpoint-coordinator".into())
            .spawn(move || coordinator.run())
            .expect("spawn the coordinator");
        Self { handle, storage, controls, events: Some(events_tx), thread: Some(thread) }
    }

    /// Settings for a test job: checkpoints every `interval`, expiring after `timeout`.
    pub fn settings(interval: Duration, timeout: Duration) -> CheckpointSettings {
        CheckpointSettings {
            interval,
            timeout,
            retained: 1,
            job_id: "0123456789abcdef0123456789abcdef".into(),
            job_name: "harness".into(),
            max_parallelism: 128,
            operators: vec!["operator".into()],
            incremental: true,
        }
    }

    /// Gives task `task`'s coordinator link to a real task; the harness no longer plays it.
    pub fn link(&mut self, task: usize) -> CoordinatorLink {
        let control = self.controls[task].take().expect("this task's link is already given away");
        let events = self.events.as_ref().expect("the harness is running").clone();
        CoordinatorLink { task, control, events }
    }

    /// The next control message to `task`. Fails the test if none arrives within `within`:
    /// a bound for a coordinator that hangs, far above the wait a working one needs.
    pub fn next_control(&self, task: usize, within: Duration) -> Control {
        let control = self.controls[task].as_ref().expect("this task's link is given away");
        control.recv_timeout(within).unwrap_or_else(|e| panic!("no control message for task {task}: {e}"))
    }

    /// The control messages to `task` that are already queued.
    pub fn queued_controls(&self, task: usize) -> Vec<Control> {
        self.controls[task].as_ref().expect("this task's link is given away").try_iter().collect()
    }

    fn send(&self, event: TaskEvent) {
        self.events.as_ref().expect("the harness is running").send(event).expect("the coordinator runs");
    }

    /// Task `task` passed the barrier of `checkpoint_id` and took `snapshot`.
    pub fn acknowledge(&self, task: usize, checkpoint_id: u64, subtask: usize, snapshot: TaskSnapshot) {
        self.send(TaskEvent::Acknowledge { task, checkpoint_id, subtask, snapshot });
    }

    /// Task `task` could not take its part of `checkpoint_id` (Flink's decline): the way a
    /// TaskManager reports a snapshot it could not write.
    pub fn decline(&self, task: usize, checkpoint_id: u64, cause: &str) {
        self.send(TaskEvent::Uploaded { task, checkpoint_id, states: Err(cause.to_string()) });
    }

    /// Source `task` reached the end of its input.
    pub fn end_of_input(&self, task: usize) {
        self.send(TaskEvent::EndOfInput { task });
    }

    /// Waits until the job's status satisfies `condition`; fails the test after `within`.
    pub fn wait_for_status(&self, within: Duration, condition: impl Fn(&JobStatus) -> bool) -> JobStatus {
        let deadline = Instant::now() + within;
        loop {
            let status = self.handle.status();
            if condition(&status) {
                return status;
            }
            assert!(Instant::now() < deadline, "job status never got there: {status:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits until savepoint `trigger_id` is no longer in progress; fails the test after `within`.
    pub fn wait_for_savepoint(&self, trigger_id: &str, within: Duration) -> SavepointStatus {
        let deadline = Instant::now() + within;
        loop {
            match self.handle.savepoint_status(trigger_id) {
                Some(SavepointStatus::InProgress) | None => {}
                Some(done) => return done,
            }
            assert!(Instant::now() < deadline, "savepoint {trigger_id} never completed");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Lets the coordinator end (as when every task is gone) and returns its statistics.
    /// Real tasks given a link must have ended first.
    pub fn stop(mut self) -> CheckpointStats {
        self.events = None;
        self.thread.take().expect("stopped once").join().expect("the coordinator panicked")
    }
}
