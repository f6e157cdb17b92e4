//! Checkpoints and recovery through the API: failures injected inside an operator, corrupt
//! checkpoints, and restoring at another parallelism. Every test compares the committed output,
//! record for record, with a failure-free run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rheo::prelude::*;
use rheo::runtime::checkpoint::{CheckpointStorage, discover, io_runtime};
use rheo::runtime::driver::minicluster::MiniCluster;

const WORDS: u64 = 40;
const LINES: u64 = 6_000;

/// Line i has timestamp i ms and three words.
fn input() -> Vec<(String, Timestamp)> {
    (0..LINES).map(|i| (format!("w{} w{} w{}", i % WORDS, (i * 7) % WORDS, (i * 13) % 11), i as i64)).collect()
}

/// The expected (window end, word) → count over the whole input, computed directly.
fn expected() -> BTreeMap<(i64, String), u64> {
    let mut counts = BTreeMap::new();
    for (line, ts) in input() {
        let end = (ts / 1000 + 1) * 1000;
        for word in line.split_whitespace() {
            *counts.entry((end, word.to_string())).or_default() += 1;
        }
    }
    counts
}

/// Event-time word count per 1 s window into exactly-once part files. `fail_at`: the map
/// panics once, at the first record from this many on (counting every attempt) after a
/// checkpoint under `checkpoints` completed.
fn build(env: &StreamEnv, output: &str, fail_at: Option<Arc<AtomicU64>>, checkpoints: Option<PathBuf>, slow: bool) {
    let seen = Arc::new(AtomicU64::new(0));
    let emitted = Arc::new(AtomicU64::new(0));
    env.from_timestamped(input())
        .assign_timestamps_and_watermarks(WatermarkStrategy::for_monotonous_timestamps())
        .set_parallelism(1)
        .map(move |line: String| {
            // Throttle next to the source, so several checkpoints complete during the run
            // without queues building up in front of the barriers.
            if slow && emitted.fetch_add(1, Ordering::Relaxed).is_multiple_of(20) {
                std::thread::sleep(Duration::from_millis(1));
            }
            line
        })
        .set_parallelism(1)
        .map(move |line: String| {
            fail_once(&seen, &fail_at, checkpoints.as_deref());
            line
        })
        .flat_map(|line: String, out: &mut Collector<'_, (String, u64)>| {
            line.split_whitespace().for_each(|w| out.collect((w.to_string(), 1)))
        })
        .key_by(|(w, _)| w.clone())
        .window(TumblingEventTimeWindows::of(Duration::from_secs(1)))
        .process(|w: &String, win: &TimeWindow, xs: &[(String, u64)], out: &mut Collector<'_, String>| {
            out.collect(format!("{},{},{}\n", win.end, w, xs.len()))
        })
        .sink_to_files(output, |line: &String, buf: &mut String| buf.push_str(line))
        .unwrap();
}

/// Counts a record in `seen`; panics once at the first count from `fail_at` on (over all
/// attempts) by which a checkpoint under `checkpoints` has completed, so that the failure
/// always has a checkpoint to restart from however slowly the machine runs. Returns the count.
fn fail_once(seen: &AtomicU64, fail_at: &Option<Arc<AtomicU64>>, checkpoints: Option<&Path>) -> u64 {
    let n = seen.fetch_add(1, Ordering::Relaxed) + 1;
    if let Some(fail_at) = fail_at
        && (1..=n).contains(&fail_at.load(Ordering::Relaxed))
        && checkpoints.is_none_or(has_completed_checkpoint)
    {
        fail_at.store(0, Ordering::Relaxed);
        panic!("injected failure at record {n}");
    }
    n
}

/// Whether a `_metadata` file (a completed checkpoint) exists anywhere under `dir`.
fn has_completed_checkpoint(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    entries.flatten().any(|entry| {
        let path = entry.path();
        if path.is_dir() { has_completed_checkpoint(&path) } else { path.file_name().is_some_and(|n| n == "_metadata") }
    })
}

fn config(checkpoints: &Path, extra: &[(&str, &str)]) -> Configuration {
    let mut config = Configuration::new();
    config.set("execution.checkpointing.interval", "40 ms");
    config.set("state.checkpoints.dir", checkpoints.to_str().unwrap());
    config.set("state.checkpoints.num-retained", "3");
    config.set("restart-strategy.type", "fixed-delay");
    config.set("restart-strategy.fixed-delay.attempts", "3");
    config.set("restart-strategy.fixed-delay.delay", "0 ms");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    config
}

fn run(
    config: Configuration,
    parallelism: usize,
    output: &str,
    fail_at: Option<Arc<AtomicU64>>,
) -> Result<JobResult, JobError> {
    let mut env = StreamEnv::new(Configuration::new());
    env.set_parallelism(parallelism);
    // Waiting for a checkpoint works on local directories; object stores fail at the count.
    let checkpoints = config.raw("state.checkpoints.dir").filter(|d| !d.contains("://")).map(PathBuf::from);
    build(&env, output, fail_at, checkpoints, true);
    let graph = std::mem::take(&mut *env_graph(&env));
    MiniCluster::new(config).with_job_id("0123456789abcdef0123456789abcdef").run(
        "checkpointed word count",
        graph,
        &env.plan_settings().unwrap(),
    )
}

