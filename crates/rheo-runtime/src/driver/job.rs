//! The job driver: one job's life over its attempts, wherever its tasks run.
//!
//! [`JobDriver::run`] owns what every deployment shares: the checkpoint settings and storage,
//! the state to start from, the restart loop with its (cancellable) backoff, the finished
//! marker and the job's status on its [`JobHandle`]. A [`Deployer`] runs one attempt: the
//! mini-cluster's runs every subtask as a thread of this process, the JobManager's deploys
//! them to TaskManager processes.
//!
//! Two flags stop a job. The per-attempt stop flag ([`JobShared::stop`](crate::task::JobShared::stop))
//! makes this attempt's sources stop; it is cleared at each attempt ([`JobHandle::begin_attempt`],
//! which leaves it set when a cancel is pending). The job-wide cancel request
//! lives on the handle and outlives attempts: a cancel that arrives during a restart backoff
//! ends the job as CANCELED instead of being forgotten by the next attempt.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rheo_config::{ConfigError, Configuration, options};

use super::handle::{CompletedCheckpoint, JobHandle, JobState, TaskInput, TaskStatus};
use super::restart::RestartBackoff;
use super::restore::{Restore, initial_state, latest_checkpoint};
use crate::checkpoint::coordinator::{Announce, CheckpointCoordinator, CheckpointSettings, CheckpointStats, TaskEntry};
use crate::checkpoint::discover::FINISHED_MARKER;
use crate::checkpoint::{CheckpointStorage, StorageError, io_runtime};
use crate::graph::plan::{ExecutionPlan, PlanError};
use crate::graph::{JobGraph, OutputCheck, OutputClaim, Partitioning};
use crate::output::NodeId;
use crate::task::{TaskEvent, VertexCounters, now_ms};

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("task '{task}' failed: {message}")]
    TaskFailed { task: String, message: String },
    /// A source reported bad input: the job is not restarted.
    #[error("task '{task}' failed: {message}")]
    InputFailed { task: String, message: String },
    #[error("the job was cancelled")]
    Cancelled,
    #[error("cannot start thread for task '{task}': {source}")]
    Spawn { task: String, source: std::io::Error },
    #[error("cannot restore from {path}: {message}")]
    Restore { path: String, message: String },
    /// The job's checkpoints exist but none can be restored.
    #[error(
        "checkpoint {path} cannot be restored ({problem}) and the job has no older one; starting from nothing \
         would commit its output a second time. Resume from a savepoint or retained checkpoint with \
         `-s PATH` (execution.savepoint.path), or start over with `--fresh-start` (execution.fresh-start: true), \
         which deletes the job's checkpoints and rolls back the output it committed"
    )]
    Unrestorable { path: String, problem: String },
    /// An output of the job cannot be written to, or belongs to another job.
    #[error("{0}")]
    Output(String),
}

/// How one attempt ended.
#[derive(Debug)]
pub enum AttemptEnd {
    Finished,
    /// Its tasks stopped without a failure: the job was cancelled.
    Cancelled,
    /// Resources changed (reactive mode): run again at another parallelism, without counting
    /// a failure.
    Rescale,
    Failed(JobError),
}

/// What a deployer gets for one attempt.
pub struct Attempt<'a> {
    /// 1 for the first attempt.
    pub number: u64,
    pub handle: &'a JobHandle,
    /// The checkpoint or savepoint to start from.
    pub restore: Option<&'a Restore>,
    /// Checkpointing of this attempt, when it is on.
    pub checkpointing: Option<(&'a CheckpointSettings, &'a CheckpointStorage)>,
    /// The id the attempt's first checkpoint gets: past every id used before.
    pub next_checkpoint_id: u64,
}

