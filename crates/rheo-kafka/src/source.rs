//! The Kafka source (Flink's `KafkaSource`).
//!
//! - **Assignment.** Every subtask lists the partitions of the subscribed topics (names or a
//!   pattern) and takes its own share, as Flink's enumerator assigns them: the partitions of a
//!   topic start at subtask `hash(topic) % parallelism` and go round-robin from there. The same
//!   partitions always land on the same subtask, with no coordination between subtasks.
//! - **Offsets** are the source's checkpoint state: one `(topic, partition, next offset)` per
//!   owned partition. A restore reads the positions of every old subtask (union redistribution),
//!   so at any new parallelism each partition resumes exactly where the checkpoint left it.
//! - **Discovery.** Partitions are listed again every `partition.discovery.interval.ms`; a new
//!   one is read from its earliest offset by the subtask it falls to.
//! - **Start**: earliest, latest, a timestamp, or the group's committed offsets. **Group offsets**
//!   are committed when a checkpoint completes, for monitoring only: the checkpoint is the truth.
//! - **`isolation.level=read_committed`** unless the properties say otherwise.
//! - **Watermarks** per partition (Kafka record timestamps, bounded out-of-orderness); the
//!   subtask's watermark is the least over its partitions, leaving out partitions that are idle
//!   for longer than the idleness timeout, or finished.
//! - **Backlog** (`pendingRecords`): the records between each partition's position and its end
//!   (the last stable offset under read_committed), summed over the subtask's partitions.
//! - **Bounded** mode stops each partition at the end offset it had when the subtask opened.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, DefaultConsumerContext};
use rdkafka::message::BorrowedMessage;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::de::DeserializeOwned;

use rheo::api::{DataStream, StreamEnv};
use rheo_runtime::graph::Data;
use rheo_runtime::output::{NO_TIMESTAMP, Timestamp};
use rheo_runtime::state::restore::encode;
use rheo_runtime::task::{SourceError, SourceFunction, SourceOutput, SourceStatus, TaskCounters, TaskInfo};

use crate::{ClientSettings, KafkaError, close_in_background};

/// Records per `poll`.
const BATCH: usize = 2048;
/// The longest `poll` waits for the first record.
const POLL_WAIT: Duration = Duration::from_millis(20);
/// How often the backlog metric is refreshed.
const LAG_INTERVAL: Duration = Duration::from_secs(1);
/// Metadata and offset requests.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Which topics the source reads.
#[derive(Debug, Clone)]
pub enum Subscription {
    Topics(Vec<String>),
    /// Every topic whose whole name matches.
    Pattern(regex::Regex),
}

/// Where a partition starts when no checkpoint says otherwise (Flink's `OffsetsInitializer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartingOffsets {
    Earliest,
    Latest,
    /// The first record with a timestamp at or after this (milliseconds since the epoch).
    Timestamp(i64),
    /// The group's committed offsets; partitions without one start at earliest.
    GroupOffsets,
}

impl std::str::FromStr for StartingOffsets {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "earliest" | "earliest-offset" => Ok(Self::Earliest),
            "latest" | "latest-offset" => Ok(Self::Latest),
            "group" | "group-offsets" => Ok(Self::GroupOffsets),
            other => match other.strip_prefix("timestamp:").map(str::parse) {
                Some(Ok(ms)) => Ok(Self::Timestamp(ms)),
                _ => Err(format!(
                    "'{other}' is no starting offset: expected earliest, latest, group-offsets or timestamp:MILLIS"
                )),
            },
        }
    }
}

/// Record fields a deserializer sees.
pub struct KafkaRecord<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub timestamp: Option<i64>,
}

