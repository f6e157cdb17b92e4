//! `make bench`: throughput, latency and memory of the engine on the word-count benchmark.
//!
//! Word count over lines of 8 words drawn from a 10,000-word vocabulary: key by word, 1 s
//! tumbling processing-time windows, sum. Each case runs in its own child process so its peak
//! RSS is its own. Cases:
//! - `bare`: one thread generating the same lines and counting words in a hash map, with the
//!   same 1 s window roll-over: the ceiling the engine is compared with;
//! - `engine-p1`, `engine-p2`: the job on the embedded mini-cluster;
//! - `checkpoint-file`, `checkpoint-s3`: the same with checkpoints every 1 s (S3 when
//!   `RHEO_TEST_S3` names a bucket, see `scripts/services/s3.sh`);
//! - `recovery`: time from a task failure to records flowing again through the keyed task,
//!   restored from the last checkpoint;
//! - `rescale-restart`, `rescale`: numbers through a map, rescaled from 1 to 2 halfway, once
//!   the old way (through the restart path from the newest checkpoint: what reactive mode did)
//!   and once by a stop-with-checkpoint (`PUT /jobs/:id/resource-requirements`); the pause
//!   (the longest gap between two records the map sees after the request) and the records the
//!   map saw twice;
//! - `cluster-1tm`, `cluster-2tm`: the `datagen-word-count` job at parallelism 2 on a standalone
//!   cluster of processes: one JobManager and one TaskManager with two slots, or two
//!   TaskManagers with one slot each (records cross TCP between them); timed from deployment
//!   to the end of the job, RSS is the largest TaskManager's;
//! - `cluster-recovery`: two one-slot TaskManagers run the job at parallelism 2 with
//!   checkpoints every second, a third stands by; one of the two is killed with SIGKILL, and
//!   the time to the redeployment and to the first checkpoint completed after it is measured
//!   (processing resumed and consistent; bounded below by the 1 s checkpoint interval).
//! - `rescale-cluster`: `arriving-numbers` on two one-slot TaskManager processes, its map
//!   back-pressured at parallelism 1, rescaled to 2 by `PUT /jobs/:id/resource-requirements`
//!   (what `rheo autoscale` sends); the pause (the longest time no record left the map after
//!   the request, from the times the map stamps on the printed records) and the records
//!   printed twice. See [`cluster::rescale`].
//! - `state-scale-1m`, `state-scale-10m`: the final-count word count (`rheo run word-count`:
//!   a count per word in keyed state and a timer per word at the end of input) with 1M or 10M
//!   distinct short words, each seen twice. See [`state_scale`] for what is measured.
//!   `state-scale-1m-disk`, `state-scale-10m-disk`: the same with the disk state backend
//!   (`state.backend.type: disk`, 100,000 keys cached in memory per subtask).
//! - `state-checkpoints-incremental`, `state-checkpoints-full`: a keyed job holding
//!   `RHEO_BENCH_STATE_KEYS` keys (1M by default) of which about 1 % change per second,
//!   checkpointed every second with `state.backend.incremental` on and off. See
//!   [`state_checkpoints`] for what is measured. `state-checkpoints-window-incremental`,
//!   `state-checkpoints-window-full`: the same keys counted in one long processing-time window
//!   (a day) instead of a keyed process function: the window operator's state on the keyed
//!   backend.
//! - `state-memory`: the resident memory a checkpoint and a restore of a large keyed state
//!   add; see [`state_memory`].
//! - `compare-rheo-p1`, `compare-flink-p1`, `compare-rheo-p2`, `compare-flink-p2`: Rheo and
//!   Apache Flink 2.3 on the same event-time word count over the same file, in this run; see
//!   [`compare`] for the job and what each figure means.
//! - `kafka-exactly-once`, `kafka-at-least-once`: `kafka-word-count` from topic to topic on a
//!   real broker under each delivery guarantee; see [`kafka`].

mod compare;
mod kafka;
mod state_memory;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use compact_str::CompactString;
use rheo::config::options;
use rheo::connectors::datagen::{DatagenConfig, word_lines};
use rheo::prelude::*;
use rheo::runtime::driver::minicluster::MiniCluster;
use rheo::runtime::keyed::{KeyedContext, KeyedProcessFunction};
use rheo::runtime::state::KeyedStateBackend;
use rheo::runtime::task::now_ms;
use rheo_cli::jobs::words::{CountAggregate, WordWithCount, tokenize, words};

const VOCABULARY: usize = 10_000;
const WORDS_PER_LINE: usize = 8;
const SEED: u64 = 42;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("case") => {
            let name = args.get(2).context("case name")?;
            let lines: u64 = args.get(3).context("line count")?.parse()?;
            let report = run_case(name, lines)?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        None => orchestrate(),
        Some(other) => bail!("unknown argument '{other}': run without arguments"),
    }
}

#[derive(serde::Serialize, serde::Deserialize, Default, Clone)]
struct Report {
    case: String,
    lines: u64,
    seconds: f64,
    lines_per_second: f64,
    words_per_second: f64,
    peak_rss_mib: f64,
    latency_p50_ms: Option<i64>,
    latency_p99_ms: Option<i64>,
    checkpoints: Option<u64>,
    checkpoint_ms: Option<f64>,
    checkpoint_bytes: Option<u64>,
    recovery_ms: Option<f64>,
    /// Rescale cases: the pause, and records processed a second time.
    rescale_pause_ms: Option<f64>,
    reprocessed: Option<u64>,
    #[serde(default)]
    state: Option<StateScale>,
    /// Comparison cases: user and system CPU seconds per million input lines.
    #[serde(default)]
    cpu_seconds_per_million_lines: Option<f64>,
    #[serde(default)]
    state_checkpoints: Option<state_checkpoints::Measured>,
    #[serde(default)]
    state_memory: Option<state_memory::Measured>,
}

/// What the state-scale cases measure (see [`state_scale`]).
#[derive(serde::Serialize, serde::Deserialize, Default, Clone)]
struct StateScale {
    keys: u64,
    /// Resident memory added by the loaded state, per key.
    bytes_per_key: Option<f64>,
    /// The synchronous part of one checkpoint of the operator with all keys loaded: the task
    /// thread stops processing for this long.
    sync_pause_ms: Option<f64>,
    /// Writing that snapshot out from what the barrier captured (off the task thread when the
    /// barrier took a view; nothing left to write when it wrote the snapshot itself).
    snapshot_write_ms: Option<f64>,
    /// The size of that snapshot.
    snapshot_bytes: Option<u64>,
    /// The end of input firing every key's timer (all at one timestamp), until the last count
    /// is out.
    fire_seconds: Option<f64>,
    /// The same with every key's timer at a timestamp of its own.
    fire_distinct_seconds: Option<f64>,
    /// The job on the mini-cluster with checkpoints every second while it reads: completed
    /// checkpoints, their mean duration (trigger to complete) and their largest size.
    job_seconds: Option<f64>,
    job_checkpoints: Option<u64>,
    job_checkpoint_ms: Option<f64>,
    job_checkpoint_bytes: Option<u64>,
    /// A phase that did not finish within `RHEO_BENCH_STATE_LIMIT_S` (default 600 s).
    timed_out: Option<String>,
}