impl Attempt<'_> {
    /// Starts the attempt's checkpoint coordinator for `tasks` (when checkpointing is on);
    /// its statistics come back when the tasks are all gone.
    pub fn start_coordinator(
        &self,
        tasks: Vec<TaskEntry>,
        events: crossbeam_channel::Receiver<TaskEvent>,
        announce: Option<Announce>,
    ) -> Result<Option<std::thread::JoinHandle<CheckpointStats>>, JobError> {
        let Some((settings, storage)) = self.checkpointing else { return Ok(None) };
        let (savepoints_tx, savepoints_rx) = crossbeam_channel::unbounded();
        self.handle.set_coordinator(Some(savepoints_tx));
        let mut coordinator = CheckpointCoordinator::new(
            settings.clone(),
            storage.clone(),
            tasks,
            events,
            savepoints_rx,
            self.handle.clone(),
            self.next_checkpoint_id,
        );
        if let Some(announce) = announce {
            coordinator = coordinator.with_announce(announce);
        }
        std::thread::Builder::new()
            .name("checkpoint-coordinator".into())
            .spawn(move || coordinator.run())
            .map(Some)
            .map_err(|source| JobError::Spawn { task: "checkpoint coordinator".into(), source })
    }

    /// Shows the attempt's vertices (tasks) on the handle, with fresh record counters.
    pub fn show_vertices(&self, plan: &ExecutionPlan, graph: &JobGraph) -> Vec<Arc<VertexCounters>> {
        let job_id = self.handle.job_id();
        let counters: Vec<Arc<VertexCounters>> =
            plan.heads.iter().map(|&head| Arc::new(VertexCounters::new(plan.parallelism[head]))).collect();
        self.handle.set_tasks(
            plan.heads
                .iter()
                .zip(&counters)
                .map(|(&head, counters)| {
                    let status = TaskStatus {
                        id: rheo_types::JobId::derived_from(&format!("{job_id}/{head}")).to_string(),
                        name: plan.task_name(graph, head),
                        parallelism: plan.parallelism[head],
                        records_in: 0,
                        records_out: 0,
                        inputs: task_inputs(plan, graph, head),
                    };
                    (status, counters.clone())
                })
                .collect(),
        );
        counters
    }
}

/// The inputs of the task headed by `head`: each input edge's upstream task (the head of the
/// chain its node belongs to) and how records travel along it.
fn task_inputs(plan: &ExecutionPlan, graph: &JobGraph, head: NodeId) -> Vec<TaskInput> {
    graph.nodes[head]
        .inputs
        .iter()
        .filter_map(|edge| {
            let mut from = edge.from;
            while plan.chained[from] {
                from = graph.nodes[from].inputs[0].from;
            }
            let task = plan.heads.iter().position(|&h| h == from)?;
            let ship_strategy = match edge.partitioning {
                Partitioning::Forward => "FORWARD",
                Partitioning::Rebalance => "REBALANCE",
                Partitioning::Hash(_) => "HASH",
            };
            Some(TaskInput { task, ship_strategy })
        })
        .collect()
}

/// Runs attempts of a job somewhere.
pub trait Deployer {
    /// Deploys one attempt, follows it to its end and stops its coordinator. It returns `Err`
    /// only when the attempt could not be made at all (no restart can help); failures of the
    /// running job are `Ok(AttemptEnd::Failed)`, and go through the restart strategy.
    fn run_attempt(&mut self, attempt: &Attempt<'_>) -> Result<(AttemptEnd, CheckpointStats), JobError>;
}

/// What a job's run came to, besides its end state.
#[derive(Debug, Clone, Default)]
pub struct DriverReport {
    pub restarts: u32,
    /// The checkpoint or savepoint the run started from.
    pub restored_from: Option<u64>,
    pub checkpoints: CheckpointStats,
}

/// One job's life: restore, attempts, restarts, the end.
pub struct JobDriver {
    pub config: Arc<Configuration>,
    pub job_name: String,
    /// Operator names, to check that a savepoint's state belongs to the job.
    pub operators: Vec<String>,
    pub max_parallelism: usize,
    pub handle: JobHandle,
    /// Checks of the job's outputs (writable, owned by this job), run once before the first
    /// attempt; a failed check fails the job without a restart.
    pub output_checks: Vec<OutputCheck>,
    /// Whether a job that finished last time runs again from the start (`rheo run`: the user
    /// ran the command again), or stays FINISHED (a JobManager restarted after its job ended).
    pub rerun_finished: bool,
}

impl JobDriver {
    /// Runs the job to its end and leaves the end state (FINISHED, CANCELED, FAILED) on the
    /// handle.
    pub fn run(&self, deployer: &mut dyn Deployer) -> Result<DriverReport, JobError> {
        let mut report = DriverReport::default();
        let result = self.drive(deployer, &mut report);
        let state = match &result {
            Ok(()) => JobState::Finished,
            Err(JobError::Cancelled) => JobState::Cancelled,
            Err(_) => JobState::Failed,
        };
        let failure = result.as_ref().err().map(|e| e.to_string());
        self.handle.update(|s| {
            s.state = state;
            s.end_time = Some(now_ms());
            s.failure = failure;
        });
        result.map(|()| report)
    }