/// Turns a Kafka record into zero or more stream records; an error fails the job with the
/// record's topic, partition and offset.
pub type Deserializer<T> = Arc<dyn Fn(&KafkaRecord<'_>, &mut Vec<T>) -> Result<(), String> + Send + Sync>;

/// Deserializers for the common formats.
pub mod deserializers {
    use super::*;

    /// The value as UTF-8 text, one stream record per line (a record without lines, or without
    /// a value, gives none).
    pub fn text_lines() -> Deserializer<String> {
        Arc::new(|record, out| {
            let Some(value) = record.value else { return Ok(()) };
            let text = std::str::from_utf8(value).map_err(|e| format!("value is not UTF-8 text: {e}"))?;
            out.extend(text.lines().map(str::to_string));
            Ok(())
        })
    }

    /// The value as one JSON document of type `T`.
    pub fn json<T: DeserializeOwned + 'static>() -> Deserializer<T> {
        Arc::new(|record, out| {
            let Some(value) = record.value else { return Ok(()) };
            out.push(serde_json::from_slice(value).map_err(|e| format!("value is not the expected JSON: {e}"))?);
            Ok(())
        })
    }

    /// The value's bytes as they are (a record without a value gives an empty vector).
    pub fn raw_bytes() -> Deserializer<Vec<u8>> {
        Arc::new(|record, out| {
            out.push(record.value.unwrap_or_default().to_vec());
            Ok(())
        })
    }
}

/// Per-partition watermarks from Kafka record timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KafkaWatermarks {
    pub out_of_orderness: Duration,
    /// A partition without records for this long stops holding the watermark back.
    pub idleness: Option<Duration>,
}

/// A configured Kafka source; add it with [`KafkaSourceExt::kafka_source`].
pub struct KafkaSource<T> {
    client: ClientSettings,
    subscription: Subscription,
    starting: StartingOffsets,
    bounded: bool,
    discovery_interval: Option<Duration>,
    watermarks: Option<KafkaWatermarks>,
    commit_offsets_on_checkpoint: bool,
    /// Kafka records per second over all subtasks.
    rate_limit: Option<f64>,
    deserializer: Deserializer<T>,
}

impl<T> Clone for KafkaSource<T> {
    fn clone(&self) -> Self {
        Self {
            client: self.client.clone(),
            subscription: self.subscription.clone(),
            starting: self.starting,
            bounded: self.bounded,
            discovery_interval: self.discovery_interval,
            watermarks: self.watermarks,
            commit_offsets_on_checkpoint: self.commit_offsets_on_checkpoint,
            rate_limit: self.rate_limit,
            deserializer: self.deserializer.clone(),
        }
    }
}

/// Builds a [`KafkaSource`].
pub struct KafkaSourceBuilder {
    client: ClientSettings,
    subscription: Option<Subscription>,
    starting: StartingOffsets,
    bounded: bool,
    discovery_interval: Option<Duration>,
    watermarks: Option<KafkaWatermarks>,
    commit_offsets_on_checkpoint: bool,
    rate_limit: Option<f64>,
}

impl KafkaSource<()> {
    pub fn builder(client: ClientSettings) -> KafkaSourceBuilder {
        KafkaSourceBuilder {
            client,
            subscription: None,
            starting: StartingOffsets::Earliest,
            bounded: false,
            // Flink's KafkaSource default.
            discovery_interval: Some(Duration::from_secs(300)),
            watermarks: None,
            commit_offsets_on_checkpoint: true,
            rate_limit: None,
        }
    }
}

impl KafkaSourceBuilder {
    pub fn topics<S: Into<String>>(mut self, topics: impl IntoIterator<Item = S>) -> Self {
        self.subscription = Some(Subscription::Topics(topics.into_iter().map(Into::into).collect()));
        self
    }

    /// Reads every topic whose whole name matches `pattern`.
    pub fn topic_pattern(mut self, pattern: &str) -> Result<Self, KafkaError> {
        let anchored = format!("^(?:{pattern})$");
        let regex = regex::Regex::new(&anchored)
            .map_err(|e| KafkaError::Config(format!("topic pattern '{pattern}' is no regular expression: {e}")))?;
        self.subscription = Some(Subscription::Pattern(regex));
        Ok(self)
    }

    pub fn starting_offsets(mut self, starting: StartingOffsets) -> Self {
        self.starting = starting;
        self
    }

    /// Stops each partition at the end offset it had when the source opened; the job then
    /// finishes (Flink's `setBounded(OffsetsInitializer.latest())`).
    pub fn bounded(mut self, bounded: bool) -> Self {
        self.bounded = bounded;
        self
    }

    /// `partition.discovery.interval.ms`; `None` turns discovery off.
    pub fn partition_discovery_interval(mut self, interval: Option<Duration>) -> Self {
        self.discovery_interval = interval.filter(|d| !d.is_zero());
        self
    }

    pub fn watermarks(mut self, watermarks: KafkaWatermarks) -> Self {
        self.watermarks = Some(watermarks);
        self
    }

