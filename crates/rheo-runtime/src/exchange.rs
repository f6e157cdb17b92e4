//! Data exchange between tasks: batches of records and control events over bounded channels.
//!
//! A writer buffers records per target channel and sends a whole batch at once; a full channel
//! blocks the writer, which is how backpressure reaches the sources. Control events are sent
//! after the buffered records, so every channel keeps the order in which events were produced.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Select, SendTimeoutError, Sender, TryRecvError, TrySendError};

use crate::output::{CheckpointBarrier, MAX_WATERMARK, Output, TaskSnapshot, Timestamp};
use crate::task::TaskCounters;
use rheo_types::keygroups::KeyGroupRange;

pub use rheo_types::{BATCH_SIZE, CHANNEL_CAPACITY, Event};

/// How often a writer blocked on a full channel counts its back-pressured time, so that a long
/// block shows in the metrics while it lasts.
const BACK_PRESSURE_SLICE: Duration = Duration::from_millis(50);

/// How records choose their target channel.
pub enum Partitioner<T> {
    /// Subtask i sends to subtask i.
    Forward,
    /// Round-robin over all targets.
    Rebalance { next: usize },
    /// By key group of the key hash: the same key always reaches the same subtask.
    Hash { key_hash: KeyHashFn<T>, max_parallelism: usize },
}

/// Hashes the key of a record (the key selector and the hash in one function).
pub type KeyHashFn<T> = Arc<dyn Fn(&T) -> u64 + Send + Sync>;

/// Raised in a writer whose downstream task is gone: the job is being cancelled or failed.
#[derive(Debug)]
pub struct DownstreamGone;

/// Writes one task's output to the channels of the next task.
pub struct ChannelWriter<T> {
    partitioner: Partitioner<T>,
    senders: Vec<Sender<Event<T>>>,
    buffers: Vec<Vec<(T, Timestamp)>>,
    /// The writing task's counters, charged with the records it sends and the time a send
    /// blocks on a full channel.
    counters: Option<Arc<TaskCounters>>,
}

impl<T: Send + 'static> ChannelWriter<T> {
    pub fn new(partitioner: Partitioner<T>, senders: Vec<Sender<Event<T>>>) -> Self {
        let buffers = senders.iter().map(|_| Vec::with_capacity(BATCH_SIZE)).collect();
        Self { partitioner, senders, buffers, counters: None }
    }

    /// Counts the records sent and the time sends block on full channels (back pressure) in
    /// `counters`.
    pub fn with_counters(mut self, counters: Arc<TaskCounters>) -> Self {
        self.counters = Some(counters);
        self
    }

    /// Sends a batch or an event. A send into a channel with room takes no clock reading; one
    /// that blocks is timed, slice by slice, as back-pressured time.
    fn send(&self, target: usize, event: Event<T>) {
        let sender = &self.senders[target];
        let mut event = match sender.try_send(event) {
            Ok(()) => return,
            Err(TrySendError::Full(event)) => event,
            Err(TrySendError::Disconnected(_)) => downstream_gone(),
        };
        let mut start = Instant::now();
        loop {
            let result = sender.send_timeout(event, BACK_PRESSURE_SLICE);
            let now = Instant::now();
            if let Some(counters) = &self.counters {
                counters.add_back_pressured(now.saturating_duration_since(start).as_nanos() as u64);
            }
            start = now;
            match result {
                Ok(()) => return,
                Err(SendTimeoutError::Timeout(back)) => event = back,
                Err(SendTimeoutError::Disconnected(_)) => downstream_gone(),
            }
        }
    }

    fn flush_target(&mut self, target: usize) {
        if !self.buffers[target].is_empty() {
            let batch = std::mem::replace(&mut self.buffers[target], Vec::with_capacity(BATCH_SIZE));
            if let Some(counters) = &self.counters {
                counters.add_records_out(batch.len());
            }
            self.send(target, Event::Records(batch));
        }
    }

    fn flush_all(&mut self) {
        for target in 0..self.senders.len() {
            self.flush_target(target);
        }
    }

    fn broadcast(&mut self, make: impl Fn() -> Event<T>) {
        self.flush_all();
        for target in 0..self.senders.len() {
            self.send(target, make());
        }
    }
}