    fn drive(&self, deployer: &mut dyn Deployer, report: &mut DriverReport) -> Result<(), JobError> {
        // Every known option is checked before anything runs, so code that reads an option
        // later (in a task) finds it valid.
        self.config.validate()?;
        let job_id = self.handle.job_id();
        let checkpointing = checkpoint_settings(&self.config, &job_id, &self.job_name, self.max_parallelism)?
            .map(|c| CheckpointSettings { operators: self.operators.clone(), ..c });
        let mut backoff = RestartBackoff::from_config(&self.config, checkpointing.is_some())?;
        let storage = match &checkpointing {
            Some(_) => {
                let root = self.config.string(&options::CHECKPOINTS_DIR);
                Some(CheckpointStorage::from_url(&root)?.child(&job_id))
            }
            None => None,
        };
        if let Some(storage) = &storage
            && !self.rerun_finished
            && io_runtime().block_on(storage.get_if_exists(FINISHED_MARKER))?.is_some()
        {
            tracing::info!(job_id = %job_id, "the job finished before; it stays finished");
            return Ok(());
        }
        let mut restore = initial_state(&self.config, storage.as_ref(), &self.operators)?;
        let claim = OutputClaim {
            job_id: &job_id,
            restored_from: restore.as_ref().map(|r| r.state.job_id.as_str()).filter(|id| !id.is_empty()),
        };
        for check in &self.output_checks {
            check(&claim, &self.config).map_err(JobError::Output)?;
        }
        if let Some(r) = &restore {
            let id = r.state.checkpoint_id;
            tracing::info!(job_id = %job_id, checkpoint = id, path = %r.url, "resuming from checkpoint");
            report.restored_from = Some(id);
        }
        self.handle
            .update(|s| s.checkpoint_interval_ms = checkpointing.as_ref().map(|c| c.interval.as_millis() as u64));

        let stats = &mut report.checkpoints;
        let mut number = 0u64;
        loop {
            // Clears the stop flag unless a cancel was requested, in one step with the check:
            // a cancel that lands in between would otherwise be undone.
            if !self.handle.begin_attempt() {
                return Err(JobError::Cancelled);
            }
            number += 1;
            // Flink's `counts.restored` and `latest.restored`: every attempt that starts from a
            // checkpoint (the first one's, and each restart's or rescale's) counts.
            if let Some(r) = &restore {
                self.handle.update(|s| {
                    s.checkpoints.restored += 1;
                    s.restored = Some(CompletedCheckpoint {
                        id: r.state.checkpoint_id,
                        trigger_timestamp: 0,
                        duration_ms: 0,
                        size: 0,
                        external_path: r.url.clone(),
                        is_savepoint: false,
                    });
                });
            }
            let next_checkpoint_id =
                restore.as_ref().map_or(1, |r| r.state.checkpoint_id + 1).max(stats.last_id.map_or(1, |l| l + 1));
            let attempt = Attempt {
                number,
                handle: &self.handle,
                restore: restore.as_ref(),
                checkpointing: checkpointing.as_ref().zip(storage.as_ref()),
                next_checkpoint_id,
            };
            let started = Instant::now();
            let (end, attempt_stats) = deployer.run_attempt(&attempt)?;
            self.handle.set_coordinator(None);
            merge_stats(stats, &attempt_stats);
            match end {
                AttemptEnd::Finished => {
                    if let Some(storage) = &storage {
                        // A finished job's next run starts fresh.
                        io_runtime().block_on(storage.put(FINISHED_MARKER, job_id.clone().into_bytes()))?;
                    }
                    return Ok(());
                }
                AttemptEnd::Cancelled => return Err(JobError::Cancelled),
                AttemptEnd::Rescale => {
                    tracing::info!(job_id = %job_id, "rescaling to the available slots");
                    self.handle.update(|s| s.state = JobState::Restarting);
                }
                AttemptEnd::Failed(JobError::TaskFailed { task, message }) => {
                    if self.handle.is_cancel_requested() {
                        return Err(JobError::Cancelled);
                    }
                    self.handle.record_exception(&message, Some(&task), now_ms());
                    let Some(delay) = backoff.on_failure(started.elapsed()) else {
                        return Err(JobError::TaskFailed { task, message });
                    };
                    report.restarts = backoff.restarts();
                    tracing::warn!(%task, %message, restart = report.restarts, delay_ms = delay.as_millis() as u64,
                        "task failed; restarting the job");
                    self.handle.update(|s| {
                        s.state = JobState::Restarting;
                        s.restarts = report.restarts;
                    });
                    if self.handle.wait_for_cancel(delay) {
                        return Err(JobError::Cancelled);
                    }
                }
                AttemptEnd::Failed(other) => return Err(other),
            }
            if let Some(storage) = &storage {
                // The store may be down as long as whatever failed the attempt: a storage
                // error here is one more failure for the restart strategy.
                loop {
                    match io_runtime().block_on(latest_checkpoint(storage)) {
                        Ok(found) => {
                            restore = found.or(restore);
                            break;
                        }
                        Err(error) => {
                            let message = format!("cannot list the job's checkpoints: {error}");
                            self.handle.record_exception(&message, None, now_ms());
                            let Some(delay) = backoff.on_failure(Duration::ZERO) else {
                                return Err(JobError::Storage(error));
                            };
                            report.restarts = backoff.restarts();
                            tracing::warn!(%message, restart = report.restarts, delay_ms = delay.as_millis() as u64,
                                "restarting the job");
                            self.handle.update(|s| {
                                s.state = JobState::Restarting;
                                s.restarts = report.restarts;
                            });
                            if self.handle.wait_for_cancel(delay) {
                                return Err(JobError::Cancelled);
                            }
                        }
                    }
                }
            }
        }
    }
}

fn merge_stats(total: &mut CheckpointStats, attempt: &CheckpointStats) {
    total.completed += attempt.completed;
    total.failed += attempt.failed;
    total.total_duration += attempt.total_duration;
    total.max_size = total.max_size.max(attempt.max_size);
    if total.first.is_none() {
        total.first = attempt.first;
    }
    for &sample in &attempt.recent {
        total.record(sample);
    }
    if attempt.last_id.is_some() {
        total.last_id = attempt.last_id;
        total.last_duration = attempt.last_duration;
        total.last_size = attempt.last_size;
    }
}

/// Checkpointing of a job per `execution.checkpointing.*`; `None` when it is off.
fn checkpoint_settings(
    config: &Configuration,
    job_id: &str,
    job_name: &str,
    max_parallelism: usize,
) -> Result<Option<CheckpointSettings>, ConfigError> {
    let Some(interval) = config.get(&options::CHECKPOINT_INTERVAL)? else { return Ok(None) };
    if interval.is_zero() {
        return Ok(None);
    }
    Ok(Some(CheckpointSettings {
        interval,
        timeout: config.get(&options::CHECKPOINT_TIMEOUT)?,
        retained: config.get(&options::CHECKPOINTS_RETAINED)?,
        job_id: job_id.to_string(),
        job_name: job_name.to_string(),
        max_parallelism,
        operators: Vec::new(),
        incremental: config.get(&options::INCREMENTAL_CHECKPOINTS)?,
    }))
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::mpsc;

    use super::*;
    use std::time::Duration;

    use crate::task::JobShared;

    const JOB_ID: &str = "0123456789abcdef0123456789abcdef";

    /// A deployer whose attempts end as scripted, recording what each attempt was given.
    struct Scripted {
        ends: VecDeque<AttemptEnd>,
        attempts: Vec<u64>,
        /// Whether the per-attempt stop flag was clear when each attempt started.
        started_clear: Vec<bool>,
    }

    impl Scripted {
        fn new(ends: impl IntoIterator<Item = AttemptEnd>) -> Self {
            Self { ends: ends.into_iter().collect(), attempts: Vec::new(), started_clear: Vec::new() }
        }
    }

    impl Deployer for Scripted {
        fn run_attempt(&mut self, attempt: &Attempt<'_>) -> Result<(AttemptEnd, CheckpointStats), JobError> {
            self.attempts.push(attempt.number);
            self.started_clear.push(!attempt.handle.shared().is_stopping());
            // A failing attempt stops its own sources, as a task failure does.
            attempt.handle.shared().stop();
            let end = self.ends.pop_front().expect("the driver ran more attempts than scripted");
            Ok((end, CheckpointStats::default()))
        }
    }

    fn failed(message: &str) -> AttemptEnd {
        AttemptEnd::Failed(JobError::TaskFailed { task: "Map (1/1)".into(), message: message.into() })
    }

    fn driver(settings: &[(&str, &str)]) -> JobDriver {
        let mut config = Configuration::new();
        for (key, value) in settings {
            config.set(*key, *value);
        }
        let handle =
            JobHandle::new(JOB_ID.into(), "test".into(), "file:///tmp/unused".into(), Arc::new(JobShared::default()));
        JobDriver {
            config: Arc::new(config),
            job_name: "test".into(),
            operators: vec!["Source".into(), "Map".into()],
            max_parallelism: 128,
            handle,
            output_checks: Vec::new(),
            rerun_finished: true,
        }
    }

    fn wait_for_state(handle: &JobHandle, state: JobState) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while handle.status().state != state {
            assert!(Instant::now() < deadline, "the job never became {state:?}: {:?}", handle.status().state);
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_cancel_during_the_restart_backoff_ends_the_job_cancelled() {
        // An hour of backoff: if the cancel were lost, the driver would sleep through it and
        // start a second attempt (which the script does not allow).
        let driver = driver(&[
            ("restart-strategy.type", "fixed-delay"),
            ("restart-strategy.fixed-delay.attempts", "3"),
            ("restart-strategy.fixed-delay.delay", "1h"),
        ]);
        let handle = driver.handle.clone();
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut deployer = Scripted::new([failed("boom")]);
            let result = driver.run(&mut deployer);
            let _ = done_tx.send((result.map(|_| ()), deployer.attempts));
        });
        wait_for_state(&handle, JobState::Restarting);
        handle.cancel();
        let (result, attempts) = done_rx.recv_timeout(Duration::from_secs(30)).expect("the backoff was not cancelled");
        assert!(matches!(result, Err(JobError::Cancelled)), "{result:?}");
        assert_eq!(attempts, vec![1]);
        assert_eq!(handle.status().state, JobState::Cancelled);
    }