    /// `commit.offsets.on.checkpoint` (default true when a `group.id` is set).
    pub fn commit_offsets_on_checkpoint(mut self, commit: bool) -> Self {
        self.commit_offsets_on_checkpoint = commit;
        self
    }

    /// Reads at most this many Kafka records per second over all subtasks (Flink's
    /// `RateLimiterStrategy`), e.g. to watch a job catch up.
    pub fn rate_limit(mut self, records_per_second: Option<f64>) -> Result<Self, KafkaError> {
        if let Some(rate) = records_per_second
            && !(rate.is_finite() && rate > 0.0)
        {
            return Err(KafkaError::Config(format!("the rate limit must be a positive number per second, got {rate}")));
        }
        self.rate_limit = records_per_second;
        Ok(self)
    }

    pub fn build<T>(self, deserializer: Deserializer<T>) -> Result<KafkaSource<T>, KafkaError> {
        self.client.require_bootstrap()?;
        let subscription = self
            .subscription
            .ok_or_else(|| KafkaError::Config("the Kafka source has no topics or topic pattern".into()))?;
        if let Subscription::Topics(topics) = &subscription
            && (topics.is_empty() || topics.iter().any(|t| t.trim().is_empty()))
        {
            return Err(KafkaError::Config("the Kafka source's topic list is empty or has an empty name".into()));
        }
        if self.starting == StartingOffsets::GroupOffsets && self.client.group_id().is_none() {
            return Err(KafkaError::Config("starting from group offsets needs group.id".into()));
        }
        if let Some(level) = self.client.get("isolation.level")
            && level != "read_committed"
            && level != "read_uncommitted"
        {
            return Err(KafkaError::Config(format!(
                "isolation.level is '{level}': expected read_committed or read_uncommitted"
            )));
        }
        Ok(KafkaSource {
            client: self.client,
            subscription,
            starting: self.starting,
            bounded: self.bounded,
            discovery_interval: self.discovery_interval,
            watermarks: self.watermarks,
            commit_offsets_on_checkpoint: self.commit_offsets_on_checkpoint,
            rate_limit: self.rate_limit,
            deserializer,
        })
    }
}

/// Flink's `KafkaSourceEnumerator.getSplitOwner`: Java's `String.hashCode` of the topic picks
/// the first subtask, partitions go round-robin from there.
pub fn partition_owner(topic: &str, partition: i32, parallelism: usize) -> usize {
    let mut hash: i32 = 0;
    for unit in topic.encode_utf16() {
        hash = hash.wrapping_mul(31).wrapping_add(unit as i32);
    }
    let start = ((hash.wrapping_mul(31)) & 0x7FFF_FFFF) as usize % parallelism;
    (start + partition as usize) % parallelism
}

/// A partition's position in checkpoint state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartitionOffset {
    pub topic: String,
    pub partition: i32,
    /// The offset of the next record to read.
    pub next: i64,
}

struct PartitionState {
    next: i64,
    /// Bounded mode: where this partition ends.
    stop: Option<i64>,
    max_timestamp: Option<Timestamp>,
    last_record: Instant,
    lag: u64,
}

impl PartitionState {
    fn finished(&self) -> bool {
        self.stop.is_some_and(|stop| self.next >= stop)
    }
}

type PartitionKey = (String, i32);

/// One subtask of the Kafka source.
pub struct KafkaSourceReader<T> {
    source: KafkaSource<T>,
    subtask: usize,
    parallelism: usize,
    consumer: Option<Arc<BaseConsumer>>,
    /// One queue per unfinished partition, read round-robin: librdkafka's shared queue hands
    /// out records in the order fetches bring them, so one partition's backlog would hold back
    /// the others, and with them the per-partition watermark and every window.
    queues: BTreeMap<PartitionKey, PartitionQueue<DefaultConsumerContext>>,
    partitions: BTreeMap<PartitionKey, PartitionState>,
    /// Positions from the restored checkpoint (every old subtask's).
    restored: Option<HashMap<PartitionKey, i64>>,
    /// Positions taken for checkpoints, committed to the group when they complete.
    uncommitted: Vec<(u64, Vec<PartitionOffset>)>,
    next_discovery: Option<Instant>,
    next_lag: Instant,
    counters: Option<Arc<TaskCounters>>,
    reported_lag: u64,
    watermark: Timestamp,
    records: Vec<T>,
    /// Records read, and since when, for the rate limit.
    read: u64,
    opened: Instant,
}

