//! The runtime: how records move through operator chains, between tasks, and through time.

pub mod exchange;
pub mod keyed;
pub mod keygroups;
pub mod operators;
pub mod output;
pub mod sink;
pub mod task;
