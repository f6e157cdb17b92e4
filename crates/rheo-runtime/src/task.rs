//! The two task loops: a source task pulls from its source, an input task from its input gate.
//! Both push into their operator chain, drive processing time and the buffer timeout, and end
//! with `finish` when their input ends.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::exchange::{GatePoll, InputGate};
use crate::output::{CheckpointBarrier, NodeId, Output, TaskSnapshot, Timestamp};
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
    /// Record counters shared by the subtasks of this task.
    pub counters: Arc<TaskCounters>,
}

/// Records and time through one task (all its subtasks), for the REST API and metrics.
///
/// The times split each subtask's wall time three ways, as Flink's `busyTimeMsPerSecond`,
/// `idleTimeMsPerSecond` and `backPressuredTimeMsPerSecond` do: idle is waiting for input (in the
/// input gate, or a source with nothing to read), back-pressured is blocked sending into a full
/// channel (in the channel writer), busy is the rest. They are sums over the subtasks, so a
/// vertex of parallelism p accumulates up to p seconds of them per second.
#[derive(Debug, Default)]
pub struct TaskCounters {
    /// Records read from upstream tasks.
    pub records_in: AtomicU64,
    /// Records a source emitted.
    pub records_out: AtomicU64,
    /// Nanoseconds spent processing.
    pub busy_ns: AtomicU64,
    /// Nanoseconds spent waiting for input.
    pub idle_ns: AtomicU64,
    /// Nanoseconds spent blocked on a full output channel.
    pub back_pressured_ns: AtomicU64,
    /// The current input watermark of each subtask that has one (`Timestamp::MIN`: none yet).
    /// Written when a subtask's watermark advances, not per record.
    pub input_watermarks: std::sync::Mutex<Vec<Timestamp>>,
    /// Records a source has yet to read (Flink's `pendingRecords`, e.g. a Kafka consumer's
    /// lag): each source subtask adds the change of its own backlog.
    pub pending_records: AtomicU64,
}

/// The values of [`TaskCounters`] at one moment, as TaskManagers report them to the JobManager
/// in heartbeats (absolute values since the attempt started).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct TaskMetrics {
    pub records_in: u64,
    pub records_out: u64,
    pub busy_ns: u64,
    pub idle_ns: u64,
    pub back_pressured_ns: u64,
    /// The lowest current input watermark over the subtasks that have one (Flink's
    /// `currentInputWatermark` of the slowest subtask); `None` before any has.
    pub input_watermark: Option<Timestamp>,
    pub pending_records: u64,
}

impl TaskMetrics {
    pub fn add(&mut self, other: &TaskMetrics) {
        self.input_watermark = match (self.input_watermark, other.input_watermark) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.records_in += other.records_in;
        self.records_out += other.records_out;
        self.busy_ns += other.busy_ns;
        self.idle_ns += other.idle_ns;
        self.back_pressured_ns += other.back_pressured_ns;
        self.pending_records += other.pending_records;
    }
}

impl TaskCounters {
    pub fn metrics(&self) -> TaskMetrics {
        TaskMetrics {
            records_in: self.records_in.load(Ordering::Relaxed),
            records_out: self.records_out.load(Ordering::Relaxed),
            busy_ns: self.busy_ns.load(Ordering::Relaxed),
            idle_ns: self.idle_ns.load(Ordering::Relaxed),
            back_pressured_ns: self.back_pressured_ns.load(Ordering::Relaxed),
            input_watermark: self
                .input_watermarks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .copied()
                .filter(|&w| w != Timestamp::MIN)
                .min(),
            pending_records: self.pending_records.load(Ordering::Relaxed),
        }
    }

    /// Records that subtask `subtask`'s input watermark advanced to `watermark`.
    pub fn set_input_watermark(&self, subtask: usize, watermark: Timestamp) {
        let mut watermarks = self.input_watermarks.lock().unwrap_or_else(|p| p.into_inner());
        if watermarks.len() <= subtask {
            watermarks.resize(subtask + 1, Timestamp::MIN);
        }
        watermarks[subtask] = watermark;
    }

    /// Overwrites the counters with reported values (the JobManager's view of remote tasks).
    pub fn set(&self, metrics: &TaskMetrics) {
        self.records_in.store(metrics.records_in, Ordering::Relaxed);
        self.records_out.store(metrics.records_out, Ordering::Relaxed);
        self.busy_ns.store(metrics.busy_ns, Ordering::Relaxed);
        self.idle_ns.store(metrics.idle_ns, Ordering::Relaxed);
        self.back_pressured_ns.store(metrics.back_pressured_ns, Ordering::Relaxed);
        *self.input_watermarks.lock().unwrap_or_else(|p| p.into_inner()) =
            metrics.input_watermark.into_iter().collect();
        self.pending_records.store(metrics.pending_records, Ordering::Relaxed);
    }

