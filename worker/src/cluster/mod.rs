//! Where jobs run: the embedded mini-cluster (one thread per subtask in this process), or a
//! standalone JobManager with TaskManager processes.

pub mod handle;
pub mod jobmanager;
pub mod jobspec;
pub mod minicluster;
pub mod progress;
pub mod restart;
pub mod rpc;
pub mod taskmanager;
pub mod view;
