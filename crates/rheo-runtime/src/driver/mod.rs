//! Running a job: the [`job::JobDriver`] (restore, restart loop, status) over a
//! [`job::Deployer`], the in-process deployer, and the mini-cluster that combines them; the
//! handle the REST API reads; the restart strategy.

pub mod handle;
pub mod job;
pub mod local;
pub mod minicluster;
pub mod restart;
pub mod restore;

pub use job::JobError;