    #[test]
    fn a_cancel_before_an_attempt_starts_runs_nothing() {
        let driver = driver(&[]);
        driver.handle.cancel();
        let mut deployer = Scripted::new([]);
        assert!(matches!(driver.run(&mut deployer), Err(JobError::Cancelled)));
        assert!(deployer.attempts.is_empty());
        assert_eq!(driver.handle.status().state, JobState::Cancelled);
    }

    /// Ends every attempt with a rescale until it finds the stop flag set (then the attempt
    /// ends cancelled, as the local deployer's sources would); records, for each attempt, whether
    /// a cancel was pending when it started and whether the stop flag was then set.
    struct RescaleUntilStopped {
        started: Arc<std::sync::atomic::AtomicU64>,
        seen: Vec<(bool, bool)>,
    }

    impl Deployer for RescaleUntilStopped {
        fn run_attempt(&mut self, attempt: &Attempt<'_>) -> Result<(AttemptEnd, CheckpointStats), JobError> {
            // The request first: `cancel` sets the flag before it releases the request, so a
            // request seen here means the flag was set, unless the driver cleared it since.
            let requested = attempt.handle.is_cancel_requested();
            let stopping = attempt.handle.shared().is_stopping();
            self.seen.push((requested, stopping));
            self.started.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let end = if stopping { AttemptEnd::Cancelled } else { AttemptEnd::Rescale };
            Ok((end, CheckpointStats::default()))
        }
    }

