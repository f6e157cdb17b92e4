//! Records and busy, idle and back-pressured time per subtask, as Flink reports them: each
//! subtask counts into its own [`TaskCounters`], and a vertex's [`VertexCounters`] holds those of
//! its subtasks, so a scaler sees a slow or idle subtask instead of the vertex's average.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::output::Timestamp;

/// Records and time through one subtask, for the REST API and metrics.
///
/// The times split the subtask's wall time three ways, as Flink's `busyTimeMsPerSecond`,
/// `idleTimeMsPerSecond` and `backPressuredTimeMsPerSecond` do: idle is waiting for input (in the
/// input gate, or a source with nothing to read), back-pressured is blocked sending into a full
/// channel (in the channel writer), busy is the rest.
#[derive(Debug, Default)]
pub struct TaskCounters {
    /// Records read from upstream tasks; for a source subtask, the records its source read
    /// (Flink counts those on the source operator, `Source__<name>.numRecordsIn`).
    pub records_in: AtomicU64,
    /// Records the chain's last operator sent to downstream tasks (Flink's task
    /// `numRecordsOut`): counted by the channel writers as they send, so a vertex that ends in a
    /// sink sends none.
    pub records_out: AtomicU64,
    /// Nanoseconds spent processing.
    pub busy_ns: AtomicU64,
    /// Nanoseconds spent waiting for input.
    pub idle_ns: AtomicU64,
    /// Nanoseconds spent blocked on a full output channel.
    pub back_pressured_ns: AtomicU64,
    /// The current input watermark of the subtask, by subtask index (`Timestamp::MIN`: none
    /// yet). Written when the watermark advances, not per record.
    pub input_watermarks: std::sync::Mutex<Vec<Timestamp>>,
    /// Records a source has yet to read (Flink's `pendingRecords`, e.g. a Kafka consumer's
    /// lag, a file's unread lines): the source subtask adds the change of its own backlog.
    pub pending_records: AtomicU64,
    /// Whether the subtask runs (Flink's `RUNNING`: its source opened, it processes input),
    /// and who to tell when it starts to.
    running: RunningSignal,
}

/// Set once when a subtask starts running; a TaskManager hangs its report to the JobManager on it.
#[derive(Default)]
struct RunningSignal {
    running: std::sync::atomic::AtomicBool,
    notify: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl std::fmt::Debug for RunningSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningSignal").field("running", &self.running.load(Ordering::Relaxed)).finish()
    }
}

