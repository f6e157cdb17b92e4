//! The built-in jobs of the `rheo` binary. A user's worker binary registers its own jobs the
//! same way (see `examples/my-job`).

pub use rheo_cluster::registry::*;

pub mod arriving_numbers;
pub mod datagen_word_count;
#[cfg(feature = "kafka")]
pub mod kafka_word_count;
pub mod socket_window_word_count;
pub mod word_count;
pub mod words;

/// The jobs of the `rheo` binary.
pub fn builtin() -> JobRegistry {
    let registry = JobRegistry::new()
        .register::<socket_window_word_count::SocketWindowWordCount>()
        .register::<word_count::WordCount>()
        .register::<datagen_word_count::DatagenWordCount>();
    // Only with the `kafka` feature (on by default).
    #[cfg(feature = "kafka")]
    let registry = registry.register::<kafka_word_count::KafkaWordCount>();
    registry.register::<arriving_numbers::ArrivingNumbers>()
}
