//! Windowed counts on random, out-of-order input equal a straightforward reference; results
//! do not depend on parallelism; a slow sink holds the source back with bounded buffers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use rheo::prelude::*;
use rheo::runtime::exchange::{BATCH_SIZE, CHANNEL_CAPACITY};

use crate::slow_sink::{Counter, SlowSink};

type Rec = (u8, i64);
type WindowKey = (u8, i64, i64);

/// The reference: walk the records in order with the watermark of a bounded-out-of-orderness
/// generator that emits after every record; a record is late when every window it belongs to
/// is past its allowed lateness; the final count of a window is its number of non-late records.
fn reference(
    records: &[Rec],
    assigner: WindowAssigner,
    out_of_orderness: i64,
    lateness: i64,
) -> (BTreeMap<WindowKey, usize>, Vec<Rec>) {
    let mut counts = BTreeMap::new();
    let mut late = Vec::new();
    let mut max_ts = i64::MIN;
    let mut watermark = i64::MIN;
    for &(key, ts) in records {
        let windows = assigner.assign(ts);
        let live: Vec<_> = windows.iter().filter(|w| w.max_timestamp() + lateness > watermark).collect();
        if live.is_empty() {
            late.push((key, ts));
        }
        for w in live {
            *counts.entry((key, w.start, w.end)).or_default() += 1;
        }
        max_ts = max_ts.max(ts);
        watermark = watermark.max(max_ts - out_of_orderness - 1);
    }
    (counts, late)
}

/// The engine: the last emitted count per (key, window) and the late side output.
fn engine(
    records: &[Rec],
    assigner: WindowAssigner,
    out_of_orderness: i64,
    lateness: i64,
) -> (BTreeMap<WindowKey, usize>, Vec<Rec>) {
    let mut env = StreamEnv::new(Configuration::new());
    env.set_parallelism(1);
    let tag = OutputTag::<Rec>::new("late");
    let counted = env
        .from_timestamped(records.iter().map(|&r| (r, r.1)).collect())
        .assign_timestamps_and_watermarks(
            WatermarkStrategy::for_bounded_out_of_orderness(Duration::from_millis(out_of_orderness as u64))
                .with_emission(WatermarkEmission::PerRecord),
        )
        .key_by(|(k, _)| *k)
        .window(assigner)
        .allowed_lateness(Duration::from_millis(lateness as u64))
        .side_output_late_data(&tag)
        .process(|k: &u8, w: &TimeWindow, elements: &[Rec], out: &mut Collector<'_, (WindowKey, usize)>| {
            out.collect(((*k, w.start, w.end), elements.len()))
        });
    let late = counted.side_output(&tag).collect();
    let counted = counted.collect();
    env.execute("property").unwrap();
    let mut last = BTreeMap::new();
    for (window, count) in counted.values() {
        last.insert(window, count);
    }
    (last, late.values())
}

fn records() -> impl Strategy<Value = Vec<Rec>> {
    // Mostly increasing timestamps with jitter, so some records are out of order and some late.
    prop::collection::vec((0u8..4, 0i64..40, -30i64..10), 1..200).prop_map(|steps| {
        let mut t = 0i64;
        steps
            .into_iter()
            .map(|(key, advance, jitter)| {
                t += advance;
                (key, (t + jitter).max(0))
            })
            .collect()
    })
}

