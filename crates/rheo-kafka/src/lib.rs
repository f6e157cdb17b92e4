//! Rheo's Kafka connector: [`KafkaSource`] (partitions assigned to subtasks, offsets in
//! checkpoints, read_committed) and [`KafkaSink`] (at-least-once, or exactly-once through
//! transactions committed when checkpoints complete). The client is librdkafka (the `rdkafka`
//! crate, bundled build).

pub mod client;
pub mod sink;
pub mod source;

pub use client::ClientSettings;
pub use sink::{DeliveryGuarantee, KafkaSink, KafkaSinkExt, SinkRecord};
pub use source::{
    KafkaRecord, KafkaSource, KafkaSourceExt, KafkaWatermarks, StartingOffsets, deserializers, partition_owner,
};

#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("Kafka configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Client(String),
    #[error("cannot deserialize Kafka record {0}")]
    Deserialize(String),
}

/// Drops a Kafka client on a thread of its own. Closing a consumer that has a `group.id` can
/// block for a long time (librdkafka waits for the group to settle), and a task must never
/// hang in shutdown on it.
pub(crate) fn close_in_background<C: Send + 'static>(client: C) {
    let spawned = std::thread::Builder::new().name("kafka-close".into()).spawn(move || drop(client));
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot spawn a thread to close a Kafka client; leaking it");
    }
}