fn orchestrate() -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let lines: u64 = std::env::var("RHEO_BENCH_LINES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000_000);
    // e.g. RHEO_BENCH_CASES=state-scale-1m,state-scale-10m: only these cases.
    let only = std::env::var("RHEO_BENCH_CASES").ok();
    let mut cases = vec!["bare", "engine-p1", "engine-p2", "checkpoint-file"];
    if std::env::var_os("RHEO_TEST_S3").is_some() {
        cases.push("checkpoint-s3");
    } else {
        eprintln!("RHEO_TEST_S3 not set: skipping checkpoint-s3 (make bench starts SeaweedFS)");
    }
    cases.extend([
        "recovery",
        "rescale-restart",
        "rescale",
        "cluster-1tm",
        "cluster-2tm",
        "cluster-recovery",
        "rescale-cluster",
    ]);
    if std::env::var_os(compare::FLINK_CLASSPATH).is_some() {
        cases.extend(["compare-rheo-p1", "compare-flink-p1", "compare-rheo-p2", "compare-flink-p2"]);
    } else {
        eprintln!("{} not set: skipping the comparison with Flink (make bench sets it)", compare::FLINK_CLASSPATH);
        cases.extend(["compare-rheo-p1", "compare-rheo-p2"]);
    }
    if std::env::var_os("KAFKA_BOOTSTRAP").is_some() {
        cases.extend(["kafka-exactly-once", "kafka-at-least-once"]);
    } else {
        eprintln!("KAFKA_BOOTSTRAP not set: skipping the Kafka cases (make bench starts a broker)");
    }
    let kafka_lines: u64 =
        std::env::var("RHEO_BENCH_KAFKA_LINES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    // The comparison reads a file; Flink's pace makes 10M lines take minutes per case.
    let compare_lines: u64 =
        std::env::var("RHEO_BENCH_COMPARE_LINES").ok().and_then(|v| v.parse().ok()).unwrap_or(4_000_000);
    if let Some(only) = &only {
        let only: Vec<&str> = only.split(',').map(str::trim).collect();
        cases.retain(|c| only.contains(c));
        cases.extend(
            only.iter()
                .filter(|c| {
                    c.starts_with("state-scale-") || c.starts_with("state-checkpoints-") || **c == "state-memory"
                })
                .copied(),
        );
    } else {
        cases.extend([
            "state-scale-1m",
            "state-scale-10m",
            "state-scale-1m-disk",
            "state-scale-10m-disk",
            "state-checkpoints-incremental",
            "state-checkpoints-full",
            "state-checkpoints-window-incremental",
            "state-checkpoints-window-full",
            "state-memory",
        ]);
    }
    println!(
        "word count: lines of {WORDS_PER_LINE} words from a {VOCABULARY}-word vocabulary, key by word, 1 s tumbling window, sum; {lines} lines per case; {} cores",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    println!(
        "{:<16} {:>10} {:>12} {:>13} {:>9} {:>12} {:>10} {:>10}",
        "case", "seconds", "lines/s", "words/s", "RSS MiB", "latency p50/p99", "chk ms", "max chk KiB"
    );
    let mut reports: Vec<Report> = Vec::new();
    for case in cases {
        // A backtrace on the recovery case's injected panic would measure symbolization, not
        // recovery: the cases run as production would, without RUST_BACKTRACE.
        let case_lines = match case {
            c if c.starts_with("compare-") => compare_lines,
            c if c.starts_with("kafka-") => kafka_lines,
            _ => lines,
        };
        let output = std::process::Command::new(&exe)
            .args(["case", case, &case_lines.to_string()])
            .env("RUST_BACKTRACE", "0")
            .output()?;
        if !output.status.success() {
            bail!("case {case} failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        let report: Report = serde_json::from_slice(
            output.stdout.split(|&b| b == b'\n').rfind(|l| !l.is_empty()).context("case printed nothing")?,
        )?;
        let latency = match (report.latency_p50_ms, report.latency_p99_ms) {
            (Some(a), Some(b)) => format!("{a}/{b} ms"),
            _ => "-".into(),
        };
        let opt = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
        println!(
            "{:<16} {:>10.2} {:>12.0} {:>13.0} {:>9.1} {:>15} {:>10} {:>10}",
            report.case,
            report.seconds,
            report.lines_per_second,
            report.words_per_second,
            report.peak_rss_mib,
            latency,
            opt(report.checkpoint_ms),
            report.checkpoint_bytes.map(|b| format!("{:.0}", b as f64 / 1024.0)).unwrap_or_else(|| "-".into()),
        );
        reports.push(report);
    }
    let rate = |name: &str| reports.iter().find(|r| r.case == name).map(|r| r.lines_per_second);
    if let (Some(bare), Some(p1)) = (rate("bare"), rate("engine-p1")) {
        println!("engine p=1 / bare loop: {:.0} %", 100.0 * p1 / bare);
    }
    if let (Some(p1), Some(p2)) = (rate("engine-p1"), rate("engine-p2")) {
        println!("engine p=2 / p=1: {:.2}x", p2 / p1);
    }
    for case in ["checkpoint-file", "checkpoint-s3"] {
        if let (Some(p1), Some(c)) = (rate("engine-p1"), rate(case)) {
            println!("{case}: throughput cost {:.1} % against no checkpoints", 100.0 * (1.0 - c / p1));
        }
    }
    if let Some(r) = reports.iter().find(|r| r.case == "recovery") {
        println!(
            "recovery: {:.1} ms from a task failure to the first record the restarted keyed task takes in",
            r.recovery_ms.unwrap_or(f64::NAN)
        );
    }
    for (case, how) in
        [("rescale-restart", "before: restart from the newest checkpoint"), ("rescale", "after: stop-with-checkpoint")]
    {
        if let Some(r) = reports.iter().find(|r| r.case == case) {
            println!(
                "rescale 1 -> 2 ({how}): {:.0} ms pause, {} records reprocessed",
                r.rescale_pause_ms.unwrap_or(f64::NAN),
                r.reprocessed.map_or("?".into(), |n| n.to_string())
            );
        }
    }
    if let Some(r) = reports.iter().find(|r| r.case == "rescale-cluster") {
        println!(
            "rescale 1 -> 2 on two TaskManager processes (stop-with-checkpoint, back-pressured map): {:.0} ms pause, {} records reprocessed",
            r.rescale_pause_ms.unwrap_or(f64::NAN),
            r.reprocessed.map_or("?".into(), |n| n.to_string())
        );
    }
    if let (Some(one), Some(two)) = (rate("cluster-1tm"), rate("cluster-2tm")) {
        println!("p=2 across two TaskManager processes / in one TaskManager: {:.2}x", two / one);
    }
    if let Some(r) = reports.iter().find(|r| r.case == "cluster-recovery") {
        println!(
            "cluster recovery: {:.0} ms from TaskManager SIGKILL to the first checkpoint after the restart",
            r.recovery_ms.unwrap_or(f64::NAN)
        );
    }
    print_comparison(&reports, compare_lines);
    let kafka_rate = |case: &str| reports.iter().find(|r| r.case == case).map(|r| r.lines_per_second);
    if let (Some(eos), Some(alo)) = (kafka_rate("kafka-exactly-once"), kafka_rate("kafka-at-least-once")) {
        println!(
            "Kafka to Kafka ({kafka_lines} lines, p=2, checkpoints every 1 s): exactly-once runs at {:.0} % of at-least-once",
            100.0 * eos / alo
        );
    }
    print_definitions();
    let scale: Vec<&Report> = reports.iter().filter(|r| r.state.is_some()).collect();
    if !scale.is_empty() {
        println!(
            "state scale (final-count word count, short words each seen twice; see crates/rheo-bench/src/main.rs; \
             job words/s: the 2N words of the job on the mini-cluster over its seconds, checkpoints included):"
        );
        println!(
            "{:<16} {:>10} {:>10} {:>11} {:>11} {:>11} {:>10} {:>12} {:>8} {:>11} {:>12} {:>12}",
            "case",
            "keys",
            "bytes/key",
            "sync ms",
            "write ms",
            "snap MiB",
            "fire s",
            "fire dist s",
            "chks",
            "chk ms",
            "max chk MiB",
            "job words/s"
        );
        let f = |v: Option<f64>, p: usize| v.map(|v| format!("{v:.p$}")).unwrap_or_else(|| "-".into());
        let mib = |v: Option<u64>| f(v.map(|b| b as f64 / (1024.0 * 1024.0)), 1);
        for r in scale {
            let s = r.state.as_ref().expect("state report");
            println!(
                "{:<16} {:>10} {:>10} {:>11} {:>11} {:>11} {:>10} {:>12} {:>8} {:>11} {:>12} {:>12}",
                r.case,
                s.keys,
                f(s.bytes_per_key, 0),
                f(s.sync_pause_ms, 0),
                f(s.snapshot_write_ms, 0),
                mib(s.snapshot_bytes),
                f(s.fire_seconds, 2),
                f(s.fire_distinct_seconds, 2),
                s.job_checkpoints.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
                f(s.job_checkpoint_ms, 0),
                mib(s.job_checkpoint_bytes),
                f(s.job_seconds.map(|seconds| 2.0 * s.keys as f64 / seconds), 0),
            );
            if let Some(phase) = &s.timed_out {
                println!("  {}: {phase} did not finish within the limit", r.case);
            }
        }
    }
    state_checkpoints::print(&reports);
    state_memory::print(&reports);
    Ok(())
}

/// The Rheo and Flink cases side by side, and their ratios.
fn print_comparison(reports: &[Report], lines: u64) {
    let compared: Vec<&Report> = reports.iter().filter(|r| r.case.starts_with("compare-")).collect();
    if compared.is_empty() {
        return;
    }
    println!(
        "Rheo and Flink 2.3, the same event-time word count over the same {lines}-line file, in this run \
         (crates/rheo-bench/src/compare.rs):"
    );
    println!("{:<18} {:>10} {:>12} {:>15} {:>13}", "case", "seconds", "lines/s", "CPU s/M lines", "peak RSS MiB");
    for r in &compared {
        println!(
            "{:<18} {:>10.2} {:>12.0} {:>15.2} {:>13.1}",
            r.case,
            r.seconds,
            r.lines_per_second,
            r.cpu_seconds_per_million_lines.unwrap_or(f64::NAN),
            r.peak_rss_mib
        );
    }
    for p in ["p1", "p2"] {
        let find = |engine: &str| compared.iter().find(|r| r.case == format!("compare-{engine}-{p}"));
        if let (Some(rheo), Some(flink)) = (find("rheo"), find("flink")) {
            let cpu = |r: &Report| r.cpu_seconds_per_million_lines.unwrap_or(f64::NAN);
            println!(
                "{p}: Rheo / Flink: {:.1}x the lines/s, {:.1}x less CPU per line, {:.0}x less peak memory",
                rheo.lines_per_second / flink.lines_per_second,
                cpu(flink) / cpu(rheo),
                flink.peak_rss_mib / rheo.peak_rss_mib
            );
        }
    }
}

/// What each printed figure means.
fn print_definitions() {
    println!("definitions:");
    for line in [
        "lines/s, words/s: input lines (of 8 words) over the case's wall-clock seconds; for the engine cases the job on \
         the mini-cluster in this process, for cluster-* from deployment to the end of the job, for compare-* from \
         starting the engine's process to its exit (start-up included)",
        "RSS MiB: the largest resident set of the process running the job (cluster-*: of the largest TaskManager)",
        "latency p50/p99: from a window's end to its result reaching the sink (processing time)",
        "chk ms, max chk KiB: mean checkpoint duration from trigger to completion, largest checkpoint size",
        "recovery: from a task failure to the first record the keyed task of the restarted attempt takes in \
         (in-process restart; records flowing again through the keyed tasks, not a log line)",
        "cluster recovery: from a TaskManager's SIGKILL to the first checkpoint completed after it (all tasks \
         running and consistent again)",
        "rescale pause: the longest gap between two records the map sees after the rescale request (rescale-cluster: \
         between two records leaving the maps of any process, by the times they stamp on them)",
        "CPU s/M lines: user and system CPU seconds of the engine's process per million input lines",
        "kafka-*: input lines over the seconds of `rheo run kafka-word-count --bounded` from start to exit, the \
         output read back with read_committed and checked",
    ] {
        println!("  {line}");
    }
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn run_case(name: &str, lines: u64) -> anyhow::Result<Report> {
    let started = Instant::now();
    let mut report = Report { case: name.to_string(), lines, ..Default::default() };
    match name {
        "bare" => bare_loop(lines),
        "engine-p1" => engine(&mut report, lines, 1, None)?,
        "engine-p2" => engine(&mut report, lines, 2, None)?,
        "checkpoint-file" => {
            let dir = std::env::temp_dir().join(format!("rheo-bench-{}", std::process::id()));
            engine(&mut report, lines, 1, Some(dir.to_str().context("temp dir")?.to_string()))?;
            let _ = std::fs::remove_dir_all(dir);
        }
        "checkpoint-s3" => {
            let root = std::env::var("RHEO_TEST_S3").context("RHEO_TEST_S3")?;
            engine(&mut report, lines, 1, Some(format!("{root}/bench-{}", std::process::id())))?;
        }
        "recovery" => recovery(&mut report, lines)?,
        "rescale-restart" => rescale(&mut report, lines, false)?,
        "rescale" => rescale(&mut report, lines, true)?,
        "cluster-1tm" => return cluster::throughput(report, lines, 1, 2),
        "cluster-2tm" => return cluster::throughput(report, lines, 2, 1),
        "cluster-recovery" => return cluster::recovery(report),
        "rescale-cluster" => return cluster::rescale(report),
        "state-scale-1m" => state_scale::run(&mut report, 1_000_000, false)?,
        "state-scale-10m" => state_scale::run(&mut report, 10_000_000, false)?,
        "state-scale-1m-disk" => state_scale::run(&mut report, 1_000_000, true)?,
        "state-scale-10m-disk" => state_scale::run(&mut report, 10_000_000, true)?,
        "state-checkpoints-incremental" => state_checkpoints::run(&mut report, true, false)?,
        "state-checkpoints-full" => state_checkpoints::run(&mut report, false, false)?,
        "state-checkpoints-window-incremental" => state_checkpoints::run(&mut report, true, true)?,
        "state-checkpoints-window-full" => state_checkpoints::run(&mut report, false, true)?,
        "state-memory" => state_memory::run(&mut report)?,
        "kafka-exactly-once" => return kafka::run(report, lines, "exactly-once"),
        "kafka-at-least-once" => return kafka::run(report, lines, "at-least-once"),
        "compare-rheo-p1" => return compare::run(report, lines, compare::Engine::Rheo, 1),
        "compare-flink-p1" => return compare::run(report, lines, compare::Engine::Flink, 1),
        "compare-rheo-p2" => return compare::run(report, lines, compare::Engine::Rheo, 2),
        "compare-flink-p2" => return compare::run(report, lines, compare::Engine::Flink, 2),
        other => bail!("unknown case '{other}'"),
    }
    report.seconds = started.elapsed().as_secs_f64();
    report.lines_per_second = lines as f64 / report.seconds;
    report.words_per_second = report.lines_per_second * WORDS_PER_LINE as f64;
    report.peak_rss_mib = peak_rss_mib();
    Ok(report)
}

/// The ceiling: the same lines, split and counted in one thread with a 1 s window roll-over.
fn bare_loop(lines: u64) {
    let generate = word_lines(SEED, VOCABULARY, WORDS_PER_LINE);
    let mut counts: HashMap<String, u64, foldhash::fast::RandomState> = HashMap::default();
    let mut window_end = now_ms() / 1000 * 1000 + 1000;
    let mut emitted = 0u64;
    for i in 0..lines {
        let line = generate(i);
        for word in words(&line) {
            match counts.get_mut(word) {
                Some(c) => *c += 1,
                None => {
                    counts.insert(word.to_string(), 1);
                }
            }
        }
        if i % 1024 == 0 && now_ms() >= window_end {
            emitted += counts.drain().map(|(_, c)| c).sum::<u64>();
            window_end += 1000;
        }
    }
    emitted += counts.values().sum::<u64>();
    assert_eq!(emitted, lines * WORDS_PER_LINE as u64);
}

/// Window results' latency: how long after its window's end each result reached the sink; and
/// each result's (window end, word hash), so the run can check that every (window, word) was
/// emitted once (the sum of counts alone cannot see a window that fires twice with a split count).
struct LatencySink {
    latencies: Arc<Mutex<Vec<i64>>>,
    local: Vec<i64>,
    results: Arc<Mutex<Vec<(i64, u64)>>>,
    local_results: Vec<(i64, u64)>,
    words: Arc<AtomicU64>,
}

impl SinkFunction<(u64, i64, u64)> for LatencySink {
    fn invoke(&mut self, (count, window_end, word): (u64, i64, u64), _timestamp: Timestamp) -> Result<(), SinkError> {
        self.words.fetch_add(count, Ordering::Relaxed);
        if self.local.len() < 1_000_000 {
            self.local.push(now_ms() - window_end);
        }
        self.local_results.push((window_end, word));
        Ok(())
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        self.latencies.lock().expect("latencies").append(&mut self.local);
        self.results.lock().expect("results").append(&mut self.local_results);
        Ok(())
    }
}

/// A word's hash, for telling results apart without keeping every word.
fn word_hash(word: &str) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(7).hash_one(word)
}

fn word_count_job(
    env: &StreamEnv,
    lines: u64,
    latencies: Arc<Mutex<Vec<i64>>>,
    results: Arc<Mutex<Vec<(i64, u64)>>>,
    words: Arc<AtomicU64>,
) {
    let config = DatagenConfig { count: Some(lines), ..Default::default() };
    env.datagen(config, word_lines(SEED, VOCABULARY, WORDS_PER_LINE))
        .flat_map(|line: String, out: &mut Collector<'_, WordWithCount>| tokenize(&line, out))
        .key_by(|wc: &WordWithCount| wc.word.clone())
        .window(TumblingProcessingTimeWindows::of(Duration::from_secs(1)))
        .aggregate_with(
            CountAggregate,
            |word: &compact_str::CompactString,
             w: &TimeWindow,
             counts: &[u64],
             out: &mut Collector<'_, (u64, i64, u64)>| { out.collect((counts[0], w.end, word_hash(word))) },
        )
        .add_sink("Latency", move |_| LatencySink {
            latencies: latencies.clone(),
            local: Vec::new(),
            results: results.clone(),
            local_results: Vec::new(),
            words: words.clone(),
        });
}

fn engine(report: &mut Report, lines: u64, parallelism: usize, checkpoints: Option<String>) -> anyhow::Result<()> {
    let mut config = Configuration::new();
    if let Some(dir) = &checkpoints {
        config.set(options::CHECKPOINT_INTERVAL.key, "1 s");
        config.set(options::CHECKPOINTS_DIR.key, dir.as_str());
    }
    let mut env = StreamEnv::new(config.clone());
    env.set_parallelism(parallelism);
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let words = Arc::new(AtomicU64::new(0));
    let results = Arc::new(Mutex::new(Vec::new()));
    word_count_job(&env, lines, latencies.clone(), results.clone(), words.clone());
    let graph = std::mem::take(&mut *env.graph());
    let result = MiniCluster::new(config).run(&report.case, graph, &env.plan_settings()?)?;
    anyhow::ensure!(words.load(Ordering::Relaxed) == lines * WORDS_PER_LINE as u64, "every word counted once");
    let mut results = std::mem::take(&mut *results.lock().expect("results"));
    let emitted = results.len();
    results.sort_unstable();
    results.dedup();
    anyhow::ensure!(
        results.len() == emitted,
        "every (window, word) emitted once: {} of {emitted} results repeat an earlier one",
        emitted - results.len()
    );
    let mut latencies = std::mem::take(&mut *latencies.lock().expect("latencies"));
    latencies.sort_unstable();
    if !latencies.is_empty() {
        report.latency_p50_ms = Some(latencies[latencies.len() / 2]);
        report.latency_p99_ms = Some(latencies[latencies.len() * 99 / 100]);
    }
    if checkpoints.is_some() {
        let stats = &result.checkpoints;
        report.checkpoints = Some(stats.completed);
        if stats.completed > 0 {
            report.checkpoint_ms = Some(stats.total_duration.as_secs_f64() * 1000.0 / stats.completed as f64);
            report.checkpoint_bytes = Some(stats.max_size);
        }
    }
    Ok(())
}

/// A task fails halfway; the job restarts at once from its last checkpoint. Measures the time
/// from the failure to the first record processed after the restart.
fn recovery(report: &mut Report, lines: u64) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("rheo-bench-recovery-{}", std::process::id()));
    let mut config = Configuration::new();
    config.set(options::CHECKPOINT_INTERVAL.key, "500 ms");
    config.set(options::CHECKPOINTS_DIR.key, dir.to_str().context("temp dir")?);
    config.set(options::RESTART_STRATEGY.key, "fixed-delay");
    config.set(options::FIXED_DELAY_ATTEMPTS.key, "1");
    config.set(options::FIXED_DELAY_DELAY.key, "0 ms");
    let mut env = StreamEnv::new(config.clone());
    env.set_parallelism(1);
    let failed_at = Arc::new(AtomicI64::new(0));
    let resumed_at = Arc::new(AtomicI64::new(0));
    let seen = Arc::new(AtomicU64::new(0));
    let (f, r) = (failed_at.clone(), resumed_at.clone());
    let fail_after = lines / 2;
    let datagen = DatagenConfig { count: Some(lines), ..Default::default() };
    // Recovered means records flowing again through the keyed task: `MarkResumed` notes the
    // first record a keyed task of the restarted attempt takes in.
    env.datagen(datagen, word_lines(SEED, VOCABULARY, WORDS_PER_LINE))
        .map(move |line: String| {
            let n = seen.fetch_add(1, Ordering::Relaxed) + 1;
            if n == fail_after {
                f.store(rheo_now_micros(), Ordering::Relaxed);
                panic!("benchmark failure");
            }
            line
        })
        .flat_map(|line: String, out: &mut Collector<'_, WordWithCount>| tokenize(&line, out))
        .key_by(|wc: &WordWithCount| wc.word.clone())
        .process(MarkResumed { failed_at: failed_at.clone(), resumed_at: r, restarted: false })
        .discard();
    let graph = std::mem::take(&mut *env.graph());
    let result = MiniCluster::new(config).run("recovery", graph, &env.plan_settings()?)?;
    let _ = std::fs::remove_dir_all(dir);
    anyhow::ensure!(result.restarts == 1, "the job restarted once");
    let (failed, resumed) = (failed_at.load(Ordering::Relaxed), resumed_at.load(Ordering::Relaxed));
    anyhow::ensure!(failed > 0 && resumed > failed, "failure and resumption observed");
    report.recovery_ms = Some((resumed - failed) as f64 / 1000.0);
    Ok(())
}

/// Notes when the keyed task of a restarted attempt takes in its first record. A function
/// instance is made and opened per attempt, so records the failed attempt's keyed task still
/// drains do not count.
#[derive(Clone)]
struct MarkResumed {
    failed_at: Arc<AtomicI64>,
    resumed_at: Arc<AtomicI64>,
    /// Opened after the failure: this instance belongs to the restarted attempt.
    restarted: bool,
}

impl KeyedProcessFunction<CompactString, WordWithCount, WordWithCount> for MarkResumed {
    fn open(&mut self, _state: &mut KeyedStateBackend<CompactString>) {
        self.restarted = self.failed_at.load(Ordering::Relaxed) != 0;
    }

    fn process_element(&mut self, value: WordWithCount, ctx: &mut KeyedContext<'_, CompactString, WordWithCount>) {
        if self.restarted && self.resumed_at.load(Ordering::Relaxed) == 0 {
            self.resumed_at.store(rheo_now_micros(), Ordering::Relaxed);
        }
        ctx.collect(value);
    }
}

/// Numbers through a map at parallelism 1, rescaled to 2 when half have passed: by a
/// stop-with-checkpoint (`graceful`) or through the restart path (a failure at the same point,
/// with the new parallelism asked for). Measures the longest gap between two records the map
/// sees after the request, and how many records it saw more than once.
fn rescale(report: &mut Report, lines: u64, graceful: bool) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("rheo-bench-rescale-{}", std::process::id()));
    let mut config = Configuration::new();
    config.set(options::CHECKPOINT_INTERVAL.key, "500 ms");
    config.set(options::CHECKPOINTS_DIR.key, dir.to_str().context("temp dir")?);
    config.set(options::RESTART_STRATEGY.key, "fixed-delay");
    config.set(options::FIXED_DELAY_ATTEMPTS.key, "1");
    config.set(options::FIXED_DELAY_DELAY.key, "0 ms");
    let mut env = StreamEnv::new(config.clone());
    env.set_parallelism(1);
    let cluster = MiniCluster::new(config);
    let handle = cluster.handle();
    let seen: Arc<Vec<std::sync::atomic::AtomicU8>> = Arc::new((0..lines).map(|_| Default::default()).collect());
    let passed = Arc::new(AtomicU64::new(0));
    let (asked_at, last_at, max_gap) =
        (Arc::new(AtomicI64::new(0)), Arc::new(AtomicI64::new(0)), Arc::new(AtomicI64::new(0)));
    let (s, a, l, g) = (seen.clone(), asked_at.clone(), last_at.clone(), max_gap.clone());
    // Paced over about 4 s, so that checkpoints complete before the rescale halfway.
    let datagen = DatagenConfig { count: Some(lines), rate: Some(lines as f64 / 4.0) };
    env.datagen(datagen, Arc::new(|i| i))
        .rebalance()
        .map(move |i: u64| {
            let now = rheo_now_micros();
            s[i as usize].fetch_add(1, Ordering::Relaxed);
            if a.load(Ordering::Relaxed) != 0 {
                let gap = now - l.swap(now, Ordering::Relaxed).max(a.load(Ordering::Relaxed));
                g.fetch_max(gap, Ordering::Relaxed);
            }
            if passed.fetch_add(1, Ordering::Relaxed) + 1 == lines / 2 {
                a.store(now, Ordering::Relaxed);
                l.store(now, Ordering::Relaxed);
                handle.set_parallelism(2);
                if !graceful {
                    panic!("benchmark: rescale through the restart path");
                }
            }
            i
        })
        .discard();
    let graph = std::mem::take(&mut *env.graph());
    let result = cluster.run("rescale", graph, &env.plan_settings()?)?;
    let _ = std::fs::remove_dir_all(dir);
    anyhow::ensure!(result.restarts == u32::from(!graceful), "restarts: {}", result.restarts);
    let missing = seen.iter().filter(|c| c.load(Ordering::Relaxed) == 0).count();
    anyhow::ensure!(missing == 0, "{missing} records never reached the map");
    let twice: u64 = seen.iter().map(|c| u64::from(c.load(Ordering::Relaxed).saturating_sub(1))).sum();
    report.reprocessed = Some(twice);
    report.rescale_pause_ms = Some(max_gap.load(Ordering::Relaxed) as f64 / 1000.0);
    Ok(())
}

fn rheo_now_micros() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// The state-scale cases: `keys` distinct words, each seen twice, counted by the final-count
/// word count's function ([`CountAtEnd`](rheo_cli::jobs::words::CountAtEnd): a count in keyed
/// state and an event-time timer at the end of input per word).
///
/// - On the operator alone (driven as the task loop drives it, in this thread): resident memory
///   per key after loading (RSS before and after, divided by the keys), the synchronous part of
///   a checkpoint (the time `barrier` holds the task thread), the time to write the snapshot
///   from what the barrier captured (a view, written off the task thread in a job) and its size, then the end of
///   input firing every timer. Again with every key's timer at a time of its own.
/// - The job on the mini-cluster at parallelism 1 with checkpoints every second to a local
///   directory: how many complete while it reads, their mean duration and largest size.
///
/// A phase that takes longer than `RHEO_BENCH_STATE_LIMIT_S` seconds (default 600) ends the case
/// with what was measured so far (main's quadratic timers took hours for 10M keys).
mod state_scale {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use anyhow::Context;
    use compact_str::{CompactString, format_compact};
    use rheo::config::options;
    use rheo::connectors::datagen::DatagenConfig;
    use rheo::prelude::*;
    use rheo::runtime::driver::minicluster::MiniCluster;
    use rheo::runtime::keyed::{KeyedContext, KeyedProcessFunction, KeyedProcessOperator};
    use rheo::runtime::output::{Chained, CheckpointBarrier, Output, TaskSnapshot};
    use rheo::runtime::state::KeyedStateBackend;
    use rheo_cli::jobs::words::{CountAtEnd, WordWithCount, tokenize};
    use rheo_runtime::testing::{HarnessSetup, OneInputHarness};

    use super::{Report, StateScale, WORDS_PER_LINE, rss_bytes};

    /// Key `index` of `keys`: short words, as a vocabulary's are.
    fn word(index: u64) -> CompactString {
        format_compact!("w{index:x}")
    }

    /// Counts what reaches it: the firing's output, without keeping 10M records.
    struct Count(Arc<Mutex<u64>>);

    impl Output<WordWithCount> for Count {
        fn collect(&mut self, value: WordWithCount, _timestamp: Timestamp) {
            *self.0.lock().expect("count") += value.count;
        }
        fn watermark(&mut self, _watermark: Timestamp) {}
        fn idle(&mut self, _idle: bool) {}
        fn tick(&mut self, _now: Timestamp) -> Option<Timestamp> {
            None
        }
        fn flush(&mut self) {}
        fn finish(&mut self) {}
        fn barrier(&mut self, _barrier: &CheckpointBarrier, _snapshot: &mut TaskSnapshot) {}
        fn checkpoint_complete(&mut self, _checkpoint_id: u64) {}
        fn close(&mut self) {}
    }

    /// The final-count function, with each key's timer at a time of its own (its index).
    #[derive(Clone, Default)]
    struct CountAtDistinctTimes(CountAtEnd);

    impl KeyedProcessFunction<CompactString, (WordWithCount, Timestamp), WordWithCount> for CountAtDistinctTimes {
        fn open(&mut self, state: &mut KeyedStateBackend<CompactString>) {
            self.0.open(state);
        }
        fn process_element(
            &mut self,
            (value, at): (WordWithCount, Timestamp),
            ctx: &mut KeyedContext<'_, CompactString, WordWithCount>,
        ) {
            ctx.register_event_time_timer(at);
            self.0.process_element(value, ctx);
        }
        fn on_timer(&mut self, timestamp: Timestamp, ctx: &mut KeyedContext<'_, CompactString, WordWithCount>) {
            self.0.on_timer(timestamp, ctx);
        }
    }

    struct Limit {
        case: String,
        state: Arc<Mutex<StateScale>>,
    }

    impl Limit {
        /// Ends the process with what was measured if `phase` is not done within the limit.
        fn phase<T>(&self, phase: &str, run: impl FnOnce() -> T) -> T {
            let limit = std::env::var("RHEO_BENCH_STATE_LIMIT_S").ok().and_then(|v| v.parse().ok()).unwrap_or(600);
            let done = Arc::new(Mutex::new(false));
            let (watch_done, state, phase_name, case) =
                (done.clone(), self.state.clone(), phase.to_string(), self.case.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(limit);
                while Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(200));
                    if *watch_done.lock().expect("done") {
                        return;
                    }
                }
                let mut state = state.lock().expect("state").clone();
                state.timed_out = Some(format!("{phase_name} (limit {limit} s)"));
                let report = super::Report { case, state: Some(state), ..Default::default() };
                println!("{}", serde_json::to_string(&report).expect("report"));
                std::process::exit(0);
            });
            let result = run();
            *done.lock().expect("done") = true;
            result
        }
    }

    /// `disk`: with the disk state backend (`state.backend.type: disk`, its default
    /// `state.backend.disk.cached-keys`), in the system's temporary directory.
    pub fn run(report: &mut Report, keys: u64, disk: bool) -> anyhow::Result<()> {
        let state = Arc::new(Mutex::new(StateScale { keys, ..Default::default() }));
        let limit = Limit { case: report.case.clone(), state: state.clone() };
        let counted = Arc::new(Mutex::new(0u64));
        let mut config = Configuration::new();
        if disk {
            config.set(options::STATE_BACKEND_TYPE.key, "disk");
        }
        let setup = HarnessSetup { config: Arc::new(config.clone()), ..HarnessSetup::default() };

        // One timestamp for all timers, as the word count's.
        let rss_before = rss_bytes();
        let out = counted.clone();
        let mut harness = OneInputHarness::<WordWithCount, WordWithCount>::with_setup(setup.clone(), move |ctx, _| {
            let op =
                KeyedProcessOperator::new(Arc::new(|wc: &WordWithCount| wc.word.clone()), CountAtEnd::default(), ctx);
            Box::new(Chained { op, node: ctx.node, out: Box::new(Count(out.clone())) })
        });
        limit.phase("loading", || {
            for _ in 0..2 {
                for index in 0..keys {
                    harness.process(WordWithCount { word: word(index), count: 1 }, 0);
                }
            }
        });
        let loaded = rss_bytes().saturating_sub(rss_before);
        state.lock().expect("state").bytes_per_key = Some(loaded as f64 / keys as f64);
        let started = Instant::now();
        let snapshot = limit.phase("snapshot", || harness.barrier(1));
        let sync = started.elapsed();
        let started = Instant::now();
        let written = limit.phase("writing the snapshot", || snapshot.into_bytes());
        let write = started.elapsed();
        {
            let mut state = state.lock().expect("state");
            state.sync_pause_ms = Some(sync.as_secs_f64() * 1000.0);
            state.snapshot_write_ms = Some(write.as_secs_f64() * 1000.0);
            state.snapshot_bytes = Some(written.iter().map(|(_, b)| b.len() as u64).sum());
        }
        drop(written);
        let started = Instant::now();
        limit.phase("firing", || harness.finish());
        state.lock().expect("state").fire_seconds = Some(started.elapsed().as_secs_f64());
        anyhow::ensure!(*counted.lock().expect("count") == 2 * keys, "every word counted");
        drop(harness);

        // A timestamp per timer.
        *counted.lock().expect("count") = 0;
        let out = counted.clone();
        let mut harness =
            OneInputHarness::<(WordWithCount, Timestamp), WordWithCount>::with_setup(setup, move |ctx, _| {
                let op = KeyedProcessOperator::new(
                    Arc::new(|(wc, _): &(WordWithCount, Timestamp)| wc.word.clone()),
                    CountAtDistinctTimes::default(),
                    ctx,
                );
                Box::new(Chained { op, node: ctx.node, out: Box::new(Count(out.clone())) })
            });
        for index in 0..keys {
            harness.process((WordWithCount { word: word(index), count: 2 }, index as Timestamp), 0);
        }
        let started = Instant::now();
        limit.phase("firing at distinct times", || harness.finish());
        state.lock().expect("state").fire_distinct_seconds = Some(started.elapsed().as_secs_f64());
        anyhow::ensure!(*counted.lock().expect("count") == 2 * keys, "every word counted");
        drop(harness);

        // The job, with checkpoints while it reads.
        let dir = std::env::temp_dir().join(format!("rheo-bench-state-{}", std::process::id()));
        config.set(options::CHECKPOINT_INTERVAL.key, "1 s");
        config.set(options::CHECKPOINTS_DIR.key, dir.to_str().context("temp dir")?);
        let mut env = StreamEnv::new(config.clone());
        env.set_parallelism(1);
        let per_line = WORDS_PER_LINE as u64;
        let lines = 2 * keys / per_line;
        let generate: Arc<dyn Fn(u64) -> String + Send + Sync> = Arc::new(move |line: u64| {
            let mut text = String::with_capacity(WORDS_PER_LINE * 8);
            for k in 0..per_line {
                if k > 0 {
                    text.push(' ');
                }
                text.push_str(&word((line * per_line + k) % keys));
            }
            text
        });
        env.datagen(DatagenConfig { count: Some(lines), ..Default::default() }, generate)
            .flat_map(|line: String, out: &mut Collector<'_, WordWithCount>| tokenize(&line, out))
            .key_by(|wc: &WordWithCount| wc.word.clone())
            .process(CountAtEnd::default())
            .discard();
        let graph = std::mem::take(&mut *env.graph());
        let started = Instant::now();
        let result = limit.phase("job", || MiniCluster::new(config).run(&report.case, graph, &env.plan_settings()?))?;
        let _ = std::fs::remove_dir_all(dir);
        {
            let mut state = state.lock().expect("state");
            state.job_seconds = Some(started.elapsed().as_secs_f64());
            let stats = &result.checkpoints;
            state.job_checkpoints = Some(stats.completed);
            if stats.completed > 0 {
                state.job_checkpoint_ms = Some(stats.total_duration.as_secs_f64() * 1000.0 / stats.completed as f64);
                state.job_checkpoint_bytes = Some(stats.max_size);
            }
        }
        report.state = Some(state.lock().expect("state").clone());
        Ok(())
    }
}

