//! `kafka-word-count` against a real Apache Kafka broker (run under `scripts/with-kafka.sh`,
//! which sets `KAFKA_BOOTSTRAP`; `make test-kafka`).
//!
//! - Exactly once across crashes: the job is killed with SIGKILL ten times, each time after it
//!   completed a few more checkpoints, and crashes once more at the failpoint that aborts the
//!   process after a checkpoint completed and before any sink heard of it (so the restored job
//!   must commit that checkpoint's pre-committed transactions), with a zombie producer holding an
//!   open transaction under one of the job's transactional ids; then it is run to the end at a
//!   higher parallelism (2 → 3). A `read_committed` consumer must see exactly the reference
//!   counts, and nothing of the zombie's aborted transaction.
//! - A second run of the finished bounded job, with the same transactional-id prefix, starts
//!   afresh (checkpoint ids from 1 again) and its output is committed in full, not mistaken for
//!   the first run's.
//! - `--input-topic-pattern` reads every matching topic and no other.
//! - The backlog metric (`pendingRecords`) is above zero while the job is behind and falls to
//!   zero once it has caught up.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rheo_testkit::kafka::{self, bootstrap, create_topic};

/// 2 s of event time per 1000 lines over 4 partitions.
const LINES: u64 = 40_000;
const PARTITIONS: i32 = 4;
/// Windows of 200 ms event time close every 100 ms at the test's rate of 1000 lines a second, so
/// every 200 ms checkpoint pre-commits output (the failpoint run needs some to commit).
const WINDOW_MS: i64 = 200;
const BASE_TS: i64 = 1_700_000_000_000;
const DEADLINE: Duration = Duration::from_secs(120);

fn unique(name: &str) -> String {
    format!("{name}-{}-{}", std::process::id(), rheo::runtime::task::now_ms())
}

fn line(rng: &mut impl Rng) -> String {
    (0..4).map(|_| format!("w{}", rng.random_range(0..50))).collect::<Vec<_>>().join(" ")
}

/// Writes `LINES` lines round-robin over the partitions; line `i` has timestamp `BASE_TS + 2i`
/// ms. Returns the reference counts: (window end, word) → count for windows of WINDOW_MS.
fn produce_input(bootstrap: &str, topic: &str, partitions: i32, lines: u64) -> BTreeMap<(i64, String), u64> {
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(11);
    let mut reference = BTreeMap::new();
    let mut records = Vec::with_capacity(lines as usize);
    for i in 0..lines {
        let text = line(&mut rng);
        let ts = BASE_TS + 2 * i as i64;
        let window_end = ts - ts.rem_euclid(WINDOW_MS) + WINDOW_MS;
        for word in text.split(' ') {
            *reference.entry((window_end, word.to_string())).or_insert(0) += 1;
        }
        records.push((ts, text));
    }
    kafka::produce(bootstrap, topic, partitions, records);
    reference
}

fn read_all(bootstrap: &str, topic: &str, isolation: &str) -> Vec<(String, String)> {
    kafka::read_all(bootstrap, topic, isolation, DEADLINE)
}

/// The counts in the output, failing on a count that appears twice.
fn counts_of(records: &[(String, String)]) -> BTreeMap<(i64, String), u64> {
    let mut counts = BTreeMap::new();
    for (_, value) in records.iter().filter(|(key, _)| key != "zombie") {
        let fields: Vec<&str> = value.split(',').collect();
        assert_eq!(fields.len(), 3, "output record '{value}'");
        let key = (fields[0].parse().unwrap(), fields[1].to_string());
        let previous = counts.insert(key.clone(), fields[2].parse().unwrap());
        assert!(previous.is_none(), "{key:?} is in the output twice");
    }
    counts
}

/// The newest completed checkpoint under `dir` (any job id), by its `_metadata`.
fn latest_checkpoint(dir: &Path) -> u64 {
    let mut latest = 0;
    for job in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for chk in std::fs::read_dir(job.path()).into_iter().flatten().flatten() {
            let name = chk.file_name().to_string_lossy().to_string();
            if let Some(n) = name.strip_prefix("chk-").and_then(|n| n.parse::<u64>().ok())
                && chk.path().join("_metadata").exists()
            {
                latest = latest.max(n);
            }
        }
    }
    latest
}

struct Job {
    args: Vec<String>,
    dir: std::path::PathBuf,
}