    #[test]
    fn an_attempt_started_after_a_cancel_has_its_stop_flag_set_and_the_job_ends_cancelled() {
        // Rescales come back to back, so cancels land anywhere in the driver's loop, including
        // between its cancel check and the clearing of the stop flag for the next attempt.
        for round in 0..200u64 {
            let driver = driver(&[("restart-strategy.type", "none")]);
            let handle = driver.handle.clone();
            let started = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let mut deployer = RescaleUntilStopped { started: started.clone(), seen: Vec::new() };
            let (done_tx, done_rx) = mpsc::channel();
            std::thread::spawn(move || {
                let result = driver.run(&mut deployer);
                let _ = done_tx.send((result.map(|_| ()), deployer.seen));
            });
            while started.load(std::sync::atomic::Ordering::SeqCst) < 1 + round % 7 {
                std::thread::yield_now();
            }
            handle.cancel();
            let (result, seen) = done_rx.recv_timeout(Duration::from_secs(30)).expect("the cancel was lost");
            assert!(matches!(result, Err(JobError::Cancelled)), "round {round}: {result:?}");
            assert_eq!(handle.status().state, JobState::Cancelled);
            assert!(handle.shared().is_stopping(), "round {round}: the job ended with its stop flag clear");
            for (attempt, &(requested, stopping)) in seen.iter().enumerate() {
                assert!(
                    !requested || stopping,
                    "round {round}: attempt {} started after the cancel with a clear stop flag",
                    attempt + 1
                );
            }
        }
    }

