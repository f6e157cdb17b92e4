//! Test harnesses for operators, input gates and the checkpoint coordinator, in the manner of
//! Flink's `OneInputStreamOperatorTestHarness`: drive one piece of the runtime by hand, with
//! no threads, clocks or channels of a real job, and look at exactly what it emitted.
//!
//! - [`OneInputHarness`]: push records (with timestamps), watermarks, idleness, checkpoint
//!   barriers and processing-time ticks into one operator or chain; collect its main and side
//!   outputs; snapshot it and restore the snapshot into a fresh instance, also as another
//!   subtask at another parallelism (keyed state goes by key group, as in a rescaled job).
//! - [`InputGateHarness`]: the same operator behind an [`InputGate`](crate::exchange::InputGate)
//!   with several input channels, to test watermark merging, idleness and barrier alignment.
//! - [`CoordinatorHarness`]: a real checkpoint coordinator on its own thread, with the test
//!   playing the tasks (or attaching real ones through [`CoordinatorHarness::link`]).
//!
//! Compiled for this crate's tests and, with the `testing` feature, for other crates' tests.

mod coordinator;
mod gate;
mod operator;

pub use coordinator::{CoordinatorHarness, TaskSpec};
pub use gate::InputGateHarness;
pub use operator::{
    Collected, HarnessOutputs, HarnessSetup, OneInputHarness, OperatorSnapshot, StreamElement, collecting_output,
    restored_state, task_info,
};
