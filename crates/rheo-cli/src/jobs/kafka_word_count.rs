//! Windowed word count from Kafka to Kafka, exactly once.
//!
//! Reads lines from `--input-topic` or the topics matching `--input-topic-pattern` (each record's value is one or more lines; its Kafka
//! timestamp is its event time, with per-partition watermarks), counts words per event-time
//! tumbling window, and writes one record per word and window to `--output-topic`: key `word`,
//! value `WINDOW_END_MS,word,count`. With checkpointing on and the default `exactly-once`
//! guarantee, a `read_committed` consumer of the output sees every count exactly once, across
//! failures and restarts.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use compact_str::CompactString;

use rheo::api::StreamEnv;
use rheo_kafka::{
    ClientSettings, DeliveryGuarantee, KafkaSink, KafkaSinkExt, KafkaSource, KafkaSourceExt, KafkaWatermarks,
    SinkRecord, StartingOffsets, deserializers,
};
use rheo_runtime::output::Collector;
use rheo_runtime::window::{TimeWindow, TumblingEventTimeWindows};

use super::words::{CountAggregate, WindowedWordCount, WordWithCount, tokenize};
use super::{JobDef, parse_duration_arg, parse_non_negative_duration_arg};

#[derive(Debug, Clone, clap::Parser)]
pub struct KafkaWordCount {
    /// Kafka's `bootstrap.servers`.
    #[arg(long, env = "KAFKA_BOOTSTRAP", value_name = "HOST:PORT,...")]
    pub bootstrap_servers: String,
    /// The topic of text lines.
    #[arg(long, default_value = "words")]
    pub input_topic: String,
    /// Read every topic whose whole name matches this regular expression instead (topics that
    /// appear later are found by partition discovery).
    #[arg(long, value_name = "REGEX", conflicts_with = "input_topic")]
    pub input_topic_pattern: Option<String>,
    /// The topic the counts go to.
    #[arg(long, default_value = "word-counts")]
    pub output_topic: String,
    /// The consumer group the source commits its offsets to on checkpoints (for monitoring).
    #[arg(long, default_value = "rheo-kafka-word-count")]
    pub group_id: String,
    /// earliest, latest, group-offsets or timestamp:MILLIS.
    #[arg(long, default_value = "earliest")]
    pub starting_offsets: StartingOffsets,
    /// Stop at the end offsets the input has when the job starts, then finish.
    #[arg(long)]
    pub bounded: bool,
    /// The size of the event-time tumbling windows.
    #[arg(long, default_value = "1s", value_parser = parse_duration_arg)]
    pub window: Duration,
    /// How far timestamps may go back behind the largest seen in a partition.
    #[arg(long, default_value = "0ms", value_parser = parse_non_negative_duration_arg)]
    pub out_of_orderness: Duration,
    /// A partition without records for this long stops holding back the watermark (off by default:
    /// its later records could arrive after their window closed).
    #[arg(long, value_parser = parse_duration_arg)]
    pub idleness: Option<Duration>,
    /// How often new partitions are looked for (`partition.discovery.interval.ms`).
    #[arg(long, default_value = "5min", value_parser = parse_duration_arg)]
    pub partition_discovery_interval: Duration,
    /// exactly-once, at-least-once or none.
    #[arg(long, default_value = "exactly-once")]
    pub delivery_guarantee: DeliveryGuarantee,
    /// Transactional ids are `<prefix>-<operator>-<subtask>-<run>`, with a new random `<run>`
    /// for every start of the job (the ids of a restored run's old subtasks are kept in its
    /// checkpoint), so jobs sharing a prefix never fence each other.
    #[arg(long, default_value = "rheo-kafka-word-count")]
    pub transactional_id_prefix: String,
    /// Read at most this many Kafka records per second (over all subtasks), e.g. to watch the
    /// job survive a failure or catch up.
    #[arg(long, value_name = "RECORDS")]
    pub rate: Option<f64>,
    /// A Kafka client property for source and sink, e.g. `security.protocol=SASL_SSL`
    /// (repeatable; `properties.` prefixes are accepted).
    #[arg(long = "property", value_name = "KEY=VALUE")]
    pub properties: Vec<String>,
    /// A `client.properties` file (e.g. SASL credentials from a mounted Secret).
    #[arg(long, value_name = "PATH")]
    pub properties_file: Option<PathBuf>,
}

impl KafkaWordCount {
    fn client(&self) -> anyhow::Result<ClientSettings> {
        let mut client = ClientSettings::new(&self.bootstrap_servers);
        if let Some(path) = &self.properties_file {
            client.load_properties_file(path)?;
        }
        client.set_pairs(self.properties.iter().map(String::as_str), "--property")?;
        Ok(client)
    }
}

impl JobDef for KafkaWordCount {
    const NAME: &'static str = "kafka-word-count";
    const DESCRIPTION: &'static str =
        "counts words per event-time window from a Kafka topic into another, exactly once";

    fn build(self, env: &StreamEnv) -> anyhow::Result<()> {
        let mut source_client = self.client()?;
        source_client.set("group.id", &self.group_id);
        // Settings librdkafka refuses (an unknown property, GSSAPI) fail here, before any task.
        source_client.check()?;
        let source = KafkaSource::builder(source_client);
        let source = match &self.input_topic_pattern {
            Some(pattern) => source.topic_pattern(pattern)?,
            None => source.topics([self.input_topic.clone()]),
        };
        let source = source
            .starting_offsets(self.starting_offsets)
            .bounded(self.bounded)
            .partition_discovery_interval(Some(self.partition_discovery_interval))
            .rate_limit(self.rate)?
            .watermarks(KafkaWatermarks { out_of_orderness: self.out_of_orderness, idleness: self.idleness })
            .build(deserializers::text_lines())?;
        let sink = KafkaSink::new(
            self.client()?,
            &self.output_topic,
            self.delivery_guarantee,
            Some(&self.transactional_id_prefix),
            Arc::new(|c: &WindowedWordCount| SinkRecord {
                key: Some(c.word.as_bytes().to_vec()),
                value: format!("{},{},{}", c.window.end, c.word, c.count).into_bytes(),
            }),
        )?;
        sink.validate(env.config())?;
        env.kafka_source(source)
            .flat_map(|line: String, out| tokenize(&line, out))
            .key_by(|wc: &WordWithCount| wc.word.clone())
            .window(TumblingEventTimeWindows::of(self.window))
            .aggregate_with(
                CountAggregate,
                |word: &CompactString,
                 window: &TimeWindow,
                 counts: &[u64],
                 out: &mut Collector<'_, WindowedWordCount>| {
                    for &count in counts {
                        out.collect(WindowedWordCount { window: *window, word: word.clone(), count });
                    }
                },
            )
            .sink_to_kafka(sink);
        Ok(())
    }
}
