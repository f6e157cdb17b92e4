//! The `compare-*` cases: Rheo and Apache Flink 2.3 on the same job and the same input file,
//! in one run of `make bench`.
//!
//! The job is `rheo run word-count --event-time --window 1s`, and the same written against
//! Flink's DataStream API in `bench/flink/WordCountBench.java`: lines `<ms>\t<8 words>` from a
//! file, the timestamp taken from the line, watermarks that trail the largest timestamp by
//! nothing, words split on whitespace, key by word, 1 s tumbling event-time windows, a count per
//! (window, word) written as CSV. Neither engine checkpoints (`rheo run` would every 10 s).
//! Each case reads its engine's output back and fails unless it equals the counts computed
//! here from the input: both engines did the same work.
//!
//! What the figures mean, for both engines alike (each runs as one process from start to exit;
//! Flink's local MiniCluster runs inside its JVM, with Flink's default settings):
//! - **lines/s**: input lines over the wall-clock seconds from starting the process to its exit
//!   (JVM, job and task start-up included);
//! - **CPU s/M lines**: user and system CPU seconds of the process per million input lines;
//! - **peak RSS**: the process's largest resident set (`getrusage`'s `ru_maxrss`).

use std::collections::HashMap;
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};
use rheo::connectors::datagen::word_lines;

use crate::{Report, SEED, VOCABULARY, WORDS_PER_LINE};

/// Input lines per second of event time: 100,000 lines make one window.
const LINES_PER_WINDOW: u64 = 100_000;

/// The environment variable holding the Java class path of Flink and the benchmark job
/// (`scripts/flink-bench-job.sh` prints it); without it the Flink cases are skipped.
pub const FLINK_CLASSPATH: &str = "RHEO_BENCH_FLINK_CLASSPATH";

#[derive(Clone, Copy)]
pub enum Engine {
    Rheo,
    Flink,
}

/// (window end, word) → count.
type Counts = HashMap<(i64, String), u64>;

/// Runs the job on `engine` at `parallelism` over `lines` input lines and checks its output.
pub fn run(mut report: Report, lines: u64, engine: Engine, parallelism: usize) -> anyhow::Result<Report> {
    let input = input_file(lines)?;
    let output = std::env::temp_dir().join(format!("rheo-bench-compare-out-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&output);
    let mut command = match engine {
        Engine::Rheo => {
            let rheo = std::env::current_exe()?.with_file_name("rheo");
            let mut command = Command::new(rheo);
            command.args(["run", "word-count", "--event-time", "--window", "1s", "--input"]);
            command.arg(&input).arg("--output").arg(format!("file://{}", output.display()));
            command.args(["-p", &parallelism.to_string(), "-D", "execution.checkpointing.interval=0"]);
            command
        }
        Engine::Flink => {
            let classpath = std::env::var(FLINK_CLASSPATH).with_context(|| format!("{FLINK_CLASSPATH} is not set"))?;
            let mut command = Command::new("java");
            command.args(["-cp", &classpath, "WordCountBench"]).arg(&input).arg(&output);
            command.arg(parallelism.to_string());
            command
        }
    };
    let started = Instant::now();
    let result = command.stdout(Stdio::null()).stderr(Stdio::piped()).output().context("starting the engine")?;
    let seconds = started.elapsed().as_secs_f64();
    if !result.status.success() {
        bail!("{} failed ({}): {}", report.case, result.status, String::from_utf8_lossy(&result.stderr));
    }
    // This case's process has no other child: the children's usage is the engine's.
    let usage = children_usage();

    let produced = read_output(&output)?;
    let _ = std::fs::remove_dir_all(&output);
    let expected = expected(&input)?;
    if produced != expected {
        let missing = expected.iter().find(|(k, v)| produced.get(*k) != Some(v));
        let extra = produced.keys().find(|k| !expected.contains_key(*k));
        bail!(
            "{}: output differs from the reference ({} counts, expected {}); first missing or wrong: {missing:?}, \
             first extra: {extra:?}",
            report.case,
            produced.len(),
            expected.len()
        );
    }

    usage.report(&mut report, lines, seconds);
    Ok(report)
}

/// The input of `lines` lines, written once per run of the benchmark into the temp directory
/// (the same bytes for every case: the lines come from a seeded generator).
fn input_file(lines: u64) -> anyhow::Result<PathBuf> {
    let path = std::env::temp_dir().join(format!("rheo-bench-compare-{lines}.tsv"));
    if path.exists() {
        return Ok(path);
    }
    let partial = path.with_extension(format!("tsv.{}", std::process::id()));
    let mut file = BufWriter::new(std::fs::File::create(&partial)?);
    let generate = word_lines(SEED, VOCABULARY, WORDS_PER_LINE);
    for i in 0..lines {
        writeln!(file, "{}\t{}", i / LINES_PER_WINDOW * 1000, generate(i))?;
    }
    file.into_inner()?.sync_all()?;
    std::fs::rename(&partial, &path)?;
    Ok(path)
}

/// The counts computed here from the input.
fn expected(input: &Path) -> anyhow::Result<Counts> {
    let mut counts = Counts::new();
    for line in std::io::BufReader::new(std::fs::File::open(input)?).lines() {
        let line = line?;
        let (ts, text) = line.split_once('\t').context("input line without a tab")?;
        let end = (ts.parse::<i64>()? / 1000 + 1) * 1000;
        for word in text.split_whitespace() {
            *counts.entry((end, word.to_string())).or_default() += 1;
        }
    }
    Ok(counts)
}

/// Every `window end,word,count` line of the part files under `dir`; a count twice is an error.
fn read_output(dir: &Path) -> anyhow::Result<Counts> {
    let mut counts = Counts::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("no output in {}", dir.display()))? {
        let path = entry?.path();
        if !path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("part-")) {
            continue;
        }
        for line in std::io::BufReader::new(std::fs::File::open(&path)?).lines() {
            let (key, count) = parse_count(&line?).with_context(|| path.display().to_string())?;
            if counts.insert(key.clone(), count).is_some() {
                bail!("{}: {key:?} written twice", path.display());
            }
        }
    }
    Ok(counts)
}

/// One `window end,word,count` record of an engine's output.
pub fn parse_count(record: &str) -> anyhow::Result<((i64, String), u64)> {
    let mut fields = record.splitn(3, ',');
    let (Some(end), Some(word), Some(count)) = (fields.next(), fields.next(), fields.next()) else {
        bail!("'{record}' is not `window end,word,count`");
    };
    Ok(((end.parse()?, word.to_string()), count.parse()?))
}

pub struct Usage {
    cpu_seconds: f64,
    max_rss_kib: i64,
}

impl Usage {
    /// The figures of an engine's process that took `seconds` for `lines` input lines.
    pub fn report(&self, report: &mut Report, lines: u64, seconds: f64) {
        report.seconds = seconds;
        report.lines_per_second = lines as f64 / seconds;
        report.words_per_second = report.lines_per_second * WORDS_PER_LINE as f64;
        report.peak_rss_mib = self.max_rss_kib as f64 / 1024.0;
        report.cpu_seconds_per_million_lines = Some(self.cpu_seconds / (lines as f64 / 1e6));
    }
}

/// CPU time and the largest resident set of the children this process has waited for.
pub fn children_usage() -> Usage {
    // SAFETY: getrusage writes into the zeroed struct it is given and reads nothing else.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Usage { cpu_seconds: seconds(usage.ru_utime) + seconds(usage.ru_stime), max_rss_kib: usage.ru_maxrss }
}