fn env_graph(env: &StreamEnv) -> std::cell::RefMut<'_, rheo::runtime::graph::JobGraph> {
    env.graph()
}

/// Every committed output line, counted: (window end, word) → count, and duplicates detected.
fn committed(output: &Path) -> BTreeMap<(i64, String), u64> {
    committed_at(output.to_str().unwrap())
}

/// The same for any storage URL.
fn committed_at(url: &str) -> BTreeMap<(i64, String), u64> {
    let storage = CheckpointStorage::from_url(url).unwrap();
    let mut counts = BTreeMap::new();
    for path in io_runtime().block_on(storage.list_files("")).unwrap() {
        if !path.starts_with("part-") {
            continue; // _rheo_owner
        }
        let text = String::from_utf8(io_runtime().block_on(storage.get(&path)).unwrap()).unwrap();
        for line in text.lines() {
            let mut parts = line.split(',');
            let end: i64 = parts.next().unwrap().parse().unwrap();
            let word = parts.next().unwrap().to_string();
            let count: u64 = parts.next().unwrap().parse().unwrap();
            let previous = counts.insert((end, word.clone()), count);
            assert!(previous.is_none(), "({end}, {word}) committed twice ({path})");
        }
    }
    counts
}

#[test]
fn a_failure_inside_an_operator_restarts_from_the_checkpoint_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out");
    let fail_at = Arc::new(AtomicU64::new(LINES * 2 / 3));
    let result = run(config(&dir.path().join("chk"), &[]), 2, output.to_str().unwrap(), Some(fail_at.clone())).unwrap();
    assert_eq!(fail_at.load(Ordering::Relaxed), 0, "the failure was injected");
    assert_eq!(result.restarts, 1);
    assert!(result.checkpoints.completed >= 2, "checkpoints completed: {:?}", result.checkpoints);
    assert_eq!(committed(&output), expected());
}

#[test]
fn a_corrupt_checkpoint_is_skipped_for_the_one_before() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out");
    // No restarts: the job stops after the failure, leaving its checkpoints behind.
    let config = config(&dir.path().join("chk"), &[("restart-strategy.type", "none")]);
    let fail_at = Arc::new(AtomicU64::new(LINES * 2 / 3));
    assert!(run(config.clone(), 2, output.to_str().unwrap(), Some(fail_at)).is_err());
    let job = CheckpointStorage::from_url(dir.path().join("chk").to_str().unwrap())
        .unwrap()
        .child("0123456789abcdef0123456789abcdef");
    let mut ids = io_runtime().block_on(discover::checkpoint_ids(&job)).unwrap();
    // Complete ones: a failed checkpoint leaves nothing behind, but this one must not race it.
    ids.retain(|id| dir.path().join(format!("chk/0123456789abcdef0123456789abcdef/chk-{id}/_metadata")).exists());
    assert!(ids.len() >= 2, "checkpoints: {ids:?}");
    // Flip a byte in the newest checkpoint's first state file.
    let newest = dir.path().join("chk/0123456789abcdef0123456789abcdef").join(format!("chk-{}", ids[0]));
    let state = std::fs::read_dir(&newest)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "state"))
        .unwrap();
    let mut bytes = std::fs::read(&state).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&state, bytes).unwrap();
    let found = io_runtime().block_on(discover::latest(&job)).unwrap().unwrap();
    assert_eq!(found.metadata.checkpoint_id, ids[1], "the corrupt checkpoint {} is skipped", ids[0]);
    // Resuming from the older checkpoint still gives exact output.
    run(config, 2, output.to_str().unwrap(), None).unwrap();
    assert_eq!(committed(&output), expected());
}

#[test]
fn state_checkpointed_at_parallelism_2_restores_at_1_and_4() {
    for restore_parallelism in [1, 4] {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("out");
        let config = config(&dir.path().join("chk"), &[("restart-strategy.type", "none")]);
        let fail_at = Arc::new(AtomicU64::new(LINES / 2));
        assert!(run(config.clone(), 2, output.to_str().unwrap(), Some(fail_at)).is_err());
        let result = run(config, restore_parallelism, output.to_str().unwrap(), None).unwrap();
        assert!(result.restored_from.is_some(), "restored at parallelism {restore_parallelism}");
        assert_eq!(committed(&output), expected(), "restored at parallelism {restore_parallelism}");
    }
}

#[test]
fn a_finished_job_starts_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(&dir.path().join("chk"), &[]);
    let first = run(config.clone(), 1, dir.path().join("a").to_str().unwrap(), None).unwrap();
    assert_eq!(first.restored_from, None);
    let second = run(config, 1, dir.path().join("b").to_str().unwrap(), None).unwrap();
    assert_eq!(second.restored_from, None, "the finished job did not resume");
    assert_eq!(committed(&dir.path().join("b")), expected());
}

