//! A real Kafka broker's topics for tests and the benchmark (feature `kafka`): create a topic,
//! produce timestamped lines, read a topic to its end under an isolation level.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// `KAFKA_BOOTSTRAP`, set by `scripts/with-kafka.sh`. Without it the test fails, unless
/// skipping is allowed ([`crate::skip_or_fail`]): then `None`.
pub fn bootstrap() -> Option<String> {
    match std::env::var("KAFKA_BOOTSTRAP") {
        Ok(b) => Some(b),
        Err(_) => {
            crate::skip_or_fail("this Kafka test", "KAFKA_BOOTSTRAP is not set (run under scripts/with-kafka.sh)");
            None
        }
    }
}

/// Creates `topic` with `partitions`, kept forever: records carry old event times, which the
/// broker's default time-based retention (7 days) would delete at its next check.
pub fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("admin client");
    let topics = [NewTopic::new(topic, partitions, TopicReplication::Fixed(1)).set("retention.ms", "-1")];
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    for result in runtime.block_on(admin.create_topics(&topics, &options)).expect("create topics") {
        result.unwrap_or_else(|(t, e)| panic!("cannot create topic {t}: {e}"));
    }
}

/// Grows `topic` to `partitions` partitions.
pub fn add_partitions(bootstrap: &str, topic: &str, partitions: usize) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("admin client");
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let grow = [NewPartitions::new(topic, partitions)];
    for result in runtime.block_on(admin.create_partitions(&grow, &options)).expect("create partitions") {
        result.unwrap_or_else(|(t, e)| panic!("cannot add partitions to {t}: {e}"));
    }
}

/// Produces `(partition, timestamp ms, text)` records, each to its partition, and waits until the
/// broker has them all.
pub fn produce_to(bootstrap: &str, topic: &str, records: impl IntoIterator<Item = (i32, i64, String)>) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    for (partition, ts, text) in records {
        let mut record = BaseRecord::<(), String>::to(topic).payload(&text).partition(partition).timestamp(ts);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    producer.poll(Duration::from_millis(10));
                    record = r;
                }
                Err((e, _)) => panic!("cannot produce to {topic}: {e}"),
            }
        }
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
}

/// Produces `(timestamp ms, text)` records, the `i`-th to partition `i % partitions`, and waits
/// until the broker has them all.
pub fn produce(bootstrap: &str, topic: &str, partitions: i32, records: impl IntoIterator<Item = (i64, String)>) {
    let records = records.into_iter().enumerate();
    produce_to(bootstrap, topic, records.map(|(i, (ts, text))| ((i as u64 % partitions as u64) as i32, ts, text)));
}

/// Every record of `topic` up to its end when called, as `(key, value)`, read with
/// `isolation`. The end is the high watermark, whatever the isolation: under `read_committed`
/// the last stable offset can still lag behind a transaction that its producer has committed
/// (the broker writes the commit markers after it answers the commit), and reading only up to
/// it would miss that transaction's records. So a `read_committed` read waits until every
/// transaction up to the end is decided, and one that stays open fails the read at `deadline`.
pub fn read_all(bootstrap: &str, topic: &str, isolation: &str, deadline: Duration) -> Vec<(String, String)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("isolation.level", isolation)
        .set("enable.partition.eof", "false")
        // position() needs a group; it never joins it (assign only).
        .set("group.id", format!("reader-{}-{}", std::process::id(), unique_suffix()))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let uncommitted: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("isolation.level", "read_uncommitted")
        .create()
        .expect("consumer");
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
    let mut list = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for p in metadata.topics()[0].partitions() {
        list.add_partition_offset(topic, p.id(), Offset::Beginning).expect("partition");
        let (_, end) = uncommitted.fetch_watermarks(topic, p.id(), Duration::from_secs(10)).expect("watermarks");
        ends.insert(p.id(), end);
    }
    consumer.assign(&list).expect("assign");
    let mut records = Vec::new();
    let deadline = Instant::now() + deadline;
    let done = |consumer: &BaseConsumer| {
        ends.iter().all(|(p, end)| {
            match consumer.position().expect("position").find_partition(topic, *p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o >= *end,
                _ => *end == 0,
            }
        })
    };
    while !done(&consumer) {
        assert!(Instant::now() < deadline, "reading {topic} did not reach its end");
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.expect("message");
            let text = |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).to_string();
            records.push((text(message.key()), text(message.payload())));
        }
    }
    // Dropping a consumer with a group id can block in librdkafka's close.
    std::mem::forget(consumer);
    records
}

fn unique_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}
