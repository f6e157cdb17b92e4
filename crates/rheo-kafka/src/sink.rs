//! The Kafka sink (Flink's `KafkaSink`), at-least-once or exactly-once.
//!
//! **At-least-once**: records are produced as they come through an idempotent producer; every
//! checkpoint barrier waits until all of them are acknowledged (`flush`), so a checkpoint never
//! covers a record Kafka does not have.
//!
//! **Exactly-once** is a two-phase commit on Rheo's checkpoints, the mechanism of the exactly-once
//! file sink: records are buffered; at the barrier the buffer is *pre-committed* into the
//! checkpoint's state as a pending part; when the checkpoint completes, the part is written in
//! one Kafka transaction and committed. A `read_committed` consumer therefore sees a checkpoint's
//! output exactly when the checkpoint exists. After a crash, the restored subtask commits the
//! parts its checkpoint had pre-committed (the crash may have come between the checkpoint and
//! the commit). The cost: a checkpoint interval's output is held in memory and written into the
//! checkpoint until the checkpoint completes, and the commit runs on the task's thread.
//!
//! Why the records wait in the checkpoint rather than in an open Kafka transaction, as Flink
//! does: to finish a transaction that a dead process opened, Flink re-attaches to it by producer
//! id and epoch through reflection into the Java client. librdkafka has no such call, and a new
//! producer with the same transactional id *aborts* the open transaction (that is how Kafka
//! fences zombies). Keeping the part in the checkpoint makes the commit repeatable instead.
//!
//! **Transactional ids.** Each subtask of each run (every start, restart or restore of the job)
//! writes under a transactional id of its own, `<prefix>-<operator>-<subtask>-<run>`, where
//! `<operator>` is the sink's node in the job graph and `<run>` 8 random hex digits drawn when
//! the subtask starts. The id is kept in the subtask's checkpoint state. Two jobs with the same
//! prefix, or two sinks of one job, never share an id, and a job that starts afresh (a rerun of
//! a finished job, `execution.fresh-start`, another checkpoint directory, a redeploy without
//! state) never reuses the ids, and so the commit markers, of an earlier run.
//!
//! Repeating a commit must not duplicate it. Each commit's transaction also commits a marker,
//! atomically with the records: offset `checkpoint + 1` for the consumer group named like the
//! transactional id, on partition 0 of the output topic (`send_offsets_to_transaction`). Before
//! writing a part the sink reads that marker; a part at or below it is already in Kafka and is
//! skipped. A transactional id only ever commits the parts of one run, in checkpoint order, so
//! the marker cannot hide a part of another run.
//!
//! A restored subtask first opens (`init_transactions`) the transactional id of every old
//! subtask whose state it takes over, which fences any zombie producer of that id and aborts
//! whatever transaction a failed attempt left open (so a stuck last stable offset is released),
//! then commits that id's pending parts, then goes on under an id of its own.
//!
//! The broker forgets a marker `offsets.retention.minutes` (7 days by default) after its commit:
//! restoring a checkpoint or savepoint older than that commits its last pre-committed part again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{Offset, TopicPartitionList};

use rheo::api::DataStream;
use rheo::api::stream::DataSink;
use rheo_config::{Configuration, options};
use rheo_runtime::graph::{Data, OperatorContext};
use rheo_runtime::output::{NO_TIMESTAMP, Timestamp};
use rheo_runtime::sink::{SinkError, SinkFunction};
use rheo_runtime::state::restore::encode;

use crate::{ClientSettings, KafkaError, close_in_background};

/// How long a flush or a transaction step may take before the task fails.
const TIMEOUT: Duration = Duration::from_secs(60);
/// librdkafka's default `transaction.timeout.ms`.
const DEFAULT_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// Flink's `DeliveryGuarantee`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryGuarantee {
    /// Fire and forget: nothing waits at checkpoints.
    None,
    AtLeastOnce,
    ExactlyOnce,
}

impl std::str::FromStr for DeliveryGuarantee {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().replace('_', "-").as_str() {
            "none" => Ok(Self::None),
            "at-least-once" => Ok(Self::AtLeastOnce),
            "exactly-once" => Ok(Self::ExactlyOnce),
            _ => Err(format!("'{text}' is no delivery guarantee: expected exactly-once, at-least-once or none")),
        }
    }
}