/// What checkpoints cost when a small part of a large state changes, with incremental
/// checkpoints and without.
///
/// The final-count word count's keyed function (`CountAtEnd`: a count per key and a timer per
/// key at the end of input) on the mini-cluster at parallelism 1, checkpointing every second to a
/// local directory. One source emits each of `RHEO_BENCH_STATE_KEYS` keys once, as fast as it
/// can (the state is loaded within the first checkpoints); a second emits `keys / 100` records a
/// second over random keys for `RHEO_BENCH_STATE_SECONDS` seconds (30 by default): about 1 % of
/// the keys change per second. Measured, from the coordinator's statistics:
/// - the first checkpoint: duration (trigger to completion) and bytes uploaded;
/// - the steady state: the checkpoints that completed once every key was loaded, except the
///   final one at the end of input (every timer fired, every key dropped): their median
///   duration, median and largest bytes uploaded, and the size of the state they describe.
mod state_checkpoints {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, Ordering};

    use anyhow::Context;
    use compact_str::format_compact;
    use rheo::config::options;
    use rheo::connectors::datagen::DatagenConfig;
    use rheo::prelude::*;
    use rheo::runtime::checkpoint::coordinator::CheckpointSample;
    use rheo::runtime::driver::minicluster::MiniCluster;
    use rheo::runtime::task::now_ms;
    use rheo_cli::jobs::words::{CountAggregate, CountAtEnd, WordWithCount};
    use std::time::Duration;

    use super::Report;

    #[derive(serde::Serialize, serde::Deserialize, Default, Clone)]
    pub struct Measured {
        pub keys: u64,
        pub incremental: bool,
        /// The keys counted in a window (else by a keyed process function).
        #[serde(default)]
        pub windowed: bool,
        pub first_ms: f64,
        pub first_bytes: u64,
        pub steady_checkpoints: usize,
        pub steady_median_ms: f64,
        pub steady_max_ms: f64,
        pub steady_median_bytes: u64,
        pub steady_max_bytes: u64,
        /// The state a steady checkpoint describes (its files and those it builds on).
        pub state_bytes: u64,
    }

    fn env_u64(name: &str, default: u64) -> u64 {
        std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
    }

    fn median<T: Copy + PartialOrd>(mut values: Vec<T>) -> Option<T> {
        values.sort_by(|a, b| a.partial_cmp(b).expect("comparable"));
        values.get(values.len() / 2).copied()
    }

    pub fn run(report: &mut Report, incremental: bool, windowed: bool) -> anyhow::Result<()> {
        let keys = env_u64("RHEO_BENCH_STATE_KEYS", 1_000_000);
        let seconds = env_u64("RHEO_BENCH_STATE_SECONDS", 30);
        let per_second = (keys / 100).max(1);
        let dir = std::env::temp_dir().join(format!("rheo-bench-chk-{}", std::process::id()));
        let mut config = Configuration::new();
        config.set(options::CHECKPOINT_INTERVAL.key, "1 s");
        config.set(options::CHECKPOINTS_DIR.key, dir.to_str().context("temp dir")?);
        config.set(options::INCREMENTAL_CHECKPOINTS.key, if incremental { "true" } else { "false" });
        let mut env = StreamEnv::new(config.clone());
        env.set_parallelism(1);
        // When the last key was loaded (ms since the epoch): checkpoints triggered after it are
        // the steady state.
        let loaded_at = Arc::new(AtomicI64::new(i64::MAX));
        let loaded = loaded_at.clone();
        let load = env.datagen(
            DatagenConfig { count: Some(keys), rate: None },
            Arc::new(move |i: u64| {
                if i + 1 == keys {
                    loaded.store(now_ms(), Ordering::SeqCst);
                }
                WordWithCount { word: format_compact!("k{i:x}"), count: 1 }
            }),
        );
        let updates = env.datagen(
            DatagenConfig { count: Some(per_second * seconds), rate: Some(per_second as f64) },
            Arc::new(move |i: u64| {
                let key = rheo::types::keygroups::hash_key(&i) % keys;
                WordWithCount { word: format_compact!("k{key:x}"), count: 1 }
            }),
        );
        let keyed = load.union(&[&updates]).key_by(|wc: &WordWithCount| wc.word.clone());
        if windowed {
            // One window for the whole run: every key's count stays open in it.
            keyed
                .window(TumblingProcessingTimeWindows::of(Duration::from_secs(86_400)))
                .aggregate(CountAggregate)
                .discard();
        } else {
            keyed.process(CountAtEnd::default()).discard();
        }
        let graph = std::mem::take(&mut *env.graph());
        let result = MiniCluster::new(config).run(&report.case, graph, &env.plan_settings()?)?;
        let _ = std::fs::remove_dir_all(dir);
        let stats = &result.checkpoints;
        let first = stats.first.context("no checkpoint completed")?;
        let loaded_ms = loaded_at.load(Ordering::SeqCst);
        // Triggered once every key was loaded; the last (final) checkpoint is not steady.
        let samples: Vec<CheckpointSample> = stats.recent.iter().copied().collect();
        let steady: Vec<CheckpointSample> =
            samples[..samples.len().saturating_sub(1)].iter().filter(|s| s.triggered_ms > loaded_ms).copied().collect();
        let ms = |s: &CheckpointSample| s.duration.as_secs_f64() * 1000.0;
        report.state_checkpoints = Some(Measured {
            keys,
            incremental,
            windowed,
            first_ms: ms(&first),
            first_bytes: first.uploaded,
            steady_checkpoints: steady.len(),
            steady_median_ms: median(steady.iter().map(ms).collect()).unwrap_or(f64::NAN),
            steady_max_ms: steady.iter().map(ms).fold(0.0, f64::max),
            steady_median_bytes: median(steady.iter().map(|s| s.uploaded).collect()).unwrap_or(0),
            steady_max_bytes: steady.iter().map(|s| s.uploaded).max().unwrap_or(0),
            state_bytes: median(steady.iter().map(|s| s.size).collect()).unwrap_or(0),
        });
        Ok(())
    }

    pub fn print(reports: &[Report]) {
        let measured: Vec<&Measured> = reports.iter().filter_map(|r| r.state_checkpoints.as_ref()).collect();
        if measured.is_empty() {
            return;
        }
        println!("checkpoints of a large state of which ~1 % changes per second (every 1 s, local directory):");
        println!(
            "{:<12} {:>10} {:>10} {:>12} {:>8} {:>12} {:>10} {:>14} {:>13} {:>11}",
            "mode",
            "keys",
            "first ms",
            "first MiB",
            "steady",
            "median ms",
            "max ms",
            "median KiB up",
            "max KiB up",
            "state MiB"
        );
        for m in measured {
            println!(
                "{:<12} {:>10} {:>10.0} {:>12.1} {:>8} {:>12.0} {:>10.0} {:>14.0} {:>13.0} {:>11.1}",
                match (m.windowed, m.incremental) {
                    (false, true) => "incremental",
                    (false, false) => "full",
                    (true, true) => "window incr",
                    (true, false) => "window full",
                },
                m.keys,
                m.first_ms,
                m.first_bytes as f64 / (1024.0 * 1024.0),
                m.steady_checkpoints,
                m.steady_median_ms,
                m.steady_max_ms,
                m.steady_median_bytes as f64 / 1024.0,
                m.steady_max_bytes as f64 / 1024.0,
                m.state_bytes as f64 / (1024.0 * 1024.0),
            );
        }
    }
}

