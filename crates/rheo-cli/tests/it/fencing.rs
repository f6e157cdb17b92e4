//! Exactly-once that nothing can fool: lost checkpoints, a path spelled another way, a changed
//! input, another job's output, words CSV must quote, an unwritable output, a full disk, SIGTERM.
//!
//! Every check compares the committed output, read back with a CSV parser, with counts computed
//! here from the input. Runs are killed when they have made observable progress (a completed
//! checkpoint and a committed part file on disk), never after a guessed time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

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
fn expected(input: &Path) -> BTreeMap<(String, String), u64> {
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
fn committed(dir: &Path) -> BTreeMap<(String, String), u64> {
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
    let mut found = Vec::new();
    let Ok(jobs) = std::fs::read_dir(root) else { return found };
    for job in jobs.flatten() {
        let Ok(checkpoints) = std::fs::read_dir(job.path()) else { continue };
        for chk in checkpoints.flatten() {
            if chk.file_name().to_string_lossy().starts_with("chk-") && chk.path().join("_metadata").exists() {
                found.push(chk.path());
            }
        }
    }
    found
}

struct Run {
    child: Child,
    log: PathBuf,
}

impl Run {
    fn start(cwd: &Path, args: &[String]) -> Run {
        let log = cwd.join(format!("run-{}.log", rheo::runtime::task::now_ms()));
        let child = Command::new(env!("CARGO_BIN_EXE_rheo"))
            .current_dir(cwd)
            .args(args)
            .env("RHEO_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Run { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `progress` holds, then kills the run with SIGKILL. Fails when the run ends
    /// first.
    fn kill_when(mut self, what: &str, progress: impl Fn() -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        while !progress() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the run ended ({status}) before {what}:\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "no {what} in {DEADLINE:?}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(5));
        }
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.log()
    }

    /// Waits for the run to end: whether it succeeded, and its log.
    fn wait(mut self) -> (bool, String) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.success(), self.log());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the run did not end in {DEADLINE:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn args(input: &str, output: &Path, checkpoints: &Path, parallelism: usize, interval: &str) -> Vec<String> {
    let mut args: Vec<String> = ["run", "word-count", "--event-time", "--window", "1s", "--input", input, "--output"]
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

/// A run that has completed a checkpoint and committed a part file.
fn progressed(output: &Path, checkpoints: &Path) -> impl Fn() -> bool {
    let (output, checkpoints) = (output.to_path_buf(), checkpoints.to_path_buf());
    move || !completed_checkpoints(&checkpoints).is_empty() && !part_files(&output).is_empty()
}

#[test]
fn the_only_checkpoint_corrupt_fails_until_told_to_start_fresh_then_output_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.tsv");
    write_input(&input, 200_000, 1);
    let (output, chk) = (dir.path().join("out"), dir.path().join("chk"));
    let first = args(input.to_str().unwrap(), &output, &chk, 2, "100ms");
    Run::start(dir.path(), &first).kill_when("a checkpoint and a part", progressed(&output, &chk));
    let parts_before = part_files(&output).len();

    // Corrupt every checkpoint there is (state.checkpoints.num-retained is 1: one).
    let checkpoints = completed_checkpoints(&chk);
    for checkpoint in &checkpoints {
        std::fs::write(checkpoint.join("_metadata"), b"{ not json").unwrap();
    }

    // Another parallelism and interval: it must not start from nothing on its own.
    let rerun = args(input.to_str().unwrap(), &output, &chk, 3, "150ms");
    let (ok, log) = Run::start(dir.path(), &rerun).wait();
    assert!(!ok, "the rerun started although its checkpoint is unreadable:\n{log}");
    let named = checkpoints[0].file_name().unwrap().to_string_lossy().to_string();
    assert!(log.contains("error:") && log.contains(&named), "the error names the checkpoint:\n{log}");
    assert!(log.contains("--fresh-start") && log.contains("-s PATH"), "the error names the ways out:\n{log}");
    assert_eq!(part_files(&output).len(), parts_before, "the refused run committed nothing");

    let (ok, log) = Run::start(dir.path(), &with(rerun, &["--fresh-start"])).wait();
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
    let dotted = format!("{}/./in.tsv", dir.path().display());
    let first = args(&dotted, &output, &chk, 2, "100ms");
    Run::start(dir.path(), &first).kill_when("a checkpoint and a part", progressed(&output, &chk));

    let (ok, log) = Run::start(dir.path(), &args(input.to_str().unwrap(), &output, &chk, 1, "200ms")).wait();
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
    let job = args(input.to_str().unwrap(), &output, &chk, 2, "100ms");
    Run::start(dir.path(), &job).kill_when("a checkpoint and a part", progressed(&output, &chk));

    let bytes = std::fs::read(&input).unwrap();
    let modified = std::fs::metadata(&input).unwrap().modified().unwrap();
    std::fs::remove_file(&input).unwrap();
    std::fs::write(&input, &bytes).unwrap();
    let file = std::fs::File::options().write(true).open(&input).unwrap();
    file.set_modified(modified + std::time::Duration::from_secs(3600)).unwrap();

    let (ok, log) = Run::start(dir.path(), &job).wait();
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
    let job = args(input.to_str().unwrap(), &output, &chk, 2, "100ms");
    Run::start(dir.path(), &job).kill_when("a checkpoint and a part", progressed(&output, &chk));

    write_input(&input, 150_000, 4);
    let (ok, log) = Run::start(dir.path(), &job).wait();
    assert!(!ok, "the job resumed in a changed file:\n{log}");
    assert!(log.contains("error:") && log.contains("changed since checkpoint"), "{log}");
    assert!(log.contains(input.to_str().unwrap()), "the error names the file:\n{log}");

    let (ok, log) = Run::start(dir.path(), &with(job, &["--fresh-start"])).wait();
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
    let (ok, log) = Run::start(dir.path(), &args(a.to_str().unwrap(), &output, &chk, 2, "100ms")).wait();
    assert!(ok, "{log}");
    assert_eq!(committed(&output), expected(&a));

    let job_b = args(b.to_str().unwrap(), &output, &chk, 2, "100ms");
    let (ok, log) = Run::start(dir.path(), &job_b).wait();
    assert!(!ok && log.contains("error:") && log.contains("fs.overwrite-files"), "{log}");
    assert_eq!(committed(&output), expected(&a), "the refused job wrote nothing");

    let (ok, log) = Run::start(dir.path(), &with(job_b, &["-D", "fs.overwrite-files=true"])).wait();
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
        "run",
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
    let (ok, log) = Run::start(dir.path(), &args).wait();
    assert!(ok, "{log}");
    let got: BTreeMap<String, u64> = committed(&output).into_iter().map(|((_, word), n)| (word, n)).collect();
    let want: BTreeMap<String, u64> =
        [("a,b", 2), ("\"q\"", 1), ("say\"hi\"", 1), (",", 1), ("plain", 1)].map(|(w, n)| (w.to_string(), n)).into();
    assert_eq!(got, want);
}

/// A tmpfs of `size` at `dir`, unmounted on drop; `None` when this process may not mount.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, options: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs", dir.to_str().unwrap()])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            assert!(std::env::var_os("CI").is_none(), "CI runs as root: mount -t tmpfs must work");
            eprintln!("cannot mount a tmpfs here (not root?): skipping");
            return None;
        }
        Some(Tmpfs(dir.to_path_buf()))
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
    let (ok, log) =
        Run::start(dir.path(), &args(input.to_str().unwrap(), &output, &dir.path().join("chk"), 1, "100ms")).wait();
    assert!(!ok, "{log}");
    assert!(log.contains("error:") && log.contains("cannot write to output"), "{log}");
    assert!(!log.contains("panicked"), "no panic:\n{log}");
}

#[test]
fn a_checkpoint_disk_that_fills_and_is_freed_lets_the_job_finish() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.tsv");
    write_input(&input, 200_000, 8);
    let (output, chk) = (dir.path().join("out"), dir.path().join("chk"));
    let Some(_mount) = Tmpfs::mount(&chk, "size=4m") else { return };
    let job = args(input.to_str().unwrap(), &output, &chk, 2, "100ms");
    let run = Run::start(dir.path(), &job);
    let deadline = Instant::now() + DEADLINE;
    while completed_checkpoints(&chk).is_empty() {
        assert!(Instant::now() < deadline, "no checkpoint:\n{}", run.log());
        std::thread::sleep(Duration::from_millis(5));
    }
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
    let full_since = Instant::now();
    while run.log().matches("checkpoint could not be written").count() < 3 {
        assert!(Instant::now() < deadline, "no checkpoint failed on the full disk:\n{}", run.log());
        std::thread::sleep(Duration::from_millis(5));
    }
    let full_for = full_since.elapsed();
    let failures = run.log().matches("checkpoint could not be written").count();
    std::fs::remove_file(&filler).unwrap();
    let (ok, log) = run.wait();
    assert!(ok, "the job did not finish after the disk was freed:\n{log}");
    assert!(
        failures as f64 <= 20.0 * full_for.as_secs_f64().max(1.0),
        "{failures} failed checkpoints in {full_for:?}: retries do not back off"
    );
    // Only complete checkpoints remain: failed ones left nothing behind.
    for job in std::fs::read_dir(&chk).unwrap().flatten().filter(|e| e.path().is_dir()) {
        for entry in std::fs::read_dir(job.path()).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with("chk-") {
                assert!(entry.path().join("_metadata").exists(), "partial checkpoint {name} left behind");
            }
        }
    }
    assert_eq!(committed(&output), expected(&input));
}

#[test]
fn sigterm_stops_rheo_run_within_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.tsv");
    write_input(&input, 200_000, 9);
    let (output, chk) = (dir.path().join("out"), dir.path().join("chk"));
    let mut job = args(input.to_str().unwrap(), &output, &chk, 2, "100ms");
    *job.last_mut().unwrap() = "2000".into();
    let mut run = Run::start(dir.path(), &job);
    let deadline = Instant::now() + DEADLINE;
    while completed_checkpoints(&chk).is_empty() {
        assert!(Instant::now() < deadline, "no checkpoint:\n{}", run.log());
        std::thread::sleep(Duration::from_millis(5));
    }
    let pid = run.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let sent = Instant::now();
    let status = loop {
        if let Some(status) = run.child.try_wait().unwrap() {
            break status;
        }
        assert!(sent.elapsed() < Duration::from_secs(10), "rheo run ignored SIGTERM:\n{}", run.log());
        std::thread::sleep(Duration::from_millis(10));
    };
    eprintln!("stopped {:?} after SIGTERM ({status})", sent.elapsed());
    assert!(run.log().contains("SIGTERM"), "{}", run.log());
}
