//! The REST API of a JobManager, as Flink's serves it: same paths, same JSON field names and
//! types (see `rheo-rest`, whose types are checked against captured Flink 2.3 responses), plus
//! `GET /metrics` in Prometheus text format.
//!
//! The server answers for a [`ClusterView`]: every job of a standalone JobManager, or the one
//! job of `rheo run` (a [`SingleJob`]). It runs on a thread of its own with a single-threaded
//! tokio runtime, so it never competes with the engine's I/O runtime and keeps answering while
//! tasks are busy. Every answer about a job is built from one [`JobHandle::status`] snapshot.
//!
//! Deliberate differences from Flink: `summary` of `/jobs/:id/checkpoints` covers the kept
//! history (the last 10 completed checkpoints and savepoints), and `history` holds no failed or
//! in-progress checkpoints; per-vertex metrics count records, not bytes; a source vertex's
//! `numRecordsIn` counts the records its source read (Flink: 0 on the task, the count on the
//! source operator's `Source__<name>.numRecordsIn`); `/vertices/:vid/metrics` serves
//! unprefixed vertex metrics (summed over the subtasks), not Flink's `<subtask>.<name>` ones,
//! while `/backpressure` and `subtasks/metrics` are per subtask; TaskManagers have no (JVM)
//! metrics; `drain` of stop-with-savepoint is refused; `/jars` lists one
//! pseudo-jar, the binary, whose entries are the jobs it carries (no upload); `checkpointType:
//! INCREMENTAL` of `POST /jobs/:id/checkpoints` takes the configured kind (an incremental
//! checkpoint only with `state.backend.incremental` on); `/savepoint-disposal` also deletes a job's checkpoint directory (only
//! `chk-<n>/` in it), which the operator uses for the directories of old job epochs. One
//! addition: `GET /jobs/:id/ready` (200, or 503 once the job has FAILED), the readiness probe
//! of a JobManager pod.

mod handlers;
mod metrics;
mod rates;
mod web;

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::view::{ClusterView, SingleJob};
use rheo_config::{Configuration, PortRange, options};
use rheo_runtime::driver::handle::JobHandle;

/// The version of Flink's REST API this server follows (what `flink-version` reports).
pub const FLINK_API_VERSION: &str = "2.3.0";

/// The id of the pseudo-jar of `/jars`: the binary and the jobs it carries.
pub const JAR_ID: &str = "rheo";

/// How long [`RestServer::shutdown`] keeps serving so that clients can read the result of a
/// savepoint that completed as the job ended (stop-with-savepoint).
const LINGER: Duration = Duration::from_secs(5);

/// What the server knows besides the cluster view.
#[derive(Debug, Clone, Default)]
pub struct RestOptions {
    /// The job's name when its handle has none yet (`rheo run`).
    pub job_name: Option<String>,
    /// The configuration: served by `/jobmanager/config` (secrets masked); checkpoint timeout
    /// and max parallelism of the jobs.
    pub config: Configuration,
}

pub(crate) struct State {
    pub(crate) view: Arc<dyn ClusterView>,
    pub(crate) options: RestOptions,
    /// Savepoint triggers whose final status no client has read yet.
    pub(crate) unread: Mutex<HashSet<String>>,
    /// The previous metric samples of each vertex, to compute rates.
    pub(crate) rates: rates::Rates,
    /// `http://HOST:PORT` of this server.
    pub(crate) address: String,
    /// When the server started (epoch millis): the upload time of the pseudo-jar.
    pub(crate) started: i64,
    /// Savepoint disposals by trigger id: `Err` holds why one failed.
    pub(crate) disposals: Mutex<std::collections::HashMap<String, Result<(), String>>>,
}

impl State {
    fn unread(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.unread.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn job_name(&self, handle: &JobHandle) -> String {
        let name = handle.job_name();
        if name.is_empty() { self.options.job_name.clone().unwrap_or_default() } else { name }
    }

    /// The job with id `id` (case-insensitive).
    pub(crate) fn find_job(&self, id: &str) -> Option<JobHandle> {
        self.view.jobs().into_iter().find(|job| job.job_id().eq_ignore_ascii_case(id))
    }
}

/// A running REST server; dropping it shuts it down (see [`RestServer::shutdown`]).
pub struct RestServer {
    addr: SocketAddr,
    state: Arc<State>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Serves the REST API of `handle`'s job on `addr` (port 0: any free port).
pub fn serve(handle: JobHandle, addr: SocketAddr) -> Result<RestServer, io::Error> {
    serve_with(handle, addr, RestOptions::default())
}

/// [`serve`] with the job's name and configuration.
pub fn serve_with(handle: JobHandle, addr: SocketAddr, options: RestOptions) -> Result<RestServer, io::Error> {
    serve_cluster(Arc::new(SingleJob { handle }), addr, options)
}

/// Serves the REST API of a cluster (every job of `view`, its TaskManagers, job submission)
/// on `addr` (port 0: any free port).
pub fn serve_cluster(
    view: Arc<dyn ClusterView>,
    addr: SocketAddr,
    options: RestOptions,
) -> Result<RestServer, io::Error> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let address = match options.config.get(&rheo_config::options::REST_ADDRESS).ok().flatten() {
        Some(host) if addr.ip().is_unspecified() => format!("http://{host}:{}", addr.port()),
        _ => format!("http://{addr}"),
    };
    let state = Arc::new(State {
        view,
        options,
        unread: Mutex::new(HashSet::new()),
        rates: rates::Rates::default(),
        address,
        started: rheo_runtime::task::now_ms(),
        disposals: Mutex::default(),
    });
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let router = handlers::router(state.clone());
    let thread = std::thread::Builder::new().name("rheo-rest".into()).spawn(move || {
        runtime.block_on(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => listener,
                Err(e) => {
                    tracing::error!(%addr, "REST server cannot listen: {e}");
                    return;
                }
            };
            let shutdown = async move {
                let _ = stopped.await;
            };
            if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(shutdown).await {
                tracing::error!(%addr, "REST server failed: {e}");
            }
        });
    })?;
    Ok(RestServer { addr, state, stop: Some(stop), thread: Some(thread) })
}