/// Cases on a standalone cluster of `rheo` processes (the binary next to this one), observed
/// through the JobManager's REST API.
mod cluster {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use rheo::runtime::task::now_ms;
    use rheo_testkit::{Cluster, JobState, Poll};

    use super::{Report, WORDS_PER_LINE};

    /// A cluster in a fresh temporary directory, removed when dropped (after the processes).
    struct Bench {
        cluster: Cluster,
        dir: PathBuf,
    }

    impl Drop for Bench {
        fn drop(&mut self) {
            for process in self.cluster.taskmanagers() {
                let _ = process.kill();
            }
            let _ = self.cluster.kill_jobmanager();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    impl Bench {
        /// A JobManager running `datagen-word-count -p 2 JOB...` and `taskmanagers` TaskManagers
        /// with `slots` slots each.
        fn start(extra: &[&str], job: &[&str], taskmanagers: usize, slots: usize) -> anyhow::Result<Bench> {
            let mut args = vec!["--job", "datagen-word-count", "-p", "2", "--"];
            args.extend(job);
            Self::start_job(extra, &args, taskmanagers, slots)
        }

        /// A JobManager running `rheo jobmanager ARGS...` and `taskmanagers` TaskManagers with
        /// `slots` slots each.
        fn start_job(extra: &[&str], args: &[&str], taskmanagers: usize, slots: usize) -> anyhow::Result<Bench> {
            let dir = std::env::temp_dir().join(format!("rheo-bench-cluster-{}", std::process::id()));
            let rheo = std::env::current_exe()?.with_file_name("rheo");
            anyhow::ensure!(rheo.is_file(), "{} is missing (make bench builds it)", rheo.display());
            let checkpoints = format!("state.checkpoints.dir=file://{}/chk", dir.display());
            // The poll interval bounds how precisely state changes are timed.
            let cluster = Cluster::new(rheo, &dir)?
                .with_poll_interval(Duration::from_millis(2))
                .with_config(&[&checkpoints, "heartbeat.interval=200ms", "heartbeat.timeout=5s"])
                .with_config(extra);
            let mut bench = Bench { cluster, dir };
            bench.cluster.start_jobmanager(args)?;
            let slots = format!("taskmanager.numberOfTaskSlots={slots}");
            for _ in 0..taskmanagers {
                bench.cluster.start_taskmanager_with(&[&slots])?;
            }
            Ok(bench)
        }

        fn peak_rss_mib(&mut self) -> f64 {
            self.cluster.taskmanagers().iter().map(|p| rss_mib(p.pid())).fold(0.0, f64::max)
        }
    }

    fn rss_mib(pid: u32) -> f64 {
        let status =
            std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    }

    /// Timed from deployment (the job turns RUNNING) to the job's end-time on the JobManager.
    pub fn throughput(mut report: Report, lines: u64, taskmanagers: usize, slots: usize) -> anyhow::Result<Report> {
        let count = lines.to_string();
        let job = ["--count", count.as_str(), "--sink", "discard"];
        let mut bench = Bench::start(&["execution.checkpointing.interval=0"], &job, taskmanagers, slots)?;
        let id = bench.cluster.await_job()?;
        bench.cluster.await_state(&id, JobState::Running)?;
        let deployed_ms = now_ms();
        // Only the end-time counts from here: poll rarely, not to take CPU from the job.
        bench.cluster.set_poll_interval(Duration::from_millis(100));
        bench.cluster.set_timeout(Duration::from_secs(600));
        let finished = bench.cluster.await_state(&id, JobState::Finished)?;
        anyhow::ensure!(finished.end_time > 0, "the finished job has no end-time");
        report.seconds = (finished.end_time - deployed_ms).max(1) as f64 / 1000.0;
        report.lines_per_second = lines as f64 / report.seconds;
        report.words_per_second = report.lines_per_second * WORDS_PER_LINE as f64;
        report.peak_rss_mib = bench.peak_rss_mib();
        Ok(report)
    }

    /// Two one-slot TaskManagers run the job, a third stands by; one of the two is killed with
    /// SIGKILL. Measures the time to the restarted job's RUNNING and to its first completed
    /// checkpoint (triggered after the kill, so by the new attempt).
    pub fn recovery(mut report: Report) -> anyhow::Result<Report> {
        let extra = [
            "execution.checkpointing.interval=1s",
            "restart-strategy.type=fixed-delay",
            "restart-strategy.fixed-delay.delay=0ms",
        ];
        let mut bench = Bench::start(&extra, &["--rate", "200000", "--sink", "discard"], 2, 1)?;
        let cluster = &mut bench.cluster;
        let id = cluster.await_job()?;
        cluster.await_checkpoints(&id, 2)?;
        // A spare TaskManager, registered after the job's two: the restart need not wait for one.
        cluster.start_taskmanager_with(&["taskmanager.numberOfTaskSlots=1"])?;
        cluster.await_taskmanagers(3)?;
        let killed_ms = now_ms();
        cluster.kill_taskmanager(0)?;
        cluster.await_until("the job to restart after the TaskManager loss", |rest| {
            match (rest.exceptions(&id), rest.job(&id)) {
                (Ok(e), Ok(job)) if !e.exception_history.entries.is_empty() && job.state == JobState::Running => {
                    Poll::Ready(())
                }
                (Ok(e), Ok(job)) => {
                    Poll::Pending(format!("{} exceptions, {}", e.exception_history.entries.len(), job.state))
                }
                (Err(e), _) | (_, Err(e)) => Poll::Pending(e.to_string()),
            }
        })?;
        let redeployed_ms = now_ms() - killed_ms;
        let resumed =
            cluster.await_until("a checkpoint triggered after the kill", |rest| match rest.checkpoints(&id) {
                Ok(stats) => match stats.latest.completed {
                    Some(c) if c.trigger_timestamp >= killed_ms => Poll::Ready(c),
                    other => Poll::Pending(format!("latest completed {:?}", other.map(|c| c.id))),
                },
                Err(e) => Poll::Pending(e.to_string()),
            })?;
        let resumed_ms = (resumed.latest_ack_timestamp - killed_ms).max(0);
        eprintln!("TaskManager killed: redeployed after {redeployed_ms} ms, first checkpoint after {resumed_ms} ms");
        report.recovery_ms = Some(resumed_ms as f64);
        report.seconds = resumed_ms as f64 / 1000.0;
        report.peak_rss_mib = bench.peak_rss_mib();
        Ok(report)
    }

    /// `arriving-numbers` at 3000 records/s for 8 s into a map costing 500 µs a record (2000/s a
    /// subtask): at parallelism 1 the map is the bottleneck and the source is back-pressured.
    /// Two one-slot TaskManagers; checkpoints every second. After two checkpoints the job is
    /// rescaled to 2 with `PUT /jobs/:id/resource-requirements`. Each number is printed with
    /// the time the map emitted it; once every arrived number is out, the job stops with a
    /// savepoint and the TaskManagers' stdout is read back: the pause is the longest time after
    /// the request with no record out of any map, reprocessed the numbers printed more than
    /// once (every arrived number must be printed).
    pub fn rescale(mut report: Report) -> anyhow::Result<Report> {
        use rheo_cli::jobs::arriving_numbers::arrived_by;
        use rheo_rest::StopWithSavepointRequest;

        const RATE: f64 = 3_000.0;
        let now = || now_ms().max(0) as u64;
        let dir = std::env::temp_dir().join(format!("rheo-bench-rescale-cluster-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let schedule_path = dir.join("schedule");
        let start = now() + 1_000;
        let schedule = vec![(start, RATE), (start + 8_000, 0.0)];
        let text: String = schedule.iter().map(|(at, rate)| format!("{at} {rate}\n")).collect();
        std::fs::write(&schedule_path, text)?;
        let total = arrived_by(&schedule, u64::MAX);
        let schedule_arg = schedule_path.to_str().unwrap_or_default().to_string();
        let args =
            ["--job", "arriving-numbers", "-p", "1", "--", "--schedule", &schedule_arg, "--cost-us", "500", "--print"];
        let mut bench = Bench::start_job(&["execution.checkpointing.interval=1s"], &args, 2, 1)?;
        let started = std::time::Instant::now();
        let cluster = &mut bench.cluster;
        let id = cluster.await_job()?;
        cluster.await_state(&id, JobState::Running)?;
        cluster.await_checkpoints(&id, 2)?;
        let requirements = rheo_autoscaler::rest::requirements(&cluster.rest().job(&id)?, 2);
        let asked_ms = now();
        cluster.rest().call(|c| c.set_resource_requirements(&id, &requirements))?;
        cluster.await_parallelism(&id, 2)?;
        // Every arrived number printed (a lost one ends the wait with the timeout's error).
        cluster.set_poll_interval(Duration::from_millis(200));
        let dir = bench.dir.clone();
        cluster.await_until("every arrived number to be printed", |_| match printed(&dir) {
            Ok(p) if p.iter().map(|&(n, _)| n).collect::<std::collections::HashSet<_>>().len() as u64 >= total => {
                Poll::Ready(())
            }
            Ok(p) => Poll::Pending(format!("{} of {total} printed", p.len())),
            Err(e) => Poll::Pending(e.to_string()),
        })?;
        let request = StopWithSavepointRequest { target_directory: None, drain: false };
        cluster.rest().call(|c| c.stop_with_savepoint(&id, &request))?;
        cluster.await_state(&id, JobState::Finished)?;
        report.seconds = started.elapsed().as_secs_f64();
        report.peak_rss_mib = bench.peak_rss_mib();

        let printed = printed(&bench.dir)?;
        let mut seen = vec![0u32; total as usize];
        for &(n, _) in &printed {
            anyhow::ensure!(n < total, "number {n} printed, but only {total} arrived");
            seen[n as usize] += 1;
        }
        let missing: Vec<usize> = (0..seen.len()).filter(|&n| seen[n] == 0).collect();
        anyhow::ensure!(
            missing.is_empty(),
            "{} of {total} numbers never printed (from {:?} to {:?}; the rescale asked at {asked_ms}, the numbers \
             printed around it: {:?})",
            missing.len(),
            missing.first(),
            missing.last(),
            printed.iter().filter(|&&(_, t)| t.abs_diff(asked_ms) < 3).take(3).collect::<Vec<_>>()
        );
        report.reprocessed = Some(seen.iter().map(|&c| u64::from(c.saturating_sub(1))).sum());
        let mut times: Vec<u64> = printed.iter().map(|&(_, t)| t).collect();
        times.sort_unstable();
        let mut last = asked_ms;
        let mut pause = 0;
        for &t in times.iter().filter(|&&t| t > asked_ms) {
            pause = pause.max(t - last);
            last = t;
        }
        report.rescale_pause_ms = Some(pause as f64);
        report.lines = total;
        eprintln!("rescale-cluster: {total} numbers, {pause} ms pause, {:?} reprocessed", report.reprocessed);
        Ok(report)
    }

    /// (number, epoch ms the map emitted it) from every TaskManager's stdout under `dir`.
    fn printed(dir: &Path) -> anyhow::Result<Vec<(u64, u64)>> {
        let mut printed = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "out") {
                for line in std::fs::read_to_string(&path)?.lines() {
                    let mut fields = line.rsplit("> ").next().unwrap_or(line).split(' ');
                    // A line being written has no time yet: it is read again next time.
                    let (Some(n), Some(t)) = (fields.next(), fields.next()) else { continue };
                    let (Ok(n), Ok(t)) = (n.parse(), t.parse()) else { continue };
                    printed.push((n, t));
                }
            }
        }
        Ok(printed)
    }
}
