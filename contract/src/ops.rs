//! The `/health` and `/metrics` endpoints every service serves: `/health` answers 200 with
//! the service's report when it is well, 503 with the same report otherwise; `/metrics` is
//! the Prometheus text of the process's recorder.

use axum::{http::StatusCode, routing::get, Json, Router};
use metrics_exporter_prometheus::{BuildError, PrometheusBuilder, PrometheusHandle};
use serde::Serialize;
use std::net::SocketAddr;

/// A service's answer to `/health`.
pub trait HealthReport: Serialize + Send + 'static {
    /// Every part is well.
    fn is_ok(&self) -> bool;
}

/// `/health` and `/metrics` could not be served.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("cannot listen on {addr} for /health and /metrics: {source} (change {key})")]
    Bind {
        addr: SocketAddr,
        key: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("serving /health and /metrics on {addr}: {source}")]
    Serve {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Installs the process's Prometheus recorder (once, at start) and returns its handle.
pub fn install_metrics() -> Result<PrometheusHandle, BuildError> {
    PrometheusBuilder::new().install_recorder()
}

/// Serves both endpoints on `addr` (the configuration key `key`, for the message) until the
/// process ends; `report` is asked on every `/health` request.
pub async fn serve_ops<R, F>(
    addr: SocketAddr,
    key: &'static str,
    metrics: PrometheusHandle,
    report: F,
) -> Result<(), OpsError>
where
    R: HealthReport,
    F: Fn() -> R + Clone + Send + Sync + 'static,
{
    let app = Router::new()
        .route(
            "/health",
            get(move || {
                let r = report();
                async move {
                    let code = if r.is_ok() {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    (code, Json(r))
                }
            }),
        )
        .route("/metrics", get(move || async move { metrics.render() }));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| OpsError::Bind { addr, key, source })?;
    axum::serve(listener, app)
        .await
        .map_err(|source| OpsError::Serve { addr, source })
}
