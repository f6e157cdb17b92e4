//! The integration tests of the engine and the `rheo` binary, in one test binary (one link of
//! the whole engine instead of one per file). Each module is one area.

mod common;
mod slow_sink;

mod autoscale;
mod checkpoints;
mod cli;
mod cluster;
mod connectors;
mod exactly_once;
mod fencing;
mod incremental;
mod lifecycle;
mod network;
mod operators;
mod outage;
mod properties;
mod remote_backpressure;
mod rescale;
mod rest;
mod rest_contract;
mod savepoints;
mod windows;
mod windows_fire_once;