    /// Counts `ns` of back pressure: called by the channel writer after a blocked send.
    pub(crate) fn add_back_pressured(&self, ns: u64) {
        self.back_pressured_ns.fetch_add(ns, Ordering::Relaxed);
        BACK_PRESSURED_NS.with(|total| total.set(total.get() + ns));
    }
}

thread_local! {
    /// Back-pressured nanoseconds of the subtask on this thread (a chain runs on its subtask's
    /// thread), so that its loop can tell its own busy time from the vertex's shared counters.
    static BACK_PRESSURED_NS: Cell<u64> = const { Cell::new(0) };
}

/// Splits a subtask's wall time into busy, idle and back-pressured time, one loop iteration
/// (one poll, one batch) at a time: one clock read per iteration, no lock.
struct TimeAccount {
    counters: Arc<TaskCounters>,
    mark: Instant,
    back_pressured_mark: u64,
}

impl TimeAccount {
    fn new(counters: Arc<TaskCounters>) -> Self {
        Self { counters, mark: Instant::now(), back_pressured_mark: BACK_PRESSURED_NS.with(Cell::get) }
    }

    /// Ends an iteration that spent `idle` waiting for input (`None`: all of it).
    fn account(&mut self, idle: Option<Duration>) {
        let now = Instant::now();
        let wall = now.saturating_duration_since(self.mark).as_nanos() as u64;
        self.mark = now;
        let back_pressured_total = BACK_PRESSURED_NS.with(Cell::get);
        let back_pressured = back_pressured_total.saturating_sub(self.back_pressured_mark);
        self.back_pressured_mark = back_pressured_total;
        let rest = wall.saturating_sub(back_pressured);
        let idle = idle.map_or(rest, |idle| (idle.as_nanos() as u64).min(rest));
        if idle > 0 {
            self.counters.idle_ns.fetch_add(idle, Ordering::Relaxed);
        }
        self.counters.busy_ns.fetch_add(rest - idle, Ordering::Relaxed);
    }
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

/// How long an idle task may hold a partly filled batch (Flink's `execution.buffer-timeout`).
const BUFFER_TIMEOUT: Duration = Duration::from_millis(100);

/// Errors a source reports. Sources name their own problem (a host, a file, a line).
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// What a call to [`SourceFunction::poll`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceStatus {
    /// Records were emitted, or may be: call again right away.
    More,
    /// Nothing was available within a short wait: the task flushes and fires timers, then
    /// polls again.
    Idle,
    /// The input is exhausted (bounded source).
    Finished,
}

/// A source of records for one subtask. `poll` emits one batch and must not block for long
/// (a few tens of milliseconds at most), so timers and cancellation stay responsive.
pub trait SourceFunction<T>: Send + 'static {
    fn open(&mut self, _info: &TaskInfo) -> Result<(), SourceError> {
        Ok(())
    }
    fn poll(&mut self, out: &mut SourceOutput<'_, T>) -> Result<SourceStatus, SourceError>;
    /// The source's position for a checkpoint (e.g. a file offset), restored by whoever builds
    /// the source from `TaskInfo::restored`. `None`: the source cannot rewind (e.g. a socket).
    fn snapshot_state(&mut self) -> Option<Vec<u8>> {
        None
    }
    /// The position for checkpoint `checkpoint_id`, for sources that act when that checkpoint
    /// completes (e.g. commit offsets to a consumer group). Defaults to [`snapshot_state`](Self::snapshot_state).
    fn snapshot_state_for(&mut self, checkpoint_id: u64) -> Option<Vec<u8>> {
        let _ = checkpoint_id;
        self.snapshot_state()
    }
    /// Checkpoint `checkpoint_id` completed (and with it every earlier one).
    fn checkpoint_complete(&mut self, _checkpoint_id: u64) {}
}

/// Where a source emits its records.
pub struct SourceOutput<'a, T> {
    out: &'a mut dyn Output<T>,
    emitted: u64,
    idle: bool,
}

impl<'a, T> SourceOutput<'a, T> {
    pub fn new(out: &'a mut dyn Output<T>) -> Self {
        Self { out, emitted: 0, idle: false }
    }

    /// Emits a record without an event timestamp.
    #[inline]
    pub fn collect(&mut self, value: T) {
        self.collect_with_timestamp(value, crate::output::NO_TIMESTAMP);
    }

