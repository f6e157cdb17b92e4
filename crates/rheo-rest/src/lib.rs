//! Flink-compatible REST types and client. Field names follow Flink's REST API exactly.
//!
//! The types in [`types`] mirror the JSON that Apache Flink's JobManager serves (captured from a
//! Flink 2.3 cluster), so the Rheo engine can serve them and the operator and CLI can read them.
//! [`RestClient`] is a small async client with one method per endpoint the operator and CLI use.

#[cfg(feature = "client")]
mod client;
pub mod types;
pub mod ui;

#[cfg(feature = "client")]
pub use client::{Error, RestClient};
pub use types::*;
pub use ui::*;
