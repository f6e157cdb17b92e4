//! Exactly-once that nothing can fool: lost checkpoints, a path spelled another way, a changed
//! input, another job's output, words CSV must quote, an unwritable output, a full disk, SIGTERM.
//!
//! Every check compares the committed output, read back with a CSV parser, with counts computed
//! here from the input. Runs are `rheo run` processes of [`rheo_testkit`]; they are killed when
//! they have made observable progress (a checkpoint their REST API counts as completed and a
//! committed part file on disk), never after a guessed time, and no wait reads log text.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rheo_testkit::{Cluster, JobState, Poll, skip_or_fail};

const DEADLINE: Duration = Duration::from_secs(120);

/// `ts<TAB>text` lines, 40 per millisecond of event time, 4 words each from 60 (`seed` varies
/// them).
pub(crate) fn write_input(path: &Path, lines: usize, seed: u64) {
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
    let mut text = String::with_capacity(lines * 24);
    for i in 0..lines {
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

/// (window end, word) → count of the event-time word count with 1 s windows, computed here.
pub(crate) fn expected(input: &Path) -> BTreeMap<(String, String), u64> {
    let mut counts = BTreeMap::new();
    for line in std::fs::read_to_string(input).unwrap().lines() {
        let (ts, text) = line.split_once('\t').unwrap();
        let end = (ts.parse::<i64>().unwrap() / 1000 + 1) * 1000;
        for word in text.split_whitespace() {
            *counts.entry((end.to_string(), word.to_string())).or_default() += 1;
        }
    }
    counts
}

/// Every record of every committed part file under `dir`, read with a CSV parser: (first two
/// fields) → third; fails on a record committed twice.
pub(crate) fn committed(dir: &Path) -> BTreeMap<(String, String), u64> {
    let mut counts = BTreeMap::new();
    for file in part_files(dir) {
        let mut reader = csv::ReaderBuilder::new().has_headers(false).from_path(&file).unwrap();
        for record in reader.records() {
            let record = record.unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            assert_eq!(record.len(), 3, "{}: {record:?}", file.display());
            let key = (record[0].to_string(), record[1].to_string());
            let previous = counts.insert(key.clone(), record[2].parse().unwrap());
            assert!(previous.is_none(), "{key:?} committed twice (again in {})", file.display());
        }
    }
    counts
}

fn part_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("part-"))
        .collect();
    files.sort();
    files
}

/// Directories `chk-<n>` holding a `_metadata` anywhere under `root` (the job's directory).
fn completed_checkpoints(root: &Path) -> Vec<PathBuf> {
    let Ok(jobs) = std::fs::read_dir(root) else { return Vec::new() };
    jobs.flatten().flat_map(|job| completed_checkpoints_of(&job.path())).collect()
}

/// ("", word) → count of the word count without windows (its records have no window end).
fn expected_totals(input: &Path) -> BTreeMap<(String, String), u64> {
    let mut counts = BTreeMap::new();
    for line in std::fs::read_to_string(input).unwrap().lines() {
        for word in line.split_whitespace() {
            *counts.entry((String::new(), word.to_string())).or_default() += 1;
        }
    }
    counts
}

/// `rheo run` processes working in `dir` (their logs are `run-<n>.log` there).
fn runs(dir: &Path) -> Cluster {
    Cluster::new(env!("CARGO_BIN_EXE_rheo"), dir).unwrap().with_timeout(DEADLINE)
}

/// Runs `rheo run ARGS` until it exits by itself: whether it succeeded, and its log.
fn run_to_end(runs: &mut Cluster, args: &[String]) -> (bool, String) {
    let run = runs.start_run(args).unwrap();
    let status = run.await_exit(DEADLINE).unwrap();
    (status.success(), run.log())
}