/// One record to produce.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SinkRecord {
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
}

/// Turns a stream record into a Kafka record.
pub type Serializer<T> = Arc<dyn Fn(&T) -> SinkRecord + Send + Sync>;

/// A configured Kafka sink; add it with [`KafkaSinkExt::sink_to_kafka`].
pub struct KafkaSink<T> {
    client: ClientSettings,
    topic: String,
    guarantee: DeliveryGuarantee,
    transactional_id_prefix: Option<String>,
    serializer: Serializer<T>,
}

impl<T> Clone for KafkaSink<T> {
    fn clone(&self) -> Self {
        Self {
            client: self.client.clone(),
            topic: self.topic.clone(),
            guarantee: self.guarantee,
            transactional_id_prefix: self.transactional_id_prefix.clone(),
            serializer: self.serializer.clone(),
        }
    }
}

impl<T> KafkaSink<T> {
    /// A sink into `topic`. Exactly-once needs a transactional-id prefix, the start of its
    /// transactional ids (see the module docs).
    pub fn new(
        client: ClientSettings,
        topic: &str,
        guarantee: DeliveryGuarantee,
        transactional_id_prefix: Option<&str>,
        serializer: Serializer<T>,
    ) -> Result<Self, KafkaError> {
        client.require_bootstrap()?;
        if topic.trim().is_empty() {
            return Err(KafkaError::Config("the Kafka sink's topic is empty".into()));
        }
        let prefix = transactional_id_prefix.map(str::trim).filter(|p| !p.is_empty()).map(str::to_string);
        if guarantee == DeliveryGuarantee::ExactlyOnce && prefix.is_none() {
            return Err(KafkaError::Config("an exactly-once Kafka sink needs a transactional-id prefix".into()));
        }
        if client.get("transactional.id").is_some() {
            return Err(KafkaError::Config(
                "transactional.id is set by the sink from the prefix and the subtask; set the prefix instead".into(),
            ));
        }
        Ok(Self { client, topic: topic.to_string(), guarantee, transactional_id_prefix: prefix, serializer })
    }

    fn transaction_timeout(&self) -> Result<Duration, KafkaError> {
        match self.client.get("transaction.timeout.ms") {
            None => Ok(DEFAULT_TRANSACTION_TIMEOUT),
            Some(ms) => ms.trim().parse::<u64>().map(Duration::from_millis).map_err(|_| {
                KafkaError::Config(format!("transaction.timeout.ms is '{ms}': expected a number of milliseconds"))
            }),
        }
    }

    /// Checks the sink against the job's configuration: an exactly-once sink needs checkpoints
    /// whose interval is shorter than `transaction.timeout.ms`, or the broker would abort
    /// transactions under the job (Flink's rule).
    pub fn validate(&self, config: &Configuration) -> Result<(), KafkaError> {
        if self.guarantee != DeliveryGuarantee::ExactlyOnce {
            return Ok(());
        }
        let timeout = self.transaction_timeout()?;
        let interval = config
            .get(&options::CHECKPOINT_INTERVAL)
            .map_err(|e| KafkaError::Config(e.to_string()))?
            .filter(|d| !d.is_zero());
        if let Some(interval) = interval
            && interval >= timeout
        {
            return Err(KafkaError::Config(format!(
                "transaction.timeout.ms ({} ms) must be longer than {} ({} ms): raise transaction.timeout.ms \
                 (at most the broker's transaction.max.timeout.ms, 15 min by default) or checkpoint more often",
                timeout.as_millis(),
                options::CHECKPOINT_INTERVAL.key,
                interval.as_millis()
            )));
        }
        Ok(())
    }
}

/// Remembers the first failed delivery, so that the next flush or commit fails the task.
#[derive(Default, Clone)]
struct DeliveryErrors(Arc<Mutex<Option<String>>>);

impl DeliveryErrors {
    fn take(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

impl ClientContext for DeliveryErrors {}

impl ProducerContext for DeliveryErrors {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            let mut first = self.0.lock().unwrap_or_else(|e| e.into_inner());
            first.get_or_insert_with(|| e.to_string());
        }
    }
}

