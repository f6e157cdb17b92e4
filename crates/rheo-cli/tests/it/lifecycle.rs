//! Lifecycles as a cluster manager drives them: a TaskManager sent SIGTERM (a pod deleted, a
//! scale-down) leaves gracefully and the job is redeployed without counting a failure; a
//! JobManager sent SIGTERM stops the job's tasks and exits, and one started again resumes; a
//! JobManager started again after its job FINISHED keeps it finished and rewrites nothing.
//! Every check compares the committed output with counts computed here from the input.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rheo_testkit::{Cluster, JobState};

const LINES: usize = 120_000;
/// Lines per second over all sources: the job runs for ~6 s, long enough to kill things.
const RATE: &str = "20000";

/// `ts<TAB>text` lines, 40 per millisecond of event time, 4 words each from 60.
fn write_input(path: &Path) -> BTreeMap<(String, String), u64> {
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
fn committed(dir: &Path) -> BTreeMap<(String, String), u64> {
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

/// A JobManager and its TaskManagers, checkpointing often, restarting quickly.
fn cluster(dir: &Path, extra: &[&str]) -> Cluster {
    Cluster::new(env!("CARGO_BIN_EXE_rheo"), &dir.join("cluster"))
        .unwrap()
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
        .with_timeout(Duration::from_secs(120))
}

fn job_args(input: &Path, output: &Path, parallelism: Option<usize>) -> Vec<String> {
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

/// Waits for the job to finish; its output must then be exactly the expected counts.
fn assert_finishes_exact(cluster: &mut Cluster, job: &str, output: &Path, expected: &BTreeMap<(String, String), u64>) {
    cluster.await_state(job, JobState::Finished).unwrap();
    let got = committed(output);
    let missing = expected.iter().filter(|(k, v)| got.get(*k) != Some(v)).count();
    let extra = got.keys().filter(|k| !expected.contains_key(*k)).count();
    assert!(missing == 0 && extra == 0, "{missing} counts wrong or missing, {extra} unexpected\n{}", cluster.logs());
}

#[test]
fn a_taskmanager_sent_sigterm_leaves_and_the_job_moves_without_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("input.tsv"), dir.path().join("out"));
    let expected = write_input(&input);
    // With restart-strategy none, a leave counted as a failure would end the job FAILED.
    let mut cluster = cluster(dir.path(), &["taskmanager.numberOfTaskSlots=1", "restart-strategy.type=none"]);
    cluster.start_jobmanager(&job_args(&input, &output, Some(2))).unwrap();
    // Two TaskManagers of one slot each: both run a subtask of the job.
    for _ in 0..2 {
        cluster.start_taskmanager().unwrap();
    }
    let job = cluster.await_job().unwrap();
    cluster.await_checkpoints(&job, 2).unwrap();
    cluster.taskmanager(0).terminate().unwrap();
    let status = cluster.taskmanager(0).await_exit(Duration::from_secs(15)).unwrap();
    assert!(status.success(), "a leaving TaskManager exits cleanly: {status}");
    cluster.start_taskmanager().unwrap();
    assert_finishes_exact(&mut cluster, &job, &output, &expected);
    let exceptions = cluster.rest().exceptions(&job).unwrap();
    assert!(exceptions.exception_history.entries.is_empty(), "the leave counted as a failure: {exceptions:?}");
}

#[test]
fn a_jobmanager_sent_sigterm_stops_and_one_started_again_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("input.tsv"), dir.path().join("out"));
    let expected = write_input(&input);
    let mut cluster = cluster(dir.path(), &["taskmanager.numberOfTaskSlots=2"]);
    let args = job_args(&input, &output, Some(2));
    cluster.start_jobmanager(&args).unwrap();
    cluster.start_taskmanager().unwrap();
    let job = cluster.await_job().unwrap();
    cluster.await_checkpoints(&job, 2).unwrap();
    cluster.jobmanager().terminate().unwrap();
    let status = cluster.jobmanager().await_exit(Duration::from_secs(15)).unwrap();
    assert!(status.success(), "a JobManager stopped by SIGTERM exits cleanly: {status}");
    assert!(committed(&output) != expected, "the job had finished before SIGTERM: nothing was tested");
    // Its checkpoints are kept: the JobManager started again resumes the job.
    cluster.start_jobmanager(&args).unwrap();
    assert_finishes_exact(&mut cluster, &job, &output, &expected);
}

#[test]
fn a_jobmanager_started_again_after_its_job_finished_keeps_it_finished() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("input.tsv"), dir.path().join("out"));
    let expected = write_input(&input);
    let mut cluster = cluster(dir.path(), &["taskmanager.numberOfTaskSlots=2"]);
    let args = job_args(&input, &output, Some(2));
    cluster.start_jobmanager(&args).unwrap();
    cluster.start_taskmanager().unwrap();
    let job = cluster.await_job().unwrap();
    assert_finishes_exact(&mut cluster, &job, &output, &expected);
    let parts = |dir: &Path| -> Vec<(PathBuf, std::time::SystemTime)> {
        let mut parts: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("part-"))
            .map(|e| (e.path(), e.metadata().unwrap().modified().unwrap()))
            .collect();
        parts.sort();
        parts
    };
    let before = parts(&output);
    cluster.kill_jobmanager().unwrap();
    cluster.start_jobmanager(&args).unwrap();
    // Were the job run again, it would be FINISHED only after rewriting its parts.
    let again = cluster.await_job().unwrap();
    assert_eq!(again, job);
    cluster.await_state(&job, JobState::Finished).unwrap();
    assert_eq!(parts(&output), before, "committed part files were rewritten\n{}", cluster.logs());
    assert_eq!(committed(&output), expected);
}
