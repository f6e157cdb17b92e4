//! The window operator, driven record by record through the operator harness.

use std::sync::Arc;
use std::time::Duration;

use crate::output::{Collector, NO_TIMESTAMP, Timestamp};
use crate::testing::{OneInputHarness, StreamElement};
use crate::window::functions::{ProcessAggregation, ReduceAggregation};
use crate::window::operator::WindowOperator;
use crate::window::{
    EventTimeSessionWindows, TimeWindow, TumblingEventTimeWindows, TumblingProcessingTimeWindows, WindowAssigner,
};
use rheo_types::keygroups::{KeyGroupRange, hash_key};

/// A keyed record: (key, value).
type Ev = (String, i64);
/// A session's result: (key, start, end, sum of values).
type SessionResult = (String, i64, i64, i64);

const LATE: &str = "late";

fn ev(key: &str, value: i64) -> Ev {
    (key.to_string(), value)
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// Sums values per key and window; late records go to the side output "late".
fn sum_window(assigner: WindowAssigner, allowed_lateness: i64) -> OneInputHarness<Ev, Ev> {
    OneInputHarness::new(move |ctx, outs| {
        Box::new(WindowOperator::new(
            "window".into(),
            ctx,
            Arc::new(|e: &Ev| e.0.clone()),
            assigner,
            Arc::new(ReduceAggregation(|a: Ev, b: Ev| (a.0, a.1 + b.1))),
            allowed_lateness,
            outs.main(),
            outs.side::<Ev>(LATE),
        ))
    })
}

/// Emits each session with its bounds and the sum of its values.
fn session_window(gap: Duration, allowed_lateness: i64) -> OneInputHarness<Ev, SessionResult> {
    OneInputHarness::new(move |ctx, outs| {
        let describe = |key: &String, window: &TimeWindow, elements: &[Ev], out: &mut Collector<'_, SessionResult>| {
            out.collect((key.clone(), window.start, window.end, elements.iter().map(|e| e.1).sum()))
        };
        Box::new(WindowOperator::new(
            "session".into(),
            ctx,
            Arc::new(|e: &Ev| e.0.clone()),
            EventTimeSessionWindows::with_gap(gap),
            Arc::new(ProcessAggregation(describe)),
            allowed_lateness,
            outs.main(),
            outs.side::<Ev>(LATE),
        ))
    })
}

/// Records of one firing come out in key-hash order; sort them to compare.
fn sorted<T: Ord>(mut records: Vec<T>) -> Vec<T> {
    records.sort();
    records
}

fn session(key: &str, start: i64, end: i64, sum: i64) -> SessionResult {
    (key.to_string(), start, end, sum)
}

#[test]
fn tumbling_window_fires_once_when_the_watermark_passes_its_end() {
    let mut h = sum_window(TumblingEventTimeWindows::of(ms(10)), 0);
    h.process(ev("a", 1), 1);
    h.process(ev("a", 2), 5);
    h.process(ev("b", 10), 3);
    h.process(ev("a", 100), 12);

    h.process_watermark(8);
    assert_eq!(h.take_records(), vec![]);

    h.process_watermark(9);
    let fired = h.main_output().take();
    // Results carry the window's last timestamp and precede the watermark that fired them.
    assert_eq!(fired.last(), Some(&StreamElement::Watermark(9)));
    let records: Vec<(Ev, Timestamp)> = fired
        .into_iter()
        .filter_map(|e| match e {
            StreamElement::Record(v, t) => Some((v, t)),
            _ => None,
        })
        .collect();
    assert_eq!(sorted(records), vec![(ev("a", 3), 9), (ev("b", 10), 9)]);

    h.process_watermark(18);
    assert_eq!(h.take_records(), vec![], "[0, 10) fires once; [10, 20) not yet");
    h.process_watermark(19);
    assert_eq!(h.take_records(), vec![(ev("a", 100), 19)]);
    assert_eq!(h.side_records::<Ev>(LATE), vec![]);
}

#[test]
fn late_records_go_to_the_side_output_when_there_is_no_lateness() {
    let mut h = sum_window(TumblingEventTimeWindows::of(ms(10)), 0);
    h.process(ev("a", 1), 5);
    h.process_watermark(9);
    assert_eq!(h.take_records(), vec![(ev("a", 1), 9)]);

    h.process(ev("a", 7), 9);
    h.process(ev("a", 8), 10);
    assert_eq!(h.side_records::<Ev>(LATE), vec![(ev("a", 7), 9)], "the late record keeps its timestamp");
    assert_eq!(h.take_records(), vec![], "a late record does not fire its window again");

    h.process_watermark(19);
    assert_eq!(h.take_records(), vec![(ev("a", 8), 19)]);
}