impl<T> KafkaSourceReader<T> {
    pub fn new(
        source: KafkaSource<T>,
        subtask: usize,
        parallelism: usize,
        restored: Option<Vec<PartitionOffset>>,
    ) -> Self {
        Self {
            source,
            subtask,
            parallelism: parallelism.max(1),
            consumer: None,
            queues: BTreeMap::new(),
            partitions: BTreeMap::new(),
            restored: restored.map(|r| r.into_iter().map(|p| ((p.topic, p.partition), p.next)).collect()),
            uncommitted: Vec::new(),
            next_discovery: None,
            next_lag: Instant::now(),
            counters: None,
            reported_lag: 0,
            watermark: Timestamp::MIN,
            records: Vec::new(),
            read: 0,
            opened: Instant::now(),
        }
    }

    fn consumer(&self) -> &Arc<BaseConsumer> {
        self.consumer.as_ref().expect("the Kafka source is open")
    }

    /// The partitions of the subscription that this subtask owns.
    fn owned_partitions(&self) -> Result<Vec<PartitionKey>, KafkaError> {
        let consumer = self.consumer();
        let metadata = match &self.source.subscription {
            Subscription::Topics(topics) if topics.len() == 1 => {
                consumer.fetch_metadata(Some(&topics[0]), REQUEST_TIMEOUT)
            }
            _ => consumer.fetch_metadata(None, REQUEST_TIMEOUT),
        }
        .map_err(|e| KafkaError::Client(format!("cannot list the partitions of the subscribed topics: {e}")))?;
        let mut owned = Vec::new();
        for topic in metadata.topics() {
            let subscribed = match &self.source.subscription {
                Subscription::Topics(topics) => topics.iter().any(|t| t == topic.name()),
                Subscription::Pattern(pattern) => pattern.is_match(topic.name()),
            };
            // A topic that does not exist (yet) comes back with an error and no partitions.
            if !subscribed || topic.error().is_some() {
                continue;
            }
            for partition in topic.partitions() {
                if partition_owner(topic.name(), partition.id(), self.parallelism) == self.subtask {
                    owned.push((topic.name().to_string(), partition.id()));
                }
            }
        }
        Ok(owned)
    }

    /// Resolves where each new partition starts, as an offset number (so that every checkpoint
    /// holds a definite position), and assigns all owned partitions to the consumer.
    fn add_partitions(&mut self, new: Vec<PartitionKey>, initial: bool) -> Result<(), KafkaError> {
        if new.is_empty() {
            return Ok(());
        }
        let consumer = self.consumer();
        let mut starts = Vec::with_capacity(new.len());
        let mut committed: HashMap<PartitionKey, i64> = HashMap::new();
        if initial && self.restored.is_none() && self.source.starting == StartingOffsets::GroupOffsets {
            let mut list = TopicPartitionList::new();
            for (topic, partition) in &new {
                list.add_partition(topic, *partition);
            }
            let offsets = consumer
                .committed_offsets(list, REQUEST_TIMEOUT)
                .map_err(|e| KafkaError::Client(format!("cannot read the group's committed offsets: {e}")))?;
            for e in offsets.elements() {
                if let Offset::Offset(o) = e.offset() {
                    committed.insert((e.topic().to_string(), e.partition()), o);
                }
            }
        }
        for key in new {
            let (low, high) = match consumer.fetch_watermarks(&key.0, key.1, REQUEST_TIMEOUT) {
                Ok(offsets) => offsets,
                // A partition created a moment ago may have no leader yet: the next discovery
                // finds it again.
                Err(e) if !initial => {
                    tracing::info!(subtask = self.subtask, topic = %key.0, partition = key.1, error = %e,
                        "new Kafka partition not readable yet; trying again at the next discovery");
                    continue;
                }
                Err(e) => {
                    return Err(KafkaError::Client(format!("cannot read the offsets of {}-{}: {e}", key.0, key.1)));
                }
            };
            let restored = self.restored.as_ref().and_then(|r| r.get(&key).copied());
            let start = match (restored, &self.restored) {
                (Some(next), _) => next,
                // Not in the checkpoint: a partition that appeared after it.
                (None, Some(_)) => low,
                (None, None) if !initial => low,
                (None, None) => match self.source.starting {
                    StartingOffsets::Earliest => low,
                    StartingOffsets::Latest => high,
                    StartingOffsets::GroupOffsets => committed.get(&key).copied().unwrap_or(low),
                    StartingOffsets::Timestamp(ms) => {
                        let mut list = TopicPartitionList::new();
                        list.add_partition_offset(&key.0, key.1, Offset::Offset(ms))
                            .map_err(|e| KafkaError::Client(e.to_string()))?;
                        let found = consumer
                            .offsets_for_times(list, REQUEST_TIMEOUT)
                            .map_err(|e| KafkaError::Client(format!("cannot look up offsets by time: {e}")))?;
                        match found.elements().first().map(|e| e.offset()) {
                            Some(Offset::Offset(o)) => o,
                            // No record at or after the timestamp: start at the end.
                            _ => high,
                        }
                    }
                },
            };
            let stop = self.source.bounded.then_some(high);
            starts.push((key, start, stop));
        }
        for (key, next, stop) in starts {
            tracing::info!(subtask = self.subtask, topic = %key.0, partition = key.1, offset = next, "reading Kafka partition");
            self.partitions
                .insert(key, PartitionState { next, stop, max_timestamp: None, last_record: Instant::now(), lag: 0 });
        }
        self.assign()
    }