/// Runs `rheo run ARGS` and kills it (SIGKILL) once its REST API counts a completed checkpoint
/// and a part file is committed under `output`. Fails when the run ends first.
fn kill_after_progress(runs: &mut Cluster, args: &[String], output: &Path) {
    runs.start_run(args).unwrap();
    let job = runs.await_job().unwrap();
    runs.await_until("a completed checkpoint and a committed part", |rest| match rest.checkpoints(&job) {
        Ok(stats) if stats.counts.completed >= 1 && !part_files(output).is_empty() => Poll::Ready(()),
        Ok(stats) => {
            Poll::Pending(format!("{} checkpoints, {} parts", stats.counts.completed, part_files(output).len()))
        }
        Err(e) => Poll::Pending(e.to_string()),
    })
    .unwrap();
    runs.kill_jobmanager().unwrap();
}

/// The arguments of `rheo run` (after `run`) of the event-time word count into `output`.
fn args(input: &str, output: &Path, checkpoints: &Path, parallelism: usize, interval: &str) -> Vec<String> {
    let mut args: Vec<String> = ["word-count", "--event-time", "--window", "1s", "--input", input, "--output"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(format!("file://{}", output.display()));
    args.extend(["-p".into(), parallelism.to_string()]);
    args.extend(["-D".into(), format!("execution.checkpointing.interval={interval}")]);
    args.extend(["-D".into(), format!("state.checkpoints.dir=file://{}", checkpoints.display())]);
    // Paced, so that a run lasts long enough to be killed after progress. A job argument: part
    // of the job id, so every run of one job passes the same.
    args.extend(["--rate".into(), "40000".into()]);
    args
}

fn with(mut args: Vec<String>, extra: &[&str]) -> Vec<String> {
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

#[test]
fn the_only_checkpoint_corrupt_fails_until_told_to_start_fresh_then_output_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.tsv");
    write_input(&input, 200_000, 1);
    let (output, chk) = (dir.path().join("out"), dir.path().join("chk"));
    let mut runs = runs(dir.path());
    let first = args(input.to_str().unwrap(), &output, &chk, 2, "100ms");
    kill_after_progress(&mut runs, &first, &output);
    let parts_before = part_files(&output).len();

    // Corrupt every checkpoint there is (state.checkpoints.num-retained is 1: one, or two when
    // the kill came between writing a checkpoint and deleting the one before).
    let checkpoints = completed_checkpoints(&chk);
    assert!(!checkpoints.is_empty(), "the REST API counted a checkpoint, but none is on disk");
    for checkpoint in &checkpoints {
        std::fs::write(checkpoint.join("_metadata"), b"{ not json").unwrap();
    }

    // Another parallelism and interval: it must not start from nothing on its own.
    let rerun = args(input.to_str().unwrap(), &output, &chk, 3, "150ms");
    let (ok, log) = run_to_end(&mut runs, &rerun);
    assert!(!ok, "the rerun started although its checkpoint is unreadable:\n{log}");
    let names: Vec<String> = checkpoints.iter().map(|c| c.file_name().unwrap().to_string_lossy().to_string()).collect();
    assert!(
        log.contains("error:") && names.iter().any(|n| log.contains(n)),
        "the error names one of {names:?}:\n{log}"
    );
    assert!(log.contains("--fresh-start") && log.contains("-s PATH"), "the error names the ways out:\n{log}");
    assert_eq!(part_files(&output).len(), parts_before, "the refused run committed nothing");

    let (ok, log) = run_to_end(&mut runs, &with(rerun, &["--fresh-start"]));
    assert!(ok, "the fresh start failed:\n{log}");
    assert!(log.contains("rolled back parts"), "the fresh start rolled back the old parts:\n{log}");
    assert_eq!(committed(&output), expected(&input), "parts of the first run: {parts_before}");
}

#[test]
fn the_same_input_spelled_another_way_resumes_the_same_job() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.tsv");
    write_input(&input, 200_000, 2);
    let (output, chk) = (dir.path().join("out"), dir.path().join("chk"));
    let mut runs = runs(dir.path());
    let dotted = format!("{}/./in.tsv", dir.path().display());
    kill_after_progress(&mut runs, &args(&dotted, &output, &chk, 2, "100ms"), &output);

    let (ok, log) = run_to_end(&mut runs, &args(input.to_str().unwrap(), &output, &chk, 1, "200ms"));
    assert!(ok, "{log}");
    assert!(log.contains("resuming from checkpoint"), "the plain spelling resumed the job:\n{log}");
    assert_eq!(committed(&output), expected(&input));
}