type Producer_ = BaseProducer<DeliveryErrors>;

fn produce(producer: &Producer_, topic: &str, record: &SinkRecord, timestamp: Timestamp) -> Result<(), KafkaError> {
    let mut base: BaseRecord<'_, Vec<u8>, Vec<u8>> = BaseRecord::to(topic).payload(&record.value);
    if let Some(key) = &record.key {
        base = base.key(key);
    }
    if timestamp != NO_TIMESTAMP {
        base = base.timestamp(timestamp);
    }
    loop {
        match producer.send(base) {
            Ok(()) => return Ok(()),
            Err((RdKafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                // Back pressure from librdkafka's queue: serve delivery reports, then retry.
                producer.poll(Duration::from_millis(10));
                base = returned;
            }
            Err((e, _)) => return Err(KafkaError::Client(format!("cannot produce to {topic}: {e}"))),
        }
    }
}

/// Output of one checkpoint, waiting for the checkpoint to complete.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct PendingPart {
    checkpoint_id: u64,
    records: Vec<(SinkRecord, Timestamp)>,
}

/// One subtask's checkpoint state: its transactional id (also its marker group) and the parts
/// it pre-committed under it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct WriterState {
    transactional_id: String,
    pending: Vec<PendingPart>,
}

/// [`WriterState`] borrowed, to encode without copying the records.
#[derive(serde::Serialize)]
struct WriterStateRef<'a> {
    transactional_id: &'a str,
    pending: &'a [PendingPart],
}

/// A transactional id no earlier run used: `<prefix>-<operator>-<subtask>-<run>`, the run being
/// 32 random bits (std's per-process random hash keys over the clock and the process id).
fn new_transactional_id(prefix: &str, node: usize, subtask: usize) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    hasher.write_u128(nanos);
    hasher.write_u32(std::process::id());
    hasher.write_usize(subtask);
    format!("{prefix}-{node}-{subtask}-{:08x}", hasher.finish() as u32)
}

/// The transactional producer and the marker of one writer (transactional id).
struct Committer {
    transactional_id: String,
    producer: Producer_,
    /// Always `Some` until dropped.
    marker: Option<BaseConsumer>,
    errors: DeliveryErrors,
}

impl Committer {
    fn open(sink: &KafkaSink<impl Sized>, transactional_id: &str) -> Result<Self, KafkaError> {
        let transactional_id = transactional_id.to_string();
        let errors = DeliveryErrors::default();
        let producer: Producer_ = sink
            .client
            .client_config(
                &[("transaction.timeout.ms", "60000")],
                &[("transactional.id", &transactional_id), ("enable.idempotence", "true")],
            )
            .create_with_context(errors.clone())
            .map_err(|e| KafkaError::Client(format!("cannot create the Kafka producer {transactional_id}: {e}")))?;
        // Fences the producers of earlier attempts and aborts what they left open.
        producer
            .init_transactions(TIMEOUT)
            .map_err(|e| KafkaError::Client(format!("cannot initialise transactions for {transactional_id}: {e}")))?;
        let marker: BaseConsumer = sink
            .client
            .client_config(&[], &[("group.id", &transactional_id), ("enable.auto.commit", "false")])
            .create()
            .map_err(|e| KafkaError::Client(format!("cannot create the marker consumer {transactional_id}: {e}")))?;
        Ok(Self { transactional_id, producer, marker: Some(marker), errors })
    }

    fn marker(&self) -> &BaseConsumer {
        self.marker.as_ref().expect("the marker consumer lives until drop")
    }

    /// The newest checkpoint whose part this writer committed.
    fn committed_checkpoint(&self, topic: &str) -> Result<Option<u64>, KafkaError> {
        let mut list = TopicPartitionList::new();
        list.add_partition(topic, 0);
        let committed = self.marker().committed_offsets(list, TIMEOUT).map_err(|e| {
            KafkaError::Client(format!("cannot read the commit marker of {}: {e}", self.transactional_id))
        })?;
        Ok(committed.elements().first().and_then(|e| match e.offset() {
            Offset::Offset(o) if o > 0 => Some(o as u64 - 1),
            _ => None,
        }))
    }