fn assigners() -> impl Strategy<Value = WindowAssigner> {
    prop_oneof![
        (1u64..100).prop_map(|size| TumblingEventTimeWindows::of(Duration::from_millis(size))),
        (1u64..60, 1u64..4).prop_map(|(slide, factor)| SlidingEventTimeWindows::of(
            Duration::from_millis(slide * factor),
            Duration::from_millis(slide)
        )),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn windowed_counts_equal_the_reference(
        records in records(),
        assigner in assigners(),
        out_of_orderness in 0i64..25,
        lateness in prop_oneof![Just(0i64), 0i64..50],
    ) {
        let expected = reference(&records, assigner, out_of_orderness, lateness);
        let got = engine(&records, assigner, out_of_orderness, lateness);
        prop_assert_eq!(got.0, expected.0, "window counts");
        prop_assert_eq!(got.1, expected.1, "late records");
    }

    #[test]
    fn session_counts_equal_the_reference(
        mut timestamps in prop::collection::vec((0u8..3, 0i64..500), 1..120),
        gap in 1i64..40,
    ) {
        // In-order input: no record is late. A session closes once the watermark (the previous
        // record's timestamp - 1) reaches its last millisecond; until then a record that
        // touches it extends it.
        timestamps.sort_by_key(|&(_, t)| t);
        let mut expected: BTreeMap<WindowKey, usize> = BTreeMap::new();
        let mut open: BTreeMap<u8, (i64, i64, usize)> = BTreeMap::new();
        let mut watermark = i64::MIN;
        for &(k, t) in &timestamps {
            open.retain(|&key, &mut (start, end, n)| {
                let closing = end - 1 <= watermark;
                if closing {
                    expected.insert((key, start, end), n);
                }
                !closing
            });
            if let Some(&(start, end, n)) = open.get(&k)
                && t > end
            {
                expected.insert((k, start, end), n);
                open.remove(&k);
            }
            let session = open.entry(k).or_insert((t, t + gap, 0));
            session.1 = session.1.max(t + gap);
            session.2 += 1;
            watermark = watermark.max(t - 1);
        }
        for (key, (start, end, n)) in open {
            expected.insert((key, start, end), n);
        }
        let got = engine(&timestamps, EventTimeSessionWindows::with_gap(Duration::from_millis(gap as u64)), 0, 0);
        prop_assert_eq!(got.0, expected);
        prop_assert!(got.1.is_empty());
    }
}

/// Word counts per event-time window and in total, at a given parallelism.
/// (word, window end, count) per window, and (word, total).
type WordCounts = (Vec<(String, i64, u64)>, Vec<(String, u64)>);

fn word_counts(parallelism: usize) -> WordCounts {
    let mut env = StreamEnv::new(Configuration::new());
    env.set_parallelism(parallelism);
    let lines: Vec<(String, Timestamp)> =
        (0..3000).map(|i: i64| (format!("w{} w{} w{}", i % 13, (i * 7) % 29, i % 3), i * 10)).collect();
    let words = env
        .from_timestamped(lines)
        .assign_timestamps_and_watermarks(WatermarkStrategy::for_monotonous_timestamps())
        .set_parallelism(1)
        .flat_map(|line: String, out: &mut Collector<'_, (String, u64)>| {
            line.split_whitespace().for_each(|w| out.collect((w.to_string(), 1)))
        });
    let windowed = words
        .key_by(|(w, _)| w.clone())
        .window(TumblingEventTimeWindows::of(Duration::from_secs(1)))
        .process(|w: &String, win: &TimeWindow, xs: &[(String, u64)], out: &mut Collector<'_, (String, i64, u64)>| {
            out.collect((w.clone(), win.end, xs.iter().map(|x| x.1).sum()))
        })
        .collect();
    let totals = words.key_by(|(w, _)| w.clone()).reduce(|a, b| (a.0, a.1 + b.1)).collect();
    env.execute("word counts").unwrap();
    let mut windowed = windowed.values();
    windowed.sort();
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    for (w, c) in totals.values() {
        let entry = last.entry(w).or_default();
        *entry = (*entry).max(c);
    }
    (windowed, last.into_iter().collect())
}

#[test]
fn results_are_identical_at_parallelism_1_2_and_4() {
    let one = word_counts(1);
    assert_eq!(one.1.iter().map(|(_, c)| c).sum::<u64>(), 9000);
    assert_eq!(word_counts(2), one);
    assert_eq!(word_counts(4), one);
}

#[test]
fn a_slow_sink_slows_the_source_with_bounded_buffers() {
    let total = 200_000;
    let mut env = StreamEnv::new(Configuration::new());
    env.set_parallelism(1);
    let received = Arc::new(AtomicU64::new(0));
    let max_in_flight = Arc::new(AtomicU64::new(0));
    let (r, m) = (received.clone(), max_in_flight.clone());
    env.add_non_parallel_source("counter", move |_| Counter { next: 0, end: total }).rebalance().add_sink(
        "slow",
        move |info| SlowSink { received: r.clone(), max_in_flight: m.clone(), job: info.info.job.clone() },
    );
    env.execute("backpressure").unwrap();
    assert_eq!(received.load(Ordering::Relaxed), total);
    // In flight at most: the channel's batches, the writer's buffer, the source's batch.
    let bound = (CHANNEL_CAPACITY + 1) * BATCH_SIZE + BATCH_SIZE + BATCH_SIZE;
    let seen = max_in_flight.load(Ordering::Relaxed);
    assert!(seen <= bound as u64, "{seen} records in flight, bound {bound}");
    // The source really ran ahead as far as the buffers allow (the check is not vacuous).
    assert!(seen >= BATCH_SIZE as u64, "{seen} records in flight");
}
