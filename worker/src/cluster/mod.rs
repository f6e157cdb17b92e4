//! Where jobs run. For now one place: the embedded mini-cluster, one thread per subtask.

pub mod handle;
pub mod minicluster;
pub mod progress;
pub mod restart;
