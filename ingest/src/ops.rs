//! `/health` and `/metrics` endpoints of the agent.

use axum::{http::StatusCode, routing::get, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Liveness shared by the sources: each source stamps `beat()` whenever its loop turns.
#[derive(Clone, Default)]
pub struct Liveness {
    last_beat_ms: Arc<AtomicI64>,
}

impl Liveness {
    pub fn beat(&self) {
        self.last_beat_ms
            .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
    }
    fn age_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis() - self.last_beat_ms.load(Ordering::Relaxed)
    }
}

pub fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    Ok(PrometheusBuilder::new().install_recorder()?)
}

/// Serves `/health` (503 when no source loop turned in the last 30 s) and `/metrics`.
pub async fn serve(
    addr: SocketAddr,
    metrics: PrometheusHandle,
    liveness: Liveness,
) -> anyhow::Result<()> {
    let app = Router::new()
        .route(
            "/health",
            get(move || {
                let age = liveness.age_ms();
                async move {
                    if age < 30_000 {
                        (
                            StatusCode::OK,
                            format!("{{\"status\":\"ok\",\"last_beat_ms_ago\":{age}}}"),
                        )
                    } else {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("{{\"status\":\"stalled\",\"last_beat_ms_ago\":{age}}}"),
                        )
                    }
                }
            }),
        )
        .route("/metrics", get(move || async move { metrics.render() }));
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {addr} for /health and /metrics: {e} (change ingest.metrics_addr)"
        )
    })?;
    axum::serve(listener, app).await?;
    Ok(())
}