/// The same bytes written anew (a ConfigMap volume in a new pod, `cp` without `-p`): a new
/// modification time and inode, the same content, so the checkpoint's offsets still hold.
#[test]
fn the_same_bytes_written_anew_resume() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.tsv");
    write_input(&input, 200_000, 5);
    let (output, chk) = (dir.path().join("out"), dir.path().join("chk"));
    let mut runs = runs(dir.path());
    let job = args(input.to_str().unwrap(), &output, &chk, 2, "100ms");
    kill_after_progress(&mut runs, &job, &output);

    let bytes = std::fs::read(&input).unwrap();
    let modified = std::fs::metadata(&input).unwrap().modified().unwrap();
    std::fs::remove_file(&input).unwrap();
    std::fs::write(&input, &bytes).unwrap();
    let file = std::fs::File::options().write(true).open(&input).unwrap();
    file.set_modified(modified + std::time::Duration::from_secs(3600)).unwrap();

    let (ok, log) = run_to_end(&mut runs, &job);
    assert!(ok, "the job refused the same content under a new modification time:\n{log}");
    assert!(log.contains("resuming from checkpoint"), "{log}");
    assert_eq!(committed(&output), expected(&input));
}

#[test]
fn a_changed_input_fails_instead_of_resuming_at_a_stale_offset() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.tsv");
    write_input(&input, 200_000, 3);
    let (output, chk) = (dir.path().join("out"), dir.path().join("chk"));
    let mut runs = runs(dir.path());
    let job = args(input.to_str().unwrap(), &output, &chk, 2, "100ms");
    kill_after_progress(&mut runs, &job, &output);

    write_input(&input, 150_000, 4);
    let (ok, log) = run_to_end(&mut runs, &job);
    assert!(!ok, "the job resumed in a changed file:\n{log}");
    assert!(log.contains("error:") && log.contains("changed since checkpoint"), "{log}");
    assert!(log.contains(input.to_str().unwrap()), "the error names the file:\n{log}");

    let (ok, log) = run_to_end(&mut runs, &with(job, &["--fresh-start"]));
    assert!(ok, "{log}");
    assert_eq!(committed(&output), expected(&input), "the new file counted once, nothing of the old one");
}

#[test]
fn an_output_of_another_job_is_refused_unless_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.tsv"), dir.path().join("b.tsv"));
    write_input(&a, 20_000, 5);
    write_input(&b, 30_000, 6);
    let (output, chk) = (dir.path().join("out"), dir.path().join("chk"));
    let mut runs = runs(dir.path());
    let (ok, log) = run_to_end(&mut runs, &args(a.to_str().unwrap(), &output, &chk, 2, "100ms"));
    assert!(ok, "{log}");
    assert_eq!(committed(&output), expected(&a));

    let job_b = args(b.to_str().unwrap(), &output, &chk, 2, "100ms");
    let (ok, log) = run_to_end(&mut runs, &job_b);
    assert!(!ok && log.contains("error:") && log.contains("fs.overwrite-files"), "{log}");
    assert_eq!(committed(&output), expected(&a), "the refused job wrote nothing");

    let (ok, log) = run_to_end(&mut runs, &with(job_b, &["-D", "fs.overwrite-files=true"]));
    assert!(ok, "{log}");
    assert_eq!(committed(&output), expected(&b));
}

#[test]
fn words_with_commas_and_quotes_are_quoted_csv() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "a,b \"q\" a,b\nsay\"hi\" , plain\n").unwrap();
    let output = dir.path().join("out");
    let args: Vec<String> = [
        "word-count",
        "--input",
        input.to_str().unwrap(),
        "--output",
        &format!("file://{}", output.display()),
        "-D",
        &format!("state.checkpoints.dir=file://{}", dir.path().join("chk").display()),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (ok, log) = run_to_end(&mut runs(dir.path()), &args);
    assert!(ok, "{log}");
    let got: BTreeMap<String, u64> = committed(&output).into_iter().map(|((_, word), n)| (word, n)).collect();
    let want: BTreeMap<String, u64> =
        [("a,b", 2), ("\"q\"", 1), ("say\"hi\"", 1), (",", 1), ("plain", 1)].map(|(w, n)| (w.to_string(), n)).into();
    assert_eq!(got, want);
}

