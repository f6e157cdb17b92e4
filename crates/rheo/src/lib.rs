//! Rheo: Apache Flink's streaming core in Rust. This is the crate a job author depends on.
//!
//! - [`api`]: `StreamEnv`, `DataStream`, `KeyedStream`, `WindowedStream`;
//! - [`connectors`]: sources and sinks;
//! - [`prelude`]: what a job needs in scope.
//!
//! The runtime underneath ([`rheo_runtime`]) runs the job; [`StreamEnv::execute`](api::StreamEnv::execute)
//! runs it on an embedded mini-cluster. Object stores beyond the local file system (S3) come
//! with the `s3` feature; the command line and the cluster processes live in `rheo-cli` and
//! `rheo-cluster`, so a job's default build pulls no HTTP server, CLI or cloud SDK.

pub mod api;
pub mod connectors;

pub use rheo_config as config;
pub use rheo_runtime as runtime;
pub use rheo_types as types;

/// What a job author needs in scope.
pub mod prelude {
    pub use crate::api::{DataStream, KeyedStream, OutputTag, StreamEnv, WindowedStream};
    pub use rheo_config::Configuration;
    pub use rheo_runtime::driver::minicluster::{JobError, JobResult};
    pub use rheo_runtime::keyed::{KeyedContext, KeyedProcessFunction, ProcessFn};
    pub use rheo_runtime::operators::{WatermarkEmission, WatermarkStrategy};
    pub use rheo_runtime::output::{Collector, NO_TIMESTAMP, Timestamp};
    pub use rheo_runtime::sink::{SinkError, SinkFunction};
    pub use rheo_runtime::state::{KeyedStateBackend, ListState, MapState, ValueState};
    pub use rheo_runtime::task::{SourceFunction, SourceOutput, SourceStatus, TaskInfo};
    pub use rheo_runtime::window::{
        AggregateFunction, EventTimeSessionWindows, ProcessWindowFunction, ProcessingTimeSessionWindows,
        SlidingEventTimeWindows, SlidingProcessingTimeWindows, TimeWindow, TumblingEventTimeWindows,
        TumblingProcessingTimeWindows, WindowAssigner,
    };
}
