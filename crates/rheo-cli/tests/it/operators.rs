//! Every operator of the DataStream API against hand-computed results.

use std::collections::BTreeMap;
use std::time::Duration;

use rheo::prelude::*;

fn env(parallelism: usize) -> StreamEnv {
    let mut env = StreamEnv::new(Configuration::new());
    env.set_parallelism(parallelism);
    env
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

#[test]
fn map_filter_flat_map_chain() {
    let env = env(1);
    let out = env
        .from_collection(vec!["a b".to_string(), "".to_string(), "c d e".to_string()])
        .flat_map(|line: String, out: &mut Collector<'_, String>| {
            line.split_whitespace().for_each(|w| out.collect(w.into()))
        })
        .map(|w| w.to_uppercase())
        .filter(|w| w != "D")
        .collect();
    env.execute("chain").unwrap();
    assert_eq!(out.values(), vec!["A", "B", "C", "E"]);
}

#[test]
fn rolling_reduce_emits_running_result_per_key() {
    for p in [1, 2, 4] {
        let env = env(p);
        let input = vec![('a', 1), ('b', 10), ('a', 2), ('a', 3), ('b', 20)];
        let out = env.from_collection(input).key_by(|(k, _)| *k).reduce(|x, y| (x.0, x.1 + y.1)).collect();
        env.execute("reduce").unwrap();
        let mut per_key: BTreeMap<char, Vec<i32>> = BTreeMap::new();
        for (k, v) in out.values() {
            per_key.entry(k).or_default().push(v);
        }
        assert_eq!(per_key[&'a'], vec![1, 3, 6], "parallelism {p}");
        assert_eq!(per_key[&'b'], vec![10, 30], "parallelism {p}");
    }
}

/// Average of the values per key.
struct Average;

impl AggregateFunction<(char, i64)> for Average {
    type Acc = (i64, i64);
    type Out = f64;
    fn create_accumulator(&self) -> (i64, i64) {
        (0, 0)
    }
    fn add(&self, value: (char, i64), acc: &mut (i64, i64)) {
        acc.0 += value.1;
        acc.1 += 1;
    }
    fn get_result(&self, acc: &(i64, i64)) -> f64 {
        acc.0 as f64 / acc.1 as f64
    }
    fn merge(&self, a: (i64, i64), b: (i64, i64)) -> (i64, i64) {
        (a.0 + b.0, a.1 + b.1)
    }
}

#[test]
fn rolling_aggregate_per_key() {
    let env = env(2);
    let out = env.from_collection(vec![('x', 2), ('x', 4), ('x', 9)]).key_by(|(k, _)| *k).aggregate(Average).collect();
    env.execute("aggregate").unwrap();
    assert_eq!(out.values(), vec![2.0, 3.0, 5.0]);
}

#[test]
fn union_merges_streams() {
    let env = env(2);
    let a = env.from_collection(vec![1, 2, 3]);
    let b = env.from_collection(vec![10, 20]);
    let c = env.from_collection(vec![100]);
    let out = a.union(&[&b, &c]).map(|x| x * 2).collect();
    env.execute("union").unwrap();
    assert_eq!(sorted(out.values()), vec![2, 4, 6, 20, 40, 200]);
}

#[test]
fn a_stream_consumed_twice_feeds_both_consumers() {
    let env = env(1);
    let numbers = env.from_collection(vec![1, 2, 3]);
    let doubled = numbers.map(|x| x * 2).collect();
    let negated = numbers.map(|x| -x).collect();
    env.execute("fan-out").unwrap();
    assert_eq!(doubled.values(), vec![2, 4, 6]);
    assert_eq!(negated.values(), vec![-1, -2, -3]);
}

#[test]
fn rebalance_spreads_records_and_loses_none() {
    let env = env(3);
    let out = env.from_collection((0..1000).collect::<Vec<i32>>()).rebalance().map(|x| x + 1).collect();
    env.execute("rebalance").unwrap();
    assert_eq!(sorted(out.values()), (1..=1000).collect::<Vec<_>>());
}

/// Counts per key and emits the count when an event-time timer 10 ms after the first record
/// fires; state: a value and a list.
#[derive(Clone)]
struct CountThenEmit {
    count: Option<ValueState<u64>>,
    seen: Option<ListState<i64>>,
}

impl KeyedProcessFunction<String, (String, i64), (String, u64, Vec<i64>)> for CountThenEmit {
    fn open(&mut self, state: &mut KeyedStateBackend<String>) {
        self.count = Some(state.value_state("count"));
        self.seen = Some(state.list_state("seen"));
    }

    fn process_element(&mut self, value: (String, i64), ctx: &mut KeyedContext<'_, String, (String, u64, Vec<i64>)>) {
        let (count, seen) = (self.count.clone().unwrap(), self.seen.clone().unwrap());
        let n = ctx.value(&count).copied().unwrap_or(0);
        if n == 0 {
            ctx.register_event_time_timer(ctx.timestamp() + 10);
        }
        ctx.update(&count, n + 1);
        ctx.add(&seen, value.1);
    }