#[test]
fn allowed_lateness_fires_again_per_late_record_then_drops_the_window() {
    let mut h = sum_window(TumblingEventTimeWindows::of(ms(10)), 5);
    h.process(ev("a", 1), 1);
    h.process_watermark(9);
    assert_eq!(h.take_records(), vec![(ev("a", 1), 9)]);

    // Within the lateness every late record fires the window's updated result at once.
    h.process(ev("a", 2), 3);
    assert_eq!(h.take_records(), vec![(ev("a", 3), 9)]);
    h.process_watermark(13);
    h.process(ev("a", 4), 4);
    h.process(ev("b", 1), 6);
    assert_eq!(h.take_records(), vec![(ev("a", 7), 9), (ev("b", 1), 9)]);

    // At watermark 9 + 5 the window is cleaned up: records for it are late.
    h.process_watermark(14);
    h.process(ev("a", 8), 2);
    assert_eq!(h.take_records(), vec![]);
    assert_eq!(h.side_records::<Ev>(LATE), vec![(ev("a", 8), 2)]);
}

#[test]
fn session_windows_merge_when_a_record_bridges_two_sessions() {
    let mut h = session_window(ms(10), 0);
    h.process(ev("a", 1), 0); // [0, 10)
    h.process(ev("a", 2), 25); // [25, 35)
    h.process(ev("b", 100), 5); // [5, 15)
    h.process(ev("a", 4), 8); // [8, 18) merges with [0, 10) into [0, 18)
    h.process(ev("a", 8), 17); // [17, 27) bridges [0, 18) and [25, 35) into [0, 35)

    h.process_watermark(14);
    assert_eq!(h.take_records(), vec![(session("b", 5, 15, 100), 14)]);
    h.process_watermark(33);
    assert_eq!(h.take_records(), vec![], "a's sessions merged: [0, 10) and [0, 18) do not fire");
    h.process_watermark(34);
    assert_eq!(h.take_records(), vec![(session("a", 0, 35, 15), 34)]);
    h.process_watermark(100);
    assert_eq!(h.take_records(), vec![]);
}

#[test]
fn a_record_merging_into_a_fired_session_within_lateness_updates_it() {
    let mut h = session_window(ms(10), 20);
    h.process(ev("a", 1), 0);
    h.process_watermark(9);
    assert_eq!(h.take_records(), vec![(session("a", 0, 10, 1), 9)]);

    // Extends the fired session past the watermark: it fires again when the watermark passes.
    h.process(ev("a", 2), 5);
    assert_eq!(h.take_records(), vec![]);
    h.process_watermark(14);
    assert_eq!(h.take_records(), vec![(session("a", 0, 15, 3), 14)]);

    // Falls inside the fired session: the update fires at once.
    h.process(ev("a", 4), 2);
    assert_eq!(h.take_records(), vec![(session("a", 0, 15, 7), 14)]);

    // Past the cleanup time (14 + 20) the session is gone and the record is late.
    h.process_watermark(34);
    h.process(ev("a", 8), 3);
    assert_eq!(h.take_records(), vec![]);
    assert_eq!(h.side_records::<Ev>(LATE), vec![(ev("a", 8), 3)]);
}

#[test]
fn a_window_snapshotted_mid_way_fires_once_in_the_restored_instance() {
    let mut h = sum_window(TumblingEventTimeWindows::of(ms(10)), 0);
    h.process(ev("a", 1), 1);
    h.process(ev("b", 2), 2);
    h.process_watermark(5);
    let snapshot = h.snapshot(1);
    assert_eq!(h.output().last(), Some(&StreamElement::Barrier(1)));
    // After the barrier: not part of the snapshot.
    h.process(ev("a", 4), 4);

    let mut restored = h.restore(&[snapshot]);
    assert_eq!(restored.take_records(), vec![], "restoring fires nothing");
    restored.process(ev("a", 10), 7);
    restored.process_watermark(9);
    assert_eq!(sorted(restored.take_records()), vec![(ev("a", 11), 9), (ev("b", 2), 9)]);
    restored.process_watermark(30);
    assert_eq!(restored.take_records(), vec![], "the restored window fires once");

    // The original instance goes on unaffected by the snapshot.
    h.process_watermark(9);
    assert_eq!(sorted(h.take_records()), vec![(ev("a", 5), 9), (ev("b", 2), 9)]);
}

