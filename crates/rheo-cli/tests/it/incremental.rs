//! Incremental checkpoints (the default), proven by killing: the final-count word count (a
//! count per word in keyed state, `rheo run word-count --input FILE --output URL`) is killed
//! with SIGKILL after several checkpoints of each run, and run again at another parallelism,
//! until it finishes. Each rerun restores a checkpoint made of a full file and change files
//! (checked on storage before it starts), and the committed counts must equal the counts
//! computed here from the input. At the end, the shared area holds only files the retained
//! checkpoint references.
//!
//! The windowed word count (`--event-time --window`) runs the same kills with its windows on the
//! keyed state backend: each key's open windows change-tracked like any keyed state, in memory
//! and with the disk backend.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rheo::runtime::checkpoint::discover;
use rheo::runtime::checkpoint::metadata::{SHARED_DIR, parse_checkpoint_dir};
use rheo::runtime::checkpoint::{CheckpointStorage, io_runtime};
use rheo_testkit::Cluster;

const LINES: usize = 400_000;
/// Words seen once, in the first lines: most of the state, never changed again.
const COLD_WORDS: usize = 20_000;
/// The lines holding the cold words, as many on each: a run reads them all within a fraction
/// of a checkpoint interval.
const COLD_LINES: usize = 200;
const HOT_WORDS: usize = 100;
const CHECKPOINT_INTERVAL_MS: u64 = 100;
/// Lines per second of a killed run (over all its subtasks): at 200 lines a checkpoint
/// interval, every checkpoint changes the hot words, while the killed runs together would need
/// 200 s to read the input, far longer than all their checkpoints take on a loaded machine.
/// The rate is not part of the job's identity (the runs pass `--job-id`): the last run reads
/// unpaced and drains the input.
const KILLED_RATE: u64 = 2_000;
/// The job id every run passes, so that runs at different rates are the same job.
const JOB_ID: &str = "1ec4e3e47a1c4ec4f0000000000000aa";

/// The job counts per event-time window of this size (the windowed runs): the input's timestamps
/// are its line numbers in milliseconds, so its 400,000 lines make two windows; the first fires
/// while the last run reads.
const WINDOW: &str = "200s";
const WINDOW_MS: u64 = 200_000;

/// How the word count counts: once at the end of the input, or per event-time window.
#[derive(Clone, Copy, PartialEq)]
enum Counting {
    Final,
    Windowed,
}

/// Three hot words on every line, and the cold words on the first lines: after the first
/// checkpoint that covers them, every checkpoint changes about a hundred of the 20,100 keys.
/// Windowed, each line starts with its timestamp, its line number.
fn write_input(path: &Path, counting: Counting) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(16);
    let per_line = COLD_WORDS / COLD_LINES;
    for line in 0..LINES {
        let mut words: Vec<String> = (0..3).map(|_| format!("hot{}", rng.random_range(0..HOT_WORDS))).collect();
        if line < COLD_LINES {
            words.extend((line * per_line..(line + 1) * per_line).map(|n| format!("cold{n}")));
        }
        if counting == Counting::Windowed {
            write!(out, "{line}\t").unwrap();
        }
        writeln!(out, "{}", words.join(" ")).unwrap();
    }
}

/// (window end, word) → count of the input, computed here (the window end is empty for final
/// counts, as in the job's CSV).
fn expected(input: &Path) -> BTreeMap<(String, String), u64> {
    let mut counts = BTreeMap::new();
    for line in std::fs::read_to_string(input).unwrap().lines() {
        let (end, text) = match line.split_once('\t') {
            Some((ts, text)) => (((ts.parse::<u64>().unwrap() / WINDOW_MS + 1) * WINDOW_MS).to_string(), text),
            None => (String::new(), line),
        };
        for word in text.split_whitespace() {
            *counts.entry((end.clone(), word.to_string())).or_default() += 1;
        }
    }
    counts
}