    /// Assigns the unfinished partitions at their positions, each with its own queue.
    fn assign(&mut self) -> Result<(), KafkaError> {
        self.queues.clear();
        let mut list = TopicPartitionList::new();
        for ((topic, partition), state) in &self.partitions {
            if !state.finished() {
                list.add_partition_offset(topic, *partition, Offset::Offset(state.next))
                    .map_err(|e| KafkaError::Client(e.to_string()))?;
            }
        }
        let consumer = self.consumer().clone();
        consumer.assign(&list).map_err(|e| KafkaError::Client(format!("cannot assign partitions: {e}")))?;
        for e in list.elements() {
            if let Some(queue) = consumer.split_partition_queue(e.topic(), e.partition()) {
                self.queues.insert((e.topic().to_string(), e.partition()), queue);
            }
        }
        Ok(())
    }

    fn discover(&mut self, initial: bool) -> Result<(), KafkaError> {
        let owned = self.owned_partitions()?;
        let new: Vec<PartitionKey> = owned.into_iter().filter(|k| !self.partitions.contains_key(k)).collect();
        if !initial && !new.is_empty() {
            tracing::info!(subtask = self.subtask, partitions = new.len(), "discovered new Kafka partitions");
        }
        self.add_partitions(new, initial)
    }

    /// Refreshes the backlog of every partition and reports the change.
    fn update_lag(&mut self) {
        let Some(consumer) = self.consumer.as_ref() else { return };
        for ((topic, partition), state) in self.partitions.iter_mut() {
            if state.finished() {
                state.lag = 0;
                continue;
            }
            // Under read_committed this is the last stable offset.
            if let Ok((_, end)) = consumer.fetch_watermarks(topic, *partition, Duration::from_secs(1)) {
                let end = state.stop.map_or(end, |stop| stop.min(end));
                state.lag = (end - state.next).max(0) as u64;
            }
        }
        let lag: u64 = self.partitions.values().map(|s| s.lag).sum();
        self.report_lag(lag);
    }

    fn report_lag(&mut self, lag: u64) {
        if let Some(counters) = &self.counters {
            if lag >= self.reported_lag {
                counters.pending_records.fetch_add(lag - self.reported_lag, Ordering::Relaxed);
            } else {
                counters.pending_records.fetch_sub(self.reported_lag - lag, Ordering::Relaxed);
            }
        }
        self.reported_lag = lag;
    }

    /// Moves the position of partitions past transaction markers and aborted records, which
    /// the consumer skips without handing out a record.
    fn catch_up_positions(&mut self) {
        let Some(consumer) = self.consumer.as_ref() else { return };
        let Ok(positions) = consumer.position() else { return };
        for e in positions.elements() {
            if let (Offset::Offset(o), Some(state)) =
                (e.offset(), self.partitions.get_mut(&(e.topic().to_string(), e.partition())))
                && o > state.next
            {
                state.next = o;
            }
        }
    }

