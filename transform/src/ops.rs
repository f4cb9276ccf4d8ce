//! `/health` and `/metrics` endpoints of the transform service.

use axum::{http::StatusCode, routing::get, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Health as seen by the batch loop: when it last turned, and whether its last warehouse
/// transaction failed.
#[derive(Clone, Default)]
pub struct Health {
    last_ok_ms: Arc<AtomicI64>,
    failing: Arc<std::sync::atomic::AtomicBool>,
}

impl Health {
    pub fn ok(&self) {
        self.last_ok_ms
            .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
        self.failing.store(false, Ordering::Relaxed);
    }
    pub fn failing(&self) {
        self.failing.store(true, Ordering::Relaxed);
    }
    fn report(&self) -> (StatusCode, String) {
        let age = chrono::Utc::now().timestamp_millis() - self.last_ok_ms.load(Ordering::Relaxed);
        let failing = self.failing.load(Ordering::Relaxed);
        let status = if failing || age > 30_000 {
            "unhealthy"
        } else {
            "ok"
        };
        let code = if status == "ok" {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        (code, format!("{{\"status\":\"{status}\",\"warehouse_failing\":{failing},\"last_ok_ms_ago\":{age}}}"))
    }
}

pub fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    Ok(PrometheusBuilder::new().install_recorder()?)
}

pub async fn serve(
    addr: SocketAddr,
    metrics: PrometheusHandle,
    health: Health,
) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/health", get(move || async move { health.report() }))
        .route("/metrics", get(move || async move { metrics.render() }));
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {addr} for /health and /metrics: {e} (change transform.metrics_addr)"
        )
    })?;
    axum::serve(listener, app).await?;
    Ok(())
}