/// (window end, word) → count, from every committed part file; fails on a count committed twice.
fn committed(url: &str) -> BTreeMap<(String, String), u64> {
    let storage = CheckpointStorage::from_url(url).unwrap();
    let mut counts = BTreeMap::new();
    for file in io_runtime().block_on(storage.list_files("")).unwrap() {
        if !file.starts_with("part-") {
            continue;
        }
        let text = String::from_utf8(io_runtime().block_on(storage.get(&file)).unwrap()).unwrap();
        for line in text.lines() {
            let fields: Vec<&str> = line.split(',').collect();
            assert_eq!(fields.len(), 3, "CSV line '{line}' in {file}");
            let previous = counts.insert((fields[0].to_string(), fields[1].to_string()), fields[2].parse().unwrap());
            assert!(previous.is_none(), "{line} committed twice (again in {file})");
        }
    }
    counts
}

fn job_args(input: &Path, output: &str, checkpoints: &str, parallelism: usize, counting: Counting) -> Vec<String> {
    let mut args: Vec<String> = [
        "word-count",
        "--input",
        input.to_str().unwrap(),
        "--output",
        output,
        "-p",
        &parallelism.to_string(),
        "-D",
        &format!("execution.checkpointing.interval={CHECKPOINT_INTERVAL_MS}ms"),
        "-D",
        &format!("state.checkpoints.dir={checkpoints}"),
        "-D",
        "state.checkpoints.num-retained=2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if counting == Counting::Windowed {
        args.extend(["--event-time", "--window", WINDOW].map(String::from));
    }
    args
}

/// The job's directory: the one directory under the checkpoints root.
fn job_dir(checkpoints: &str) -> Option<CheckpointStorage> {
    let root = CheckpointStorage::from_url(checkpoints).unwrap();
    let jobs = io_runtime().block_on(root.list_dirs("")).unwrap();
    assert!(jobs.len() <= 1, "one job: {jobs:?}");
    jobs.first().map(|job| root.child(job))
}

/// The files of the newest complete checkpoint's keyed state (its longest chain).
fn newest_chain(job: &CheckpointStorage) -> Option<(u64, usize)> {
    let found = io_runtime().block_on(discover::latest(job)).unwrap()?;
    let longest = found.metadata.states.iter().map(|s| s.shared.len()).max().unwrap_or(0);
    Some((found.metadata.checkpoint_id, longest))
}

/// Every state file of the shared area, relative to the job's directory. (SeaweedFS also lists
/// an emptied directory `shared/chk-<n>` as an object `chk-<n>` in it: not a state file.)
fn shared_files(job: &CheckpointStorage) -> BTreeSet<String> {
    let mut files = BTreeSet::new();
    for dir in io_runtime().block_on(job.list_dirs(SHARED_DIR)).unwrap() {
        for file in io_runtime().block_on(job.list_files(&format!("{SHARED_DIR}/{dir}"))).unwrap() {
            if file.ends_with(".state") {
                files.insert(format!("{SHARED_DIR}/{dir}/{file}"));
            }
        }
    }
    files
}

/// Shared files referenced by the job's complete checkpoints, and the newest checkpoint id.
fn referenced(job: &CheckpointStorage) -> (BTreeSet<String>, u64) {
    let mut files = BTreeSet::new();
    let mut newest = 0;
    for dir in io_runtime().block_on(job.list_dirs("")).unwrap() {
        let Some(id) = parse_checkpoint_dir(&dir) else { continue };
        if let Some(found) = io_runtime().block_on(discover::load(&job.child(&dir))).unwrap() {
            files.extend(found.metadata.shared_files().map(|f| f.path.clone()));
            newest = newest.max(id);
        }
    }
    (files, newest)
}

#[test]
fn sigkill_and_rescale_restore_incremental_checkpoints_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let root = format!("file://{}", dir.path().display());
    killed_and_rescaled_runs_restore_exactly(&root, dir.path(), &[], Counting::Final);
}

#[test]
fn sigkill_and_rescale_restore_incremental_checkpoints_of_windows_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let root = format!("file://{}", dir.path().display());
    killed_and_rescaled_runs_restore_exactly(&root, dir.path(), &[], Counting::Windowed);
}

