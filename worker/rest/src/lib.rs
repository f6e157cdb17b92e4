//! Flink-compatible REST types and client. Field names follow Flink's REST API exactly.