impl Job {
    fn spawn(&self, parallelism: usize, env: &[(&str, String)], log: &Path) -> Child {
        let mut command = Command::new(env!("CARGO_BIN_EXE_rheo"));
        command
            .current_dir(&self.dir)
            .args(&self.args)
            .args(["-p", &parallelism.to_string()])
            .env("RHEO_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap());
        for (k, v) in env {
            command.env(k, v);
        }
        command.spawn().unwrap()
    }
}

fn log_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn killed_ten_times_then_rescaled_commits_exactly_the_reference_counts() {
    let Some(bootstrap) = bootstrap() else { return };
    let (input, output, prefix) = (unique("words"), unique("counts"), unique("wc-txn"));
    create_topic(&bootstrap, &input, PARTITIONS);
    create_topic(&bootstrap, &output, 3);
    let reference = produce_input(&bootstrap, &input, PARTITIONS, LINES);
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().join("chk");
    let job = Job {
        args: [
            "run",
            "kafka-word-count",
            "--bootstrap-servers",
            &bootstrap,
            "--input-topic",
            &input,
            "--output-topic",
            &output,
            "--group-id",
            &unique("wc-group"),
            "--transactional-id-prefix",
            &prefix,
            "--bounded",
            // 40 s of input: ten runs, each killed one to three checkpoints after its start, must
            // not reach its end even on a quiet machine.
            "--rate",
            "1000",
            "--window",
            "200ms",
            "-D",
            "execution.checkpointing.interval=200ms",
            "-D",
            &format!("state.checkpoints.dir=file://{}", checkpoints.display()),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        dir: dir.path().to_path_buf(),
    };
    let seed: u64 = std::env::var("RHEO_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rheo::runtime::task::now_ms() as u64);
    eprintln!("kill schedule seed {seed}");
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
    // Ten SIGKILLs, and the failpoint's crash as the fifth run.
    const RUNS: usize = 11;
    const FAILPOINT_RUN: usize = 4;
    let mut zombie: Option<BaseProducer> = None;
    let mut failpoint_checkpoint = 0;
    let mut resumed = 0;
    for run in 0..RUNS {
        let log = dir.path().join(format!("run-{run}.log"));
        let start = latest_checkpoint(&checkpoints);
        let progress = rng.random_range(1..=3);
        let env = if run == FAILPOINT_RUN {
            failpoint_checkpoint = start + 3;
            vec![("RHEO_FAILPOINT_ABORT_AFTER_CHECKPOINT", failpoint_checkpoint.to_string())]
        } else {
            Vec::new()
        };
        let mut child = job.spawn(2, &env, &log);
        let deadline = Instant::now() + DEADLINE;
        let ended = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if run != FAILPOINT_RUN && latest_checkpoint(&checkpoints) >= start + progress {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                break None;
            }
            assert!(Instant::now() < deadline, "run {run} made no progress:\n{}", log_of(&log));
            std::thread::sleep(Duration::from_millis(5));
        };
        let text = log_of(&log);
        if run == FAILPOINT_RUN {
            let status = ended.expect("the failpoint run ends by itself");
            assert!(!status.success() && text.contains("failpoint: aborting"), "failpoint run:\n{text}");
        } else {
            assert!(ended.is_none(), "run {run} ended before its kill ({ended:?}):\n{text}");
        }
        resumed += usize::from(text.contains("resuming from checkpoint"));
        if run == FAILPOINT_RUN + 1 {
            assert!(
                text.contains("committed the pre-committed Kafka transaction of the restored checkpoint"),
                "the run after the failpoint did not commit checkpoint {failpoint_checkpoint}'s transactions:\n{text}"
            );
        }
        if run == 6 {
            // A zombie of this run's subtask 0: an open transaction with records under its
            // transactional id, as a failed attempt leaves. The next run restores its state and
            // must fence it and abort the transaction.
            let id = transactional_id_of(&text, &prefix, 0)
                .unwrap_or_else(|| panic!("run {run} logged no transactional id of subtask 0:\n{text}"));
            let producer: BaseProducer =
                ClientConfig::new().set("bootstrap.servers", &bootstrap).set("transactional.id", id).create().unwrap();
            producer.init_transactions(Duration::from_secs(30)).unwrap();
            producer.begin_transaction().unwrap();
            for i in 0..5 {
                producer.send(BaseRecord::to(&output).key("zombie").payload(&format!("zombie-{i}"))).unwrap();
            }
            producer.flush(Duration::from_secs(30)).unwrap();
            zombie = Some(producer);
        }
    }
    assert!(resumed >= RUNS - 1, "only {resumed} of {RUNS} runs resumed from a checkpoint");
    // The rest at parallelism 3, to the end.
    let log = dir.path().join("final.log");
    let mut child = job.spawn(3, &[], &log);
    let status = child.wait().unwrap();
    let text = log_of(&log);
    assert!(status.success() && text.contains("resuming from checkpoint"), "final run:\n{text}");

    let zombie = zombie.unwrap();
    let fenced = zombie.commit_transaction(Duration::from_secs(30));
    assert!(fenced.is_err(), "the zombie producer could still commit after the job took its transactional id");
    let committed = read_all(&bootstrap, &output, "read_committed");
    assert!(!committed.iter().any(|(k, _)| k == "zombie"), "records of an aborted transaction are visible");
    let uncommitted = read_all(&bootstrap, &output, "read_uncommitted");
    assert!(uncommitted.iter().any(|(k, _)| k == "zombie"), "control: the zombie's records are in the log");
    let counts = counts_of(&committed);
    let missing: BTreeSet<i64> = reference.keys().filter(|k| !counts.contains_key(k)).map(|(w, _)| *w).collect();
    let extra: BTreeSet<i64> = counts.keys().filter(|k| !reference.contains_key(k)).map(|(w, _)| *w).collect();
    assert_eq!(
        counts.len(),
        reference.len(),
        "windows and words in the output (seed {seed}); windows with missing words: {missing:?}, with extra words: {extra:?}; logs in {}",
        dir.keep().display()
    );
    assert_eq!(counts, reference, "seed {seed}");
    std::mem::forget(zombie);
}

/// The transactional id that `subtask` opened, from a run's log (`<prefix>-<node>-<subtask>-<run>`).
fn transactional_id_of(log: &str, prefix: &str, subtask: usize) -> Option<String> {
    log.lines().filter(|l| l.contains("opened the Kafka sink's transactional id")).find_map(|l| {
        let id = l.split("transactional_id=").nth(1)?.split_whitespace().next()?.trim_matches('"');
        let rest = id.strip_prefix(prefix)?.strip_prefix('-')?;
        let fields: Vec<&str> = rest.split('-').collect();
        (fields.len() == 3 && fields[1] == subtask.to_string()).then(|| id.to_string())
    })
}

/// Runs the bounded job twice with the same arguments (so the same job id and transactional-id
/// prefix): the second run starts afresh, its checkpoint ids begin at 1 again, and every one of
/// its counts must be committed, a second copy of the first run's.
#[test]
fn a_rerun_of_the_finished_job_commits_its_output_again() {
    let Some(bootstrap) = bootstrap() else { return };
    let (input, output, prefix) = (unique("rerun-in"), unique("rerun-out"), unique("rerun-txn"));
    create_topic(&bootstrap, &input, 2);
    create_topic(&bootstrap, &output, 2);
    let reference = produce_input(&bootstrap, &input, 2, 4_000);
    let dir = tempfile::tempdir().unwrap();
    let job = Job {
        args: [
            "run",
            "kafka-word-count",
            "--bootstrap-servers",
            &bootstrap,
            "--input-topic",
            &input,
            "--output-topic",
            &output,
            "--transactional-id-prefix",
            &prefix,
            "--bounded",
            "--window",
            "200ms",
            "--rate",
            "4000",
            "-D",
            "execution.checkpointing.interval=100ms",
            "-D",
            &format!("state.checkpoints.dir=file://{}", dir.path().join("chk").display()),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        dir: dir.path().to_path_buf(),
    };
    let mut ids = Vec::new();
    for run in 0..2 {
        let log = dir.path().join(format!("rerun-{run}.log"));
        let status = job.spawn(2, &[], &log).wait().unwrap();
        let text = log_of(&log);
        assert!(status.success(), "run {run}:\n{text}");
        assert!(!text.contains("resuming from checkpoint"), "run {run} is to start afresh:\n{text}");
        ids.push(transactional_id_of(&text, &prefix, 0).expect("a transactional id in the log"));
        let mut counts: BTreeMap<(i64, String), u64> = BTreeMap::new();
        let mut copies: BTreeMap<(i64, String), usize> = BTreeMap::new();
        for (_, value) in read_all(&bootstrap, &output, "read_committed") {
            let fields: Vec<&str> = value.split(',').collect();
            let key = (fields[0].parse().unwrap(), fields[1].to_string());
            *copies.entry(key.clone()).or_default() += 1;
            let count: u64 = fields[2].parse().unwrap();
            assert!(counts.insert(key.clone(), count).is_none_or(|c| c == count), "{key:?} differs between runs");
        }
        if counts != reference {
            let differ: Vec<_> = reference
                .iter()
                .filter(|(k, v)| counts.get(*k) != Some(*v))
                .map(|(k, v)| (k.clone(), *v, counts.get(k).copied()))
                .take(10)
                .collect();
            let extra: Vec<_> = counts.keys().filter(|k| !reference.contains_key(*k)).take(10).collect();
            panic!(
                "run {run}: {} counts differ from the reference (key, reference, output): {differ:?}; extra: {extra:?}; logs in {}",
                reference.iter().filter(|(k, v)| counts.get(*k) != Some(*v)).count(),
                dir.keep().display()
            );
        }
        let wrong: Vec<_> = copies.iter().filter(|(_, n)| **n != run + 1).take(5).collect();
        assert!(wrong.is_empty(), "after run {run} each count is to be in the output {} times: {wrong:?}", run + 1);
    }
    assert_ne!(ids[0], ids[1], "the second run reused the first run's transactional id");
}

/// `--input-topic-pattern` reads every matching topic: the same input split over two topics
/// gives the reference counts; a third topic that does not match adds nothing.
#[test]
fn an_input_topic_pattern_reads_every_matching_topic() {
    let Some(bootstrap) = bootstrap() else { return };
    let base = unique("pattern");
    let (even, odd, other, output) =
        (format!("{base}-in-even"), format!("{base}-in-odd"), format!("{base}-other"), format!("{base}-out"));
    for topic in [&even, &odd, &other] {
        create_topic(&bootstrap, topic, 1);
    }
    create_topic(&bootstrap, &output, 1);
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(5);
    let mut reference = BTreeMap::new();
    let (mut evens, mut odds) = (Vec::new(), Vec::new());
    for i in 0..400i64 {
        let text = line(&mut rng);
        let ts = BASE_TS + 2 * i;
        for word in text.split(' ') {
            *reference.entry((ts - ts.rem_euclid(WINDOW_MS) + WINDOW_MS, word.to_string())).or_insert(0u64) += 1;
        }
        if i % 2 == 0 { &mut evens } else { &mut odds }.push((ts, text));
    }
    kafka::produce(&bootstrap, &even, 1, evens);
    kafka::produce(&bootstrap, &odd, 1, odds);
    kafka::produce(&bootstrap, &other, 1, [(BASE_TS, "stray words".to_string())]);
    let dir = tempfile::tempdir().unwrap();
    let pattern = format!("{}-in-.*", base);
    let job = Job {
        args: [
            "run",
            "kafka-word-count",
            "--bootstrap-servers",
            &bootstrap,
            "--input-topic-pattern",
            &pattern,
            "--output-topic",
            &output,
            "--transactional-id-prefix",
            &unique("pattern-txn"),
            "--bounded",
            "--window",
            "200ms",
            "-D",
            "execution.checkpointing.interval=100ms",
            "-D",
            &format!("state.checkpoints.dir=file://{}", dir.path().join("chk").display()),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        dir: dir.path().to_path_buf(),
    };
    let log = dir.path().join("pattern.log");
    let status = job.spawn(2, &[], &log).wait().unwrap();
    assert!(status.success(), "{}", log_of(&log));
    assert_eq!(counts_of(&read_all(&bootstrap, &output, "read_committed")), reference);
}

/// `GET path` on 127.0.0.1:port; the JSON body.
fn get_json(port: u16, path: &str) -> Option<serde_json::Value> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    // HTTP/1.0 or 1.1, whichever the server answers a 1.0 request with.
    (head.split_whitespace().nth(1) == Some("200")).then(|| serde_json::from_str(body).ok())?
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn pending_records_fall_to_zero_when_the_job_catches_up() {
    let Some(bootstrap) = bootstrap() else { return };
    let (input, output) = (unique("lag-in"), unique("lag-out"));
    create_topic(&bootstrap, &input, 2);
    create_topic(&bootstrap, &output, 1);
    produce_input(&bootstrap, &input, 2, 12_000);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("lag.log");
    let job = Job {
        args: [
            "run",
            "kafka-word-count",
            "--bootstrap-servers",
            &bootstrap,
            "--input-topic",
            &input,
            "--output-topic",
            &output,
            "--transactional-id-prefix",
            &unique("lag-txn"),
            "--rate",
            "3000",
            "-D",
            "execution.checkpointing.interval=500ms",
            "-D",
            &format!("state.checkpoints.dir=file://{}", dir.path().join("chk").display()),
            "-D",
            &format!("rest.port={port}"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        dir: dir.path().to_path_buf(),
    };
    let mut child = job.spawn(2, &[], &log);
    let pending = || -> Option<u64> {
        let jobs = get_json(port, "/jobs/overview")?;
        let id = jobs["jobs"][0]["jid"].as_str()?.to_string();
        let detail = get_json(port, &format!("/jobs/{id}"))?;
        let source = detail["vertices"]
            .as_array()?
            .iter()
            .find(|v| v["name"].as_str().is_some_and(|n| n.starts_with("Source")))?;
        let vid = source["id"].as_str()?;
        let metrics = get_json(port, &format!("/jobs/{id}/vertices/{vid}/metrics?get=pendingRecords"))?;
        metrics[0]["value"].as_str()?.parse().ok()
    };
    let deadline = Instant::now() + DEADLINE;
    let mut seen = Vec::new();
    let caught_up = loop {
        if let Some(p) = pending() {
            seen.push(p);
            if p == 0 && seen.iter().any(|&p| p > 0) {
                break true;
            }
        }
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(caught_up, "pendingRecords went {seen:?}:\n{}", log_of(&log));
    let max = *seen.iter().max().unwrap();
    assert!(max > 1000, "the backlog at the start was {max} records");
}
