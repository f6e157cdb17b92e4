//! Keyed process functions: timers in both time domains, and their state across a snapshot.

use std::sync::Arc;

use crate::keyed::{KeyedContext, KeyedProcessFunction, KeyedProcessOperator};
use crate::output::{NO_TIMESTAMP, Timestamp};
use crate::state::{KeyedStateBackend, ValueState};
use crate::testing::{OneInputHarness, StreamElement};
use rheo_types::keygroups::{KeyGroupRange, hash_key};

/// What a record asks of the function, for its key.
#[derive(Clone, Debug)]
enum Ask {
    SetEvent(Timestamp),
    SetProcessing(Timestamp),
    DeleteEvent(Timestamp),
}

/// Counts records per key and sets or deletes timers as asked; a timer emits
/// `"<key>@<time> seen=<count>"`.
#[derive(Default)]
struct TimerFunction {
    seen: Option<ValueState<u64>>,
}

impl KeyedProcessFunction<String, (String, Ask), String> for TimerFunction {
    fn open(&mut self, state: &mut KeyedStateBackend<String>) {
        self.seen = Some(state.value_state("seen"));
    }

    fn process_element(&mut self, (_, ask): (String, Ask), ctx: &mut KeyedContext<'_, String, String>) {
        let seen = self.seen.as_ref().expect("opened");
        let count = ctx.value(seen).copied().unwrap_or(0) + 1;
        ctx.update(seen, count);
        match ask {
            Ask::SetEvent(at) => ctx.register_event_time_timer(at),
            Ask::SetProcessing(at) => ctx.register_processing_time_timer(at),
            Ask::DeleteEvent(at) => ctx.delete_event_time_timer(at),
        }
    }

    fn on_timer(&mut self, timestamp: Timestamp, ctx: &mut KeyedContext<'_, String, String>) {
        let seen = self.seen.as_ref().expect("opened");
        let count = ctx.value(seen).copied().unwrap_or(0);
        let fired = format!("{}@{timestamp} seen={count}", ctx.key());
        ctx.collect(fired);
    }
}

fn harness() -> OneInputHarness<(String, Ask), String> {
    OneInputHarness::for_operator(|ctx| {
        KeyedProcessOperator::new(Arc::new(|r: &(String, Ask)| r.0.clone()), TimerFunction::default(), ctx)
    })
}

fn ask(key: &str, ask: Ask) -> (String, Ask) {
    (key.to_string(), ask)
}

fn fired(records: &[(&str, Timestamp)]) -> Vec<(String, Timestamp)> {
    records.iter().map(|(s, t)| (s.to_string(), *t)).collect()
}

#[test]
fn event_time_timers_fire_in_time_order_once_per_key_and_time() {
    let mut h = harness();
    h.process(ask("a", Ask::SetEvent(15)), 5);
    h.process(ask("b", Ask::SetEvent(11)), 1);
    h.process(ask("a", Ask::SetEvent(13)), 3);
    h.process(ask("b", Ask::SetEvent(11)), 2); // the same timer again: fires once
    h.process(ask("c", Ask::SetEvent(12)), 1);

    h.process_watermark(10);
    assert_eq!(h.take_records(), vec![]);
    h.process_watermark(12);
    // A timer's output carries its time, and comes before the watermark that fired it.
    assert_eq!(
        h.main_output().take(),
        vec![
            StreamElement::Record("b@11 seen=2".to_string(), 11),
            StreamElement::Record("c@12 seen=1".to_string(), 12),
            StreamElement::Watermark(12),
        ]
    );
    h.process(ask("a", Ask::DeleteEvent(15)), 12);
    h.process_watermark(100);
    assert_eq!(h.take_records(), fired(&[("a@13 seen=3", 13)]), "the deleted timer at 15 does not fire");
}