#[test]
fn a_fired_window_within_lateness_is_restored_as_fired() {
    let mut h = sum_window(TumblingEventTimeWindows::of(ms(10)), 10);
    h.process(ev("a", 1), 1);
    h.process_watermark(9);
    assert_eq!(h.take_records(), vec![(ev("a", 1), 9)]);
    let snapshot = h.snapshot(7);

    let mut restored = h.restore(&[snapshot]);
    restored.process_watermark(15);
    assert_eq!(restored.take_records(), vec![], "a fired window does not fire again after restore");
    restored.process(ev("a", 2), 3);
    assert_eq!(restored.take_records(), vec![(ev("a", 3), 9)], "a late record updates the restored result");
    restored.process_watermark(19);
    restored.process(ev("a", 5), 4);
    assert_eq!(restored.take_records(), vec![]);
    assert_eq!(restored.side_records::<Ev>(LATE), vec![(ev("a", 5), 4)]);
}

#[test]
fn a_restored_session_merges_with_new_records_and_fires_once() {
    let mut h = session_window(ms(10), 0);
    h.process(ev("a", 1), 0);
    let snapshot = h.snapshot(1);

    let mut restored = h.restore(&[snapshot]);
    restored.process(ev("a", 2), 5); // [5, 15) merges with the restored [0, 10)
    restored.process_watermark(9);
    assert_eq!(restored.take_records(), vec![], "the restored session's own end no longer fires it");
    restored.process_watermark(14);
    assert_eq!(restored.take_records(), vec![(session("a", 0, 15, 3), 14)]);
    restored.process_watermark(100);
    assert_eq!(restored.take_records(), vec![]);
}

#[test]
fn rescaling_splits_windows_by_key_group_and_merges_them_back() {
    let keys: Vec<String> = (0..16).map(|i| format!("key-{i}")).collect();
    let mut h = sum_window(TumblingEventTimeWindows::of(ms(10)), 0);
    for (i, key) in keys.iter().enumerate() {
        h.process(ev(key, i as i64), 1);
        h.process(ev(key, 100), 2);
    }
    let snapshot = h.snapshot(3);
    let expected: Vec<(Ev, Timestamp)> =
        sorted(keys.iter().enumerate().map(|(i, key)| (ev(key, i as i64 + 100), 9)).collect());

    // Scale out to two subtasks: each restores exactly the keys of its key groups.
    let mut halves: Vec<_> = (0..2).map(|subtask| h.restore_at(std::slice::from_ref(&snapshot), subtask, 2)).collect();
    let mut union = Vec::new();
    let mut snapshots = Vec::new();
    for half in &mut halves {
        half.process_watermark(5);
        snapshots.push(half.snapshot(4));
        half.process_watermark(9);
        let fired = half.take_records();
        assert!(!fired.is_empty(), "16 keys over 128 key groups leave no half empty");
        for ((key, _), _) in &fired {
            let group = KeyGroupRange::key_group_of(hash_key(key), 128);
            assert!(half.key_groups().contains(group), "{key} (group {group}) fired outside {:?}", half.key_groups());
        }
        union.extend(fired);
    }
    assert_eq!(sorted(union), expected);

    // Scale back in: one subtask restores both halves' windows.
    let mut whole = h.restore_at(&snapshots, 0, 1);
    whole.process_watermark(9);
    assert_eq!(sorted(whole.take_records()), expected);
}

#[test]
fn processing_time_windows_fire_on_the_clock() {
    let mut h = sum_window(TumblingProcessingTimeWindows::of(ms(10)), 0);
    h.process(ev("a", 1), NO_TIMESTAMP);
    assert_eq!(h.set_processing_time(5), Some(9), "the open window's end is the next timer");
    h.process(ev("a", 2), NO_TIMESTAMP);
    h.process_watermark(1_000);
    assert_eq!(h.take_records(), vec![], "watermarks do not fire processing-time windows");
    assert_eq!(h.set_processing_time(9), None);
    assert_eq!(h.take_records(), vec![(ev("a", 3), 9)]);
    // [0, 10) fired at 9: a record handled before the clock moves on never brings it back (a
    // second, partial result); it belongs to the next window, [10, 20).
    h.process(ev("a", 4), NO_TIMESTAMP);
    assert_eq!(h.set_processing_time(12), Some(19));
    assert_eq!(h.take_records(), vec![], "the fired window [0, 10) came back");
    assert_eq!(h.set_processing_time(19), None);
    assert_eq!(h.take_records(), vec![(ev("a", 4), 19)]);
}