    /// Emits a record with its event timestamp.
    #[inline]
    pub fn collect_with_timestamp(&mut self, value: T, timestamp: Timestamp) {
        if self.idle {
            self.idle = false;
            self.out.idle(false);
        }
        self.emitted += 1;
        self.out.collect(value, timestamp);
    }

    /// Emits a watermark from the source itself.
    pub fn emit_watermark(&mut self, watermark: Timestamp) {
        self.out.watermark(watermark);
    }

    /// Marks this source idle: it does not hold back downstream watermarks until it emits again.
    pub fn mark_idle(&mut self) {
        if !self.idle {
            self.idle = true;
            self.out.idle(true);
        }
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

/// Takes a snapshot of a chain at a barrier and reports it.
fn checkpoint<T>(
    info: &TaskInfo,
    link: &Option<CoordinatorLink>,
    chain: &mut dyn Output<T>,
    barrier: &CheckpointBarrier,
    mut snapshot: TaskSnapshot,
) {
    chain.barrier(barrier, &mut snapshot);
    if let Some(link) = link {
        link.acknowledge(info, barrier.id, snapshot);
    }
}

/// Drives processing time and the buffer timeout for a chain.
struct Pacer {
    last_tick: Timestamp,
    next_timer: Option<Timestamp>,
    last_flush: Timestamp,
}

impl Pacer {
    fn new() -> Self {
        Self { last_tick: Timestamp::MIN, next_timer: None, last_flush: now_ms() }
    }

    /// Ticks the chain when processing time moved, flushes when the buffer timeout passed.
    fn pace<T>(&mut self, chain: &mut dyn Output<T>) {
        let now = now_ms();
        if now > self.last_tick {
            self.last_tick = now;
            self.next_timer = chain.tick(now);
        }
        if now - self.last_flush >= BUFFER_TIMEOUT.as_millis() as Timestamp {
            self.last_flush = now;
            chain.flush();
        }
    }

    /// How long an idle task may wait for input before it must tick or flush.
    fn wait_budget(&self) -> Duration {
        let now = now_ms();
        let until_timer = self.next_timer.map(|t| (t - now).max(1) as u64).unwrap_or(u64::MAX);
        Duration::from_millis(until_timer.min(BUFFER_TIMEOUT.as_millis() as u64))
    }
}

/// A source and the operator chain it feeds.
pub struct SourceTask<T> {
    pub info: TaskInfo,
    pub node: NodeId,
    pub source: Box<dyn SourceFunction<T>>,
    pub chain: Box<dyn Output<T>>,
    pub link: Option<CoordinatorLink>,
}

impl<T: Send + 'static> Task for SourceTask<T> {
    fn info(&self) -> &TaskInfo {
        &self.info
    }

    fn is_source(&self) -> bool {
        true
    }

    fn attach(&mut self, link: CoordinatorLink) {
        self.link = Some(link);
    }

    fn run(self: Box<Self>) -> TaskOutcome {
        let SourceTask { info, node, mut source, mut chain, link } = *self;
        run_guarded(&info, move |info| {
            source.open(info).map_err(|e| e.to_string())?;
            let mut pacer = Pacer::new();
            let mut time = TimeAccount::new(info.counters.clone());
            // No more reading: the input ended, or the job is stopping after a savepoint.
            let mut at_end = false;
            // Stopping with a savepoint: timers stay unfired, as the savepoint holds them.
            let mut stopping = false;
            loop {
                if info.job.is_stopping() {
                    return Ok(TaskOutcome::Cancelled);
                }
                // Checkpoint control comes between batches, so a barrier lands between records.
                while let Some(message) = next_control(&link, at_end) {
                    match message {
                        Control::Trigger { barrier, stop } => {
                            let mut snapshot = TaskSnapshot::default();
                            if let Some(state) = source.snapshot_state_for(barrier.id) {
                                snapshot.put(node, state);
                            }
                            checkpoint(info, &link, &mut *chain, &barrier, snapshot);
                            // Stopping: nothing more is read; the coordinator closes us.
                            stopping |= stop;
                            at_end |= stop;
                        }
                        Control::Complete(id) => {
                            chain.checkpoint_complete(id);
                            source.checkpoint_complete(id);
                        }
                        Control::Finish => {
                            chain.close();
                            return Ok(TaskOutcome::Finished);
                        }
                    }
                    if info.job.is_stopping() {
                        return Ok(TaskOutcome::Cancelled);
                    }
                }
                if at_end {
                    if !stopping {
                        pacer.pace(&mut *chain);
                    }
                    // Waiting for the coordinator (in `next_control`), with nothing to read.
                    time.account(None);
                    continue;
                }
                let polled = Instant::now();
                let mut out = SourceOutput::new(&mut *chain);
                let status = source.poll(&mut out).map_err(|e| e.to_string())?;
                let emitted = out.emitted;
                info.job.records_in.fetch_add(emitted, Ordering::Relaxed);
                info.counters.records_out.fetch_add(emitted, Ordering::Relaxed);
                // A poll that found nothing to read waited for input: idle time.
                let idle = if status == SourceStatus::Idle && emitted == 0 { polled.elapsed() } else { Duration::ZERO };
                time.account(Some(idle));
                match status {
                    SourceStatus::More => pacer.pace(&mut *chain),
                    SourceStatus::Idle => {
                        chain.flush();
                        pacer.pace(&mut *chain);
                    }
                    SourceStatus::Finished => {
                        chain.finish();
                        match &link {
                            // Stay up for the final checkpoint, which commits the last output.
                            Some(link) => {
                                at_end = true;
                                let _ = link.events.send(TaskEvent::EndOfInput { task: link.task });
                            }
                            None => {
                                chain.close();
                                return Ok(TaskOutcome::Finished);
                            }
                        }
                    }
                }
            }
        })
    }
}

/// The next control message; a source at the end of its input waits a little for one.
fn next_control(link: &Option<CoordinatorLink>, wait: bool) -> Option<Control> {
    let link = link.as_ref()?;
    if wait {
        match link.control.recv_timeout(Duration::from_millis(50)) {
            Ok(message) => Some(message),
            Err(RecvTimeoutError::Timeout) => None,
            // The coordinator is gone: the job is being torn down.
            Err(RecvTimeoutError::Disconnected) => Some(Control::Finish),
        }
    } else {
        link.control.try_recv().ok()
    }
}

/// A task that reads from upstream tasks through its input gate.
pub struct InputTask<T> {
    pub info: TaskInfo,
    pub gate: InputGate<T>,
    pub chain: Box<dyn Output<T>>,
    pub link: Option<CoordinatorLink>,
}

impl<T: Send + 'static> Task for InputTask<T> {
    fn info(&self) -> &TaskInfo {
        &self.info
    }

