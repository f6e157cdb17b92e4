//! The Kafka source and sink against a real Apache Kafka broker (run under
//! `scripts/with-kafka.sh`, which sets `KAFKA_BOOTSTRAP`; without it the tests are skipped, and
//! under CI they fail). Each test runs a job on an in-process mini-cluster over topics of its own.
//!
//! Source: a topic pattern, partition discovery, starting from latest, a timestamp and the
//! group's offsets, offsets committed to the group when checkpoints complete, idleness, and
//! `read_committed` over transactional input. Sink: at-least-once, and two exactly-once sinks of
//! one job with one transactional-id prefix.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use rheo::api::StreamEnv;
use rheo_config::Configuration;
use rheo_kafka::{
    ClientSettings, DeliveryGuarantee, KafkaSink, KafkaSinkExt, KafkaSource, KafkaSourceExt, KafkaWatermarks,
    SinkRecord, StartingOffsets, deserializers,
};
use rheo_runtime::driver::minicluster::{JobError, MiniCluster};
use rheo_runtime::window::TumblingEventTimeWindows;
use rheo_testkit::kafka::{self, add_partitions, bootstrap, create_topic, produce_to};

const BASE_TS: i64 = 1_700_000_000_000;
const DEADLINE: Duration = Duration::from_secs(60);

fn unique(name: &str) -> String {
    format!("{name}-{}-{}", std::process::id(), rheo_runtime::task::now_ms())
}

fn client(bootstrap: &str) -> ClientSettings {
    ClientSettings::new(bootstrap)
}

fn config(checkpoints: Option<&std::path::Path>) -> Configuration {
    let mut config = Configuration::new();
    if let Some(dir) = checkpoints {
        config.set("execution.checkpointing.interval", "100ms");
        config.set("state.checkpoints.dir", format!("file://{}", dir.display()));
    }
    config
}

/// Runs a bounded job to its end; the collected values, sorted.
fn run_bounded(source: KafkaSource<String>, parallelism: usize) -> Vec<String> {
    let mut env = StreamEnv::new(config(None));
    env.set_parallelism(parallelism);
    let collected = env.kafka_source(source).collect();
    env.execute(&unique("bounded")).expect("the job finishes");
    let mut values = collected.values();
    values.sort();
    values
}

/// Runs an unbounded job until `done` says so (it gets the values collected so far, flushed at
/// each buffer timeout) or the deadline passes, then cancels it; a job that fails fails the test.
fn run_until<T: rheo_runtime::graph::Data + Clone>(
    env: &StreamEnv,
    collected: rheo::connectors::collection::Collected<T>,
    done: impl Fn(&[T]) -> bool + Send + 'static,
) -> Vec<T> {
    let cluster = MiniCluster::new(env.config().clone());
    let handle = cluster.handle();
    let watched = collected.clone();
    let ended = Arc::new(AtomicBool::new(false));
    let job_ended = ended.clone();
    let watcher = std::thread::spawn(move || {
        let deadline = Instant::now() + DEADLINE;
        while !done(&watched.values()) && Instant::now() < deadline && !job_ended.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
        handle.cancel();
    });
    let result = env.execute_on(&cluster, &unique("until"));
    ended.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    match result {
        Ok(_) | Err(JobError::Cancelled) => collected.values(),
        Err(e) => panic!("the job failed: {e}"),
    }
}

fn lines(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:03}")).collect()
}

#[test]
fn a_topic_pattern_reads_every_matching_topic_and_no_other() {
    let Some(bootstrap) = bootstrap() else { return };
    let base = unique("pattern");
    for (topic, partitions) in [("a", 2), ("b", 1), ("a-not", 1)] {
        let name = format!("{base}-{topic}");
        create_topic(&bootstrap, &name, partitions);
        kafka::produce(
            &bootstrap,
            &name,
            partitions,
            lines(&format!("{topic}:"), 10).into_iter().map(|l| (BASE_TS, l)),
        );
    }
    let source = KafkaSource::builder(client(&bootstrap))
        .topic_pattern(&format!("{}-(a|b)", regex::escape(&base)))
        .unwrap()
        .bounded(true)
        .build(deserializers::text_lines())
        .unwrap();
    let mut expected: Vec<String> = lines("a:", 10).into_iter().chain(lines("b:", 10)).collect();
    expected.sort();
    assert_eq!(run_bounded(source, 2), expected);
}

