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

/// Sets an event-time timer per record (key, time); a timer emits its key.
#[derive(Default)]
struct TimerPerRecord;

impl KeyedProcessFunction<u64, (u64, Timestamp), u64> for TimerPerRecord {
    fn process_element(&mut self, (_, at): (u64, Timestamp), ctx: &mut KeyedContext<'_, u64, u64>) {
        ctx.register_event_time_timer(at);
    }

    fn on_timer(&mut self, _timestamp: Timestamp, ctx: &mut KeyedContext<'_, u64, u64>) {
        let key = *ctx.key();
        ctx.collect(key);
    }
}

/// `keys` keys with a timer each at `time_of(key)`; fires them all and returns how long that
/// took, after checking that each fired once, in time order, at its time.
fn fire_many(keys: u64, time_of: impl Fn(u64) -> Timestamp) -> std::time::Duration {
    let mut h = OneInputHarness::for_operator(|ctx| {
        KeyedProcessOperator::new(Arc::new(|r: &(u64, Timestamp)| r.0), TimerPerRecord, ctx)
    });
    for key in 0..keys {
        h.process((key, time_of(key)), 0);
    }
    let started = std::time::Instant::now();
    h.process_watermark(Timestamp::MAX);
    let took = started.elapsed();
    let fired = h.take_records();
    assert_eq!(fired.len() as u64, keys, "every timer fires");
    assert!(fired.windows(2).all(|w| w[0].1 <= w[1].1), "timers fire in time order");
    assert!(fired.iter().all(|&(key, at)| at == time_of(key)), "each timer fires at its time");
    let mut seen: Vec<u64> = fired.into_iter().map(|(key, _)| key).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len() as u64, keys, "no timer fires twice");
    took
}

/// The faster of two runs: the other work on the machine makes single runs noisy.
fn fire_time(keys: u64, time_of: impl Fn(u64) -> Timestamp + Copy) -> f64 {
    fire_many(keys, time_of).min(fire_many(keys, time_of)).as_secs_f64()
}

/// Firing 4x the timers takes about 4x the time when firing is linear (or N log N), 16x when
/// quadratic, as it was when each timer was taken out of a hash set with iter().next(). A load
/// spike on a busy machine can stretch one measurement, so up to three tries; a quadratic
/// queue fails all of them.
fn assert_scales_linearly(time_of: impl Fn(u64) -> Timestamp + Copy) {
    let mut ratios = Vec::new();
    for _ in 0..3 {
        let small = fire_time(100_000, time_of);
        let large = fire_time(400_000, time_of);
        ratios.push(large / small);
        if large < 9.0 * small {
            return;
        }
    }
    panic!("firing 4x the timers took {ratios:.1?} times as long");
}

#[test]
fn many_timers_at_one_time_fire_once_each_in_linear_time() {
    assert_scales_linearly(|_| 1_000);
}

#[test]
fn many_timers_at_distinct_times_fire_in_order_in_n_log_n_time() {
    // Registered in descending time order, fired ascending.
    assert_scales_linearly(|key| 1_000_000 - key as Timestamp);
}

#[test]
fn timers_deleted_or_set_again_while_firing_keep_their_meaning() {
    /// Key 0's timer at 10 sets a timer for key 0 at 5, before the watermark: it fires next,
    /// within the same watermark, before the other timers at 10.
    #[derive(Default)]
    struct Meddler;
    impl KeyedProcessFunction<u64, (u64, Timestamp), (u64, Timestamp)> for Meddler {
        fn process_element(&mut self, (_, at): (u64, Timestamp), ctx: &mut KeyedContext<'_, u64, (u64, Timestamp)>) {
            if at < 0 {
                ctx.delete_event_time_timer(-at);
            } else {
                ctx.register_event_time_timer(at);
            }
        }
        fn on_timer(&mut self, timestamp: Timestamp, ctx: &mut KeyedContext<'_, u64, (u64, Timestamp)>) {
            let key = *ctx.key();
            ctx.collect((key, timestamp));
            if key == 0 && timestamp == 10 {
                ctx.register_event_time_timer(5);
            }
        }
    }
    let mut h = OneInputHarness::for_operator(|ctx| {
        KeyedProcessOperator::new(Arc::new(|r: &(u64, Timestamp)| r.0), Meddler, ctx)
    });
    for key in 0..1000 {
        h.process((key, 10), 0);
    }
    h.process((7, -10), 0); // deletes key 7's timer at 10
    h.process_watermark(10);
    let fired: Vec<(u64, Timestamp)> = h.take_records().into_iter().map(|(r, _)| r).collect();
    assert_eq!(fired.len(), 1000, "999 timers at 10 and key 0's new one at 5");
    assert!(!fired.contains(&(7, 10)), "the deleted timer does not fire");
    let at_five = fired.iter().position(|&r| r == (0, 5)).expect("the timer set while firing fires");
    assert_eq!(fired[at_five - 1], (0, 10), "the earlier timer fires right after the one that set it");
}

