//! Sources and sinks that ship with Rheo.

pub mod collection;
pub mod datagen;
pub mod discard;
pub mod emitted;
pub mod file;
pub mod filesink;
pub mod print;
pub mod socket;