    fn emit_watermark(&mut self, out: &mut SourceOutput<'_, T>) {
        let Some(settings) = self.source.watermarks else { return };
        let now = Instant::now();
        let mut least: Option<Timestamp> = None;
        let mut active = false;
        for state in self.partitions.values() {
            if state.finished() || settings.idleness.is_some_and(|idle| now.duration_since(state.last_record) >= idle) {
                continue;
            }
            active = true;
            let watermark = state
                .max_timestamp
                .map_or(Timestamp::MIN, |max| max - settings.out_of_orderness.as_millis() as Timestamp - 1);
            least = Some(least.map_or(watermark, |l: Timestamp| l.min(watermark)));
        }
        match least {
            Some(watermark) if watermark > self.watermark => {
                self.watermark = watermark;
                out.emit_watermark(watermark);
            }
            None if !active => out.mark_idle(),
            _ => {}
        }
    }

    fn positions(&self) -> Vec<PartitionOffset> {
        self.partitions
            .iter()
            .map(|((topic, partition), s)| PartitionOffset {
                topic: topic.clone(),
                partition: *partition,
                next: s.next,
            })
            .collect()
    }
}

impl<T> Drop for KafkaSourceReader<T> {
    fn drop(&mut self) {
        self.report_lag(0);
        self.queues.clear();
        if let Some(consumer) = self.consumer.take() {
            close_in_background(consumer);
        }
    }
}

impl<T: Data> SourceFunction<T> for KafkaSourceReader<T> {
    fn open(&mut self, info: &TaskInfo) -> Result<(), SourceError> {
        let client = &self.source.client;
        let consumer: BaseConsumer = client
            .client_config(
                &[
                    ("isolation.level", "read_committed"),
                    // Every partition is assigned at an explicit offset (from the checkpoint or
                    // the starting-offsets choice); if that offset is gone from the broker
                    // (retention deleted it), jumping elsewhere would silently drop or repeat
                    // records, so the job fails instead, naming the partition (a user may still
                    // choose `auto.offset.reset` as a property).
                    ("auto.offset.reset", "error"),
                    // librdkafka hands out records in the order fetches bring them; smaller
                    // per-partition fetches interleave partitions, which the per-partition
                    // watermark needs (one partition's megabyte would otherwise hold the others
                    // and with them every window).
                    ("max.partition.fetch.bytes", "65536"),
                    ("client.id", &format!("rheo-source-{}", self.subtask)),
                    // librdkafka assigns partitions only to a consumer with a group, even one
                    // that never joins it (as here) and never commits (without the user's own
                    // group.id, nothing is committed).
                    ("group.id", "rheo-kafka-source"),
                ],
                // Positions live in checkpoints; the group only mirrors them.
                &[("enable.auto.commit", "false"), ("enable.auto.offset.store", "false")],
            )
            .create()
            .map_err(|e| KafkaError::Client(format!("cannot create the Kafka consumer: {e}")))?;
        self.consumer = Some(Arc::new(consumer));
        self.counters = Some(info.counters.clone());
        self.discover(true)?;
        self.next_discovery = self.source.discovery_interval.map(|d| Instant::now() + d);
        self.opened = Instant::now();
        Ok(())
    }

