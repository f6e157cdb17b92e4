//! The standalone cluster as separate processes on 127.0.0.1: `rheo jobmanager` and
//! `rheo taskmanager`s run the exactly-once event-time word count while processes are killed
//! with SIGKILL; every committed record is checked against counts computed here from the input.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rheo_testkit::{Cluster, JobState};

const LINES: usize = 120_000;
/// Lines per second over all sources: the job reads for 15 s at least, while every test here
/// acts (kills, restarts, a TaskManager joining) after its first two or three checkpoints, at
/// 300 ms intervals: far enough from the end on a loaded machine too. (One job per test: its
/// pace cannot change, so the whole job runs at it.)
const RATE: &str = "8000";

/// `ts<TAB>text` lines, 40 per millisecond of event time, 4 words each from 60.
pub(crate) fn write_input(path: &Path) -> BTreeMap<(String, String), u64> {
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(11);
    let mut text = String::with_capacity(LINES * 24);
    let mut expected = BTreeMap::new();
    for i in 0..LINES {
        let ts = i / 40;
        text.push_str(&format!("{ts}\t"));
        for k in 0..4 {
            let word = format!("w{}", rng.random_range(0..60));
            if k > 0 {
                text.push(' ');
            }
            text.push_str(&word);
            let window_end = (ts / 1000 + 1) * 1000;
            *expected.entry((window_end.to_string(), word)).or_insert(0) += 1;
        }
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
    expected
}

/// Every committed line of the part files under `dir`; fails on a line committed twice.
pub(crate) fn committed(dir: &Path) -> BTreeMap<(String, String), u64> {
    let mut counts = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return counts };
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with('.') || !name.starts_with("part-") {
            continue;
        }
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let fields: Vec<&str> = line.split(',').collect();
            assert_eq!(fields.len(), 3, "CSV line '{line}' in {name}");
            let key = (fields[0].to_string(), fields[1].to_string());
            let previous = counts.insert(key.clone(), fields[2].parse().unwrap());
            assert!(previous.is_none(), "{key:?} committed twice (again in {name})");
        }
    }
    counts
}

/// A cluster whose processes run the `rheo` binary under test, working in `dir`.
pub(crate) fn cluster(dir: &Path, extra: &[&str]) -> Cluster {
    Cluster::new(env!("CARGO_BIN_EXE_rheo"), dir)
        .unwrap()
        .with_timeout(Duration::from_secs(120))
        .with_config(&[
            "execution.checkpointing.interval=300ms",
            &format!("state.checkpoints.dir=file://{}/chk", dir.display()),
            "heartbeat.interval=200ms",
            "heartbeat.timeout=3s",
            "restart-strategy.type=fixed-delay",
            "restart-strategy.fixed-delay.attempts=20",
            "restart-strategy.fixed-delay.delay=100ms",
        ])
        .with_config(extra)
}

pub(crate) fn job_args(input: &Path, output: &Path, parallelism: Option<usize>) -> Vec<String> {
    let mut args: Vec<String> = vec!["--job".into(), "word-count".into()];
    if let Some(p) = parallelism {
        args.extend(["-p".into(), p.to_string()]);
    }
    args.push("--".into());
    for a in ["--event-time", "--window", "1s", "--rate", RATE, "--input"] {
        args.push(a.into());
    }
    args.push(input.display().to_string());
    args.push("--output".into());
    args.push(format!("file://{}", output.display()));
    args
}

/// The output, once the job finished, must be exactly the expected counts.
pub(crate) fn assert_exact(
    cluster: &mut Cluster,
    job: &str,
    output: &Path,
    expected: &BTreeMap<(String, String), u64>,
) {
    cluster.await_state(job, JobState::Finished).unwrap();
    let got = committed(output);
    let missing = expected.iter().filter(|(k, v)| got.get(*k) != Some(v)).count();
    let extra = got.keys().filter(|k| !expected.contains_key(*k)).count();
    assert!(missing == 0 && extra == 0, "{missing} counts wrong or missing, {extra} unexpected\n{}", cluster.logs());
}