/// With the disk state backend: 2,000 keys cached per subtask of the 20,100, so most keys and
/// their timers are on disk when a checkpoint is taken, restored, and fired at the end.
const DISK_BACKEND: [&str; 2] = ["state.backend.type=disk", "state.backend.disk.cached-keys=2000"];

#[test]
fn sigkill_and_rescale_restore_incremental_checkpoints_exactly_with_the_disk_backend() {
    let dir = tempfile::tempdir().unwrap();
    let root = format!("file://{}", dir.path().display());
    killed_and_rescaled_runs_restore_exactly(&root, dir.path(), &DISK_BACKEND, Counting::Final);
}

#[test]
fn sigkill_and_rescale_restore_incremental_checkpoints_of_windows_exactly_with_the_disk_backend() {
    let dir = tempfile::tempdir().unwrap();
    let root = format!("file://{}", dir.path().display());
    killed_and_rescaled_runs_restore_exactly(&root, dir.path(), &DISK_BACKEND, Counting::Windowed);
}

#[test]
fn sigkill_and_rescale_restore_incremental_checkpoints_exactly_on_s3() {
    let Some(root) = super::common::s3_root() else { return };
    let dir = tempfile::tempdir().unwrap();
    let root = format!("{root}/incremental-{}-{}", std::process::id(), rheo::runtime::task::now_ms());
    killed_and_rescaled_runs_restore_exactly(&root, dir.path(), &[], Counting::Final);
}

