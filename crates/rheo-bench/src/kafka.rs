//! The `kafka-exactly-once` and `kafka-at-least-once` cases: `rheo run kafka-word-count` from a
//! topic to a topic of a real Apache Kafka broker, the two delivery guarantees on the same input
//! (`make bench` starts the broker; without `KAFKA_BOOTSTRAP` the cases are skipped).
//!
//! The input: lines of 8 words from the benchmark's vocabulary over 2 partitions, 100,000 lines
//! per second of event time (the records' timestamps), produced before the clock starts. The
//! job runs at parallelism 2 with a checkpoint every second (exactly-once: one transaction per
//! subtask per checkpoint, committed when the checkpoint completes; at-least-once: the producer
//! flushed at each checkpoint) and `--bounded`: it stops at the input's end offsets.
//!
//! What the figures mean: **lines/s** is input lines over the wall-clock seconds of the
//! `rheo run` process from its start to its exit (start-up, the end-of-input windows and the
//! last commit included); **peak RSS** is that process's. The output is read back with
//! `read_committed` and must equal the counts computed here from the input.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rheo::connectors::datagen::word_lines;
use rheo_testkit::kafka;

use crate::{Report, SEED, VOCABULARY, WORDS_PER_LINE, compare};

/// Event time of the first line; 100 lines per millisecond after it.
const BASE_TS: i64 = 1_700_000_000_000;
const LINES_PER_MS: i64 = 100;
const PARTITIONS: i32 = 2;

/// Runs the job with `guarantee` (`exactly-once` or `at-least-once`) over `lines` lines.
pub fn run(mut report: Report, lines: u64, guarantee: &str) -> anyhow::Result<Report> {
    let bootstrap = std::env::var("KAFKA_BOOTSTRAP").context("KAFKA_BOOTSTRAP is not set")?;
    let unique = format!("{}-{}", std::process::id(), rheo::runtime::task::now_ms());
    let (input, output) = (format!("bench-words-{unique}"), format!("bench-counts-{unique}"));
    kafka::create_topic(&bootstrap, &input, PARTITIONS);
    kafka::create_topic(&bootstrap, &output, PARTITIONS);
    let generate = word_lines(SEED, VOCABULARY, WORDS_PER_LINE);
    let mut expected: HashMap<(i64, String), u64> = HashMap::new();
    let records: Vec<(i64, String)> = (0..lines)
        .map(|i| {
            let ts = BASE_TS + i as i64 / LINES_PER_MS;
            let text = generate(i);
            let window_end = ts - ts.rem_euclid(1000) + 1000;
            for word in text.split(' ') {
                *expected.entry((window_end, word.to_string())).or_default() += 1;
            }
            (ts, text)
        })
        .collect();
    kafka::produce(&bootstrap, &input, PARTITIONS, records);

    let checkpoints = std::env::temp_dir().join(format!("rheo-bench-kafka-{unique}"));
    let rheo = std::env::current_exe()?.with_file_name("rheo");
    let started = Instant::now();
    let result = Command::new(rheo)
        .args(["run", "kafka-word-count", "--bootstrap-servers", &bootstrap, "--input-topic", &input])
        .args(["--output-topic", &output, "--group-id", &format!("bench-{unique}")])
        .args(["--transactional-id-prefix", &format!("bench-{unique}"), "--bounded"])
        .args(["--delivery-guarantee", guarantee, "-p", "2", "-D", "execution.checkpointing.interval=1s"])
        .arg("-D")
        .arg(format!("state.checkpoints.dir=file://{}", checkpoints.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context("starting rheo")?;
    let seconds = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&checkpoints);
    if !result.status.success() {
        bail!("{} failed ({}): {}", report.case, result.status, String::from_utf8_lossy(&result.stderr));
    }
    let usage = compare::children_usage();

    let mut produced: HashMap<(i64, String), u64> = HashMap::new();
    for (_, value) in kafka::read_all(&bootstrap, &output, "read_committed", Duration::from_secs(300)) {
        let (key, count) = compare::parse_count(&value)?;
        if produced.insert(key.clone(), count).is_some() {
            bail!("{key:?} is in the output twice");
        }
    }
    if produced != expected {
        bail!("{}: {} counts in the output, {} expected, or some differ", report.case, produced.len(), expected.len());
    }
    usage.report(&mut report, lines, seconds);
    Ok(report)
}
