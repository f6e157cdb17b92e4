//! The input gate: watermark merging with idle inputs, barrier alignment, end of input.

use std::sync::Arc;
use std::time::Duration;

use crate::keyed::rolling_reduce;
use crate::operators::IdentityOperator;
use crate::output::Timestamp;
use crate::testing::{InputGateHarness, OneInputHarness, StreamElement};
use crate::window::TumblingEventTimeWindows;
use crate::window::functions::ReduceAggregation;
use crate::window::operator::WindowOperator;

type Ev = (String, i64);

fn ev(key: &str, value: i64) -> Ev {
    (key.to_string(), value)
}

fn identity() -> OneInputHarness<Ev, Ev> {
    OneInputHarness::for_operator(|_| IdentityOperator)
}

/// A rolling sum per key: its state shows which records a snapshot saw.
fn running_sum() -> OneInputHarness<Ev, Ev> {
    OneInputHarness::for_operator(|ctx| {
        rolling_reduce(Arc::new(|e: &Ev| e.0.clone()), Arc::new(|a: Ev, b: Ev| (a.0, a.1 + b.1)), ctx)
    })
}

fn record(value: Ev, timestamp: Timestamp) -> StreamElement<Ev> {
    StreamElement::Record(value, timestamp)
}

#[test]
fn the_watermark_is_the_minimum_over_inputs_that_are_not_idle() {
    let mut gate = InputGateHarness::new(2, identity());
    gate.watermark(0, 10);
    gate.process_available();
    assert_eq!(gate.operator.watermarks(), Vec::<Timestamp>::new(), "input 1 has no watermark yet");

    gate.idle(1, true);
    gate.process_available();
    assert_eq!(gate.operator.watermarks(), vec![10], "an idle input does not hold the watermark back");
    gate.watermark(0, 20);
    gate.process_available();
    assert_eq!(gate.operator.watermarks(), vec![10, 20]);

    // A record makes input 1 active again, behind the task's watermark: it never goes back,
    // and it waits for input 1 to catch up.
    gate.record(1, ev("a", 1), 15);
    gate.process_available();
    gate.watermark(0, 30);
    gate.process_available();
    assert_eq!(gate.operator.watermarks(), vec![10, 20]);
    gate.watermark(1, 25);
    gate.process_available();
    assert_eq!(gate.operator.watermarks(), vec![10, 20, 25]);

    // Only when every input is idle is the task idle.
    gate.idle(0, true);
    gate.process_available();
    assert!(!gate.operator.output().contains(&StreamElement::Idle(true)));
    gate.idle(1, true);
    gate.process_available();
    assert_eq!(gate.operator.output().last(), Some(&StreamElement::Idle(true)));
}

#[test]
fn an_idle_input_lets_a_window_fire() {
    let window = OneInputHarness::new(|ctx, outs| {
        Box::new(WindowOperator::new(
            "window".into(),
            ctx,
            Arc::new(|e: &Ev| e.0.clone()),
            TumblingEventTimeWindows::of(Duration::from_millis(10)),
            Arc::new(ReduceAggregation(|a: Ev, b: Ev| (a.0, a.1 + b.1))),
            0,
            outs.main(),
            outs.side::<Ev>("late"),
        ))
    });
    let mut gate = InputGateHarness::new(2, window);
    gate.record(0, ev("a", 1), 1);
    gate.record(0, ev("a", 2), 5);
    gate.watermark(0, 9);
    gate.process_available();
    assert_eq!(gate.operator.records(), vec![], "input 1 holds the window open");
    gate.idle(1, true);
    gate.process_available();
    assert_eq!(gate.operator.records(), vec![(ev("a", 3), 9)]);
}

#[test]
fn records_behind_a_barrier_wait_until_the_barrier_aligns_and_the_snapshot_is_taken() {
    let mut gate = InputGateHarness::new(2, running_sum());
    gate.record(0, ev("a", 1), 1);
    gate.barrier(0, 1);
    gate.record(0, ev("a", 10), 2);
    assert_eq!(gate.process_available(), Vec::<u64>::new());
    assert_eq!(gate.operator.records(), vec![(ev("a", 1), 1)], "input 0 is blocked behind its barrier");

    gate.record(1, ev("a", 2), 3);
    assert_eq!(gate.process_available(), Vec::<u64>::new());
    assert_eq!(gate.operator.records(), vec![(ev("a", 1), 1), (ev("a", 3), 3)], "input 1 still flows");

    gate.barrier(1, 1);
    assert_eq!(gate.process_available(), vec![1]);
    assert_eq!(
        gate.operator.output(),
        vec![record(ev("a", 1), 1), record(ev("a", 3), 3), StreamElement::Barrier(1), record(ev("a", 13), 2)]
    );

    // The snapshot holds the sum before the barrier: 1 + 2, without the 10 behind it.
    let mut restored = gate.operator.restore(&gate.snapshots);
    restored.process(ev("a", 100), 4);
    assert_eq!(restored.records(), vec![(ev("a", 103), 4)]);
}

#[test]
fn an_idle_input_still_takes_part_in_barrier_alignment() {
    let mut gate = InputGateHarness::new(2, identity());
    gate.idle(1, true);
    gate.watermark(0, 10);
    gate.barrier(0, 1);
    gate.record(0, ev("a", 5), 11);
    assert_eq!(gate.process_available(), Vec::<u64>::new(), "the idle input's barrier is still awaited");
    assert_eq!(gate.operator.output(), vec![StreamElement::Watermark(10)]);

    gate.barrier(1, 1);
    assert_eq!(gate.process_available(), vec![1]);
    assert_eq!(
        gate.operator.output(),
        vec![StreamElement::Watermark(10), StreamElement::Barrier(1), record(ev("a", 5), 11)]
    );
}

#[test]
fn a_closed_input_does_not_hold_up_alignment() {
    let mut gate = InputGateHarness::new(2, identity());
    gate.end(1);
    gate.process_available();
    gate.barrier(0, 4);
    assert_eq!(gate.process_available(), vec![4]);
}

#[test]
fn a_newer_barrier_supersedes_an_alignment_that_never_completed() {
    let mut gate = InputGateHarness::new(2, identity());
    gate.barrier(0, 1);
    gate.process_available();
    // Input 1 never delivers barrier 1 (the checkpoint expired upstream); barrier 2 arrives.
    gate.barrier(1, 2);
    gate.record(1, ev("b", 1), 1);
    assert_eq!(gate.process_available(), Vec::<u64>::new());
    gate.barrier(0, 2);
    assert_eq!(gate.process_available(), vec![2], "checkpoint 1 is abandoned, checkpoint 2 aligns");
    assert_eq!(gate.operator.output(), vec![StreamElement::Barrier(2), record(ev("b", 1), 1)]);
}

#[test]
fn end_of_data_on_every_input_finishes_the_chain_once_then_end_closes_it() {
    let mut gate = InputGateHarness::new(2, identity());
    gate.end_of_data(0);
    gate.process_available();
    assert_eq!(gate.operator.output(), vec![]);
    gate.end_of_data(1);
    // The final checkpoint still passes after the end of data.
    gate.barrier(0, 9);
    gate.barrier(1, 9);
    assert_eq!(gate.process_available(), vec![9]);
    gate.end(0);
    gate.end(1);
    gate.process_available();
    assert!(gate.is_ended());
    assert_eq!(gate.operator.output(), vec![StreamElement::Finished, StreamElement::Barrier(9), StreamElement::Closed]);
}