/// Runs killed and rerun at other parallelisms, checkpoints and output under `root`, with
/// `config` (`key=value`) given to every run.
fn killed_and_rescaled_runs_restore_exactly(root: &str, dir: &Path, config: &[&str], counting: Counting) {
    let input = dir.join("input.txt");
    write_input(&input, counting);
    let reference = expected(&input);
    let windows = if counting == Counting::Windowed { 2 } else { 1 };
    assert_eq!(reference.len(), COLD_WORDS + windows * HOT_WORDS);
    let mut cluster = Cluster::new(env!("CARGO_BIN_EXE_rheo"), dir).unwrap().with_timeout(Duration::from_secs(120));

    // Each killed run is killed at a moment chosen by its progress: once it has completed a
    // random number of checkpoints of its own, plus a random part of an interval. Paced at
    // KILLED_RATE, no killed run can reach the end of the input first; the last run drains it.
    let seed: u64 = std::env::var("RHEO_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rheo::runtime::task::now_ms() as u64);
    eprintln!("kill schedule seed {seed}");
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
    let (output, checkpoints) = (format!("{root}/out"), format!("{root}/chk"));
    let parallelisms = [2, 3, 1, 2, 4, 1, 3];
    let (mut kills, mut from_chains) = (0, 0);
    for (run, &parallelism) in parallelisms.iter().enumerate() {
        if let Some((id, files)) = job_dir(&checkpoints).and_then(|job| newest_chain(&job)) {
            eprintln!("run {run} at parallelism {parallelism} restores checkpoint {id}, {files} files a subtask");
            from_chains += usize::from(files >= 2);
        }
        let mut args = job_args(&input, &output, &checkpoints, parallelism, counting);
        args.extend(config.iter().flat_map(|c| ["-D".to_string(), c.to_string()]));
        args.extend(["--job-id".to_string(), JOB_ID.to_string()]);
        let last = run + 1 == parallelisms.len();
        if last {
            cluster.start_run(&args).unwrap();
            let status = cluster.jobmanager().await_exit(Duration::from_secs(300)).unwrap();
            assert!(status.success(), "the last run failed:\n{}", cluster.jobmanager().log());
            break;
        }
        args.extend(["--rate".to_string(), KILLED_RATE.to_string()]);
        cluster.start_run(&args).unwrap();
        // Several checkpoints of its own, so that it is killed in an incremental chain.
        let wanted = rng.random_range(3..=6);
        if let Err(e) = cluster.await_job().and_then(|job| cluster.await_checkpoints(&job, wanted)) {
            panic!("run {run} did not reach {wanted} checkpoints: {e}\n{}", cluster.jobmanager().log());
        }
        // A random moment within the next interval: during a checkpoint, between two, or while
        // a completed one commits its part files.
        std::thread::sleep(Duration::from_millis(rng.random_range(0..CHECKPOINT_INTERVAL_MS)));
        if let Some(status) = cluster.jobmanager().exit_status() {
            panic!("run {run} ended ({status}) before its kill:\n{}", cluster.jobmanager().log());
        }
        cluster.kill_jobmanager().unwrap();
        kills += 1;
    }
    eprintln!("killed {kills} times; {from_chains} runs restored a chain of incremental files");
    assert!(from_chains >= 3, "only {from_chains} runs restored from incremental chains");
    assert_eq!(committed(&output), reference, "killed {kills} times, seed {seed}");

    // Nothing leaks: every shared file is referenced by a retained checkpoint, or belongs to
    // a checkpoint newer than the last complete one (a killed run's, whose id comes again).
    let job = job_dir(&checkpoints).expect("the job's directory");
    let (referenced, newest) = referenced(&job);
    let leaked: Vec<_> = shared_files(&job)
        .into_iter()
        .filter(|f| !referenced.contains(f))
        .filter(|f| f.split('/').nth(1).and_then(parse_checkpoint_dir).is_some_and(|id| id <= newest))
        .collect();
    assert!(leaked.is_empty(), "shared files no retained checkpoint references: {leaked:?}");
}

/// The same on a cluster of processes, where the TaskManagers upload their state: two
/// TaskManagers are killed in turn once the job has run a chain of checkpoints, and the job is
/// redeployed from them on the survivors and a new TaskManager.
#[test]
fn killed_taskmanagers_restore_incremental_checkpoints_exactly() {
    killed_taskmanagers_restore_exactly(&[]);
}

#[test]
fn killed_taskmanagers_restore_incremental_checkpoints_exactly_with_the_disk_backend() {
    killed_taskmanagers_restore_exactly(&DISK_BACKEND);
}

/// Lines per second of the job whose TaskManagers are killed: it reads for 25 s at least, while
/// the kills come after four checkpoints each (300 ms intervals, [`super::cluster::cluster`]),
/// and a restart rewinds to the newest one. (One job: its pace cannot change, so the whole job
/// runs at it.)
const TASKMANAGER_RATE: &str = "16000";

fn killed_taskmanagers_restore_exactly(config: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let root = format!("file://{}", dir.path().display());
    let input = dir.path().join("input.txt");
    write_input(&input, Counting::Final);
    let (output, checkpoints) = (format!("{root}/out"), format!("{root}/chk"));
    let mut cluster_config = vec!["taskmanager.numberOfTaskSlots=1"];
    cluster_config.extend(config);
    let mut cluster = super::cluster::cluster(dir.path(), &cluster_config);
    let mut args: Vec<String> = ["--job", "word-count", "-p", "2", "--", "--input"].map(String::from).to_vec();
    args.extend([
        input.display().to_string(),
        "--output".into(),
        output.clone(),
        "--rate".into(),
        TASKMANAGER_RATE.into(),
    ]);
    cluster.start_jobmanager(&args).unwrap();
    for _ in 0..3 {
        cluster.start_taskmanager().unwrap();
    }
    let job = cluster.await_job().unwrap();
    let mut from_chains = 0;
    for (round, victim) in [0, 1].into_iter().enumerate() {
        let seen = cluster.rest().checkpoints(&job).map(|s| s.counts.completed).unwrap_or(0);
        cluster.await_checkpoints(&job, seen + 4).unwrap();
        let (id, files) = newest_chain(&job_dir(&checkpoints).unwrap()).expect("a checkpoint");
        eprintln!("round {round}: killing TaskManager {victim}; checkpoint {id} has {files} files a subtask");
        from_chains += usize::from(files >= 2);
        cluster.kill_taskmanager(victim).unwrap();
        cluster.await_taskmanagers(2).unwrap();
        cluster.start_taskmanager().unwrap();
        cluster.await_taskmanagers(3).unwrap();
    }
    cluster.await_state(&job, rheo_testkit::JobState::Finished).unwrap();
    assert!(from_chains >= 1, "no kill came after a chain of incremental checkpoints");
    assert_eq!(committed(&output), expected(&input), "{}", cluster.logs());
}