#[test]
fn starting_offsets_timestamp_and_group_offsets() {
    let Some(bootstrap) = bootstrap() else { return };
    let topic = unique("start");
    create_topic(&bootstrap, &topic, 2);
    // Partition p holds p0NN ... with timestamps BASE_TS + i.
    produce_to(&bootstrap, &topic, (0..2).flat_map(|p| (0..10).map(move |i| (p, BASE_TS + i, format!("{p}-{i}")))));

    let from_time = KafkaSource::builder(client(&bootstrap))
        .topics([topic.clone()])
        .starting_offsets(StartingOffsets::Timestamp(BASE_TS + 7))
        .bounded(true)
        .build(deserializers::text_lines())
        .unwrap();
    assert_eq!(run_bounded(from_time, 1), ["0-7", "0-8", "0-9", "1-7", "1-8", "1-9"]);

    // The group has offset 4 for partition 0 and nothing for partition 1 (which starts at its
    // earliest offset).
    let group = unique("group");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(&topic, 0, Offset::Offset(4)).unwrap();
    consumer.commit(&list, CommitMode::Sync).unwrap();
    std::mem::forget(consumer);
    let mut settings = client(&bootstrap);
    settings.set("group.id", &group);
    let from_group = KafkaSource::builder(settings)
        .topics([topic.clone()])
        .starting_offsets(StartingOffsets::GroupOffsets)
        .bounded(true)
        .build(deserializers::text_lines())
        .unwrap();
    let mut expected: Vec<String> =
        (4..10).map(|i| format!("0-{i}")).chain((0..10).map(|i| format!("1-{i}"))).collect();
    expected.sort();
    assert_eq!(run_bounded(from_group, 2), expected);
}

