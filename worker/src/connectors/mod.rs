//! Sources and sinks that ship with Rheo.

pub mod collection;
pub mod print;
