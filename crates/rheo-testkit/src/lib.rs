//! A multi-process harness for Rheo, shared by the integration tests and the benchmark.
//!
//! It starts `rheo jobmanager`, `rheo taskmanager` and `rheo run` processes on free ports, kills
//! them (SIGKILL) or asks them to stop (SIGTERM), and waits for what a user would observe through
//! the REST API: a job's state, its completed checkpoints, the registered TaskManagers. It never
//! waits on log text; logs are kept per process and shown when a wait fails.
//!
//! ```no_run
//! # fn main() -> Result<(), rheo_testkit::HarnessError> {
//! use rheo_testkit::{Cluster, JobState};
//! let dir = std::env::temp_dir().join("example");
//! let mut cluster = Cluster::new("target/debug/rheo", &dir)?.with_config(&["taskmanager.numberOfTaskSlots=2"]);
//! cluster.start_jobmanager(&["--job", "datagen-word-count", "--", "--count", "1000"])?;
//! cluster.start_taskmanager()?;
//! let job = cluster.await_job()?;
//! cluster.await_state(&job, JobState::Finished)?;
//! # Ok(()) }
//! ```

mod cluster;
mod process;
mod rest;

use std::time::{Duration, Instant};

pub use cluster::Cluster;
pub use process::Process;
pub use rest::Rest;
pub use rheo_rest::{CheckpointingStatistics, JobDetails, JobExceptions, JobState, TaskManagersInfo};

/// How long a wait lasts unless the caller says otherwise: generous, for a loaded 2-core machine.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// What can go wrong driving processes. `Debug` prints the same as `Display`, so that
/// `.unwrap()` in a test shows the message and the logs readably.
#[derive(thiserror::Error)]
pub enum HarnessError {
    #[error("cannot start {program} ({name}): {source}")]
    Spawn {
        name: String,
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("timed out after {waited:?} waiting for {what}; last observed: {last}\n{logs}")]
    Timeout { what: String, waited: Duration, last: String, logs: String },
    #[error("gave up waiting for {what}: {reason}\n{logs}")]
    Failed { what: String, reason: String, logs: String },
    #[error("cannot signal {name} (pid {pid}): {source}")]
    Signal {
        name: String,
        pid: u32,
        #[source]
        source: nix::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Rest(#[from] rheo_rest::Error),
}

impl std::fmt::Debug for HarnessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// One observation of a condition being waited for.
pub enum Poll<T> {
    /// The condition holds: the wait ends with this value.
    Ready(T),
    /// Not yet; what was observed, for the timeout message.
    Pending(String),
    /// It never will (a process exited, the job ended otherwise): the wait ends with an error.
    Failed(String),
}

/// Observes `probe` every `every` until it is ready, it fails, or `within` has passed.
/// `logs` is called only to build the error message.
pub fn wait_for<T>(
    what: &str,
    within: Duration,
    every: Duration,
    mut probe: impl FnMut() -> Poll<T>,
    logs: impl FnOnce() -> String,
) -> Result<T, HarnessError> {
    let started = Instant::now();
    loop {
        let last = match probe() {
            Poll::Ready(value) => return Ok(value),
            Poll::Pending(observed) => observed,
            Poll::Failed(reason) => {
                return Err(HarnessError::Failed { what: what.to_string(), reason, logs: logs() });
            }
        };
        if started.elapsed() >= within {
            return Err(HarnessError::Timeout { what: what.to_string(), waited: within, last, logs: logs() });
        }
        std::thread::sleep(every);
    }
}

/// A port that was free a moment ago on 127.0.0.1 (the OS picks it).
pub fn free_port() -> Result<u16, HarnessError> {
    let io = |source| HarnessError::Io { context: "cannot find a free port on 127.0.0.1".into(), source };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(io)?;
    Ok(listener.local_addr().map_err(io)?.port())
}