    /// Writes and commits `part` in one transaction, unless the marker says it is in already;
    /// whether it wrote it.
    fn commit(&self, topic: &str, part: &PendingPart) -> Result<bool, KafkaError> {
        if self.committed_checkpoint(topic)?.is_some_and(|c| c >= part.checkpoint_id) {
            tracing::info!(
                transactional_id = %self.transactional_id,
                checkpoint = part.checkpoint_id,
                "Kafka transaction of this checkpoint is already committed"
            );
            return Ok(false);
        }
        let fail = |step: &str, e: rdkafka::error::KafkaError| {
            KafkaError::Client(format!(
                "{step} of the transaction of {} for checkpoint {}: {e}",
                self.transactional_id, part.checkpoint_id
            ))
        };
        self.producer.begin_transaction().map_err(|e| fail("begin", e))?;
        for (record, timestamp) in &part.records {
            produce(&self.producer, topic, record, *timestamp)?;
        }
        let mut marker = TopicPartitionList::new();
        marker
            .add_partition_offset(topic, 0, Offset::Offset(part.checkpoint_id as i64 + 1))
            .map_err(|e| fail("marker", e))?;
        let group = self.marker().group_metadata().ok_or_else(|| {
            KafkaError::Client(format!("the marker consumer of {} has no group", self.transactional_id))
        })?;
        self.producer.send_offsets_to_transaction(&marker, &group, TIMEOUT).map_err(|e| fail("marker", e))?;
        self.producer.commit_transaction(TIMEOUT).map_err(|e| fail("commit", e))?;
        if let Some(error) = self.errors.take() {
            return Err(KafkaError::Client(format!(
                "a record of {} was not delivered: {error}",
                self.transactional_id
            )));
        }
        tracing::debug!(
            transactional_id = %self.transactional_id,
            checkpoint = part.checkpoint_id,
            records = part.records.len(),
            "committed Kafka transaction"
        );
        Ok(true)
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        // Dropping a consumer with a group id can block on its close; never hold up shutdown.
        if let Some(marker) = self.marker.take() {
            close_in_background(marker);
        }
    }
}

fn commit_restored(committer: &Committer, topic: &str, part: &PendingPart) -> Result<(), KafkaError> {
    if committer.commit(topic, part)? {
        tracing::info!(
            transactional_id = %committer.transactional_id,
            checkpoint = part.checkpoint_id,
            records = part.records.len(),
            "committed the pre-committed Kafka transaction of the restored checkpoint"
        );
    }
    Ok(())
}

fn sink_error(e: KafkaError) -> SinkError {
    SinkError::Other(Box::new(e))
}

/// One subtask of the exactly-once sink.
struct ExactlyOnceWriter<T> {
    sink: KafkaSink<T>,
    /// This run's transactional id (and marker group) of this subtask.
    transactional_id: String,
    subtask: usize,
    checkpointing: bool,
    buffer: Vec<(SinkRecord, Timestamp)>,
    pending: Vec<PendingPart>,
    /// The states of the old subtasks this one takes over, opened and committed when the task
    /// opens (see `open_committers`).
    restored: Vec<WriterState>,
    committer: Option<Committer>,
    config: Arc<Configuration>,
}

impl<T> ExactlyOnceWriter<T> {
    fn new(sink: KafkaSink<T>, ctx: &OperatorContext) -> Self {
        let config = &ctx.info.config;
        let checkpointing = config.get(&options::CHECKPOINT_INTERVAL).ok().flatten().is_some_and(|d| !d.is_zero());
        let prefix = sink.transactional_id_prefix.clone().expect("validated in KafkaSink::new");
        let subtask = ctx.info.subtask_index;
        Self {
            sink,
            transactional_id: new_transactional_id(&prefix, ctx.node, subtask),
            subtask,
            checkpointing,
            buffer: Vec::new(),
            pending: Vec::new(),
            restored: ctx.restore_operator(),
            committer: None,
            config: ctx.info.config.clone(),
        }
    }

