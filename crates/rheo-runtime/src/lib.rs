//! Rheo's runtime: everything that runs a job inside one process.
//!
//! Read it bottom-up, along the data path:
//! - [`output`], [`operators`], [`keyed`], [`sink`]: the push contract between chained
//!   operators, and the operators every job uses;
//! - [`exchange`]: batches of records and control events between tasks;
//! - [`task`]: the task loops (sources and input tasks), their metrics and control;
//! - [`state`], [`window`]: keyed state and windows;
//! - [`graph`]: the logical job graph and its plan (chaining, parallelism, channels);
//! - [`checkpoint`]: barriers, the coordinator, snapshot storage and discovery;
//! - [`driver`]: the job driver (restore, restart loop, status) and the in-process deployer.
//!
//! `testing` (in tests, or with the `testing` feature) drives one operator, input gate or
//! checkpoint coordinator by hand.
//!
//! The TCP network ([`rheo_network`]) sits below: the plan opens remote channels through it.

pub mod checkpoint;
pub mod driver;
pub mod exchange;
pub mod graph;
pub mod keyed;
pub mod operators;
pub mod output;
pub mod sink;
pub mod state;
pub mod task;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod window;
