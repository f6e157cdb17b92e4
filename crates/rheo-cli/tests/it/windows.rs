//! Windows of every kind against hand-computed results.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rheo::prelude::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A p=1 pipeline with per-record watermarks, so lateness is exact and the results are fully
/// determined by the input order.
fn timestamped(env: &StreamEnv, input: &[(char, i64)], out_of_orderness: u64) -> DataStream<(char, i64)> {
    env.from_timestamped(input.iter().map(|&(k, t)| ((k, t), t)).collect()).assign_timestamps_and_watermarks(
        WatermarkStrategy::for_bounded_out_of_orderness(ms(out_of_orderness))
            .with_emission(WatermarkEmission::PerRecord),
    )
}

fn env1() -> StreamEnv {
    let mut env = StreamEnv::new(Configuration::new());
    env.set_parallelism(1);
    env
}

/// (key, window start, window end, count), as emitted, sorted.
type Counted = (char, i64, i64, usize);

fn count_per_window(windowed: WindowedStream<char, (char, i64)>) -> DataStream<Counted> {
    windowed.process(|key: &char, w: &TimeWindow, elements: &[(char, i64)], out: &mut Collector<'_, Counted>| {
        out.collect((*key, w.start, w.end, elements.len()))
    })
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

#[test]
fn tumbling_event_time_windows() {
    let env = env1();
    let input = [('a', 1), ('a', 5), ('b', 7), ('a', 12), ('b', 25)];
    let out = timestamped(&env, &input, 0)
        .key_by(|(k, _)| *k)
        .window(TumblingEventTimeWindows::of(ms(10)))
        .reduce(|x, y| (x.0, x.1 + y.1))
        .collect();
    env.execute("tumbling").unwrap();
    // Results carry the window's max timestamp; the reduce sums the timestamps here.
    assert_eq!(sorted(out.timestamped()), vec![(('a', 6), 9), (('a', 12), 19), (('b', 7), 9), (('b', 25), 29)]);
}

#[test]
fn late_records_go_to_the_side_output() {
    let env = env1();
    let late = OutputTag::<(char, i64)>::new("late");
    let input = [('a', 1), ('a', 15), ('a', 3), ('a', 16)];
    let counts = count_per_window(
        timestamped(&env, &input, 0)
            .key_by(|(k, _)| *k)
            .window(TumblingEventTimeWindows::of(ms(10)))
            .side_output_late_data(&late),
    );
    let late_records = counts.side_output(&late).collect();
    let counts = counts.collect();
    env.execute("late").unwrap();
    assert_eq!(sorted(counts.values()), vec![('a', 0, 10, 1), ('a', 10, 20, 2)]);
    assert_eq!(late_records.timestamped(), vec![(('a', 3), 3)]);
}

#[test]
fn allowed_lateness_fires_again_then_drops() {
    let env = env1();
    // wm after 15 is 14: [0,10) fires with 1; 3 is within lateness 10 (9 + 10 > 14): fires
    // again with 2; after 30 (wm 29) the window is gone and 4 is dropped.
    let input = [('a', 1), ('a', 15), ('a', 3), ('a', 30), ('a', 4)];
    let out = count_per_window(
        timestamped(&env, &input, 0)
            .key_by(|(k, _)| *k)
            .window(TumblingEventTimeWindows::of(ms(10)))
            .allowed_lateness(ms(10)),
    )
    .collect();
    env.execute("lateness").unwrap();
    assert_eq!(out.values(), vec![('a', 0, 10, 1), ('a', 0, 10, 2), ('a', 10, 20, 1), ('a', 30, 40, 1)]);
}

#[test]
fn sliding_event_time_windows() {
    let env = env1();
    let out = count_per_window(
        timestamped(&env, &[('a', 1), ('a', 7), ('a', 12)], 0)
            .key_by(|(k, _)| *k)
            .window(SlidingEventTimeWindows::of(ms(10), ms(5))),
    )
    .collect();
    env.execute("sliding").unwrap();
    assert_eq!(sorted(out.values()), vec![('a', -5, 5, 1), ('a', 0, 10, 2), ('a', 5, 15, 2), ('a', 10, 20, 1)]);
}

#[test]
fn session_windows_merge_out_of_order_records() {
    let env = env1();
    // a: {1,4} → [1,9); {12,14} → [12,19); 22 → [22,27); then 17 ([17,22)) touches both and
    // merges them into [12,27) with 4 records. The watermark (max 22 - 10 - 1 = 11) has not
    // reached any of them yet.
    let input = [('a', 1), ('a', 4), ('b', 2), ('a', 12), ('a', 14), ('a', 22), ('a', 17)];
    let out = count_per_window(
        timestamped(&env, &input, 10).key_by(|(k, _)| *k).window(EventTimeSessionWindows::with_gap(ms(5))),
    )
    .collect();
    env.execute("session").unwrap();
    assert_eq!(sorted(out.values()), vec![('a', 1, 9, 2), ('a', 12, 27, 4), ('b', 2, 7, 1)]);
}

