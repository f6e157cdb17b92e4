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
#[cfg(feature = "kafka")]
pub mod kafka;
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

/// Whether a test that cannot have what it needs (a tmpfs it may mount, an S3 endpoint, a
/// Kafka broker) may pass without running: only when `RHEO_ALLOW_SKIP=1` says so, and then it
/// returns after a note. Otherwise it panics with `why` and how to allow the skip, so that a
/// machine that cannot run a test never passes it unseen (`make test` starts the services and
/// CI runs as root).
pub fn skip_or_fail(what: &str, why: &str) {
    if std::env::var("RHEO_ALLOW_SKIP").is_ok_and(|v| v == "1") {
        eprintln!("{why}: skipping {what} (RHEO_ALLOW_SKIP=1)");
        return;
    }
    panic!("{why}: cannot run {what}; set RHEO_ALLOW_SKIP=1 to skip it instead");
}

/// A port that is free at this moment on 127.0.0.1 (and on every address).
///
/// The port comes from below Linux's ephemeral range (32768–60999), which `bind(0)` draws from:
/// a port taken from that range and released could be handed to the next process binding port
/// 0 (a TaskManager's data port) before the process it was chosen for binds it, as happened on
/// a loaded machine. Below the range only other explicit choosers compete, and each candidate
/// is checked free.
pub fn free_port() -> Result<u16, HarnessError> {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const LAST: u32 = 32_000;
    // Start from a point that differs between test processes, then walk the range.
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = std::process::id().wrapping_mul(7919) % (LAST - FIRST);
    for _ in 0..(LAST - FIRST) {
        let port = (FIRST + (seed + NEXT.fetch_add(1, Ordering::Relaxed)) % (LAST - FIRST)) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::TcpListener::bind(("0.0.0.0", port)).is_ok()
        {
            return Ok(port);
        }
    }
    Err(HarnessError::Io {
        context: "cannot find a free port on 127.0.0.1".into(),
        source: std::io::Error::new(std::io::ErrorKind::AddrInUse, format!("every port in {FIRST}..{LAST} is taken")),
    })
}
