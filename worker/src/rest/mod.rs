//! The REST API of a running job, as Flink's JobManager serves it: same paths, same JSON field
//! names and types (see `rheo-rest`, whose types are checked against captured Flink 2.3
//! responses), plus `GET /metrics` in Prometheus text format.
//!
//! The server runs on a thread of its own with a single-threaded tokio runtime, so it never
//! competes with the engine's I/O runtime and keeps answering while tasks are busy. Every answer
//! is built from one [`JobHandle::status`] snapshot.
//!
//! Deliberate differences from Flink: one job per server (the mini-cluster's); `summary` and
//! `history` of `/jobs/:id/checkpoints` cover only the latest completed checkpoint and savepoint;
//! `plan.nodes` have no `inputs` (the handle does not expose edges); per-vertex metrics are
//! records only (no bytes, no busy/idle time); `drain` of stop-with-savepoint is refused.

mod handlers;
mod metrics;

use std::collections::HashSet;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::cluster::handle::JobHandle;
use crate::config::Configuration;

/// The version of Flink's REST API this server follows (what `flink-version` reports).
pub const FLINK_API_VERSION: &str = "2.3.0";

/// How long [`RestServer::shutdown`] keeps serving so that clients can read the result of a
/// savepoint that completed as the job ended (stop-with-savepoint).
const LINGER: Duration = Duration::from_secs(5);

/// What the server knows besides the handle.
#[derive(Debug, Clone, Default)]
pub struct RestOptions {
    /// The job's name when the handle has none yet.
    pub job_name: Option<String>,
    /// The job's configuration (checkpoint timeout, max parallelism).
    pub config: Configuration,
}

pub(crate) struct State {
    pub(crate) handle: JobHandle,
    pub(crate) options: RestOptions,
    /// Savepoint triggers whose final status no client has read yet.
    pub(crate) unread: Mutex<HashSet<String>>,
}

impl State {
    fn unread(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.unread.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn job_name(&self) -> String {
        let name = self.handle.job_name();
        if name.is_empty() { self.options.job_name.clone().unwrap_or_default() } else { name }
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
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let state = Arc::new(State { handle, options, unread: Mutex::new(HashSet::new()) });
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

/// Where `rheo run` serves REST: `rest.bind-address` (else `rest.address`, else 127.0.0.1) and
/// `rest.port` (default 8081; a range `50100-50200` takes the first free port).
pub fn serve_for_run(handle: JobHandle, config: &Configuration, job_name: &str) -> Option<RestServer> {
    let host = config.get("rest.bind-address").or(config.get("rest.address")).unwrap_or("127.0.0.1");
    let ports = config.get(crate::config::keys::REST_PORT).unwrap_or("8081").trim();
    let range = match ports.split_once('-') {
        Some((a, b)) => a.trim().parse::<u16>().ok().zip(b.trim().parse::<u16>().ok()),
        None => ports.parse::<u16>().ok().map(|p| (p, p)),
    };
    let Some((first, last)) = range.filter(|(a, b)| a <= b) else {
        tracing::warn!("rest.port '{ports}' is not a port or a range of ports; running without the REST API");
        return None;
    };
    let ip = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip,
        Err(_) => match std::net::ToSocketAddrs::to_socket_addrs(&(host, 0)).ok().and_then(|mut a| a.next()) {
            Some(addr) => addr.ip(),
            None => {
                tracing::warn!("rest.address '{host}' does not resolve; running without the REST API");
                return None;
            }
        },
    };
    let options = RestOptions { job_name: Some(job_name.to_string()), config: config.clone() };
    let mut last_error = None;
    for port in first..=last {
        let addr = SocketAddr::new(ip, port);
        match serve_with(handle.clone(), addr, options.clone()) {
            Ok(server) => {
                tracing::info!("REST API at {}", server.url());
                return Some(server);
            }
            Err(e) => last_error = Some((addr, e)),
        }
    }
    if let Some((addr, e)) = last_error {
        let hint = if e.kind() == io::ErrorKind::AddrInUse { " (set -D rest.port=PORT)" } else { "" };
        tracing::warn!("cannot serve the REST API on {addr}: {e}{hint}; running without it");
    }
    None
}
