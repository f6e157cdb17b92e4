//! Savepoints through the job handle (what the REST API uses): a savepoint while running,
//! stop-with-savepoint, and resuming from it with exactly the output of an uninterrupted run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rheo::prelude::*;
use rheo::runtime::checkpoint::{CheckpointStorage, discover, io_runtime};
use rheo::runtime::driver::handle::{JobHandle, JobState, SavepointStatus};
use rheo::runtime::driver::minicluster::MiniCluster;

const LINES: u64 = 3_000;

fn input() -> Vec<(String, Timestamp)> {
    (0..LINES).map(|i| (format!("w{} w{}", i % 17, i % 5), i as i64)).collect()
}

fn expected() -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for (line, _) in input() {
        for w in line.split_whitespace() {
            *counts.entry(w.to_string()).or_default() += 1;
        }
    }
    counts
}

/// Word totals at the end of input, into exactly-once files; slow enough to act on mid-run.
fn job(output: &str) -> StreamEnv {
    let mut env = StreamEnv::new(Configuration::new());
    env.set_parallelism(2);
    let emitted = Arc::new(AtomicU64::new(0));
    env.from_timestamped(input())
        .assign_timestamps_and_watermarks(WatermarkStrategy::for_monotonous_timestamps())
        .set_parallelism(1)
        // Throttled next to the source, so no queue builds up in front of the barriers.
        .map(move |line: String| {
            if emitted.fetch_add(1, Ordering::Relaxed) < LINES {
                std::thread::sleep(Duration::from_millis(1));
            }
            line
        })
        .set_parallelism(1)
        .flat_map(|line: String, out: &mut Collector<'_, (String, u64)>| {
            line.split_whitespace().for_each(|w| out.collect((w.to_string(), 1)))
        })
        .key_by(|(w, _)| w.clone())
        .window(TumblingEventTimeWindows::of(Duration::from_secs(3600)))
        .reduce(|a, b| (a.0, a.1 + b.1))
        .sink_to_files(output, |(w, c): &(String, u64), csv: &mut String| csv.push_str(&format!("{w},{c}\n")))
        .unwrap();
    env
}

fn config(dir: &std::path::Path) -> Configuration {
    let mut config = Configuration::new();
    config.set("execution.checkpointing.interval", "100 ms");
    config.set("state.checkpoints.dir", dir.join("chk").to_str().unwrap());
    config.set("state.savepoints.dir", dir.join("savepoints").to_str().unwrap());
    config
}

fn committed(dir: &std::path::Path) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.file_name().unwrap().to_string_lossy().starts_with("part-") {
            continue; // _rheo_owner
        }
        for line in std::fs::read_to_string(path).unwrap().lines() {
            let (w, c) = line.split_once(',').unwrap();
            assert!(counts.insert(w.to_string(), c.parse().unwrap()).is_none(), "{w} committed twice");
        }
    }
    counts
}

/// Waits (bounded) until `f` gives a value.
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = f() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn savepoint(handle: &JobHandle, stop: bool) -> String {
    let trigger = wait_for("the job to run", || {
        (handle.status().state == JobState::Running).then(|| handle.trigger_savepoint(None, stop)).and_then(Result::ok)
    });
    wait_for("the savepoint", || match handle.savepoint_status(&trigger) {
        Some(SavepointStatus::Completed { location }) => Some(location),
        Some(SavepointStatus::Failed { cause }) => panic!("savepoint failed: {cause}"),
        _ => None,
    })
}

#[test]
fn savepoint_while_running_then_stop_with_savepoint_then_resume_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out");
    let cluster = MiniCluster::new(config(dir.path())).with_job_id("00112233445566778899aabbccddeeff");
    let handle = cluster.handle();
    let env = job(output.to_str().unwrap());
    let controller = std::thread::spawn(move || {
        let running = savepoint(&handle, false);
        let stopped = savepoint(&handle, true);
        (running, stopped, handle)
    });
    let result = env.execute_on(&cluster, "savepoints").unwrap();
    let (running, stopped, handle) = controller.join().unwrap();
    assert!(result.records_in < LINES, "the job stopped early ({} of {LINES} lines)", result.records_in);
    assert_eq!(handle.status().state, JobState::Finished);
    assert!(handle.status().last_savepoint.is_some());
    for location in [&running, &stopped] {
        let name = location.rsplit('/').next().unwrap();
        assert!(name.starts_with("savepoint-001122-") && name.len() == "savepoint-001122-".len() + 12, "{name}");
        let dir = CheckpointStorage::from_url(location).unwrap();
        assert!(io_runtime().block_on(discover::load(&dir)).unwrap().is_some(), "{location} holds a savepoint");
    }

    // Resume from the stop savepoint (moved elsewhere: savepoints are self-contained).
    let moved = dir.path().join("moved-savepoint");
    std::fs::rename(stopped.strip_prefix("file://").unwrap(), &moved).unwrap();
    let mut config = config(dir.path());
    config.set("execution.savepoint.path", moved.to_str().unwrap());
    let cluster = MiniCluster::new(config).with_job_id("00112233445566778899aabbccddeeff");
    let resumed = job(output.to_str().unwrap()).execute_on(&cluster, "savepoints").unwrap();
    assert!(resumed.restored_from.is_some(), "restored from the savepoint");
    assert_eq!(result.records_in + resumed.records_in, LINES, "every line read once over both runs");
    assert_eq!(committed(&output), expected());
}

/// What the Kubernetes operator does at every upgrade, resume and rollback: the job is
/// stopped with a savepoint and deployed again under a new job id, restoring it. The new job
/// continues the old one's output (the sink's location names the old job as its owner), and
/// the committed output equals one failure-free run.
#[test]
fn a_new_job_id_restoring_the_savepoint_continues_the_output_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out");
    let cluster = MiniCluster::new(config(dir.path())).with_job_id("00112233445566778899aabbccddeeff");
    let handle = cluster.handle();
    let controller = std::thread::spawn(move || savepoint(&handle, true));
    let first = job(output.to_str().unwrap()).execute_on(&cluster, "savepoints").unwrap();
    let stopped = controller.join().unwrap();
    assert!(first.records_in < LINES, "the job stopped early ({} of {LINES} lines)", first.records_in);

    let mut from_savepoint = config(dir.path());
    from_savepoint.set("execution.savepoint.path", &stopped);
    let cluster = MiniCluster::new(from_savepoint).with_job_id("00112233445566778899aabbccdd0001");
    let resumed = job(output.to_str().unwrap()).execute_on(&cluster, "savepoints").unwrap();
    assert!(resumed.restored_from.is_some(), "restored from the savepoint");
    assert_eq!(first.records_in + resumed.records_in, LINES, "every line read once over both runs");
    assert_eq!(committed(&output), expected());

    // A job of another lineage (from nothing, under a third id) is still refused.
    let cluster = MiniCluster::new(config(dir.path())).with_job_id("00112233445566778899aabbccdd0002");
    let error = job(output.to_str().unwrap()).execute_on(&cluster, "savepoints").unwrap_err().to_string();
    assert!(error.contains("00112233445566778899aabbccdd0001") && error.contains("fs.overwrite-files"), "{error}");
}