#[test]
fn processing_time_timers_fire_in_time_order_on_ticks() {
    let mut h = harness();
    h.process(ask("a", Ask::SetProcessing(100)), NO_TIMESTAMP);
    h.process(ask("b", Ask::SetProcessing(50)), NO_TIMESTAMP);
    h.process(ask("a", Ask::SetProcessing(70)), NO_TIMESTAMP);

    h.process_watermark(Timestamp::MAX - 1);
    assert_eq!(h.take_records(), vec![], "watermarks do not fire processing-time timers");
    assert_eq!(h.set_processing_time(10), Some(50), "the tick reports the next timer to the task loop");
    assert_eq!(h.take_records(), vec![]);
    assert_eq!(h.set_processing_time(60), Some(70));
    assert_eq!(h.take_records(), fired(&[("b@50 seen=1", 50)]));
    assert_eq!(h.set_processing_time(200), None);
    assert_eq!(h.take_records(), fired(&[("a@70 seen=2", 70), ("a@100 seen=2", 100)]));
}

#[test]
fn timers_and_state_survive_snapshot_and_restore() {
    let mut h = harness();
    h.process(ask("a", Ask::SetEvent(20)), 1);
    h.process(ask("a", Ask::SetProcessing(100)), 2);
    h.process(ask("b", Ask::SetEvent(30)), 3);
    let snapshot = h.snapshot(1);
    // After the barrier: neither this timer nor this count is in the snapshot.
    h.process(ask("a", Ask::SetEvent(25)), 4);

    let mut restored = h.restore(&[snapshot]);
    restored.process_watermark(25);
    assert_eq!(restored.take_records(), fired(&[("a@20 seen=2", 20)]));
    assert_eq!(restored.next_processing_timer(), Some(100), "the restored processing timer is pending");
    restored.set_processing_time(100);
    assert_eq!(restored.take_records(), fired(&[("a@100 seen=2", 100)]));
    restored.process_watermark(30);
    assert_eq!(restored.take_records(), fired(&[("b@30 seen=1", 30)]));

    // The original goes on with what it saw after the barrier.
    h.process_watermark(25);
    assert_eq!(h.take_records(), fired(&[("a@20 seen=3", 20), ("a@25 seen=3", 25)]));
}

#[test]
fn a_processing_timer_restored_in_the_past_fires_when_the_task_starts() {
    let mut h = harness();
    h.process(ask("a", Ask::SetProcessing(50)), NO_TIMESTAMP);
    let mut snapshot = h.snapshot(1);
    // The job comes back later than the timer was due.
    snapshot.processing_time = 80;
    let restored = h.restore(&[snapshot]);
    assert_eq!(restored.records(), fired(&[("a@50 seen=1", 50)]));
    assert_eq!(restored.next_processing_timer(), None);
}

#[test]
fn timers_and_state_follow_their_keys_when_the_job_rescales() {
    let mut h = harness();
    let keys: Vec<String> = (0..12).map(|i| format!("key-{i}")).collect();
    for (i, key) in keys.iter().enumerate() {
        h.process(ask(key, Ask::SetEvent(100 + i as i64)), 1);
    }
    let snapshot = h.snapshot(1);
    let mut union = Vec::new();
    for subtask in 0..3 {
        let mut part = h.restore_at(std::slice::from_ref(&snapshot), subtask, 3);
        part.process_watermark(1_000);
        let fired = part.take_records();
        for (line, _) in &fired {
            let key = line.split('@').next().expect("key");
            let group = KeyGroupRange::key_group_of(hash_key(&key.to_string()), 128);
            assert!(part.key_groups().contains(group), "{key}'s timer fired in subtask {subtask}");
        }
        union.extend(fired);
    }
    union.sort_by_key(|(_, t)| *t);
    let expected: Vec<(String, Timestamp)> =
        keys.iter().enumerate().map(|(i, key)| (format!("{key}@{} seen=1", 100 + i), 100 + i as i64)).collect();
    assert_eq!(union, expected, "every timer fires exactly once over the new subtasks");
}