    fn poll(&mut self, out: &mut SourceOutput<'_, T>) -> Result<SourceStatus, SourceError> {
        let now = Instant::now();
        if let Some(due) = self.next_discovery
            && now >= due
        {
            self.discover(false)?;
            self.next_discovery = self.source.discovery_interval.map(|d| now + d);
        }
        if now >= self.next_lag {
            self.next_lag = now + LAG_INTERVAL;
            self.update_lag();
        }
        if self.source.bounded && self.partitions.values().all(PartitionState::finished) {
            self.report_lag(0);
            return Ok(SourceStatus::Finished);
        }
        let mut batch = BATCH;
        if let Some(rate) = self.source.rate_limit {
            let rate = rate / self.parallelism as f64;
            let allowed = (self.opened.elapsed().as_secs_f64() * rate) as u64 + 1;
            let available = allowed.saturating_sub(self.read);
            if available == 0 {
                std::thread::sleep(POLL_WAIT);
                self.emit_watermark(out);
                return Ok(SourceStatus::Idle);
            }
            batch = batch.min(available as usize);
        }
        let mut delivered = 0;
        let mut reassign = false;
        let consumer = self.consumer.as_ref().expect("the Kafka source is open");
        // Serves the consumer's events (and hands out records of partitions without a queue).
        let mut reader = RecordReader {
            partitions: &mut self.partitions,
            deserializer: &self.source.deserializer,
            records: &mut self.records,
            out,
        };
        if let Some(message) = consumer.poll(Duration::ZERO) {
            match reader.take(message)? {
                Taken::Record => delivered += 1,
                Taken::Finished => reassign = true,
                Taken::Skipped | Taken::Stop => {}
            }
        }
        let per_partition = (batch / self.queues.len().max(1)).max(1);
        for queue in self.queues.values() {
            for _ in 0..per_partition {
                if delivered >= batch {
                    break;
                }
                let Some(message) = queue.poll(Duration::ZERO) else { break };
                match reader.take(message)? {
                    Taken::Record => delivered += 1,
                    Taken::Finished => {
                        reassign = true;
                        break;
                    }
                    Taken::Skipped => {}
                    Taken::Stop => break,
                }
            }
        }
        self.read += delivered as u64;
        if delivered == 0 {
            // Nothing buffered: wait a little for the next fetch.
            let _ = consumer.poll(POLL_WAIT).map(|message| reader.take(message)).transpose()?;
        }
        if delivered == 0 {
            self.catch_up_positions();
            reassign |= self.partitions.values().any(|s| s.finished() && s.lag > 0);
        }
        if reassign {
            for state in self.partitions.values_mut().filter(|s| s.finished()) {
                state.lag = 0;
            }
            self.assign()?;
        }
        self.emit_watermark(out);
        if self.partitions.is_empty() {
            out.mark_idle();
        }
        Ok(if delivered > 0 { SourceStatus::More } else { SourceStatus::Idle })
    }

    fn snapshot_state_for(&mut self, checkpoint_id: u64) -> Option<Vec<u8>> {
        let positions = self.positions();
        if self.source.commit_offsets_on_checkpoint && self.source.client.group_id().is_some() {
            self.uncommitted.push((checkpoint_id, positions.clone()));
        }
        Some(encode(&positions))
    }

    fn checkpoint_complete(&mut self, checkpoint_id: u64) {
        let Some(index) = self.uncommitted.iter().rposition(|(id, _)| *id <= checkpoint_id) else { return };
        let (_, positions) = self.uncommitted.drain(..=index).next_back().expect("an entry");
        let mut list = TopicPartitionList::new();
        for p in &positions {
            let _ = list.add_partition_offset(&p.topic, p.partition, Offset::Offset(p.next));
        }
        if list.count() == 0 {
            return;
        }
        // For monitoring only: a failed commit loses nothing.
        if let Err(e) = self.consumer().commit(&list, CommitMode::Async) {
            tracing::warn!(error = %e, checkpoint = checkpoint_id, "cannot commit offsets to the Kafka group");
        }
    }
}

enum Taken {
    /// A record was read (and emitted, if it had values).
    Record,
    /// The partition reached its stop offset.
    Finished,
    /// Not for us (fetched before a reassignment).
    Skipped,
    /// An error librdkafka retries: stop reading this queue for now.
    Stop,
}

/// Turns records into stream records, keeping each partition's position and timestamps.
struct RecordReader<'r, 'o, T> {
    partitions: &'r mut BTreeMap<PartitionKey, PartitionState>,
    deserializer: &'r Deserializer<T>,
    records: &'r mut Vec<T>,
    out: &'r mut SourceOutput<'o, T>,
}

