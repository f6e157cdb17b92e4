//! A processing-time window that has fired never comes back: at full speed, across hundreds of
//! window boundaries, every (window, key) result is emitted exactly once and the counts add up.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rheo::connectors::datagen::DatagenConfig;
use rheo::prelude::*;

#[test]
fn a_processing_time_window_job_at_full_speed_emits_each_window_and_key_once() {
    const RECORDS: u64 = 3_000_000;
    const KEYS: u64 = 50;
    let mut env = StreamEnv::new(Configuration::new());
    env.set_parallelism(1);
    let results = env
        .datagen(DatagenConfig { count: Some(RECORDS), rate: None }, Arc::new(|i| i % KEYS))
        .key_by(|k: &u64| *k)
        .window(TumblingProcessingTimeWindows::of(Duration::from_millis(2)))
        .process(|key: &u64, w: &TimeWindow, elements: &[u64], out: &mut Collector<'_, (i64, u64, usize)>| {
            out.collect((w.start, *key, elements.len()))
        })
        .collect();
    env.execute("processing-time windows").unwrap();
    let mut seen: BTreeMap<(i64, u64), usize> = BTreeMap::new();
    let mut twice = Vec::new();
    for (start, key, count) in results.values() {
        if let Some(first) = seen.insert((start, key), count) {
            twice.push((start, key, first, count));
        }
    }
    let windows = seen.keys().map(|(start, _)| start).collect::<std::collections::BTreeSet<_>>().len();
    eprintln!("{} (window, key) results over {windows} windows", seen.len());
    assert!(
        twice.is_empty(),
        "{} (window, key) pairs fired twice, e.g. {:?}",
        twice.len(),
        &twice[..twice.len().min(5)]
    );
    let total: u64 = seen.values().map(|&c| c as u64).sum();
    assert_eq!(total, RECORDS, "every record counted once");
}
