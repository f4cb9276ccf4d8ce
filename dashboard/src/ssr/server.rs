//! The axum application: Leptos pages and server functions, `/health`, `/metrics`.

use std::{
    net::SocketAddr,
    path::Path,
    sync::{Arc, OnceLock},
    time::Duration,
};

use axum::{
    extract::{FromRef, State},
    http::{header, StatusCode},
    middleware,
    response::IntoResponse,
    routing::{get, post},
    Json, Router,
};
use deadpool_postgres::Pool;
use leptos::prelude::*;
use leptos_axum::{generate_route_list, LeptosRoutes};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use super::{
    api::{self, Api},
    auth::{self, login, Auth, Lifetimes},
    cache::GoldCache,
    config::{Mode, Settings},
    db,
    error::DashboardError,
    page_cache::{self, PageCache},
};
use crate::app::{shell, App};

/// Shared by every request: the router state, also provided as Leptos context to the
/// server functions and the server render (`use_context::<AppState>()`).
#[derive(Clone)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub pool: Pool,
    pub refresh_ms: u64,
    pub metrics: Option<PrometheusHandle>,
    pub auth: Arc<Auth>,
    pub api: Arc<Api>,
    pub cache: Arc<GoldCache>,
    /// Rendered pages (see [`page_cache`]).
    pub pages: Arc<PageCache>,
    pub settings: Arc<Settings>,
}

impl FromRef<AppState> for Arc<Auth> {
    fn from_ref(state: &AppState) -> Self {
        state.auth.clone()
    }
}

impl AppState {
    /// The state for `settings`, over `pool`; starts the gold version watcher.
    pub fn new(
        settings: &Settings,
        pool: Pool,
        leptos_options: LeptosOptions,
        metrics: Option<PrometheusHandle>,
    ) -> Self {
        let d = &settings.dashboard;
        let public_files = std::fs::read_dir(&*leptos_options.site_root)
            .map(|dir| {
                dir.filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        let hours = |h: u64| (h * 3600) as i64;
        let auth = Auth::new(
            settings.secret(),
            pool.clone(),
            Lifetimes {
                session: hours(d.session_hours),
                access: (d.token_minutes * 60) as i64,
                refresh: hours(d.refresh_hours),
            },
            settings.mode != Mode::Development,
            d.login_per_minute,
            public_files,
        );
        let cache = Arc::new(GoldCache::default());
        cache.watch(
            pool.clone(),
            Duration::from_millis(d.refresh_ms.clamp(100, 1000) / 2),
        );
        Self {
            leptos_options,
            pool,
            refresh_ms: d.refresh_ms,
            metrics,
            auth: Arc::new(auth),
            api: Arc::new(Api::new(
                settings.secret(),
                d.rate_per_second,
                d.rate_burst,
                d.export_row_cap,
            )),
            cache,
            pages: Arc::new(PageCache::default()),
            settings: Arc::new(settings.clone()),
        }
    }
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
    let swagger = utoipa_swagger_ui::SwaggerUi::new("/swagger-ui")
        .config(utoipa_swagger_ui::Config::new(["/api-docs/openapi.json"]));
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .route("/login", get(login::page).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/export/{page}/{file}", get(super::panels::export))
        .merge(api::router())
        .merge(swagger)
        .merge(static_files(Path::new(&*state.leptos_options.site_root)))
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
        // Outermost last: the guard authenticates, then the API's rate limit counts per user,
        // then a page already rendered for this user, URL and gold version is reused.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            page_cache::layer,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            api::rate_limit,
        ))
        .layer(middleware::from_fn_with_state(
            state.auth.clone(),
            auth::guard,
        ))
        .with_state(state)
}

/// The client bundle and the top-level assets (style.css, favicon.svg), read once into
/// memory with their gzip twins (dashboard/build.sh writes `*.gz`), served with a cache
/// header; gzip to browsers that accept it.
fn static_files(site: &Path) -> Router<AppState> {
    let mut files = Vec::new();
    for (dir, prefix) in [(site.to_path_buf(), "/"), (site.join("pkg"), "/pkg/")] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let (Ok(kind), Ok(name)) = (entry.file_type(), entry.file_name().into_string()) else {
                continue;
            };
            if !kind.is_file() || name.ends_with(".gz") {
                continue;
            }
            let Ok(raw) = std::fs::read(entry.path()) else {
                continue;
            };
            let gz = std::fs::read(dir.join(format!("{name}.gz"))).ok();
            files.push((format!("{prefix}{name}"), content_type(&name), raw, gz));
        }
    }
    let mut router = Router::new();
    for (path, ctype, raw, gz) in files {
        let raw = axum::body::Bytes::from(raw);
        let gz = gz.map(axum::body::Bytes::from);
        router = router.route(
            &path,
            get(move |headers: axum::http::HeaderMap| {
                let (raw, gz) = (raw.clone(), gz.clone());
                async move {
                    let gzip = headers
                        .get(header::ACCEPT_ENCODING)
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|v| v.contains("gzip"));
                    let mut resp = match (gzip, gz) {
                        (true, Some(gz)) => {
                            ([(header::CONTENT_ENCODING, "gzip")], gz).into_response()
                        }
                        _ => raw.into_response(),
                    };
                    let h = resp.headers_mut();
                    h.insert(
                        header::CONTENT_TYPE,
                        axum::http::HeaderValue::from_static(ctype),
                    );
                    h.insert(
                        header::CACHE_CONTROL,
                        axum::http::HeaderValue::from_static("public, max-age=3600"),
                    );
                    h.insert(
                        header::VARY,
                        axum::http::HeaderValue::from_static("accept-encoding"),
                    );
                    resp
                }
            }),
        );
    }
    router
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("html") => "text/html; charset=utf-8",
        _ => "application/octet-stream",
    }
}

async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let check = tokio::time::timeout(Duration::from_secs(3), db::ping(&state.pool)).await;
    let warehouse = match check {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("error: {e}")),
        Err(_) => Err("error: timed out".to_string()),
    };
    // The gold version the cache follows: null until the transform created gold.
    let gold = state.cache.version();
    match warehouse {
        Ok(()) => (
            StatusCode::OK,
            Json(serde_json::json!({"status": "ok", "warehouse": "ok", "gold_version": gold})),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "health: warehouse unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(
                    serde_json::json!({"status": "unavailable", "warehouse": e, "gold_version": gold}),
                ),
            )
        }
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
    let pool = db::pool(&settings.warehouse.url, 16)?;
    prepare_users(settings, &pool).await;
    let state = AppState::new(settings, pool, options, Some(install_metrics()?));
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
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
    .map_err(DashboardError::Serve)?;
    tracing::info!("dashboard stopped");
    Ok(())
}

/// Creates `app.users` if needed and, in development, a first admin whose password is
/// printed once. The warehouse being down is not fatal: logins answer 503 until it is back.
async fn prepare_users(settings: &Settings, pool: &Pool) {
    let client = match auth::users::client(pool).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot prepare app.users now; logins will fail until the warehouse answers");
            return;
        }
    };
    if let Err(e) = auth::users::ensure_schema(&client).await {
        tracing::warn!(error = %e, "cannot create app.users");
        return;
    }
    if settings.mode == Mode::Development {
        match auth::users::first_admin(&client).await {
            Ok(Some(password)) => {
                // Printed on stdout once: the only place this password appears.
                println!("dashboard: created the first user: admin / {password}  (development mode; change it with `dashboard user passwd admin`)");
                tracing::info!(
                    "created the first admin user (development mode); its password is on stdout"
                );
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot create the first admin"),
        }
    }
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