impl RestServer {
    /// The address the server listens on (with the actual port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://HOST:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving, after at most a few seconds in which clients can still read savepoint
    /// results they have not read yet (a stop-with-savepoint ends the job before the client's
    /// next poll).
    pub fn shutdown(mut self) {
        self.stop_now(LINGER);
    }

    fn stop_now(&mut self, linger: Duration) {
        let deadline = Instant::now() + linger;
        while !self.state.unread().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for RestServer {
    fn drop(&mut self) {
        self.stop_now(Duration::ZERO);
    }
}

/// The host and port range of `rest.port` (a port, or a range `50100-50200`), or why not.
fn bind_range(config: &Configuration, default_host: &str) -> Result<(IpAddr, u16, u16), String> {
    let bind = config.get(&options::REST_BIND_ADDRESS).map_err(|e| e.to_string())?;
    let host = bind.as_deref().unwrap_or(default_host);
    let PortRange { first, last } = config.get(&options::REST_PORT).map_err(|e| e.to_string())?;
    let ip = match host.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) => match std::net::ToSocketAddrs::to_socket_addrs(&(host, 0)).ok().and_then(|mut a| a.next()) {
            Some(addr) => addr.ip(),
            None => return Err(format!("rest address '{host}' does not resolve")),
        },
    };
    Ok((ip, first, last))
}

/// Serves on the first free port of the range; the last error when none is.
fn serve_in_range(
    view: Arc<dyn ClusterView>,
    (ip, first, last): (IpAddr, u16, u16),
    options: RestOptions,
) -> Result<RestServer, (SocketAddr, io::Error)> {
    let mut last_error = None;
    for port in first..=last {
        let addr = SocketAddr::new(ip, port);
        match serve_cluster(view.clone(), addr, options.clone()) {
            Ok(server) => {
                tracing::info!("REST API at {}", server.url());
                return Ok(server);
            }
            Err(e) => last_error = Some((addr, e)),
        }
    }
    Err(last_error.expect("a port range is never empty"))
}

/// Where `rheo run` serves REST: `rest.bind-address` (else `rest.address`, else 127.0.0.1) and
/// `rest.port` (default 8081; a range `50100-50200` takes the first free port). The job runs
/// without the API when it cannot be served (with a warning).
pub fn serve_for_run(handle: JobHandle, config: &Configuration, job_name: &str) -> Option<RestServer> {
    let address = config.get(&options::REST_ADDRESS).ok().flatten();
    let range = match bind_range(config, address.as_deref().unwrap_or("127.0.0.1")) {
        Ok(range) => range,
        Err(message) => {
            tracing::warn!("{message}; running without the REST API");
            return None;
        }
    };
    let options = RestOptions { job_name: Some(job_name.to_string()), config: config.clone() };
    match serve_in_range(Arc::new(SingleJob { handle }), range, options) {
        Ok(server) => Some(server),
        Err((addr, e)) => {
            let hint = if e.kind() == io::ErrorKind::AddrInUse { " (set -D rest.port=PORT)" } else { "" };
            tracing::warn!("cannot serve the REST API on {addr}: {e}{hint}; running without it");
            None
        }
    }
}

/// Where a JobManager serves REST: `rest.bind-address` (default 0.0.0.0, every interface) and
/// `rest.port` (default 8081, or a range). A JobManager without its API is useless, so unlike
/// [`serve_for_run`] this fails when it cannot bind, naming the address.
pub fn serve_for_cluster(view: Arc<dyn ClusterView>, config: &Configuration) -> Result<RestServer, io::Error> {
    let range =
        bind_range(config, "0.0.0.0").map_err(|message| io::Error::new(io::ErrorKind::InvalidInput, message))?;
    let options = RestOptions { job_name: None, config: config.clone() };
    serve_in_range(view, range, options)
        .map_err(|(addr, e)| io::Error::new(e.kind(), format!("cannot serve the REST API on {addr}: {e}")))
}