    fn on_timer(&mut self, _timestamp: Timestamp, ctx: &mut KeyedContext<'_, String, (String, u64, Vec<i64>)>) {
        let (count, seen) = (self.count.clone().unwrap(), self.seen.clone().unwrap());
        let n = ctx.value(&count).copied().unwrap_or(0);
        let list = ctx.list(&seen).to_vec();
        let key = ctx.key().clone();
        ctx.collect((key, n, list));
        ctx.clear(&count);
        ctx.clear_list(&seen);
    }
}

#[test]
fn keyed_process_function_with_state_and_event_time_timers() {
    let env = env(2);
    let input = vec![
        (("a".to_string(), 1), 1),
        (("b".to_string(), 2), 2),
        (("a".to_string(), 5), 5),
        // Watermark passes 11: key a fires (timer at 11) with 2 records; b (timer 12) not yet.
        (("c".to_string(), 30), 30),
        (("b".to_string(), 31), 31),
    ];
    let out = env
        .from_timestamped(input)
        .assign_timestamps_and_watermarks(
            WatermarkStrategy::for_monotonous_timestamps().with_emission(WatermarkEmission::PerRecord),
        )
        // Chained to the one source subtask, so one generator sees every record in order.
        .set_parallelism(1)
        .key_by(|(k, _)| k.clone())
        .process(CountThenEmit { count: None, seen: None })
        .collect();
    env.execute("process").unwrap();
    let got = sorted(out.timestamped());
    assert_eq!(
        got,
        vec![
            (("a".to_string(), 2, vec![1, 5]), 11),
            (("b".to_string(), 1, vec![2]), 12),
            // b's second record came after its timer fired: a new count and timer, fired at end.
            (("b".to_string(), 1, vec![31]), 41),
            (("c".to_string(), 1, vec![30]), 40),
        ]
    );
}

/// Emits each value the first time it is seen for its key, with how often it was seen so far
/// counted in map state.
#[derive(Clone, Default)]
struct FirstSeen {
    counts: Option<MapState<char, u32>>,
}

impl KeyedProcessFunction<char, (char, char), (char, char, usize)> for FirstSeen {
    fn open(&mut self, state: &mut KeyedStateBackend<char>) {
        self.counts = Some(state.map_state("counts"));
    }

    fn process_element(&mut self, (_, value): (char, char), ctx: &mut KeyedContext<'_, char, (char, char, usize)>) {
        let counts = self.counts.clone().unwrap();
        let seen = ctx.map_get(&counts, &value).copied().unwrap_or(0);
        ctx.map_put(&counts, value, seen + 1);
        if seen == 0 {
            let distinct = ctx.map_entries(&counts).len();
            let key = *ctx.key();
            ctx.collect((key, value, distinct));
        }
    }
}

#[test]
fn map_state_per_key() {
    let env = env(2);
    let out = env
        .from_collection(vec![('k', 'x'), ('k', 'y'), ('k', 'x'), ('j', 'x'), ('k', 'z')])
        .key_by(|(k, _)| *k)
        .process(FirstSeen::default())
        .collect();
    env.execute("map state").unwrap();
    assert_eq!(sorted(out.values()), vec![('j', 'x', 1), ('k', 'x', 1), ('k', 'y', 2), ('k', 'z', 3)]);
}

#[test]
fn stateless_process_closure() {
    let env = env(1);
    let out = env
        .from_collection(vec![('a', 1), ('b', 2)])
        .key_by(|(k, _)| *k)
        .process(ProcessFn(|(k, v): (char, i32), ctx: &mut KeyedContext<'_, char, String>| {
            ctx.collect(format!("{k}={v}"))
        }))
        .collect();
    env.execute("closure").unwrap();
    assert_eq!(sorted(out.values()), vec!["a=1", "b=2"]);
}

#[test]
fn a_panicking_user_function_fails_the_job_naming_the_task() {
    let env = env(1);
    env.from_collection(vec![1, 2, 3]).map(|x: i32| if x == 2 { panic!("bad record {x}") } else { x }).collect();
    let err = env.execute("failing").unwrap_err().to_string();
    assert!(err.contains("bad record 2") && err.contains("Map"), "{err}");
}

#[test]
fn an_event_time_window_without_timestamps_fails_with_a_hint() {
    let env = env(1);
    env.from_collection(vec![('a', 1)])
        .key_by(|(k, _)| *k)
        .window(TumblingEventTimeWindows::of(Duration::from_secs(1)))
        .reduce(|a, b| (a.0, a.1 + b.1))
        .collect();
    let err = env.execute("no timestamps").unwrap_err().to_string();
    assert!(err.contains("assign_timestamps_and_watermarks"), "{err}");
}

#[test]
fn parallelism_larger_than_max_parallelism_is_rejected() {
    let mut config = Configuration::new();
    config.set("pipeline.max-parallelism", "2");
    let mut env = StreamEnv::new(config);
    env.set_parallelism(4);
    env.from_collection(vec![1]).map(|x| x).collect();
    let err = env.execute("too wide").unwrap_err().to_string();
    assert!(err.contains("max parallelism 2"), "{err}");
}