#[test]
fn exactly_once_with_checkpoints_and_output_on_s3() {
    let Some(root) = super::common::s3_root() else { return };
    let run_id = format!("{}-{}", std::process::id(), rheo::runtime::task::now_ms());
    let checkpoints = format!("{root}/{run_id}/checkpoints");
    let output = format!("{root}/{run_id}/out");
    let mut config = config(Path::new("unused"), &[]);
    config.set("state.checkpoints.dir", checkpoints.as_str());
    let fail_at = Arc::new(AtomicU64::new(LINES / 2));
    let result = run(config.clone(), 2, &output, Some(fail_at)).unwrap();
    assert_eq!(result.restarts, 1);
    assert!(result.checkpoints.completed >= 2, "{:?}", result.checkpoints);
    assert_eq!(committed_at(&output), expected());
    // The checkpoint layout is Flink's: <dir>/<job-id>/chk-<n>/_metadata.
    let job = CheckpointStorage::from_url(&checkpoints).unwrap().child("0123456789abcdef0123456789abcdef");
    let ids = io_runtime().block_on(discover::checkpoint_ids(&job)).unwrap();
    assert!(!ids.is_empty());
    let metadata = io_runtime().block_on(job.child(&format!("chk-{}", ids[0])).get("_metadata")).unwrap();
    assert!(String::from_utf8(metadata).unwrap().contains("\"is_final\": true"));
}

/// Counts words of a parallel source into exactly-once files: (word, total) pairs at the end.
fn count_words(lines: DataStream<String>, output: &str, fail_at: Option<Arc<AtomicU64>>, checkpoints: PathBuf) {
    let seen = Arc::new(AtomicU64::new(0));
    lines
        .map(move |line: String| {
            if fail_once(&seen, &fail_at, Some(&checkpoints)).is_multiple_of(20) {
                std::thread::sleep(Duration::from_millis(1));
            }
            line
        })
        .flat_map(|line: String, out: &mut Collector<'_, (String, u64)>| {
            line.split_whitespace().for_each(|w| out.collect((w.to_string(), 1)))
        })
        .key_by(|(w, _)| w.clone())
        .window(TumblingEventTimeWindows::of(Duration::from_secs(3600)))
        .reduce(|a, b| (a.0, a.1 + b.1))
        .sink_to_files(output, |(w, c): &(String, u64), buf: &mut String| buf.push_str(&format!("0,{w},{c}\n")))
        .unwrap();
}

fn totals() -> BTreeMap<(i64, String), u64> {
    let mut counts = BTreeMap::new();
    for (line, _) in input() {
        for word in line.split_whitespace() {
            *counts.entry((0, word.to_string())).or_default() += 1;
        }
    }
    counts
}

#[test]
fn parallel_sources_resume_exactly_at_another_parallelism() {
    use rheo::connectors::datagen::DatagenConfig;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("input.txt");
    std::fs::write(&file, input().into_iter().map(|(l, _)| l + "\n").collect::<String>()).unwrap();
    let lines: Arc<Vec<String>> = Arc::new(input().into_iter().map(|(l, _)| l).collect());
    for source in ["file", "datagen"] {
        let (out_dir, chk_dir) = (dir.path().join(format!("out-{source}")), dir.path().join(format!("chk-{source}")));
        let config = config(&chk_dir, &[("restart-strategy.type", "none")]);
        let mut attempts = vec![(2, Some(Arc::new(AtomicU64::new(LINES / 2)))), (3, None)];
        for (parallelism, fail_at) in attempts.drain(..) {
            let mut env = StreamEnv::new(Configuration::new());
            env.set_parallelism(parallelism);
            let stream = if source == "file" {
                env.read_text_file(&file)
            } else {
                let lines = lines.clone();
                env.datagen(
                    DatagenConfig { count: Some(LINES), rate: None },
                    Arc::new(move |i| lines[i as usize].clone()),
                )
            };
            // Event time from nowhere: the hour-long window fires at the end of input.
            let stream = stream.assign_timestamps_and_watermarks(
                WatermarkStrategy::for_monotonous_timestamps().with_timestamp_assigner(|_, _| 0),
            );
            count_words(stream, out_dir.to_str().unwrap(), fail_at.clone(), chk_dir.clone());
            let graph = std::mem::take(&mut *env.graph());
            let result = MiniCluster::new(config.clone()).with_job_id("fedcba9876543210fedcba9876543210").run(
                "rescaled source",
                graph,
                &env.plan_settings().unwrap(),
            );
            match fail_at {
                Some(_) => assert!(result.is_err(), "{source}: the first run fails"),
                None => assert!(result.unwrap().restored_from.is_some(), "{source}: the second run resumes"),
            }
        }
        assert_eq!(committed(&out_dir), totals(), "{source} source restored from parallelism 2 at 3");
    }
}
