//! Rheo: Apache Flink's streaming core in Rust.
//!
//! Layers, from what a job author touches down to what runs it:
//! - [`api`]: `StreamEnv`, `DataStream`, `KeyedStream`, `WindowedStream`;
//! - [`graph`]: the logical job graph and its plan (chaining, parallelism, channels);
//! - [`window`], [`state`]: windows and keyed state;
//! - [`runtime`]: operator chains, task loops, data exchange, key groups;
//! - [`cluster`]: where tasks run (the embedded mini-cluster);
//! - [`connectors`]: sources and sinks; [`jobs`]: the built-in jobs of the `rheo` binary.

pub mod api;
pub mod checkpoint;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod connectors;
pub mod graph;
pub mod jobs;
pub mod network;
pub mod rest;
pub mod runtime;
pub mod state;
pub mod window;

/// What a job author needs in scope.
pub mod prelude {
    pub use crate::api::{DataStream, KeyedStream, OutputTag, StreamEnv, WindowedStream};
    pub use crate::cluster::minicluster::{JobError, JobResult};
    pub use crate::config::Configuration;
    pub use crate::runtime::keyed::{KeyedContext, KeyedProcessFunction, ProcessFn};
    pub use crate::runtime::operators::{WatermarkEmission, WatermarkStrategy};
    pub use crate::runtime::output::{Collector, NO_TIMESTAMP, Timestamp};
    pub use crate::runtime::sink::SinkFunction;
    pub use crate::runtime::task::{SourceFunction, SourceOutput, SourceStatus, TaskInfo};
    pub use crate::state::{KeyedStateBackend, ListState, MapState, ValueState};
    pub use crate::window::{
        AggregateFunction, EventTimeSessionWindows, ProcessWindowFunction, ProcessingTimeSessionWindows,
        SlidingEventTimeWindows, SlidingProcessingTimeWindows, TimeWindow, TumblingEventTimeWindows,
        TumblingProcessingTimeWindows, WindowAssigner,
    };
}