    /// Opens the transactional id of every old subtask this one takes over (fencing zombies,
    /// aborting what a failed attempt left open), commits the parts the restored checkpoint
    /// had pre-committed under it, then opens this subtask's own id. Runs at the first call
    /// the task makes (its first flush comes within the buffer timeout, records or not).
    fn open(&mut self) -> Result<(), SinkError> {
        if self.committer.is_some() {
            return Ok(());
        }
        self.open_committers().map_err(sink_error)
    }

    fn open_committers(&mut self) -> Result<(), KafkaError> {
        self.sink.validate(&self.config)?;
        for old in std::mem::take(&mut self.restored) {
            if old.transactional_id == self.transactional_id {
                continue;
            }
            let committer = Committer::open(&self.sink, &old.transactional_id)?;
            for part in &old.pending {
                commit_restored(&committer, &self.sink.topic, part)?;
            }
        }
        let own = Committer::open(&self.sink, &self.transactional_id)?;
        tracing::info!(
            subtask = self.subtask,
            transactional_id = %self.transactional_id,
            "opened the Kafka sink's transactional id"
        );
        self.committer = Some(own);
        Ok(())
    }

    fn commit(&mut self, part: &PendingPart) -> Result<(), SinkError> {
        self.open()?;
        let committer = self.committer.as_ref().expect("opened before the first commit");
        committer.commit(&self.sink.topic, part).map(|_| ()).map_err(sink_error)
    }
}

impl<T: Send + 'static> SinkFunction<T> for ExactlyOnceWriter<T> {
    fn invoke(&mut self, value: T, timestamp: Timestamp) -> Result<(), SinkError> {
        self.open()?;
        self.buffer.push(((self.sink.serializer)(&value), timestamp));
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.open()
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.open()?;
        if !self.checkpointing && !self.buffer.is_empty() {
            // No checkpoints: the end of input is the one commit point.
            let part = PendingPart { checkpoint_id: 0, records: std::mem::take(&mut self.buffer) };
            self.commit(&part)?;
        }
        Ok(())
    }

    fn snapshot_state(&mut self, checkpoint_id: u64) -> Result<Option<Vec<u8>>, SinkError> {
        self.open()?;
        if !self.buffer.is_empty() {
            let records = std::mem::take(&mut self.buffer);
            self.pending.push(PendingPart { checkpoint_id, records });
        }
        Ok(Some(encode(&WriterStateRef { transactional_id: &self.transactional_id, pending: &self.pending })))
    }

    fn checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<(), SinkError> {
        let (ready, waiting): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.pending).into_iter().partition(|p| p.checkpoint_id <= checkpoint_id);
        self.pending = waiting;
        for part in ready {
            self.commit(&part)?;
        }
        Ok(())
    }
}

/// One subtask of the at-least-once (or no-guarantee) sink.
struct AtLeastOnceWriter<T> {
    sink: KafkaSink<T>,
    producer: Producer_,
    errors: DeliveryErrors,
}

impl<T> AtLeastOnceWriter<T> {
    fn new(sink: KafkaSink<T>, subtask: usize) -> Result<Self, KafkaError> {
        let errors = DeliveryErrors::default();
        let producer = sink
            .client
            .client_config(
                &[("enable.idempotence", "true"), ("linger.ms", "5"), ("client.id", &format!("rheo-sink-{subtask}"))],
                &[],
            )
            .create_with_context(errors.clone())
            .map_err(|e| KafkaError::Client(format!("cannot create the Kafka producer: {e}")))?;
        Ok(Self { sink, producer, errors })
    }

    fn check(&self) -> Result<(), SinkError> {
        match self.errors.take() {
            Some(error) => Err(sink_error(KafkaError::Client(format!(
                "a record to {} was not delivered: {error}",
                self.sink.topic
            )))),
            None => Ok(()),
        }
    }

    fn flush_all(&self) -> Result<(), SinkError> {
        self.producer
            .flush(TIMEOUT)
            .map_err(|e| sink_error(KafkaError::Client(format!("cannot flush to {}: {e}", self.sink.topic))))?;
        self.check()
    }
}