/// A tmpfs mounted at a directory, unmounted on drop; `None` when this process may not mount
/// and skipping is allowed ([`skip_or_fail`]; CI runs as root).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, options: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let mount = Command::new("mount").args(["-t", "tmpfs", "-o", options, "tmpfs", dir.to_str().unwrap()]).output();
        match mount {
            Ok(out) if out.status.success() => Some(Tmpfs(dir.to_path_buf())),
            Ok(out) => {
                let why = format!("mount -t tmpfs failed: {}", String::from_utf8_lossy(&out.stderr).trim());
                skip_or_fail("this test", &why);
                None
            }
            Err(e) => {
                skip_or_fail("this test", &format!("cannot run mount: {e}"));
                None
            }
        }
    }

    /// `mount -o remount,<mode>`: `ro` or `rw`. A remount to `ro` fails while a file is open for
    /// writing (a part being committed): it is tried again until it succeeds.
    fn remount(&self, mode: &str) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let out = Command::new("mount").args(["-o", &format!("remount,{mode}"), self.0.to_str().unwrap()]).output();
            let out = out.unwrap();
            if out.status.success() {
                return;
            }
            let error = String::from_utf8_lossy(&out.stderr).to_string();
            assert!(Instant::now() < deadline, "mount -o remount,{mode}: {error}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn an_unwritable_output_fails_at_start_with_an_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.tsv");
    write_input(&input, 1_000, 7);
    let output = dir.path().join("read-only");
    let Some(_mount) = Tmpfs::mount(&output, "ro,size=1m") else { return };
    let job = args(input.to_str().unwrap(), &output, &dir.path().join("chk"), 1, "100ms");
    let mut runs = runs(dir.path());
    let run = runs.start_run(&job).unwrap();
    let status = run.await_exit(DEADLINE).unwrap();
    let log = run.log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("error:") && log.contains("cannot write to output"), "{log}");
    assert!(!log.contains("panicked"), "no panic:\n{log}");
}