    fn is_source(&self) -> bool {
        false
    }

    fn attach(&mut self, link: CoordinatorLink) {
        self.link = Some(link);
    }

    fn run(self: Box<Self>) -> TaskOutcome {
        let InputTask { info, mut gate, mut chain, link } = *self;
        run_guarded(&info, move |info| {
            let mut pacer = Pacer::new();
            let mut time = TimeAccount::new(info.counters.clone());
            let mut input_watermark = Timestamp::MIN;
            loop {
                if info.job.is_stopping() {
                    return Ok(TaskOutcome::Cancelled);
                }
                deliver_completions(&link, &mut *chain);
                let budget = pacer.wait_budget();
                let poll = gate.poll(&mut *chain, budget);
                // The gate measured how long it waited with no event to read: idle time.
                time.account(Some(gate.take_waited()));
                match poll {
                    GatePoll::Delivered { records } => {
                        info.counters.records_in.fetch_add(records as u64, Ordering::Relaxed);
                        if gate.current_watermark() != input_watermark {
                            input_watermark = gate.current_watermark();
                            info.counters.set_input_watermark(info.subtask_index, input_watermark);
                        }
                    }
                    GatePoll::Barrier(barrier) => {
                        checkpoint(info, &link, &mut *chain, &barrier, TaskSnapshot::default())
                    }
                    GatePoll::Timeout => chain.flush(),
                    GatePoll::Ended => {
                        // The final checkpoint's completion was sent before the sources closed.
                        deliver_completions(&link, &mut *chain);
                        chain.close();
                        return Ok(TaskOutcome::Finished);
                    }
                    // An upstream task only vanishes without `End` when it failed or the job was
                    // cancelled; the failed task reports the cause itself.
                    GatePoll::UpstreamGone => return Ok(TaskOutcome::Cancelled),
                }
                pacer.pace(&mut *chain);
            }
        })
    }
}

/// Passes checkpoint completions on to the chain (sinks commit on them).
fn deliver_completions<T>(link: &Option<CoordinatorLink>, chain: &mut dyn Output<T>) {
    if let Some(link) = link {
        while let Ok(message) = link.control.try_recv() {
            if let Control::Complete(id) = message {
                chain.checkpoint_complete(id);
            }
        }
    }
}

/// Runs a task body, turning a panic in user code or an operator into a task failure. A
/// downstream task that went away means the job is already failing or cancelled.
fn run_guarded(info: &TaskInfo, body: impl FnOnce(&TaskInfo) -> Result<TaskOutcome, String>) -> TaskOutcome {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(info)));
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