/// `keys` keys with `per_key` records each, a session per key (the records merge) ending at a
/// time of its own, plus a cleanup timer per session (lateness 1 ms); fires and drops them all.
/// Returns how long the firing took, after checking each session fired once and whole.
fn fire_sessions(keys: usize, per_key: i64) -> std::time::Duration {
    let mut h = session_window(ms(10), 1);
    let names: Vec<String> = (0..keys).map(|k| format!("k{k}")).collect();
    for step in 0..per_key {
        for (k, name) in names.iter().enumerate() {
            // Key k's records at k, k + 5, k + 10, ...: one session from k to k + 5 (per_key - 1) + 10.
            h.process((name.clone(), 1), k as i64 + 5 * step);
        }
    }
    let started = std::time::Instant::now();
    h.process_watermark(Timestamp::MAX - 1);
    let took = started.elapsed();
    let fired = h.take_records();
    assert_eq!(fired.len(), keys, "one session per key fires once");
    assert!(fired.windows(2).all(|w| w[0].1 <= w[1].1), "sessions fire in time order");
    for ((key, start, end, sum), _) in fired {
        let k: i64 = key[1..].parse().expect("key");
        assert_eq!((start, end, sum), (k, k + 5 * (per_key - 1) + 10, per_key), "{key}'s session");
    }
    took
}

#[test]
fn many_session_windows_fire_and_clean_up_in_n_log_n_time() {
    // 4x the sessions: about 4x the time when firing is N log N, 16x when quadratic. Sizes
    // large enough that a scheduling quantum is noise, and the best of three runs of each,
    // interleaved, so that a burst of load on a shared machine hits both sizes alike.
    let (mut small, mut large) = (f64::MAX, f64::MAX);
    for _ in 0..3 {
        small = small.min(fire_sessions(20_000, 3).as_secs_f64());
        large = large.min(fire_sessions(80_000, 3).as_secs_f64());
    }
    assert!(
        large < 9.0 * small,
        "firing 4x the sessions took {:.1}x the time ({small:.3} s, {large:.3} s)",
        large / small
    );
}

/// Window state as written before checkpoint metadata version 4 (one entry per key and window:
/// key, start, end, fired, accumulator) is restored onto the keyed backend, at parallelism 1 and
/// split by key group at 2, with the fired window staying fired and each timer where it was.
#[test]
fn window_state_written_before_metadata_version_4_is_restored() {
    use crate::state::restore::{RestoredState, SubtaskState, encode};
    type OldEntry = (String, Timestamp, Timestamp, bool, Option<Ev>);
    let entries: Vec<OldEntry> = vec![
        ("a".into(), 0, 10, true, Some(ev("a", 1))),
        ("b".into(), 0, 10, false, Some(ev("b", 2))),
        ("b".into(), 10, 20, false, Some(ev("b", 5))),
    ];
    let old = || RestoredState {
        metadata_version: 3,
        max_parallelism: 128,
        nodes: std::collections::HashMap::from([(
            0,
            vec![SubtaskState { subtask: 0, parallelism: 1, bytes: encode(&entries).into(), changes: Vec::new() }],
        )]),
        ..Default::default()
    };
    let h = sum_window(TumblingEventTimeWindows::of(ms(10)), 10);
    let a_group = KeyGroupRange::key_group_of(hash_key(&"a".to_string()), 128);
    let mut outputs = Vec::new();
    let mut lates = Vec::new();
    for parallelism in [1, 2] {
        let mut all = Vec::new();
        let mut late = Vec::new();
        for subtask in 0..parallelism {
            let mut restored = h.restore_from(old(), subtask, parallelism);
            restored.process_watermark(9);
            let owns_a = restored.key_groups().contains(a_group);
            if owns_a {
                restored.process(ev("a", 2), 3); // within the lateness of a's fired window
            }
            restored.process_watermark(19);
            if owns_a {
                restored.process(ev("a", 4), 4); // past its cleanup time: late
            }
            all.extend(restored.take_records());
            late.extend(restored.side_records::<Ev>(LATE));
            // Once restored, the state is the keyed backend's.
            let snapshot = restored.snapshot(2);
            let decoded: Vec<crate::keyed::snapshot::ProcessEntry<String>> =
                postcard::from_bytes(&snapshot.states[0].1).expect("a keyed snapshot");
            assert!(decoded.iter().all(|e| match e {
                crate::keyed::snapshot::ProcessEntry::State { table, .. } => table == "windows",
                _ => true,
            }));
        }
        outputs.push(sorted(all));
        lates.push(late);
    }
    let expected = sorted(vec![(ev("b", 2), 9), (ev("a", 3), 9), (ev("b", 5), 19)]);
    assert_eq!(outputs, vec![expected.clone(), expected]);
    assert_eq!(lates, vec![vec![(ev("a", 4), 4)], vec![(ev("a", 4), 4)]]);
}
