//! Rheo's autoscaler core: from a job's metric history to a rescale decision.
//!
//! Like Flink's `flink-autoscaler` module apart from its Kubernetes operator, this crate knows
//! nothing of Kubernetes, processes or the engine. [`decide`] is a pure function: given the job
//! graph, a history of per-vertex metric samples, the last rescale time and the TaskManager
//! shape, it returns a [`Decision`] and the per-vertex [`VertexEvaluation`]s behind it.
//!
//! # The algorithm (as Flink's)
//!
//! 1. **Window.** Each vertex's samples are averaged over the last `job.autoscaler.metrics.window`.
//!    Samples from before the last rescale plus `job.autoscaler.stabilization.interval`, or at
//!    another parallelism, are ignored; until a full window of the rest exists, or while it holds
//!    fewer than `min-samples`, nothing is decided.
//! 2. **True processing rate.** A vertex processing `in` records per second while busy for a
//!    share `busy` of the time (`busyTimeMsPerSecond / 1000`, which excludes back-pressured and
//!    idle time) could process `in / busy` at its current parallelism. Its busy time is its
//!    busiest subtask's (`job.autoscaler.metrics.busy-time.aggregator`, `MAX` as in Flink): a
//!    subtask saturated by a hot key limits the vertex, however idle the others are. A
//!    back-pressured vertex is slow because of a vertex downstream, not its own capacity: its
//!    busy share is small and its true rate high, so it is never scaled up for its low
//!    throughput; the bottleneck is.
//! 3. **Target rate.** A source has to process what arrives, its observed rate plus the growth
//!    of its backlog (`pendingRecords`), plus its backlog spread over
//!    `job.autoscaler.catch-up.duration`. Every other vertex's target is the sum over its inputs
//!    of the upstream target rate times the upstream's observed output/input ratio.
//! 4. **Wanted parallelism.** The expected utilisation at the current parallelism is
//!    `target / true rate`. Within `target.utilization ± target.utilization.boundary` the vertex
//!    keeps its parallelism, so noise does not flap it. Outside, it wants
//!    `ceil(target / (true rate per subtask × target.utilization))`, bounded by
//!    `vertex.min-parallelism`, its own max parallelism (key groups), `vertex.max-parallelism`
//!    and the slots of the most TaskManagers. An idle vertex (no records or no busy time) cannot
//!    be measured and never scales up; with nothing to do it wants the minimum.
//! 5. **Policy.** Scale-ups happen at once. A vertex scales down only when it has wanted fewer
//!    subtasks during the whole `job.autoscaler.scale-down.interval`, and then to the most it
//!    wanted in that time (recomputed from the history, so no state is kept between calls).
//!    If any vertex changes, the job is rescaled, and it needs
//!    `ceil(largest parallelism / slots per TaskManager)` TaskManagers within the replica bounds.
//!
//! # Who acts on a decision
//!
//! The caller samples the metrics (the REST API's `/jobs/:id/vertices/:vid/subtasks/metrics`),
//! keeps the history, calls [`decide`] on a timer, and realises a [`Decision::Rescale`]:
//! - **the operator** sets the FlinkJob's replicas through its scale subresource and the new
//!   vertex parallelisms in the job's configuration, puts the [`Outcome`] in the status and its
//!   [`Decision`]'s `Display` in an Event;
//! - **the local mode** adds or removes TaskManager processes of a `rheo cluster` and redeploys
//!   the job from a synchronous checkpoint at the new parallelisms.
//!
//! Either way it then passes the rescale's time as [`AutoscalerInput::last_rescale_ms`].
//!
//! ```
//! use rheo_autoscaler::*;
//!
//! let topology = Topology::new().source("src").vertex("map", &["src"]);
//! let mut history = MetricHistory::new();
//! for t in (0..=1_200_000).step_by(10_000) {
//!     for (vertex, busy) in [("src", 100.0), ("map", 980.0)] {
//!         history.push(MetricSample {
//!             timestamp_ms: t,
//!             vertex: vertex.into(),
//!             parallelism: 1,
//!             max_parallelism: 128,
//!             num_records_in_per_second: 1000.0,
//!             num_records_out_per_second: 1000.0,
//!             busy_time_ms_per_second: busy,
//!             back_pressured_time_ms_per_second: 0.0,
//!             idle_time_ms_per_second: 1000.0 - busy,
//!             pending_records: None,
//!         });
//!     }
//! }
//! let input = AutoscalerInput {
//!     now_ms: 1_200_000,
//!     topology: &topology,
//!     history: &history,
//!     last_rescale_ms: 0,
//!     task_managers: 1,
//!     slots_per_task_manager: 1,
//! };
//! let outcome = decide(&input, &AutoscalerConfig::default()).unwrap();
//! // The map is 98 % busy, within the band of 70 % ± 30 %; the source, 10 % busy, is already at
//! // its minimum parallelism of 1: nothing changes.
//! assert_eq!(outcome.decision, Decision::NoChange { reason: NoChangeReason::NothingToChange });
//! ```

#![warn(missing_docs)]

mod config;
mod decide;
mod evaluate;
mod metrics;
#[cfg(feature = "rest")]
pub mod rest;

pub use config::*;
pub use decide::{AutoscalerInput, Decision, NoChangeReason, Outcome, ParallelismChange, decide};
pub use evaluate::{VertexEvaluation, VertexReason};
pub use metrics::{MetricHistory, MetricSample, Topology, TopologyVertex, VertexId, WindowStats};

/// Input the autoscaler cannot work with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AutoscalerError {
    /// An option has a value out of range.
    #[error("{key}: {value:?} is invalid: {reason}")]
    Config {
        /// The option's key.
        key: String,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The job graph is not a valid topologically ordered graph.
    #[error("invalid job topology: {0}")]
    Topology(String),
    /// A TaskManager with no slot.
    #[error("slots per TaskManager must be at least 1")]
    NoSlots,
}