impl<T> RecordReader<'_, '_, T> {
    fn take(&mut self, message: rdkafka::error::KafkaResult<BorrowedMessage<'_>>) -> Result<Taken, SourceError> {
        let message = match message {
            Ok(message) => message,
            Err(rdkafka::error::KafkaError::PartitionEOF(_)) => return Ok(Taken::Stop),
            Err(e) => {
                if e.rdkafka_error_code().is_some_and(|c| c == rdkafka::types::RDKafkaErrorCode::Fatal) {
                    return Err(KafkaError::Client(format!("Kafka consumer failed: {e}")).into());
                }
                if e.rdkafka_error_code().is_some_and(|c| c == rdkafka::types::RDKafkaErrorCode::AutoOffsetReset) {
                    return Err(KafkaError::Client(format!(
                        "a partition's position is no longer on the broker (deleted by retention?): {e}; \
                         reading on from another offset would lose or repeat records, so the job stops \
                         (set the Kafka property auto.offset.reset=earliest or latest to skip instead)"
                    ))
                    .into());
                }
                // Transient (a broker went away): librdkafka retries.
                tracing::warn!(error = %e, "Kafka consumer error");
                return Ok(Taken::Stop);
            }
        };
        let Some(state) = self.partitions.get_mut(&(message.topic().to_string(), message.partition())) else {
            return Ok(Taken::Skipped);
        };
        let offset = message.offset();
        if offset < state.next || state.finished() {
            return Ok(Taken::Skipped);
        }
        if let Some(stop) = state.stop
            && offset >= stop
        {
            state.next = stop;
            return Ok(Taken::Finished);
        }
        let timestamp = message.timestamp().to_millis();
        let record = KafkaRecord {
            topic: message.topic(),
            partition: message.partition(),
            offset,
            key: message.key(),
            value: message.payload(),
            timestamp,
        };
        (self.deserializer)(&record, self.records).map_err(|e| {
            KafkaError::Deserialize(format!("{}-{} offset {offset}: {e}", record.topic, record.partition))
        })?;
        let timestamp = timestamp.unwrap_or(NO_TIMESTAMP);
        for value in self.records.drain(..) {
            self.out.collect_with_timestamp(value, timestamp);
        }
        state.next = offset + 1;
        state.last_record = Instant::now();
        if timestamp != NO_TIMESTAMP {
            state.max_timestamp = Some(state.max_timestamp.map_or(timestamp, |m| m.max(timestamp)));
        }
        Ok(if state.finished() { Taken::Finished } else { Taken::Record })
    }
}

/// Adds Kafka sources to a [`StreamEnv`].
pub trait KafkaSourceExt {
    /// A parallel stream of the records of `source`.
    fn kafka_source<T: Data>(&self, source: KafkaSource<T>) -> DataStream<T>;
}

impl KafkaSourceExt for StreamEnv {
    fn kafka_source<T: Data>(&self, source: KafkaSource<T>) -> DataStream<T> {
        self.add_source("Kafka Source", move |ctx| {
            let restored = ctx.info.restored.is_some().then(|| ctx.restore_operator_all::<Vec<PartitionOffset>>());
            KafkaSourceReader::new(
                source.clone(),
                ctx.info.subtask_index,
                ctx.info.parallelism,
                restored.map(|r| r.into_iter().flatten().collect()),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_match_flinks_enumerator() {
        // Flink: ((topic.hashCode() * 31) & 0x7FFFFFFF) % numReaders, then round-robin.
        // "words".hashCode() == 113318569.
        let start = (113_318_569i32.wrapping_mul(31) & 0x7FFF_FFFF) as usize % 3;
        for p in 0..6 {
            assert_eq!(partition_owner("words", p, 3), (start + p as usize) % 3);
        }
        // Every partition has exactly one owner, spread evenly.
        let mut per_subtask = [0; 4];
        for p in 0..12 {
            per_subtask[partition_owner("t", p, 4)] += 1;
        }
        assert_eq!(per_subtask, [3, 3, 3, 3]);
    }

    #[test]
    fn starting_offsets_parse_with_clear_errors() {
        assert_eq!("earliest".parse(), Ok(StartingOffsets::Earliest));
        assert_eq!("timestamp:1700000000000".parse(), Ok(StartingOffsets::Timestamp(1_700_000_000_000)));
        let err = "yesterday".parse::<StartingOffsets>().unwrap_err();
        assert!(err.contains("earliest, latest, group-offsets or timestamp:MILLIS"), "{err}");
    }

    #[test]
    fn deserializers() {
        let record = |value: &'static [u8]| KafkaRecord {
            topic: "t",
            partition: 0,
            offset: 0,
            key: None,
            value: Some(value),
            timestamp: None,
        };
        let mut lines = Vec::new();
        deserializers::text_lines()(&record(b"a b\nc"), &mut lines).unwrap();
        assert_eq!(lines, ["a b", "c"]);
        let mut json: Vec<serde_json::Value> = Vec::new();
        assert!(deserializers::json()(&record(b"{\"x\":"), &mut json).unwrap_err().contains("JSON"));
        let mut bytes = Vec::new();
        deserializers::raw_bytes()(&record(b"\x00\x01"), &mut bytes).unwrap();
        assert_eq!(bytes, [vec![0u8, 1]]);
    }
}
