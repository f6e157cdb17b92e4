//! An operator behind an input gate with several channels.

use std::time::Duration;

use crossbeam_channel::Sender;

use crate::exchange::{Event, GatePoll, InputGate};
use crate::output::{CheckpointBarrier, Timestamp};
use crate::testing::{OneInputHarness, OperatorSnapshot};

/// Feeds events into the channels of an [`InputGate`] and polls it into an operator harness,
/// the way an input task does: an aligned barrier snapshots the chain.
pub struct InputGateHarness<I, O> {
    senders: Vec<Sender<Event<I>>>,
    gate: InputGate<I>,
    pub operator: OneInputHarness<I, O>,
    /// The snapshots taken at aligned barriers, in order.
    pub snapshots: Vec<OperatorSnapshot>,
    ended: bool,
}

impl<I: Send + 'static, O: Send + 'static> InputGateHarness<I, O> {
    pub fn new(channels: usize, operator: OneInputHarness<I, O>) -> Self {
        // Unbounded: the test fills channels before the gate reads them, and must not block.
        let (senders, receivers) = (0..channels).map(|_| crossbeam_channel::unbounded()).unzip();
        Self { senders, gate: InputGate::new(receivers), operator, snapshots: Vec::new(), ended: false }
    }

    pub fn send(&mut self, channel: usize, event: Event<I>) {
        self.senders[channel].send(event).expect("the gate holds the receiver");
    }

    pub fn record(&mut self, channel: usize, value: I, timestamp: Timestamp) {
        self.send(channel, Event::Records(vec![(value, timestamp)]));
    }

    pub fn watermark(&mut self, channel: usize, watermark: Timestamp) {
        self.send(channel, Event::Watermark(watermark));
    }

    pub fn idle(&mut self, channel: usize, idle: bool) {
        self.send(channel, Event::Idle(idle));
    }

    pub fn barrier(&mut self, channel: usize, checkpoint_id: u64) {
        self.send(
            channel,
            Event::Barrier(CheckpointBarrier { id: checkpoint_id, timestamp: 0, incremental: false, full: false }),
        );
    }

    pub fn end_of_data(&mut self, channel: usize) {
        self.send(channel, Event::EndOfData);
    }

    pub fn end(&mut self, channel: usize) {
        self.send(channel, Event::End);
    }

    /// Polls the gate until no readable channel has an event (channels blocked by an alignment
    /// in progress are not read). Returns the ids of the checkpoints aligned meanwhile, whose
    /// snapshots are appended to [`InputGateHarness::snapshots`].
    pub fn process_available(&mut self) -> Vec<u64> {
        let mut aligned = Vec::new();
        while !self.ended {
            match self.gate.poll(&mut *self.operator.chain, Duration::ZERO) {
                GatePoll::Delivered { .. } => {}
                GatePoll::Barrier(barrier) => {
                    aligned.push(barrier.id);
                    let snapshot = self.operator.snapshot_at(barrier);
                    self.snapshots.push(snapshot);
                }
                GatePoll::Timeout => break,
                GatePoll::Ended => {
                    self.ended = true;
                    self.operator.close();
                }
                GatePoll::UpstreamGone => unreachable!("the harness holds every sender"),
            }
        }
        aligned
    }

    /// Whether every channel has closed (and the chain was closed).
    pub fn is_ended(&self) -> bool {
        self.ended
    }
}