struct Count;

impl AggregateFunction<(char, i64)> for Count {
    type Acc = u64;
    type Out = u64;
    fn create_accumulator(&self) -> u64 {
        0
    }
    fn add(&self, _value: (char, i64), acc: &mut u64) {
        *acc += 1;
    }
    fn get_result(&self, acc: &u64) -> u64 {
        *acc
    }
    fn merge(&self, a: u64, b: u64) -> u64 {
        a + b
    }
}

#[test]
fn aggregate_and_aggregate_with_window_function() {
    let env = env1();
    let input = [('a', 1), ('a', 2), ('b', 3), ('a', 11)];
    let stream = timestamped(&env, &input, 0).key_by(|(k, _)| *k);
    let plain = stream.window(TumblingEventTimeWindows::of(ms(10))).aggregate(Count).collect();
    let with_window = stream
        .window(TumblingEventTimeWindows::of(ms(10)))
        .aggregate_with(Count, |key: &char, w: &TimeWindow, counts: &[u64], out: &mut Collector<'_, String>| {
            out.collect(format!("{key}@{}={}", w.end, counts[0]))
        })
        .collect();
    env.execute("aggregate").unwrap();
    assert_eq!(sorted(plain.values()), vec![1, 1, 2]);
    assert_eq!(sorted(with_window.values()), vec!["a@10=2", "a@20=1", "b@10=1"]);
}

#[test]
fn processing_time_windows_fire_at_end_of_bounded_input() {
    for p in [1, 2] {
        let mut env = StreamEnv::new(Configuration::new());
        env.set_parallelism(p);
        let words: Vec<String> = (0..10_000).map(|i| format!("w{}", i % 7)).collect();
        let out = env
            .from_collection(words)
            .map(|w| (w, 1u64))
            .key_by(|(w, _)| w.clone())
            .window(TumblingProcessingTimeWindows::of(Duration::from_secs(3600)))
            .reduce(|a, b| (a.0, a.1 + b.1))
            .collect();
        env.execute("processing time").unwrap();
        let mut totals: BTreeMap<String, u64> = BTreeMap::new();
        for (w, c) in out.values() {
            *totals.entry(w).or_default() += c;
        }
        let expected: BTreeMap<String, u64> =
            (0..7).map(|i| (format!("w{i}"), if i < 10_000 % 7 { 10_000 / 7 + 1 } else { 10_000 / 7 })).collect();
        assert_eq!(totals, expected, "parallelism {p}");
    }
}

/// Emits `items` (with timestamps), then stays open and idle until `stop` is set.
struct OpenSource {
    items: Vec<(i64, Timestamp)>,
    stop: Arc<AtomicBool>,
}

impl SourceFunction<i64> for OpenSource {
    fn poll(
        &mut self,
        out: &mut SourceOutput<'_, i64>,
    ) -> Result<SourceStatus, Box<dyn std::error::Error + Send + Sync>> {
        if let Some((v, t)) = self.items.pop() {
            out.collect_with_timestamp(v, t);
            return Ok(SourceStatus::More);
        }
        if self.stop.load(Ordering::Relaxed) {
            return Ok(SourceStatus::Finished);
        }
        std::thread::sleep(ms(5));
        Ok(SourceStatus::Idle)
    }
}

#[test]
fn an_idle_input_does_not_hold_back_the_watermark() {
    let env = env1();
    let stop = Arc::new(AtomicBool::new(false));
    let strategy = || WatermarkStrategy::for_monotonous_timestamps().with_emission(WatermarkEmission::PerRecord);
    let (s1, s2) = (stop.clone(), stop.clone());
    let busy = env
        .add_non_parallel_source("busy", move |_| OpenSource { items: vec![(2, 25), (1, 5)], stop: s1.clone() })
        .assign_timestamps_and_watermarks(strategy());
    let quiet = env
        .add_non_parallel_source("quiet", move |_| OpenSource { items: vec![], stop: s2.clone() })
        .assign_timestamps_and_watermarks(strategy().with_idleness(ms(50)));
    let out = busy
        .union(&[&quiet])
        .key_by(|_| 0u8)
        .window(TumblingEventTimeWindows::of(ms(10)))
        .reduce(|a, b| a + b)
        .collect();
    let observer = {
        let out = out.clone();
        std::thread::spawn(move || {
            // Wait (bounded) for the first window to fire while both sources are still open.
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while out.values().is_empty() && std::time::Instant::now() < deadline {
                std::thread::sleep(ms(10));
            }
            let seen = out.values();
            stop.store(true, Ordering::Relaxed);
            seen
        })
    };
    env.execute("idleness").unwrap();
    let fired_while_open = observer.join().unwrap();
    assert_eq!(fired_while_open, vec![1], "window [0,10) fired because the quiet input went idle");
    assert_eq!(out.values(), vec![1, 2]);
}