/// The values of [`TaskCounters`] at one moment, as TaskManagers report them to the JobManager
/// in heartbeats (absolute values since the attempt started); summed with [`TaskMetrics::add`]
/// for a vertex.
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

    /// Whether the subtask has started running (its source opened, it reads its input).
    pub fn is_running(&self) -> bool {
        self.running.running.load(Ordering::Acquire)
    }

    /// Calls `notify` on the subtask's thread when it starts running (at once if it runs).
    pub fn on_running(&self, notify: impl FnOnce() + Send + 'static) {
        let mut slot = self.running.notify.lock().unwrap_or_else(|p| p.into_inner());
        if self.is_running() {
            drop(slot);
            notify();
        } else {
            *slot = Some(Box::new(notify));
        }
    }

    /// The subtask runs: its initialisation (a source's `open`) succeeded.
    pub(crate) fn mark_running(&self) {
        let notify = {
            let mut slot = self.running.notify.lock().unwrap_or_else(|p| p.into_inner());
            self.running.running.store(true, Ordering::Release);
            slot.take()
        };
        if let Some(notify) = notify {
            notify();
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

    /// Overwrites the counters with reported values (the JobManager's view of a remote
    /// subtask); a reported watermark lands at index `subtask`.
    pub fn set(&self, subtask: usize, metrics: &TaskMetrics) {
        self.records_in.store(metrics.records_in, Ordering::Relaxed);
        self.records_out.store(metrics.records_out, Ordering::Relaxed);
        self.busy_ns.store(metrics.busy_ns, Ordering::Relaxed);
        self.idle_ns.store(metrics.idle_ns, Ordering::Relaxed);
        self.back_pressured_ns.store(metrics.back_pressured_ns, Ordering::Relaxed);
        let mut watermarks = self.input_watermarks.lock().unwrap_or_else(|p| p.into_inner());
        watermarks.clear();
        if let Some(watermark) = metrics.input_watermark {
            watermarks.resize(subtask, Timestamp::MIN);
            watermarks.push(watermark);
        }
        self.pending_records.store(metrics.pending_records, Ordering::Relaxed);
    }

    /// Counts `records` sent downstream: called by the channel writer per batch it sends.
    pub(crate) fn add_records_out(&self, records: usize) {
        self.records_out.fetch_add(records as u64, Ordering::Relaxed);
    }

    /// Counts `ns` of back pressure: called by the channel writer after a blocked send.
    pub(crate) fn add_back_pressured(&self, ns: u64) {
        self.back_pressured_ns.fetch_add(ns, Ordering::Relaxed);
        BACK_PRESSURED_NS.with(|total| total.set(total.get() + ns));
    }
}

/// The counters of a vertex's subtasks, by subtask index. A process counts into the entries of
/// the subtasks it runs; the JobManager overwrites each from its TaskManager's heartbeats.
#[derive(Debug, Default)]
pub struct VertexCounters {
    subtasks: Vec<Arc<TaskCounters>>,
}

impl VertexCounters {
    pub fn new(parallelism: usize) -> Self {
        Self { subtasks: (0..parallelism).map(|_| Arc::default()).collect() }
    }

    pub fn parallelism(&self) -> usize {
        self.subtasks.len()
    }

    /// The counters of subtask `subtask` (fresh, uncounted ones past the parallelism).
    pub fn subtask(&self, subtask: usize) -> Arc<TaskCounters> {
        self.subtasks.get(subtask).cloned().unwrap_or_default()
    }

    /// The vertex's totals: records and times summed over its subtasks, the lowest watermark.
    pub fn metrics(&self) -> TaskMetrics {
        let mut sum = TaskMetrics::default();
        for subtask in &self.subtasks {
            sum.add(&subtask.metrics());
        }
        sum
    }

    /// Each subtask's metrics, by subtask index.
    pub fn subtask_metrics(&self) -> Vec<TaskMetrics> {
        self.subtasks.iter().map(|c| c.metrics()).collect()
    }

    /// Records of all subtasks read from upstream tasks (or, for a source, from the source).
    pub fn records_in(&self) -> u64 {
        self.subtasks.iter().map(|c| c.records_in.load(Ordering::Relaxed)).sum()
    }

    /// Records all subtasks sent to downstream tasks.
    pub fn records_out(&self) -> u64 {
        self.subtasks.iter().map(|c| c.records_out.load(Ordering::Relaxed)).sum()
    }
}

thread_local! {
    /// Back-pressured nanoseconds of the subtask on this thread (a chain runs on its subtask's
    /// thread), so that its loop can tell busy from back-pressured time with one clock read.
    static BACK_PRESSURED_NS: Cell<u64> = const { Cell::new(0) };
}

/// Splits a subtask's wall time into busy, idle and back-pressured time, one loop iteration
/// (one poll, one batch) at a time: one clock read per iteration, no lock.
pub(crate) struct TimeAccount {
    counters: Arc<TaskCounters>,
    mark: Instant,
    back_pressured_mark: u64,
}

impl TimeAccount {
    pub(crate) fn new(counters: Arc<TaskCounters>) -> Self {
        Self { counters, mark: Instant::now(), back_pressured_mark: BACK_PRESSURED_NS.with(Cell::get) }
    }

    /// Ends an iteration that spent `idle` waiting for input (`None`: all of it).
    pub(crate) fn account(&mut self, idle: Option<Duration>) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::{ChannelWriter, Event, Partitioner};
    use crate::output::Output;

    /// A subtask's records out are the records its chain sends downstream, counted as the
    /// channel writer sends them, over all its channels.
    #[test]
    fn records_out_count_what_the_writer_sends() {
        let counters = Arc::new(TaskCounters::default());
        let (channels, receivers): (Vec<_>, Vec<_>) = (0..2).map(|_| crossbeam_channel::unbounded()).unzip();
        let mut writer =
            ChannelWriter::new(Partitioner::Rebalance { next: 0 }, channels).with_counters(counters.clone());
        for i in 0..5u64 {
            writer.collect(i, 0);
        }
        assert_eq!(counters.metrics().records_out, 0, "nothing sent before the batches leave");
        writer.flush();
        let sent: usize = receivers
            .iter()
            .flat_map(|r| r.try_iter())
            .map(|e| if let Event::Records(batch) = e { batch.len() } else { 0 })
            .sum();
        assert_eq!((sent, counters.metrics().records_out), (5, 5));
        assert_eq!(counters.metrics().records_in, 0);
    }

    /// The notice that a subtask runs comes once, whether it was asked for before or after.
    #[test]
    fn the_running_notice_comes_once_before_or_after() {
        let counters = TaskCounters::default();
        let (tx, rx) = crossbeam_channel::unbounded();
        let before = tx.clone();
        counters.on_running(move || before.send("before").unwrap());
        assert!(!counters.is_running() && rx.try_recv().is_err());
        counters.mark_running();
        counters.mark_running();
        counters.on_running(move || tx.send("after").unwrap());
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), ["before", "after"]);
        assert!(counters.is_running());
    }
}
