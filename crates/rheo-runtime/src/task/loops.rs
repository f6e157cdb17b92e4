//! The two task loops: a source task pulls from its source, an input task from its input gate.
//! Both push into their operator chain, drive processing time and the buffer timeout, and end
//! with `finish` when their input ends.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;

use super::{
    Control, CoordinatorLink, SourceFunction, SourceOutput, SourceStatus, Task, TaskEvent, TaskInfo, TaskOutcome,
    TimeAccount, now_ms, run_guarded,
};
use crate::exchange::{GatePoll, InputGate};
use crate::output::{CheckpointBarrier, NodeId, Output, TaskSnapshot, Timestamp};

/// How long an idle task may hold a partly filled batch (Flink's `execution.buffer-timeout`).
const BUFFER_TIMEOUT: Duration = Duration::from_millis(100);

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
            info.counters.mark_running();
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
                // What the source read is the source vertex's records in; its records out are
                // what its chain sends downstream (counted by the channel writer).
                info.counters.records_in.fetch_add(emitted, Ordering::Relaxed);
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
            info.counters.mark_running();
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
