//! Rheo's cluster: a JobManager that schedules jobs onto TaskManager processes, the RPC
//! between them, the REST server (Flink's API) and the registry of jobs a binary carries.
//!
//! - [`registry`], [`jobspec`]: jobs by name (every process runs the same binary and builds
//!   the same graph);
//! - [`rpc`]: the messages between JobManager and TaskManagers;
//! - [`taskmanager`], [`jobmanager`]: the two processes;
//! - [`view`], [`rest`]: what the REST API serves about a cluster, and the server.

pub mod jobmanager;
pub mod jobspec;
pub mod registry;
pub mod rest;
pub mod rpc;
pub mod taskmanager;
pub mod view;