/// An S3 output whose secret is wrong: refused before the job starts, with an `error:` line
/// naming the output, exit status 1, and no panic.
#[test]
fn an_s3_output_with_a_wrong_secret_fails_at_start_with_an_error_line() {
    let Some(root) = super::common::s3_root() else { return };
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.tsv");
    write_input(&input, 1_000, 12);
    let output = format!("{root}/wrong-secret-{}-{}", std::process::id(), rheo::runtime::task::now_ms());
    let job: Vec<String> = [
        "run",
        "word-count",
        "--event-time",
        "--input",
        input.to_str().unwrap(),
        "--output",
        &output,
        "-D",
        &format!("state.checkpoints.dir=file://{}", dir.path().join("chk").display()),
        // No minutes of retries against a store that answers 403.
        "-D",
        "s3.retry.max-retries=1",
        "-D",
        "rest.port=0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let program = Path::new(env!("CARGO_BIN_EXE_rheo"));
    let env = [("RHEO_LOG", "info"), ("AWS_SECRET_ACCESS_KEY", "not-the-secret")];
    let mut run = rheo_testkit::Process::spawn("run", program, dir.path(), &job, &env).unwrap();
    let status = run.await_exit(DEADLINE).unwrap();
    let log = run.log();
    assert_eq!(status.code(), Some(1), "{log}");
    let error = log.lines().find(|l| l.starts_with("error:")).unwrap_or_else(|| panic!("no error: line:\n{log}"));
    eprintln!("{error}");
    assert!(error.contains(&output), "the error names the output {output}: {error}");
    assert!(!log.contains("panicked"), "no panic:\n{log}");
}

/// The output's disk turns read-only after the first committed part (a remount), then writable
/// again: the failed commits go through the restart strategy (recorded as the job's exceptions,
/// the job never FAILED), and once the disk is writable the job finishes with exact output.
#[test]
fn an_output_that_turns_unwritable_mid_run_restarts_the_job_until_it_is_writable_again() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.tsv");
    write_input(&input, 200_000, 10);
    let (output, chk) = (dir.path().join("out"), dir.path().join("chk"));
    let Some(mount) = Tmpfs::mount(&output, "size=64m") else { return };
    let mut runs = runs(dir.path()).with_config(&[
        "restart-strategy.type=fixed-delay",
        "restart-strategy.fixed-delay.attempts=100000",
        "restart-strategy.fixed-delay.delay=100ms",
    ]);
    runs.start_run(&args(input.to_str().unwrap(), &output, &chk, 2, "100ms")).unwrap();
    let job = runs.await_job().unwrap();
    runs.await_until("a committed part", |_| match part_files(&output).is_empty() {
        true => Poll::Pending("no part yet".into()),
        false => Poll::Ready(()),
    })
    .unwrap();
    mount.remount("ro");
    let failures = runs
        .await_until("a restart for the read-only output", |rest| match rest.exceptions(&job) {
            Ok(exceptions) if exceptions.exception_history.entries.len() >= 2 => {
                Poll::Ready(serde_json::to_string(&exceptions).unwrap())
            }
            Ok(exceptions) => Poll::Pending(format!("{} exceptions", exceptions.exception_history.entries.len())),
            Err(e) => Poll::Pending(e.to_string()),
        })
        .unwrap();
    eprintln!("exceptions while the output was read-only: {failures}");
    assert!(failures.contains("Read-only file system"), "the exceptions name the cause: {failures}");
    assert_ne!(runs.rest().job(&job).unwrap().state, JobState::Failed);
    mount.remount("rw");
    let run = runs.jobmanager();
    let status = run.await_exit(DEADLINE).unwrap();
    assert!(status.success(), "the job did not finish once the output was writable again:\n{}", run.log());
    assert!(!run.log().contains("panicked"), "{}", run.log());
    assert_eq!(committed(&output), expected(&input));
}

/// The files under `<job>/shared/` of every job directory under `root`, and the ones the job's
/// retained checkpoints reference (paths relative to the job's directory).
fn shared_files(root: &Path) -> (BTreeSet<String>, BTreeSet<String>) {
    use rheo::runtime::checkpoint::metadata::CheckpointMetadata;
    fn walk(dir: &Path, base: &Path, found: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, base, found);
            } else {
                found.insert(path.strip_prefix(base).unwrap().to_string_lossy().to_string());
            }
        }
    }
    let (mut present, mut referenced) = (BTreeSet::new(), BTreeSet::new());
    for job in std::fs::read_dir(root).unwrap().flatten().filter(|e| e.path().is_dir()) {
        walk(&job.path().join("shared"), &job.path(), &mut present);
        for checkpoint in completed_checkpoints_of(&job.path()) {
            let metadata: CheckpointMetadata =
                serde_json::from_slice(&std::fs::read(checkpoint.join("_metadata")).unwrap()).unwrap();
            referenced.extend(metadata.shared_files().map(|f| f.path.clone()));
        }
    }
    (present, referenced)
}

fn completed_checkpoints_of(job: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(job) else { return Vec::new() };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("chk-") && p.join("_metadata").exists())
        .collect()
}

