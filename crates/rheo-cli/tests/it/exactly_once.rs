//! Exactly-once, proven by killing: `rheo run word-count --event-time --output URL` is killed
//! with SIGKILL at random moments and the same command is run again until it finishes; the
//! committed output, read back with a CSV parser, must equal the counts computed here from the
//! input record for record (nothing lost, nothing twice), on the local file system and on S3
//! (SeaweedFS from `scripts/services/s3.sh`).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rheo::runtime::checkpoint::{CheckpointStorage, io_runtime};
use rheo_testkit::Cluster;

use super::fencing::{expected, write_input};

const LINES: usize = 400_000;
const CHECKPOINT_INTERVAL_MS: u64 = 100;
/// Lines per second of the killed runs: a run lasts at least 4 s, while a killed run reads for
/// a few checkpoint intervals at most.
const KILLED_RATE: u64 = 100_000;

/// (window end, word) → count, from every committed part file read with a CSV parser; fails on
/// a record committed twice.
fn committed(url: &str) -> BTreeMap<(String, String), u64> {
    let storage = CheckpointStorage::from_url(url).unwrap();
    let mut counts = BTreeMap::new();
    for file in io_runtime().block_on(storage.list_files("")).unwrap() {
        if !file.starts_with("part-") {
            continue; // _rheo_owner
        }
        let bytes = io_runtime().block_on(storage.get(&file)).unwrap();
        let mut reader = csv::ReaderBuilder::new().has_headers(false).from_reader(bytes.as_slice());
        for record in reader.records() {
            let record = record.unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(record.len(), 3, "{file}: {record:?}");
            let key = (record[0].to_string(), record[1].to_string());
            let previous = counts.insert(key.clone(), record[2].parse().unwrap());
            assert!(previous.is_none(), "{key:?} committed twice (again in {file})");
        }
    }
    counts
}

/// When to kill a run: once it has completed `checkpoints` checkpoints of its own, `then` later.
struct KillAt {
    checkpoints: u64,
    then: Duration,
}

/// What one run did.
struct RunOutcome {
    /// It exited 0 by itself (not killed).
    finished: bool,
    /// Its REST API showed a restored checkpoint.
    resumed: bool,
    log: String,
}

/// Runs `rheo run ARGS` in `cluster` until it exits, or kills it (SIGKILL) at `kill`.
fn run_once(cluster: &mut Cluster, args: &[String], kill: Option<KillAt>) -> RunOutcome {
    cluster.start_run(args).unwrap();
    let Some(kill) = kill else {
        let status = cluster.jobmanager().await_exit(Duration::from_secs(300)).unwrap();
        let log = cluster.jobmanager().log();
        return RunOutcome { finished: status.success(), resumed: false, log };
    };
    let observed = cluster.await_job().and_then(|job| cluster.await_checkpoints(&job, kill.checkpoints));
    let outcome = match observed {
        Ok(stats) => {
            // A random moment within the next checkpoint interval: during a checkpoint, between
            // two, or while a completed one commits its part files.
            std::thread::sleep(kill.then);
            let status = cluster.jobmanager().exit_status();
            if status.is_none() {
                cluster.kill_jobmanager().unwrap();
            }
            let finished = status.is_some_and(|s| s.success());
            RunOutcome { finished, resumed: stats.latest.restored.is_some(), log: String::new() }
        }
        // The run ended before the moment came: it must have finished.
        Err(e) => match cluster.jobmanager().await_exit(Duration::from_secs(30)) {
            Ok(status) => RunOutcome { finished: status.success(), resumed: false, log: e.to_string() },
            Err(_) => panic!("{e}"),
        },
    };
    RunOutcome { log: format!("{}{}", outcome.log, cluster.jobmanager().log()), ..outcome }
}

fn job_args(input: &Path, output: &str, checkpoints: &str) -> Vec<String> {
    [
        "word-count",
        "--event-time",
        "--window",
        "1s",
        "--input",
        input.to_str().unwrap(),
        "--output",
        output,
        "-p",
        "2",
        "-D",
        &format!("execution.checkpointing.interval={CHECKPOINT_INTERVAL_MS}ms"),
        "-D",
        &format!("state.checkpoints.dir={checkpoints}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Killed and rerun runs on storage under `root`, against counts computed from the input.
fn killed_runs_commit_exactly_the_counts_of_the_input(root: &str, dir: &Path) {
    let input = dir.join("input.tsv");
    write_input(&input, LINES, 7);
    let reference = expected(&input);
    let words: u64 = reference.values().sum();
    assert_eq!(words, 4 * LINES as u64, "every word of the input counted once");
    let mut cluster = Cluster::new(env!("CARGO_BIN_EXE_rheo"), dir).unwrap().with_timeout(Duration::from_secs(120));

    // Killed at random moments, then the same command again, until it finishes. The moments
    // are chosen by progress (the run's own completed checkpoints, plus up to one interval),
    // not by wall time, so that a slow machine gets the same schedule as a fast one. The source
    // is paced so that six killed runs cannot get through the whole input.
    let seed: u64 = std::env::var("RHEO_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rheo::runtime::task::now_ms() as u64);
    eprintln!("kill schedule seed {seed}");
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
    let (output, checkpoints) = (format!("{root}/out"), format!("{root}/chk"));
    let mut args = job_args(&input, &output, &checkpoints);
    args.extend(["--rate".to_string(), KILLED_RATE.to_string()]);
    let (mut kills, mut resumed) = (0, 0);
    loop {
        let kill = (kills < 6).then(|| KillAt {
            checkpoints: rng.random_range(1..=3),
            then: Duration::from_millis(rng.random_range(0..CHECKPOINT_INTERVAL_MS)),
        });
        let killed = kill.is_some();
        let run = run_once(&mut cluster, &args, kill);
        if run.resumed {
            resumed += 1;
        }
        if run.finished {
            break;
        }
        assert!(killed, "a run without a kill failed:\n{}", run.log);
        kills += 1;
    }
    eprintln!("{root}: killed {kills} times, {resumed} runs resumed from a checkpoint");
    assert!(kills >= 2, "the job was killed {kills} times");
    assert!(resumed >= 1, "no run resumed from a checkpoint ({kills} kills)");
    assert_eq!(committed(&output), reference, "killed {kills} times, resumed {resumed} times, seed {seed}");
}

#[test]
fn sigkill_at_random_moments_on_the_local_file_system() {
    let dir = tempfile::tempdir().unwrap();
    let root = format!("file://{}", dir.path().display());
    killed_runs_commit_exactly_the_counts_of_the_input(&root, dir.path());
}

#[test]
fn sigkill_at_random_moments_on_s3() {
    let Some(root) = super::common::s3_root() else { return };
    let dir = tempfile::tempdir().unwrap();
    let root = format!("{root}/exactly-once-{}-{}", std::process::id(), rheo::runtime::task::now_ms());
    killed_runs_commit_exactly_the_counts_of_the_input(&root, dir.path());
}
