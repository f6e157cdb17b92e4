//! Prometheus metrics (`/metrics`) and the health endpoints (`/healthz`, `/readyz`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `ok` or `error`.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabel {
    /// What failed: `kube`, `build`, `finalizer`, `deletion_pending`.
    pub kind: String,
}

/// The operator's metrics.
pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<ResultLabel, Counter>,
    pub errors: Family<ErrorLabel, Counter>,
    pub duration: Histogram,
    pub leader: Gauge,
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("rheo_operator");
        let reconciles = Family::<ResultLabel, Counter>::default();
        let errors = Family::<ErrorLabel, Counter>::default();
        let duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        let leader = Gauge::default();
        registry.register("reconciles", "Reconcile passes by result", reconciles.clone());
        registry.register("reconcile_errors", "Failed reconcile passes by error kind", errors.clone());
        registry.register("reconcile_duration_seconds", "Duration of a reconcile pass", duration.clone());
        registry.register("leader", "1 while this replica holds the leader lease", leader.clone());
        Metrics { registry, reconciles, errors, duration, leader, ready: AtomicBool::new(false) }
    }
}

impl Metrics {
    /// Records one reconcile pass.
    pub fn observe(&self, elapsed: Duration, error_kind: Option<&str>) {
        self.duration.observe(elapsed.as_secs_f64());
        let result = if error_kind.is_some() { "error" } else { "ok" };
        self.reconciles.get_or_create(&ResultLabel { result: result.into() }).inc();
        if let Some(kind) = error_kind {
            self.errors.get_or_create(&ErrorLabel { kind: kind.into() }).inc();
        }
    }

    /// Marks the operator ready (connected to the API server, controller or standby running).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` until the process ends.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let app = router(metrics);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await
}

pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready_handler))
        .with_state(metrics)
}

async fn metrics_handler(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], m.render())
}

async fn ready_handler(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    if m.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_counts_reconciles_and_errors() {
        let m = Metrics::default();
        m.observe(Duration::from_millis(20), None);
        m.observe(Duration::from_millis(30), Some("kube"));
        let text = m.render();
        assert!(text.contains(r#"rheo_operator_reconciles_total{result="ok"} 1"#), "{text}");
        assert!(text.contains(r#"rheo_operator_reconciles_total{result="error"} 1"#), "{text}");
        assert!(text.contains(r#"rheo_operator_reconcile_errors_total{kind="kube"} 1"#), "{text}");
        assert!(text.contains("rheo_operator_reconcile_duration_seconds_count 2"), "{text}");
    }
}
