//! Windows: assigners (tumbling, sliding, session; event or processing time), the functions that
//! turn a window's contents into results, and the operator that runs them.

pub mod assigner;
pub mod functions;
pub mod operator;

pub use assigner::{
    EventTimeSessionWindows, ProcessingTimeSessionWindows, SlidingEventTimeWindows, SlidingProcessingTimeWindows,
    TimeDomain, TimeWindow, TumblingEventTimeWindows, TumblingProcessingTimeWindows, WindowAssigner,
};
pub use functions::{AggregateFunction, ProcessWindowFunction};

#[cfg(test)]
mod tests;
