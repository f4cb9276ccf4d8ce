//! The axum application: Leptos pages and server functions, `/health`, `/metrics`.

use std::{net::SocketAddr, path::Path, sync::OnceLock, time::Duration};

use axum::{
    extract::{FromRef, State},
    http::{header, StatusCode},
    response::IntoResponse,
    routing::get,
    Json, Router,
};
use deadpool_postgres::Pool;
use leptos::prelude::*;
use leptos_axum::{generate_route_list, LeptosRoutes};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use super::{config::Settings, db, error::DashboardError};
use crate::app::{shell, App};

/// Shared by every request: the router state, also provided as Leptos context to the
/// server functions and the server render (`use_context::<AppState>()`).
#[derive(Clone)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub pool: Pool,
    pub refresh_ms: u64,
    pub metrics: Option<PrometheusHandle>,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}

/// Leptos options for a site root and address. The output name is the one the wasm was
/// built with (`LEPTOS_OUTPUT_NAME` at compile time, see .cargo/config.toml).
pub fn leptos_options(site_root: &Path, addr: SocketAddr) -> LeptosOptions {
    LeptosOptions::builder()
        .output_name(option_env!("LEPTOS_OUTPUT_NAME").unwrap_or("dashboard"))
        .site_root(site_root.to_string_lossy().to_string())
        .site_pkg_dir(option_env!("LEPTOS_SITE_PKG_DIR").unwrap_or("pkg"))
        .site_addr(addr)
        .build()
}

/// Installs the global Prometheus recorder once per process and returns its handle.
pub fn install_metrics() -> Result<PrometheusHandle, DashboardError> {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
            &[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ],
        )
        .map_err(|e| DashboardError::Metrics(e.to_string()))?
        .install_recorder()
        .map_err(|e| DashboardError::Metrics(e.to_string()))?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// The whole application.
pub fn router(state: AppState) -> Router {
    let routes = generate_route_list(App);
    let app_state = state.clone();
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .leptos_routes_with_context(
            &state,
            routes,
            move || provide_context(app_state.clone()),
            {
                let options = state.leptos_options.clone();
                move || shell(options.clone())
            },
        )
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        .with_state(state)
}

async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let check = tokio::time::timeout(Duration::from_secs(3), db::ping(&state.pool)).await;
    match check {
        Ok(Ok(())) => (
            StatusCode::OK,
            Json(serde_json::json!({"status": "ok", "warehouse": "ok"})),
        ),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "health: warehouse unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(
                    serde_json::json!({"status": "unavailable", "warehouse": format!("error: {e}")}),
                ),
            )
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "unavailable", "warehouse": "error: timed out"})),
        ),
    }
}

async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    match &state.metrics {
        Some(handle) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            handle.render(),
        ),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "metrics are not enabled\n".to_string(),
        ),
    }
}

/// Starts serving `settings` until Ctrl-C or SIGTERM.
pub async fn serve(settings: &Settings) -> Result<(), DashboardError> {
    let site_root = settings.site_root();
    let addr = settings.dashboard.addr;
    let options = leptos_options(&site_root, addr);
    let js = site_root
        .join(&*options.site_pkg_dir)
        .join(format!("{}.js", options.output_name));
    if !js.is_file() {
        tracing::warn!(
            site_root = %site_root.display(),
            missing = %js.display(),
            "client bundle not found: pages render but will not refresh; run dashboard/build.sh or set LEPTOS_SITE_ROOT"
        );
    }
    let state = AppState {
        leptos_options: options,
        pool: db::pool(&settings.warehouse.url, 8)?,
        refresh_ms: settings.dashboard.refresh_ms,
        metrics: Some(install_metrics()?),
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| DashboardError::Bind { addr, source })?;
    let local = listener.local_addr().map_err(DashboardError::Serve)?;
    tracing::info!(
        addr = %local,
        url = %format!("http://{local}/"),
        site_root = %site_root.display(),
        refresh_ms = settings.dashboard.refresh_ms,
        mode = ?settings.mode,
        warehouse = %super::config::redact_url(&settings.warehouse.url),
        "dashboard listening"
    );
    axum::serve(listener, router(state).into_make_service())
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(DashboardError::Serve)?;
    tracing::info!("dashboard stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received");
}