/// A checkpoint disk (a small tmpfs) filled to the last byte mid-run, then freed. The word count
/// without windows keeps keyed state, whose incremental checkpoints write into `shared/`: a
/// failed checkpoint must leave neither its `chk-<n>` nor its shared files behind.
#[test]
fn a_checkpoint_disk_that_fills_and_is_freed_lets_the_job_finish() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.tsv");
    write_input(&input, 200_000, 8);
    let (output, chk) = (dir.path().join("out"), dir.path().join("chk"));
    let Some(_mount) = Tmpfs::mount(&chk, "size=4m") else { return };
    let job_args: Vec<String> = [
        "word-count",
        "--input",
        input.to_str().unwrap(),
        "--output",
        &format!("file://{}", output.display()),
        "-p",
        "2",
        "-D",
        "execution.checkpointing.interval=100ms",
        "-D",
        &format!("state.checkpoints.dir=file://{}", chk.display()),
        "--rate",
        "40000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut runs = runs(dir.path());
    runs.start_run(&job_args).unwrap();
    let job = runs.await_job().unwrap();
    runs.await_checkpoints(&job, 1).unwrap();
    // Fill the disk to the last byte.
    let filler = chk.join("filler");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        while file.write_all(&block).is_ok() {}
        let _ = file.write_all(&[0u8; 512]);
        let _ = file.flush();
    }
    let failed = |count: u64| {
        let job = job.clone();
        move |rest: &rheo_testkit::Rest| match rest.checkpoints(&job) {
            Ok(stats) if stats.counts.failed >= count => Poll::Ready(stats.counts.failed),
            Ok(stats) => Poll::Pending(format!("{} failed, {} completed", stats.counts.failed, stats.counts.completed)),
            Err(e) => Poll::Pending(e.to_string()),
        }
    };
    // Observed when `first` checkpoints had failed, so failure `first + 1` came later.
    let first = runs.await_until("a checkpoint failed on the full disk", failed(1)).unwrap();
    let observed = Instant::now();
    runs.await_until("four more checkpoints failed on the full disk", failed(first + 4)).unwrap();
    // Retries back off 100 ms after the first failure, doubling: failures `first + 1` to
    // `first + 4` are at least 200 + 400 + 800 ms apart however late the polls saw them, and a
    // loaded machine only makes that longer. Without a backoff they come every interval
    // (100 ms; 0.48 s for four), or at once for the final checkpoint.
    let spread = observed.elapsed();
    eprintln!("four more failed checkpoints {spread:?} after {first}");
    assert!(spread >= Duration::from_secs(1), "four failed checkpoints within {spread:?}: retries do not back off");
    std::fs::remove_file(&filler).unwrap();
    let run = runs.jobmanager();
    let status = run.await_exit(DEADLINE).unwrap();
    assert!(status.success(), "the job did not finish after the disk was freed:\n{}", run.log());
    // Only complete checkpoints remain: failed ones left nothing behind, in their directories
    // or in the shared area.
    for job in std::fs::read_dir(&chk).unwrap().flatten().filter(|e| e.path().is_dir()) {
        for entry in std::fs::read_dir(job.path()).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with("chk-") {
                assert!(entry.path().join("_metadata").exists(), "partial checkpoint {name} left behind");
            }
        }
    }
    let (present, referenced) = shared_files(&chk);
    eprintln!("shared files: {} present, {} referenced", present.len(), referenced.len());
    assert!(!referenced.is_empty(), "the retained checkpoint references shared files (keyed state)");
    let unreferenced: Vec<&String> = present.difference(&referenced).collect();
    assert!(unreferenced.is_empty(), "shared files no checkpoint references: {unreferenced:?}");
    let missing: Vec<&String> = referenced.difference(&present).collect();
    assert!(missing.is_empty(), "shared files the retained checkpoint needs are gone: {missing:?}");
    assert_eq!(committed(&output), expected_totals(&input));
}

#[test]
fn sigterm_stops_rheo_run_within_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.tsv");
    write_input(&input, 200_000, 9);
    let (output, chk) = (dir.path().join("out"), dir.path().join("chk"));
    let mut job = args(input.to_str().unwrap(), &output, &chk, 2, "100ms");
    *job.last_mut().unwrap() = "2000".into();
    let mut runs = runs(dir.path());
    runs.start_run(&job).unwrap();
    let id = runs.await_job().unwrap();
    runs.await_checkpoints(&id, 1).unwrap();
    let run = runs.jobmanager();
    run.terminate().unwrap();
    let sent = Instant::now();
    let status = run.await_exit(Duration::from_secs(10)).unwrap_or_else(|e| panic!("rheo run ignored SIGTERM: {e}"));
    eprintln!("stopped {:?} after SIGTERM ({status})", sent.elapsed());
    assert!(run.log().contains("SIGTERM"), "{}", run.log());
}