impl<T: Send + 'static> Output<T> for ChannelWriter<T> {
    #[inline]
    fn collect(&mut self, value: T, timestamp: Timestamp) {
        let target = match &mut self.partitioner {
            // One consumer: every partitioner picks it, without hashing.
            _ if self.senders.len() == 1 => 0,
            Partitioner::Forward => 0,
            Partitioner::Rebalance { next } => {
                *next = (*next + 1) % self.senders.len();
                *next
            }
            Partitioner::Hash { key_hash, max_parallelism } => {
                let group = KeyGroupRange::key_group_of(key_hash(&value), *max_parallelism);
                KeyGroupRange::subtask_of(group, *max_parallelism, self.senders.len())
            }
        };
        let buffer = &mut self.buffers[target];
        buffer.push((value, timestamp));
        if buffer.len() >= BATCH_SIZE {
            self.flush_target(target);
        }
    }
    fn watermark(&mut self, watermark: Timestamp) {
        self.broadcast(|| Event::Watermark(watermark));
    }
    fn idle(&mut self, idle: bool) {
        self.broadcast(|| Event::Idle(idle));
    }
    fn tick(&mut self, _now: Timestamp) -> Option<Timestamp> {
        None
    }
    fn flush(&mut self) {
        self.flush_all();
    }
    fn finish(&mut self) {
        self.broadcast(|| Event::EndOfData);
    }
    fn barrier(&mut self, barrier: &CheckpointBarrier, _snapshot: &mut TaskSnapshot) {
        let barrier = *barrier;
        self.broadcast(|| Event::Barrier(barrier));
    }
    fn checkpoint_complete(&mut self, _checkpoint_id: u64) {}
    fn close(&mut self) {
        self.broadcast(|| Event::End);
    }
}

/// The consumer ended (failure or cancellation); unwinds this task too. Not a panic:
/// `resume_unwind` skips the panic hook, so nothing is printed for it.
fn downstream_gone() -> ! {
    std::panic::resume_unwind(Box::new(DownstreamGone))
}

/// The input side of a task: all channels from its upstream subtasks, merged. Tracks the
/// watermark of each channel and forwards the minimum over active channels; aligns checkpoint
/// barriers by not reading a channel that delivered the barrier until all channels have.
pub struct InputGate<T> {
    receivers: Vec<Receiver<Event<T>>>,
    channels: Vec<ChannelState>,
    current_watermark: Timestamp,
    all_idle: bool,
    data_ended: bool,
    /// The barrier being aligned, if any.
    aligning: Option<CheckpointBarrier>,
    /// Time spent waiting with no event to read, since the last [`InputGate::take_waited`].
    waited: Duration,
}

#[derive(Clone, Copy)]
struct ChannelState {
    watermark: Timestamp,
    idle: bool,
    /// `EndOfData` received: no more records, watermark at the maximum.
    data_ended: bool,
    /// `End` received: nothing more at all.
    closed: bool,
    /// Delivered the barrier being aligned; not read until alignment completes.
    blocked: bool,
}

/// What one poll of the gate did.
pub enum GatePoll {
    /// Events were delivered to the chain; `records` of them were records.
    Delivered { records: usize },
    /// Every channel delivered this barrier: the task snapshots and forwards it.
    Barrier(CheckpointBarrier),
    /// Nothing arrived before the deadline.
    Timeout,
    /// Every channel has closed.
    Ended,
    /// An upstream task disappeared without closing its stream: the job is failing.
    UpstreamGone,
}