impl<T: Send + 'static> SinkFunction<T> for AtLeastOnceWriter<T> {
    fn invoke(&mut self, value: T, timestamp: Timestamp) -> Result<(), SinkError> {
        let record = (self.sink.serializer)(&value);
        produce(&self.producer, &self.sink.topic, &record, timestamp).map_err(sink_error)
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        // Serve delivery reports without waiting.
        self.producer.poll(Duration::ZERO);
        self.check()
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.flush_all()
    }

    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Option<Vec<u8>>, SinkError> {
        if self.sink.guarantee == DeliveryGuarantee::AtLeastOnce {
            self.flush_all()?;
        }
        Ok(None)
    }
}

/// Adds Kafka sinks to a [`DataStream`].
pub trait KafkaSinkExt<T> {
    fn sink_to_kafka(&self, sink: KafkaSink<T>) -> DataSink;
}

impl<T: Data> KafkaSinkExt<T> for DataStream<T> {
    fn sink_to_kafka(&self, sink: KafkaSink<T>) -> DataSink {
        match sink.guarantee {
            DeliveryGuarantee::ExactlyOnce => {
                self.add_sink("Kafka Sink (exactly-once)", move |ctx| ExactlyOnceWriter::new(sink.clone(), ctx))
            }
            _ => self.add_sink("Kafka Sink", move |ctx| {
                // Creating a producer fails only on settings librdkafka rejects.
                AtLeastOnceWriter::new(sink.clone(), ctx.info.subtask_index)
                    .unwrap_or_else(|e| panic!("Kafka sink: {e}"))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(properties: &[&str]) -> Result<KafkaSink<String>, KafkaError> {
        let mut client = ClientSettings::new("127.0.0.1:9092");
        client.set_pairs(properties.iter().copied(), "test")?;
        KafkaSink::new(
            client,
            "out",
            DeliveryGuarantee::ExactlyOnce,
            Some("job"),
            Arc::new(|s: &String| SinkRecord { key: None, value: s.as_bytes().to_vec() }),
        )
    }

    #[test]
    fn transaction_timeout_must_exceed_the_checkpoint_interval() {
        let mut config = Configuration::new();
        config.set(options::CHECKPOINT_INTERVAL.key, "2 min");
        let err = sink(&[]).unwrap().validate(&config).unwrap_err().to_string();
        assert!(err.contains("transaction.timeout.ms (60000 ms)") && err.contains("120000 ms"), "{err}");
        assert!(sink(&["transaction.timeout.ms=300000"]).unwrap().validate(&config).is_ok());
        let err = sink(&["transaction.timeout.ms=soon"]).unwrap().validate(&config).unwrap_err().to_string();
        assert!(err.contains("'soon'"), "{err}");
    }

    /// The state is encoded borrowed and decoded owned: the two must stay the same shape.
    #[test]
    fn writer_state_round_trips_and_ids_are_new_per_run() {
        let pending = vec![PendingPart {
            checkpoint_id: 7,
            records: vec![(SinkRecord { key: Some(b"k".to_vec()), value: b"v".to_vec() }, 42)],
        }];
        let bytes = encode(&WriterStateRef { transactional_id: "p-3-1-0a0b0c0d", pending: &pending });
        let state: WriterState = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(state.transactional_id, "p-3-1-0a0b0c0d");
        assert_eq!((state.pending[0].checkpoint_id, &state.pending[0].records), (7, &pending[0].records));
        let (a, b) = (new_transactional_id("p", 3, 1), new_transactional_id("p", 3, 1));
        assert!(a.starts_with("p-3-1-") && a.len() == "p-3-1-".len() + 8, "{a}");
        assert_ne!(a, b, "two starts of one subtask drew the same run");
    }

    #[test]
    fn exactly_once_needs_a_prefix() {
        let err = KafkaSink::<String>::new(
            ClientSettings::new("b:9092"),
            "out",
            DeliveryGuarantee::ExactlyOnce,
            None,
            Arc::new(|s| SinkRecord { key: None, value: s.as_bytes().to_vec() }),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("transactional-id prefix"), "{err}");
        assert_eq!("EXACTLY_ONCE".parse(), Ok(DeliveryGuarantee::ExactlyOnce));
    }
}