/// What a record does to its key's state and timers in [`KeyLifecycle`].
#[derive(Clone, Debug)]
enum Touch {
    /// Counts the record and sets an event-time timer at the time.
    CountUntil(Timestamp),
    /// Counts the record.
    Count,
    /// Keeps nothing.
    Look,
}

/// What [`KeyLifecycle`] saw of a key: its name, its count, its id, and how many keys the
/// operator instance had then (the current one included).
#[derive(Clone, Debug, PartialEq)]
struct Seen {
    key: String,
    count: u64,
    id: crate::state::keys::KeyId,
    keys: usize,
}

/// Counts records per key; a timer emits the count and clears it, so a key whose timers have
/// all fired keeps nothing. Every call reports what it saw.
#[derive(Default)]
struct KeyLifecycle {
    count: Option<ValueState<u64>>,
}

impl KeyLifecycle {
    fn seen(&self, ctx: &KeyedContext<'_, String, Seen>, count: u64) -> Seen {
        Seen { key: ctx.key().clone(), count, id: ctx.key, keys: ctx.state.key_count() }
    }
}

impl KeyedProcessFunction<String, (String, Touch), Seen> for KeyLifecycle {
    fn open(&mut self, state: &mut KeyedStateBackend<String>) {
        self.count = Some(state.value_state("count"));
    }

    fn process_element(&mut self, (_, touch): (String, Touch), ctx: &mut KeyedContext<'_, String, Seen>) {
        let handle = self.count.clone().expect("opened");
        let mut count = ctx.value(&handle).copied().unwrap_or(0);
        match touch {
            Touch::CountUntil(at) => {
                count += 1;
                ctx.update(&handle, count);
                ctx.register_event_time_timer(at);
            }
            Touch::Count => {
                count += 1;
                ctx.update(&handle, count);
            }
            Touch::Look => {}
        }
        let seen = self.seen(ctx, count);
        ctx.collect(seen);
    }

    fn on_timer(&mut self, _timestamp: Timestamp, ctx: &mut KeyedContext<'_, String, Seen>) {
        let handle = self.count.clone().expect("opened");
        let count = ctx.value(&handle).copied().unwrap_or(0);
        ctx.clear(&handle);
        let seen = self.seen(ctx, count);
        ctx.collect(seen);
    }
}

fn lifecycle() -> OneInputHarness<(String, Touch), Seen> {
    OneInputHarness::for_operator(|ctx| {
        KeyedProcessOperator::new(Arc::new(|r: &(String, Touch)| r.0.clone()), KeyLifecycle::default(), ctx)
    })
}

/// Processes one record and returns what the function saw.
fn touch(h: &mut OneInputHarness<(String, Touch), Seen>, key: &str, touch: Touch) -> Seen {
    h.process((key.to_string(), touch), 0);
    let mut records = h.take_records();
    assert_eq!(records.len(), 1);
    records.remove(0).0
}

#[test]
fn a_key_whose_state_is_cleared_and_timers_fired_frees_its_id_for_a_new_key() {
    let mut h = lifecycle();
    let a = touch(&mut h, "a", Touch::CountUntil(10));
    let b = touch(&mut h, "b", Touch::Count);
    let c = touch(&mut h, "c", Touch::Look);
    assert_eq!((a.keys, b.keys, c.keys), (1, 2, 3), "each key is interned while it is current");
    assert_eq!(
        touch(&mut h, "b", Touch::Count),
        Seen { key: "b".into(), count: 2, id: b.id, keys: 2 },
        "c kept nothing"
    );

    h.process_watermark(10);
    let fired: Vec<Seen> = h.take_records().into_iter().map(|(s, _)| s).collect();
    assert_eq!(fired, vec![Seen { key: "a".into(), count: 1, id: a.id, keys: 2 }]);
    let b_again = touch(&mut h, "b", Touch::Look);
    assert_eq!(b_again.keys, 1, "a's timer fired and its count was cleared: only b is left");

    // The ids of a and c are free again: new keys take them instead of new ones.
    let d = touch(&mut h, "d", Touch::Count);
    let e = touch(&mut h, "e", Touch::Count);
    let mut reused = vec![d.id, e.id];
    reused.sort_unstable();
    let mut freed = vec![a.id, c.id];
    freed.sort_unstable();
    assert_eq!(reused, freed);
    assert_eq!(e.keys, 3);
    // A key that comes back after it was freed starts from nothing.
    let a_again = touch(&mut h, "a", Touch::Look);
    assert_eq!((a_again.count, a_again.keys), (0, 4));
    assert_eq!(touch(&mut h, "d", Touch::Count).count, 2, "d's count is its own, not a's");
}