#[test]
fn starting_from_latest_reads_only_what_comes_after_the_start() {
    let Some(bootstrap) = bootstrap() else { return };
    let topic = unique("latest");
    create_topic(&bootstrap, &topic, 2);
    kafka::produce(&bootstrap, &topic, 2, lines("old", 10).into_iter().map(|l| (BASE_TS, l)));
    let source = KafkaSource::builder(client(&bootstrap))
        .topics([topic.clone()])
        .starting_offsets(StartingOffsets::Latest)
        .build(deserializers::text_lines())
        .unwrap();
    let env = StreamEnv::new(config(None));
    let collected = env.kafka_source(source).collect();
    // New records go in until the job has read some: those before the source opened are past
    // "latest" as much as the old ones.
    let producer_bootstrap = bootstrap.clone();
    let producer_topic = topic.clone();
    let seen = collected.clone();
    let producer = std::thread::spawn(move || {
        let deadline = Instant::now() + DEADLINE;
        let mut i = 0;
        while seen.values().is_empty() && Instant::now() < deadline {
            produce_to(&producer_bootstrap, &producer_topic, [(i % 2, BASE_TS, format!("new{i:03}"))]);
            i += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let values = run_until(&env, collected, |v| !v.is_empty());
    producer.join().unwrap();
    assert!(!values.is_empty(), "the job read nothing produced after it started");
    assert!(values.iter().all(|v| v.starts_with("new")), "{values:?}");
}

#[test]
fn offsets_are_committed_to_the_group_when_checkpoints_complete() {
    let Some(bootstrap) = bootstrap() else { return };
    let topic = unique("commit");
    create_topic(&bootstrap, &topic, 2);
    kafka::produce(&bootstrap, &topic, 2, lines("x", 20).into_iter().map(|l| (BASE_TS, l)));
    let group = unique("commit-group");
    let mut settings = client(&bootstrap);
    settings.set("group.id", &group);
    let source = KafkaSource::builder(settings).topics([topic.clone()]).build(deserializers::text_lines()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut env = StreamEnv::new(config(Some(dir.path())));
    env.set_parallelism(2);
    let collected = env.kafka_source(source).collect();
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let reader = Arc::new(reader);
    let committed = {
        let (reader, topic) = (reader.clone(), topic.clone());
        move || -> Vec<Offset> {
            let mut list = TopicPartitionList::new();
            list.add_partition(&topic, 0);
            list.add_partition(&topic, 1);
            reader
                .committed_offsets(list, Duration::from_secs(10))
                .map(|l| l.elements().iter().map(|e| e.offset()).collect())
                .unwrap_or_default()
        }
    };
    assert!(committed().iter().all(|o| !matches!(o, Offset::Offset(_))), "the group starts without offsets");
    let check = committed.clone();
    let values =
        run_until(&env, collected, move |v| v.len() == 20 && check() == [Offset::Offset(10), Offset::Offset(10)]);
    assert_eq!(values.len(), 20);
    assert_eq!(committed(), [Offset::Offset(10), Offset::Offset(10)], "the group's offsets after the checkpoints");
    std::mem::forget(Arc::try_unwrap(reader).ok());
}

#[test]
fn new_partitions_are_discovered_and_read_from_their_start() {
    let Some(bootstrap) = bootstrap() else { return };
    let topic = unique("discover");
    create_topic(&bootstrap, &topic, 1);
    produce_to(&bootstrap, &topic, [(0, BASE_TS, "first".to_string())]);
    let source = KafkaSource::builder(client(&bootstrap))
        .topics([topic.clone()])
        .partition_discovery_interval(Some(Duration::from_millis(200)))
        .build(deserializers::text_lines())
        .unwrap();
    let mut env = StreamEnv::new(config(None));
    env.set_parallelism(2);
    let collected = env.kafka_source(source).collect();
    let seen = collected.clone();
    let (grow_bootstrap, grow_topic) = (bootstrap.clone(), topic.clone());
    let grower = std::thread::spawn(move || {
        let deadline = Instant::now() + DEADLINE;
        while !seen.values().contains(&"first".to_string()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        // Partitions 1 and 2 appear after the job started, with records already in them.
        add_partitions(&grow_bootstrap, &grow_topic, 3);
        produce_to(&grow_bootstrap, &grow_topic, [(1, BASE_TS, "second".into()), (2, BASE_TS, "third".into())]);
    });
    let values = run_until(&env, collected, |v| v.len() >= 3);
    grower.join().unwrap();
    let values: BTreeSet<String> = values.into_iter().collect();
    assert_eq!(values, ["first", "second", "third"].map(String::from).into(), "records of discovered partitions");
}

/// A partition without records holds back the watermark, so windows never close, unless
/// idleness leaves it out.
#[test]
fn idleness_lets_windows_close_while_a_partition_is_empty() {
    let Some(bootstrap) = bootstrap() else { return };
    let topic = unique("idle");
    create_topic(&bootstrap, &topic, 2);
    // Only partition 0 has records: 0.0 s .. 1.9 s of event time.
    produce_to(&bootstrap, &topic, (0..20).map(|i| (0, BASE_TS + 100 * i, format!("r{i}"))));
    let source = KafkaSource::builder(client(&bootstrap))
        .topics([topic.clone()])
        .watermarks(KafkaWatermarks { out_of_orderness: Duration::ZERO, idleness: Some(Duration::from_millis(300)) })
        .build(deserializers::text_lines())
        .unwrap();
    let env = StreamEnv::new(config(None));
    let counts = env
        .kafka_source(source)
        .map(|_: String| 1u64)
        .key_by(|_: &u64| 0u8)
        .window(TumblingEventTimeWindows::of(Duration::from_secs(1)))
        .reduce(|a, b| a + b)
        .collect();
    // The first window [0 s, 1 s) has 10 records; the watermark (1.9 s) has passed its end.
    let values = run_until(&env, counts, |v| !v.is_empty());
    assert_eq!(values, [10], "the first window's count");
}

/// Committed transactions are read, aborted ones never; read_uncommitted sees both.
#[test]
fn read_committed_skips_aborted_transactions() {
    let Some(bootstrap) = bootstrap() else { return };
    let topic = unique("txn-in");
    create_topic(&bootstrap, &topic, 1);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("transactional.id", unique("txn-writer"))
        .create()
        .unwrap();
    let timeout = Duration::from_secs(30);
    producer.init_transactions(timeout).unwrap();
    for (values, commit) in [(["c1", "c2"], true), (["a1", "a2"], false), (["c3", "c4"], true)] {
        producer.begin_transaction().unwrap();
        for value in values {
            producer.send(BaseRecord::<(), str>::to(&topic).payload(value)).unwrap();
        }
        producer.flush(timeout).unwrap();
        if commit {
            producer.commit_transaction(timeout).unwrap();
        } else {
            producer.abort_transaction(timeout).unwrap();
        }
    }
    let read = |isolation: Option<&str>| {
        let mut settings = client(&bootstrap);
        if let Some(level) = isolation {
            settings.set("isolation.level", level);
        }
        let source =
            KafkaSource::builder(settings).topics([topic.clone()]).bounded(true).build(deserializers::text_lines());
        run_bounded(source.unwrap(), 1)
    };
    assert_eq!(read(None), ["c1", "c2", "c3", "c4"], "read_committed is the default");
    assert_eq!(read(Some("read_uncommitted")), ["a1", "a2", "c1", "c2", "c3", "c4"]);
}

fn value_sink(bootstrap: &str, topic: &str, guarantee: DeliveryGuarantee, prefix: &str) -> KafkaSink<String> {
    KafkaSink::new(
        client(bootstrap),
        topic,
        guarantee,
        Some(prefix),
        Arc::new(|s: &String| SinkRecord { key: None, value: s.as_bytes().to_vec() }),
    )
    .unwrap()
}

fn committed_values(bootstrap: &str, topic: &str) -> Vec<String> {
    let mut values: Vec<String> =
        kafka::read_all(bootstrap, topic, "read_committed", DEADLINE).into_iter().map(|(_, v)| v).collect();
    values.sort();
    values
}

#[test]
fn the_at_least_once_sink_delivers_every_record() {
    let Some(bootstrap) = bootstrap() else { return };
    let topic = unique("alo-out");
    create_topic(&bootstrap, &topic, 2);
    let dir = tempfile::tempdir().unwrap();
    let env = StreamEnv::new(config(Some(dir.path())));
    let input = lines("v", 500);
    env.from_collection(input.clone()).sink_to_kafka(value_sink(
        &bootstrap,
        &topic,
        DeliveryGuarantee::AtLeastOnce,
        "unused",
    ));
    env.execute(&unique("alo")).unwrap();
    assert_eq!(committed_values(&bootstrap, &topic), input);
}

/// Two exactly-once sinks of one job with the same prefix have transactional ids of their own:
/// neither fences the other, and both outputs are complete.
#[test]
fn two_exactly_once_sinks_with_one_prefix_do_not_fence_each_other() {
    let Some(bootstrap) = bootstrap() else { return };
    let (left, right, prefix) = (unique("eo-left"), unique("eo-right"), unique("eo-txn"));
    create_topic(&bootstrap, &left, 1);
    create_topic(&bootstrap, &right, 1);
    let dir = tempfile::tempdir().unwrap();
    let env = StreamEnv::new(config(Some(dir.path())));
    let input = lines("v", 300);
    let stream = env.from_collection(input.clone());
    stream.sink_to_kafka(value_sink(&bootstrap, &left, DeliveryGuarantee::ExactlyOnce, &prefix));
    stream.sink_to_kafka(value_sink(&bootstrap, &right, DeliveryGuarantee::ExactlyOnce, &prefix));
    let result = env.execute(&unique("eo-two")).unwrap();
    assert_eq!(result.restarts, 0, "a sink failed (fenced?) and the job restarted");
    assert_eq!(committed_values(&bootstrap, &left), input);
    assert_eq!(committed_values(&bootstrap, &right), input);
}

/// The broker's SASL_PLAINTEXT listener with SCRAM-SHA-512 (`scripts/services/kafka.sh` sets
/// `KAFKA_SASL_BOOTSTRAP` and the user's credentials): a job that reads and writes through it
/// exactly once gets its output through; a wrong password fails the job.
#[test]
fn sasl_scram_credentials_reach_the_broker() {
    let Some(bootstrap) = bootstrap() else { return };
    let var = |name: &str| match std::env::var(name) {
        Ok(value) => Some(value),
        Err(_) if std::env::var_os("CI").is_some() => panic!("{name} is not set: scripts/services/kafka.sh sets it"),
        Err(_) => {
            eprintln!("{name} not set: skipping");
            None
        }
    };
    let (Some(sasl), Some(user), Some(password)) =
        (var("KAFKA_SASL_BOOTSTRAP"), var("KAFKA_SASL_USERNAME"), var("KAFKA_SASL_PASSWORD"))
    else {
        return;
    };
    let (input, output) = (unique("scram-in"), unique("scram-out"));
    create_topic(&bootstrap, &input, 2);
    create_topic(&bootstrap, &output, 1);
    let values = lines("s", 50);
    kafka::produce(&bootstrap, &input, 2, values.iter().map(|v| (BASE_TS, v.clone())));
    let settings = |password: &str| {
        let mut settings = ClientSettings::new(&sasl);
        let pairs = [
            "security.protocol=SASL_PLAINTEXT".to_string(),
            "sasl.mechanism=SCRAM-SHA-512".to_string(),
            format!("sasl.username={user}"),
            format!("sasl.password={password}"),
        ];
        settings.set_pairs(pairs.iter().map(String::as_str), "test").unwrap();
        settings
    };
    let job = |password: &str| {
        let dir = tempfile::tempdir().unwrap();
        let env = StreamEnv::new(config(Some(dir.path())));
        let source = KafkaSource::builder(settings(password))
            .topics([input.clone()])
            .bounded(true)
            .build(deserializers::text_lines())
            .unwrap();
        let sink = KafkaSink::new(
            settings(password),
            &output,
            DeliveryGuarantee::ExactlyOnce,
            Some("scram"),
            Arc::new(|s: &String| SinkRecord { key: None, value: s.as_bytes().to_vec() }),
        )
        .unwrap();
        env.kafka_source(source).sink_to_kafka(sink);
        env.execute(&unique("scram"))
    };
    job(&password).expect("the job through the SCRAM listener");
    assert_eq!(committed_values(&bootstrap, &output), values);
    // librdkafka reports the refused authentication as a transport failure (the reason, "SASL
    // authentication error", goes to its log).
    let err = job("not-the-password-42").expect_err("a wrong password must fail the job").to_string();
    assert!(err.contains("transport failure") && !err.contains("not-the-password-42"), "{err}");
}
