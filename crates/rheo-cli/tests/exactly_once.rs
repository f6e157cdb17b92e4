//! Exactly-once, proven by killing: `rheo run word-count --event-time --output URL` is killed
//! with SIGKILL at random moments and the same command is run again until it finishes; the
//! committed output must equal a failure-free run record for record (nothing lost, nothing
//! twice), on the local file system and on S3 (SeaweedFS from `scripts/services/s3.sh`).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rheo::runtime::checkpoint::{CheckpointStorage, io_runtime};

const LINES: usize = 400_000;

/// `ts<TAB>text` lines over ~10 s of event time, 4 words each from 60.
fn write_input(path: &Path) {
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(7);
    let mut text = String::with_capacity(LINES * 24);
    for i in 0..LINES {
        text.push_str(&(i / 40).to_string());
        text.push('\t');
        for k in 0..4 {
            if k > 0 {
                text.push(' ');
            }
            text.push_str(&format!("w{}", rng.random_range(0..60)));
        }
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

/// (window end, word) → count, from every committed part file; fails on a duplicate line.
fn committed(url: &str) -> BTreeMap<(String, String), u64> {
    let storage = CheckpointStorage::from_url(url).unwrap();
    let mut counts = BTreeMap::new();
    for file in io_runtime().block_on(storage.list_files("")).unwrap() {
        let text = String::from_utf8(io_runtime().block_on(storage.get(&file)).unwrap()).unwrap();
        for line in text.lines() {
            let fields: Vec<&str> = line.split(',').collect();
            assert_eq!(fields.len(), 3, "CSV line '{line}' in {file}");
            let key = (fields[0].to_string(), fields[1].to_string());
            let previous = counts.insert(key.clone(), fields[2].parse().unwrap());
            assert!(previous.is_none(), "{key:?} committed twice (again in {file})");
        }
    }
    counts
}

/// Runs the job until it exits; kills it after `kill_after` if it is still running then.
/// Returns whether it finished by itself, and its stderr.
fn run_once(cwd: &Path, args: &[String], kill_after: Option<Duration>) -> (bool, String) {
    let log = cwd.join(format!("run-{}.log", rheo::runtime::task::now_ms()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_rheo"))
        .current_dir(cwd)
        .args(args)
        .env("RHEO_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let finished = match kill_after {
        None => child.wait().unwrap().success(),
        Some(after) => {
            let deadline = Instant::now() + after;
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    break status.success();
                }
                if Instant::now() >= deadline {
                    child.kill().unwrap(); // SIGKILL
                    child.wait().unwrap();
                    break false;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    };
    (finished, std::fs::read_to_string(log).unwrap_or_default())
}

fn job_args(input: &Path, output: &str, checkpoints: &str) -> Vec<String> {
    [
        "run",
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
        "execution.checkpointing.interval=100ms",
        "-D",
        &format!("state.checkpoints.dir={checkpoints}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A failure-free run, then a killed-and-rerun one, on storage under `root`.
fn killed_runs_commit_exactly_the_failure_free_output(root: &str, dir: &Path) {
    let input = dir.join("input.tsv");
    write_input(&input);
    // Reference: one run without failures.
    let started = Instant::now();
    let reference_out = format!("{root}/reference-out");
    let (ok, log) = run_once(dir, &job_args(&input, &reference_out, &format!("{root}/reference-chk")), None);
    assert!(ok, "failure-free run failed:\n{log}");
    let duration = started.elapsed();
    let reference = committed(&reference_out);
    let words: u64 = reference.values().sum();
    assert_eq!(words, 4 * LINES as u64, "every word counted once in the failure-free run");

    // Killed at random moments, then the same command again, until it finishes.
    let seed: u64 = std::env::var("RHEO_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rheo::runtime::task::now_ms() as u64);
    eprintln!("kill schedule seed {seed}, failure-free run {duration:?}");
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
    let (output, checkpoints) = (format!("{root}/out"), format!("{root}/chk"));
    let args = job_args(&input, &output, &checkpoints);
    let (mut kills, mut resumed) = (0, 0);
    loop {
        let kill_after = (kills < 6).then(|| duration.mul_f64(rng.random_range(0.05..0.5)));
        let (finished, log) = run_once(dir, &args, kill_after);
        if log.contains("resuming from checkpoint") {
            resumed += 1;
        }
        if finished {
            break;
        }
        assert!(kill_after.is_some(), "a run without a kill failed:\n{log}");
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
    killed_runs_commit_exactly_the_failure_free_output(&root, dir.path());
}

#[test]
fn sigkill_at_random_moments_on_s3() {
    let root = match std::env::var("RHEO_TEST_S3") {
        Ok(root) => root,
        Err(_) if std::env::var_os("CI").is_some() => panic!("RHEO_TEST_S3 is not set: start scripts/services/s3.sh"),
        Err(_) => return eprintln!("RHEO_TEST_S3 not set: skipping (run scripts/services/s3.sh start)"),
    };
    let dir = tempfile::tempdir().unwrap();
    let root = format!("{root}/exactly-once-{}-{}", std::process::id(), rheo::runtime::task::now_ms());
    killed_runs_commit_exactly_the_failure_free_output(&root, dir.path());
}
