//! Data exchange between tasks: batches of records and control events over bounded channels.
//!
//! A writer buffers records per target channel and sends a whole batch at once; a full channel
//! blocks the writer, which is how backpressure reaches the sources. Control events are sent
//! after the buffered records, so every channel keeps the order in which events were produced.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Select, Sender};

use crate::runtime::keygroups::KeyGroupRange;
use crate::runtime::output::{MAX_WATERMARK, Output, Timestamp};

/// What travels on a channel between two subtasks.
pub enum Event<T> {
    Records(Vec<(T, Timestamp)>),
    Watermark(Timestamp),
    Idle(bool),
    End,
}

/// Records per batch: large enough to amortise a channel send, small enough to keep latency low.
pub const BATCH_SIZE: usize = 1024;
/// Batches in flight per channel before the writer blocks.
pub const CHANNEL_CAPACITY: usize = 4;

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
}

impl<T: Send + 'static> ChannelWriter<T> {
    pub fn new(partitioner: Partitioner<T>, senders: Vec<Sender<Event<T>>>) -> Self {
        let buffers = senders.iter().map(|_| Vec::with_capacity(BATCH_SIZE)).collect();
        Self { partitioner, senders, buffers }
    }

    fn send(&self, target: usize, event: Event<T>) {
        if self.senders[target].send(event).is_err() {
            // The consumer ended (failure or cancellation); unwind this task too.
            std::panic::panic_any(DownstreamGone);
        }
    }

    fn flush_target(&mut self, target: usize) {
        if !self.buffers[target].is_empty() {
            let batch = std::mem::replace(&mut self.buffers[target], Vec::with_capacity(BATCH_SIZE));
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
        self.broadcast(|| Event::End);
    }
}

/// The input side of a task: all channels from its upstream subtasks, merged. Tracks the
/// watermark of each channel and forwards the minimum over active channels.
pub struct InputGate<T> {
    receivers: Vec<Receiver<Event<T>>>,
    channels: Vec<ChannelState>,
    current_watermark: Timestamp,
    all_idle: bool,
}

#[derive(Clone, Copy)]
struct ChannelState {
    watermark: Timestamp,
    idle: bool,
    ended: bool,
}

/// What one poll of the gate did.
pub enum GatePoll {
    /// Events were delivered to the chain; `records` of them were records.
    Delivered { records: usize },
    /// Nothing arrived before the deadline.
    Timeout,
    /// Every channel has ended.
    Ended,
    /// An upstream task disappeared without ending its stream: the job is failing.
    UpstreamGone,
}

impl<T: Send + 'static> InputGate<T> {
    pub fn new(receivers: Vec<Receiver<Event<T>>>) -> Self {
        let channels = vec![ChannelState { watermark: Timestamp::MIN, idle: false, ended: false }; receivers.len()];
        Self { receivers, channels, current_watermark: Timestamp::MIN, all_idle: false }
    }

    /// Waits up to `timeout` for an event from any live channel and pushes it into `head`.
    pub fn poll(&mut self, head: &mut dyn Output<T>, timeout: Duration) -> GatePoll {
        let live: Vec<usize> = (0..self.receivers.len()).filter(|&i| !self.channels[i].ended).collect();
        if live.is_empty() {
            return GatePoll::Ended;
        }
        let mut select = Select::new();
        for &i in &live {
            select.recv(&self.receivers[i]);
        }
        let operation = match select.select_timeout(timeout) {
            Ok(op) => op,
            Err(_) => return GatePoll::Timeout,
        };
        let channel = live[operation.index()];
        let event = match operation.recv(&self.receivers[channel]) {
            Ok(event) => event,
            Err(_) => return GatePoll::UpstreamGone,
        };
        self.deliver(channel, event, head)
    }

    /// Receives from one channel without select: the common case of a single input.
    pub fn poll_single(&mut self, head: &mut dyn Output<T>, timeout: Duration) -> GatePoll {
        if self.channels[0].ended {
            return GatePoll::Ended;
        }
        match self.receivers[0].recv_timeout(timeout) {
            Ok(event) => self.deliver(0, event, head),
            Err(RecvTimeoutError::Timeout) => GatePoll::Timeout,
            Err(RecvTimeoutError::Disconnected) => GatePoll::UpstreamGone,
        }
    }

    pub fn channel_count(&self) -> usize {
        self.receivers.len()
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
            Event::End => {
                let state = &mut self.channels[channel];
                state.ended = true;
                state.idle = false;
                state.watermark = MAX_WATERMARK;
                if self.channels.iter().all(|c| c.ended) {
                    return GatePoll::Ended;
                }
                self.advance_watermark(head);
            }
        }
        GatePoll::Delivered { records: 0 }
    }

    /// The task's watermark is the minimum over channels that are not idle (an ended channel
    /// stands at the maximum watermark).
    fn advance_watermark(&mut self, head: &mut dyn Output<T>) {
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
        let all_idle = self.channels.iter().all(|c| c.idle || c.ended) && self.channels.iter().any(|c| c.idle);
        if all_idle != self.all_idle {
            self.all_idle = all_idle;
            head.idle(all_idle);
        }
    }
}