    #[test]
    fn a_failed_attempt_restarts_with_a_clear_stop_flag_and_the_job_finishes() {
        let driver = driver(&[
            ("restart-strategy.type", "fixed-delay"),
            ("restart-strategy.fixed-delay.attempts", "2"),
            ("restart-strategy.fixed-delay.delay", "1ms"),
        ]);
        let mut deployer = Scripted::new([failed("first"), failed("second"), AttemptEnd::Finished]);
        let report = driver.run(&mut deployer).expect("the job finishes");
        assert_eq!(deployer.attempts, vec![1, 2, 3]);
        assert_eq!(deployer.started_clear, vec![true, true, true]);
        assert_eq!(report.restarts, 2);
        let status = driver.handle.status();
        assert_eq!(status.state, JobState::Finished);
        assert_eq!(status.restarts, 2);
        let causes: Vec<_> = status.exceptions.iter().map(|e| e.message.clone()).collect();
        assert_eq!(causes, vec!["second".to_string(), "first".to_string()]);
    }

    #[test]
    fn when_no_restart_is_left_the_job_fails_with_its_cause() {
        let driver = driver(&[("restart-strategy.type", "none")]);
        let mut deployer = Scripted::new([failed("disk on fire")]);
        let error = driver.run(&mut deployer).unwrap_err();
        assert_eq!(error.to_string(), "task 'Map (1/1)' failed: disk on fire");
        let status = driver.handle.status();
        assert_eq!(status.state, JobState::Failed);
        assert_eq!(status.failure.as_deref(), Some("task 'Map (1/1)' failed: disk on fire"));
    }

    #[test]
    fn bad_input_is_never_restarted() {
        let driver = driver(&[("restart-strategy.type", "fixed-delay"), ("restart-strategy.fixed-delay.delay", "1ms")]);
        let input = AttemptEnd::Failed(JobError::InputFailed { task: "Source".into(), message: "line 3".into() });
        let mut deployer = Scripted::new([input]);
        assert!(matches!(driver.run(&mut deployer), Err(JobError::InputFailed { .. })));
        assert_eq!(deployer.attempts, vec![1]);
    }