#[test]
fn state_and_timers_restore_at_other_parallelisms_after_ids_were_freed_and_reused() {
    let mut h = lifecycle();
    for i in 0..30 {
        touch(&mut h, &format!("k{i}"), Touch::CountUntil(100 + i));
    }
    h.process_watermark(114);
    assert_eq!(h.take_records().len(), 15, "k0..k14 fired and were freed");
    for i in 0..10 {
        touch(&mut h, &format!("n{i}"), Touch::CountUntil(200 + i));
    }
    touch(&mut h, "k20", Touch::Count);
    touch(&mut h, "loose", Touch::Look);
    let snapshot = h.snapshot(1);

    let mut expected: Vec<(String, u64)> = (15..30).map(|i| (format!("k{i}"), if i == 20 { 2 } else { 1 })).collect();
    expected.extend((0..10).map(|i| (format!("n{i}"), 1)));
    expected.sort();
    for parallelism in [1, 2, 3] {
        let mut union = Vec::new();
        for subtask in 0..parallelism {
            let mut part = h.restore_at(std::slice::from_ref(&snapshot), subtask, parallelism);
            part.process_watermark(Timestamp::MAX);
            for (seen, _) in part.take_records() {
                let group = KeyGroupRange::key_group_of(hash_key(&seen.key), 128);
                assert!(part.key_groups().contains(group), "{} fired in subtask {subtask} of {parallelism}", seen.key);
                union.push((seen.key, seen.count));
            }
        }
        union.sort();
        assert_eq!(union, expected, "each key's count and timer once, at parallelism {parallelism}");
    }
}

#[test]
fn a_snapshot_written_after_the_task_went_on_holds_the_state_of_its_barrier() {
    let mut h = lifecycle();
    // Three thousand keys: their keys and counts span several copy-on-write chunks.
    for i in 0..3000 {
        touch(&mut h, &format!("k{i}"), Touch::CountUntil(1000 + i));
    }
    let barrier = h.barrier(1);
    assert!(
        barrier.states.iter().all(|(_, state)| matches!(state, crate::output::StateBytes::Deferred(_))),
        "the barrier takes a view and leaves the writing to later"
    );

    // After the barrier: a third of the keys fire and are freed, new keys take their ids (and
    // so write over their keys), one count changes, and a timer is set.
    h.process_watermark(1999);
    assert_eq!(h.take_records().len(), 1000);
    for i in 0..1000 {
        let seen = touch(&mut h, &format!("m{i}"), Touch::Count);
        assert!(seen.id < 3000, "m{i} takes a freed id");
    }
    touch(&mut h, "k2500", Touch::CountUntil(5));
    let snapshot = h.written(1, barrier);

    let mut restored = h.restore(&[snapshot]);
    restored.process_watermark(Timestamp::MAX);
    let mut fired: Vec<(String, u64)> = restored.take_records().into_iter().map(|(s, _)| (s.key, s.count)).collect();
    fired.sort();
    let mut expected: Vec<(String, u64)> = (0..3000).map(|i| (format!("k{i}"), 1)).collect();
    expected.sort();
    assert_eq!(fired, expected, "every key as it was at the barrier, none of what came after");

    // The live operator has what came after.
    h.process_watermark(Timestamp::MAX);
    let after: Vec<(String, u64)> = h.take_records().into_iter().map(|(s, _)| (s.key, s.count)).collect();
    assert_eq!(after.first(), Some(&("k2500".to_string(), 2)), "k2500's new timer at 5 first, its count 2");
    assert_eq!(after.len(), 2001, "k1000..k2999 and k2500 again; the m keys have no timers");
}