#[test]
fn a_killed_taskmanager_is_replaced_and_the_output_stays_exact() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("input.tsv"), dir.path().join("out"));
    let expected = write_input(&input);
    let mut cluster = cluster(dir.path(), &["taskmanager.numberOfTaskSlots=1"]);
    cluster.start_jobmanager(&job_args(&input, &output, Some(3))).unwrap();
    for _ in 0..3 {
        cluster.start_taskmanager().unwrap();
    }
    let job = cluster.await_job().unwrap();
    cluster.await_state(&job, JobState::Running).unwrap();
    cluster.await_checkpoints(&job, 2).unwrap();
    cluster.kill_taskmanager(1).unwrap();
    // The JobManager notices the loss: the TaskManager is no longer listed.
    cluster.await_taskmanagers(2).unwrap();
    cluster.start_taskmanager().unwrap();
    cluster.await_taskmanagers(3).unwrap();
    assert_exact(&mut cluster, &job, &output, &expected);
    // The REST API tells the story: three TaskManagers, the job finished, the loss recorded
    // as the cause of a restart.
    let rest = cluster.rest();
    let overview = rest.call(|c| c.overview()).unwrap();
    assert_eq!(overview.taskmanagers, 3);
    let jobs = rest.call(|c| c.jobs_overview()).unwrap();
    assert_eq!(jobs.jobs[0].state, JobState::Finished, "{jobs:?}");
    let exceptions = rest.exceptions(&job).unwrap();
    assert!(!exceptions.exception_history.entries.is_empty(), "the job never restarted: {exceptions:?}");
    let causes = serde_json::to_string(&exceptions).unwrap();
    assert!(causes.contains("lost"), "no TaskManager loss in {causes}");
    // Every restart came after two checkpoints, so each restored one, and counts once.
    let restarts = exceptions.exception_history.entries.len() as u64;
    let restored = rest.checkpoints(&job).unwrap().counts.restored;
    assert_eq!(restored, restarts, "restores counted: {restored} for {restarts} restarts");
}

#[test]
fn a_restarted_jobmanager_resumes_from_the_newest_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("input.tsv"), dir.path().join("out"));
    let expected = write_input(&input);
    let mut cluster = cluster(dir.path(), &["taskmanager.numberOfTaskSlots=2"]);
    let args = job_args(&input, &output, Some(2));
    cluster.start_jobmanager(&args).unwrap();
    cluster.start_taskmanager().unwrap();
    let job = cluster.await_job().unwrap();
    let before = cluster.await_checkpoints(&job, 3).unwrap();
    cluster.kill_jobmanager().unwrap();
    cluster.start_jobmanager(&args).unwrap();
    // The new JobManager restores the newest checkpoint it finds (no older than the third).
    let newest_before = before.latest.completed.as_ref().map_or(0, |c| c.id);
    let restored = cluster
        .await_until("the new JobManager to restore a checkpoint", |rest| match rest.checkpoints(&job) {
            Ok(stats) => match stats.latest.restored {
                Some(restored) => rheo_testkit::Poll::Ready(restored),
                None => rheo_testkit::Poll::Pending(format!("restored {}", stats.counts.restored)),
            },
            Err(e) => rheo_testkit::Poll::Pending(e.to_string()),
        })
        .unwrap();
    assert!(restored.id >= newest_before, "restored checkpoint {} older than {newest_before}", restored.id);
    assert_exact(&mut cluster, &job, &output, &expected);
}

#[test]
fn reactive_mode_rescales_when_a_taskmanager_joins() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("input.tsv"), dir.path().join("out"));
    let expected = write_input(&input);
    let mut cluster = cluster(dir.path(), &["taskmanager.numberOfTaskSlots=1", "scheduler-mode=reactive"]);
    cluster.start_jobmanager(&job_args(&input, &output, None)).unwrap();
    cluster.start_taskmanager().unwrap();
    cluster.await_taskmanagers(1).unwrap();
    let job = cluster.await_job().unwrap();
    cluster.await_parallelism(&job, 1).unwrap();
    cluster.await_checkpoints(&job, 2).unwrap();
    cluster.start_taskmanager().unwrap();
    cluster.await_taskmanagers(2).unwrap();
    // Rescaled: the job runs again, now on both slots.
    cluster.await_parallelism(&job, 2).unwrap();
    assert_exact(&mut cluster, &job, &output, &expected);
}