impl<T: Send + 'static> InputGate<T> {
    pub fn new(receivers: Vec<Receiver<Event<T>>>) -> Self {
        let channels = vec![
            ChannelState {
                watermark: Timestamp::MIN,
                idle: false,
                data_ended: false,
                closed: false,
                blocked: false
            };
            receivers.len()
        ];
        Self {
            receivers,
            channels,
            current_watermark: Timestamp::MIN,
            all_idle: false,
            data_ended: false,
            aligning: None,
            waited: Duration::ZERO,
        }
    }

    /// The watermark the gate last forwarded (`Timestamp::MIN` before any).
    pub fn current_watermark(&self) -> Timestamp {
        self.current_watermark
    }

    /// How long the gate waited for input (idle time) since the last call.
    pub fn take_waited(&mut self) -> Duration {
        std::mem::take(&mut self.waited)
    }

    /// Waits up to `timeout` for an event from any readable channel and pushes it into `head`.
    pub fn poll(&mut self, head: &mut dyn Output<T>, timeout: Duration) -> GatePoll {
        let readable: Vec<usize> =
            (0..self.receivers.len()).filter(|&i| !self.channels[i].closed && !self.channels[i].blocked).collect();
        if readable.is_empty() {
            return GatePoll::Ended;
        }
        // An event ready to read costs no clock reading; a wait is timed as idle time.
        if readable.len() == 1 {
            let channel = readable[0];
            let received = match self.receivers[channel].try_recv() {
                Ok(event) => Ok(event),
                Err(TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
                Err(TryRecvError::Empty) => {
                    let start = Instant::now();
                    let received = self.receivers[channel].recv_timeout(timeout);
                    self.waited += start.elapsed();
                    received
                }
            };
            return match received {
                Ok(event) => self.deliver(channel, event, head),
                Err(RecvTimeoutError::Timeout) => GatePoll::Timeout,
                Err(RecvTimeoutError::Disconnected) => GatePoll::UpstreamGone,
            };
        }
        let mut select = Select::new();
        for &i in &readable {
            select.recv(&self.receivers[i]);
        }
        let operation = match select.try_select() {
            Ok(op) => op,
            Err(_) => {
                let start = Instant::now();
                let selected = select.select_timeout(timeout);
                self.waited += start.elapsed();
                match selected {
                    Ok(op) => op,
                    Err(_) => return GatePoll::Timeout,
                }
            }
        };
        let channel = readable[operation.index()];
        match operation.recv(&self.receivers[channel]) {
            Ok(event) => self.deliver(channel, event, head),
            Err(_) => GatePoll::UpstreamGone,
        }
    }

    fn deliver(&mut self, channel: usize, event: Event<T>, head: &mut dyn Output<T>) -> GatePoll {
        match event {
            Event::Records(batch) => {
                let records = batch.len();
                if self.channels[channel].idle {
                    self.channels[channel].idle = false;
                    self.update_idleness(head);
                }
                for (value, timestamp) in batch {
                    head.collect(value, timestamp);
                }
                return GatePoll::Delivered { records };
            }
            Event::Watermark(watermark) => {
                let state = &mut self.channels[channel];
                state.watermark = state.watermark.max(watermark);
                state.idle = false;
                self.update_idleness(head);
                self.advance_watermark(head);
            }
            Event::Idle(idle) => {
                self.channels[channel].idle = idle;
                self.update_idleness(head);
                self.advance_watermark(head);
            }
            Event::Barrier(barrier) => {
                match self.aligning {
                    Some(current) if current.id > barrier.id => return GatePoll::Delivered { records: 0 },
                    Some(current) if current.id == barrier.id => {}
                    // A newer checkpoint supersedes one whose alignment never completed.
                    _ => {
                        self.channels.iter_mut().for_each(|c| c.blocked = false);
                        self.aligning = Some(barrier);
                    }
                }
                self.channels[channel].blocked = true;
                return self.check_aligned();
            }
            Event::EndOfData => {
                let state = &mut self.channels[channel];
                state.data_ended = true;
                state.idle = false;
                state.watermark = MAX_WATERMARK;
                if !self.data_ended && self.channels.iter().all(|c| c.data_ended) {
                    self.data_ended = true;
                    head.finish();
                } else {
                    self.advance_watermark(head);
                }
            }
            Event::End => {
                let state = &mut self.channels[channel];
                state.closed = true;
                state.idle = false;
                state.watermark = MAX_WATERMARK;
                if self.channels.iter().all(|c| c.closed) {
                    return GatePoll::Ended;
                }
                if let GatePoll::Barrier(b) = self.check_aligned() {
                    return GatePoll::Barrier(b);
                }
            }
        }
        GatePoll::Delivered { records: 0 }
    }

    /// Alignment completes when every open channel has delivered the barrier.
    fn check_aligned(&mut self) -> GatePoll {
        let Some(barrier) = self.aligning else { return GatePoll::Delivered { records: 0 } };
        if self.channels.iter().all(|c| c.blocked || c.closed) {
            self.aligning = None;
            self.channels.iter_mut().for_each(|c| c.blocked = false);
            return GatePoll::Barrier(barrier);
        }
        GatePoll::Delivered { records: 0 }
    }

    /// The task's watermark is the minimum over channels that are not idle (an ended channel
    /// stands at the maximum watermark).
    fn advance_watermark(&mut self, head: &mut dyn Output<T>) {
        if self.data_ended {
            return;
        }
        let active = self.channels.iter().filter(|c| !c.idle);
        let min = active.map(|c| c.watermark).min();
        if let Some(min) = min
            && min > self.current_watermark
        {
            self.current_watermark = min;
            head.watermark(min);
        }
    }

    fn update_idleness(&mut self, head: &mut dyn Output<T>) {
        let all_idle = self.channels.iter().all(|c| c.idle || c.data_ended) && self.channels.iter().any(|c| c.idle);
        if all_idle != self.all_idle {
            self.all_idle = all_idle;
            head.idle(all_idle);
        }
    }
}

#[cfg(test)]
mod tests;