    #[test]
    fn a_rescale_is_not_a_failure() {
        let driver = driver(&[("restart-strategy.type", "none")]);
        let mut deployer = Scripted::new([AttemptEnd::Rescale, AttemptEnd::Rescale, AttemptEnd::Finished]);
        let report = driver.run(&mut deployer).expect("rescales do not use up restarts");
        assert_eq!(report.restarts, 0);
        assert_eq!(deployer.attempts, vec![1, 2, 3]);
    }

    #[test]
    fn a_finished_job_leaves_its_marker_so_the_next_run_starts_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let driver = driver(&[("execution.checkpointing.interval", "1h"), ("state.checkpoints.dir", &url)]);
        let mut deployer = Scripted::new([AttemptEnd::Finished]);
        driver.run(&mut deployer).unwrap();
        let marker = dir.path().join(JOB_ID).join(FINISHED_MARKER);
        assert_eq!(std::fs::read_to_string(&marker).unwrap(), JOB_ID);
    }

    /// Fails its first attempt after making the job's checkpoint directory unlistable (a
    /// symbolic link to itself), as a store that went down with the attempt; finishes the next.
    struct StoreDownWithTheAttempt {
        job_dir: std::path::PathBuf,
        attempts: Vec<u64>,
    }

    impl Deployer for StoreDownWithTheAttempt {
        fn run_attempt(&mut self, attempt: &Attempt<'_>) -> Result<(AttemptEnd, CheckpointStats), JobError> {
            self.attempts.push(attempt.number);
            if attempt.number > 1 {
                return Ok((AttemptEnd::Finished, CheckpointStats::default()));
            }
            let _ = std::fs::remove_dir_all(&self.job_dir);
            std::os::unix::fs::symlink(&self.job_dir, &self.job_dir).unwrap();
            attempt.handle.shared().stop();
            Ok((failed("TaskManager lost"), CheckpointStats::default()))
        }
    }

    #[test]
    fn a_storage_error_while_restarting_goes_through_the_restart_strategy() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let driver = driver(&[
            ("execution.checkpointing.interval", "1h"),
            ("state.checkpoints.dir", &url),
            ("restart-strategy.type", "fixed-delay"),
            ("restart-strategy.fixed-delay.attempts", "1000"),
            ("restart-strategy.fixed-delay.delay", "5ms"),
        ]);
        let handle = driver.handle.clone();
        let job_dir = dir.path().join(JOB_ID);
        let (done_tx, done_rx) = mpsc::channel();
        let deployer_dir = job_dir.clone();
        std::thread::spawn(move || {
            let mut deployer = StoreDownWithTheAttempt { job_dir: deployer_dir, attempts: Vec::new() };
            let result = driver.run(&mut deployer);
            let _ = done_tx.send((result.map(|r| r.restarts), deployer.attempts));
        });
        // The store stays down for a few listings; then it is back.
        let deadline = Instant::now() + Duration::from_secs(30);
        while handle.status().exceptions.iter().filter(|e| e.message.contains("cannot list")).count() < 3 {
            assert!(handle.status().state != JobState::Failed, "the job failed: {:?}", handle.status().failure);
            assert!(Instant::now() < deadline, "no listing failed: {:?}", handle.status().exceptions);
            std::thread::sleep(Duration::from_millis(2));
        }
        std::fs::remove_file(&job_dir).unwrap();
        std::fs::create_dir(&job_dir).unwrap();
        let (result, attempts) = done_rx.recv_timeout(Duration::from_secs(30)).expect("the job ended");
        let restarts = result.expect("the job finishes once the store is back");
        assert_eq!(attempts, vec![1, 2]);
        assert!(restarts >= 4, "the task failure and each failed listing count: {restarts}");
        assert_eq!(handle.status().state, JobState::Finished);
    }
}
