//! The REST API, `/api/v1/…`: login and refresh (JWT), one `GET` per gold mart with
//! filters, sort, `limit`/`offset` (or a signed cursor for detail lists), JSON or CSV
//! (`Accept: text/csv`), errors as `application/problem+json`, a rate limit per token.
//! The OpenAPI document is at `/api-docs/openapi.json`, Swagger UI at `/swagger-ui`.

pub mod catalog;
pub mod openapi;
pub mod query;

use std::{
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use axum::{
    body::Bytes,
    extract::{rejection::QueryRejection, Path, Query, Request, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::{get, post},
    Extension, Json, Router,
};
use deadpool_postgres::Pool;
use serde::{Deserialize, Serialize};

use self::catalog::{Endpoint, Schema};
use self::query::{BadRequest, Cursors, Param, Plan, Shape};
use super::auth::{self, client_addr, refuse, token::TokenKind};
use super::ratelimit::{retry_after_secs, RateLimiter};
use super::server::AppState;
use crate::model::{Role, SessionUser};
use crate::ssr::db::chain;

/// How often a schema with missing tables is read again.
const SCHEMA_RETRY: Duration = Duration::from_secs(5);

/// State of the API.
pub struct Api {
    schema: RwLock<Option<(Instant, Arc<Schema>)>>,
    pub cursors: Cursors,
    limiter: RateLimiter,
    export_cap: u64,
}

impl Api {
    pub fn new(secret: &str, rate_per_second: u32, burst: u32, export_cap: u64) -> Self {
        Self {
            schema: RwLock::new(None),
            cursors: Cursors::new(secret.as_bytes()),
            limiter: RateLimiter::new(f64::from(rate_per_second), burst),
            export_cap,
        }
    }

    /// The gold tables as the warehouse has them (read again while some are missing).
    pub async fn schema(&self, pool: &Pool) -> Result<Arc<Schema>, Problem> {
        if let Some((at, s)) = self
            .schema
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            let complete = catalog::ENDPOINTS.iter().all(|e| s.columns(e).is_ok());
            if complete || at.elapsed() < SCHEMA_RETRY {
                return Ok(s.clone());
            }
        }
        let client = pool
            .get()
            .await
            .map_err(|e| Problem::unavailable(&chain(&e)))?;
        let schema = Arc::new(
            Schema::load(&client)
                .await
                .map_err(|e| Problem::unavailable(&chain(&e)))?,
        );
        *self.schema.write().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), schema.clone()));
        Ok(schema)
    }
}

/// An error answer (RFC 9457 `application/problem+json`).
#[derive(Debug)]
pub struct Problem {
    pub status: StatusCode,
    pub detail: String,
    pub retry_after: Option<u64>,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
            retry_after: None,
        }
    }
    fn unavailable(detail: &str) -> Self {
        tracing::warn!(detail, "api: warehouse unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the warehouse cannot be reached right now; retry shortly",
        )
    }
}

impl From<BadRequest> for Problem {
    fn from(e: BadRequest) -> Self {
        Problem::new(StatusCode::BAD_REQUEST, e.0)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut resp = refuse(self.status, &self.detail);
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

/// The API routes (mounted at the root; the auth guard runs in front of them).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/refresh", post(refresh))
        .route("/api/v1/me", get(me))
        .route("/api/v1", get(index))
        .route("/api/v1/{name}", get(mart))
        .route("/api-docs/openapi.json", get(openapi::document))
        .route("/api/{*rest}", get(not_found).post(not_found))
}

async fn not_found() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "no such API route; see /api-docs/openapi.json",
    )
}

/// The rate limit in front of the API's data routes: per user (per address for logins).
pub async fn rate_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let key = match req.extensions().get::<SessionUser>() {
        Some(u) => format!("user:{}", u.username),
        None => format!("addr:{}", client_addr(req.extensions())),
    };
    let limiter = if req.uri().path().starts_with("/api/v1/auth/")
        && req.extensions().get::<SessionUser>().is_none()
    {
        &state.auth.login_limiter
    } else {
        &state.api.limiter
    };
    let path = req.uri().path();
    if !path.starts_with("/api/") {
        return next.run(req).await;
    }
    if let Err(wait) = limiter.check(&key) {
        metrics::counter!("dashboard_api_rate_limited_total").increment(1);
        let secs = retry_after_secs(wait);
        return Problem {
            status: StatusCode::TOO_MANY_REQUESTS,
            detail: format!("rate limit reached; retry in {secs} s"),
            retry_after: Some(secs),
        }
        .into_response();
    }
    next.run(req).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    username: String,
    password: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshBody {
    refresh_token: String,
}

/// Answer of login and refresh.
#[derive(Debug, Serialize)]
pub struct Tokens {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub refresh_token: String,
    pub refresh_expires_in: i64,
    pub username: String,
    pub role: Role,
}

fn json_body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<T, Problem> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the body as application/json",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}

fn tokens(state: &AppState, user: &auth::users::User) -> Tokens {
    Tokens {
        access_token: state.auth.issue(user, TokenKind::Access),
        token_type: "Bearer",
        expires_in: state.auth.lifetimes.access,
        refresh_token: state.auth.issue(user, TokenKind::Refresh),
        refresh_expires_in: state.auth.lifetimes.refresh,
        username: user.username.clone(),
        role: user.role,
    }
}

async fn login(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let b: LoginBody = match json_body(&headers, &body) {
        Ok(b) => b,
        Err(p) => return p.into_response(),
    };
    match state.auth.login(&b.username, &b.password).await {
        Ok(user) => Json(tokens(&state, &user)).into_response(),
        Err(e) => refuse(e.status(), &e.to_string()),
    }
}

async fn refresh(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let b: RefreshBody = match json_body(&headers, &body) {
        Ok(b) => b,
        Err(p) => return p.into_response(),
    };
    let claims = match state
        .auth
        .keys()
        .verify(&b.refresh_token, TokenKind::Refresh)
    {
        Ok(c) => c,
        Err(e) => return refuse(StatusCode::UNAUTHORIZED, &e.to_string()),
    };
    let client = match auth::users::client(state.auth.pool()).await {
        Ok(c) => c,
        Err(e) => return Problem::unavailable(&e.to_string()).into_response(),
    };
    match auth::users::find(&client, &claims.sub).await {
        Ok(Some(user)) if user.token_version == claims.ver => {
            Json(tokens(&state, &user)).into_response()
        }
        Ok(_) => refuse(
            StatusCode::UNAUTHORIZED,
            &auth::AuthError::Revoked.to_string(),
        ),
        Err(e) => Problem::unavailable(&e.to_string()).into_response(),
    }
}

async fn me(Extension(user): Extension<SessionUser>) -> Json<SessionUser> {
    Json(user)
}

#[derive(Serialize)]
struct IndexEntry {
    path: String,
    summary: &'static str,
    table: &'static str,
    role: Role,
    pagination: &'static str,
}

async fn index() -> Json<Vec<IndexEntry>> {
    Json(
        catalog::ENDPOINTS
            .iter()
            .map(|e| IndexEntry {
                path: format!("/api/v1/{}", e.name),
                summary: e.summary,
                table: e.table,
                role: e.role,
                pagination: if e.cursor { "cursor" } else { "offset" },
            })
            .collect(),
    )
}

fn wants_csv(headers: &HeaderMap, params: &[(String, String)]) -> Result<Shape, Problem> {
    match params
        .iter()
        .find(|(k, _)| k == "format")
        .map(|(_, v)| v.as_str())
    {
        Some("csv") => return Ok(Shape::Csv),
        Some("json") => return Ok(Shape::Json),
        Some(other) => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                format!("format={other:?}: use json or csv"),
            ))
        }
        None => {}
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    Ok(
        if accept.contains("text/csv") && !accept.contains("application/json") {
            Shape::Csv
        } else {
            Shape::Json
        },
    )
}

async fn mart(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Extension(user): Extension<SessionUser>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let started = Instant::now();
    let result = serve_mart(&state, &name, &user, &headers, query).await;
    let status = match &result {
        Ok(r) => r.status(),
        Err(p) => p.status,
    };
    metrics::histogram!("dashboard_api_duration_seconds", "endpoint" => catalog::find(&name).map_or("unknown", |e| e.name))
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("dashboard_api_requests_total", "status" => status.as_u16().to_string())
        .increment(1);
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn serve_mart(
    state: &AppState,
    name: &str,
    user: &SessionUser,
    headers: &HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, Problem> {
    let e = catalog::find(name).ok_or_else(|| {
        Problem::new(
            StatusCode::NOT_FOUND,
            format!("no endpoint /api/v1/{name}; GET /api/v1 lists them"),
        )
    })?;
    if !auth::allows(user, e.role) {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            format!(
                "/api/v1/{} needs the {} role; {} has the {} role",
                e.name, e.role, user.username, user.role
            ),
        ));
    }
    let Query(params) = query.map_err(|r| Problem::new(StatusCode::BAD_REQUEST, r.body_text()))?;
    let shape = wants_csv(headers, &params)?;
    if shape == Shape::Csv && user.role < Role::Analyst {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            format!(
                "CSV export needs the analyst role; {} has the {} role",
                user.username, user.role
            ),
        ));
    }
    let schema = state.api.schema(&state.pool).await?;
    let columns = schema
        .columns(e)
        .map_err(|why| Problem::new(StatusCode::SERVICE_UNAVAILABLE, why))?;
    let plan = query::plan(
        e,
        &columns,
        &params,
        shape,
        state.api.export_cap,
        &state.api.cursors,
    )?;
    match shape {
        Shape::Json => json_answer(state, e, &params, &plan).await,
        Shape::Csv => csv_answer(state, e, &columns, plan).await,
    }
}

fn bind(params: &[Param]) -> Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>> {
    params
        .iter()
        .map(|p| -> Box<dyn tokio_postgres::types::ToSql + Sync + Send> {
            match p {
                Param::One(v) => Box::new(v.clone()),
                Param::Many(v) => Box::new(v.clone()),
            }
        })
        .collect()
}

/// A pooled warehouse connection, or a 503.
async fn connection(state: &AppState) -> Result<deadpool_postgres::Object, Problem> {
    state
        .pool
        .get()
        .await
        .map_err(|err| Problem::unavailable(&chain(&err)))
}

fn db_problem(e: &tokio_postgres::Error, endpoint: &str) -> Problem {
    if e.code().is_some_and(|c| c.code().starts_with("22")) {
        return Problem::new(
            StatusCode::BAD_REQUEST,
            format!("a filter value was refused: {}", chain(e)),
        );
    }
    if e.is_closed() || e.code().is_none() {
        return Problem::unavailable(&chain(e));
    }
    tracing::error!(endpoint, error = %chain(e), "api query failed");
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the query failed on the server; the error is in the dashboard's log",
    )
}

/// The query string without `offset` and `cursor`, for the `next` link.
fn link(e: &Endpoint, params: &[(String, String)], extra: (&str, &str)) -> String {
    let mut q: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "offset" && k != "cursor")
        .cloned()
        .collect();
    q.push((extra.0.to_string(), extra.1.to_string()));
    let encoded: Vec<String> = q
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                auth::login::url_encode(k),
                auth::login::url_encode(v)
            )
        })
        .collect();
    format!("/api/v1/{}?{}", e.name, encoded.join("&"))
}

async fn json_answer(
    state: &AppState,
    e: &Endpoint,
    params: &[(String, String)],
    plan: &Plan,
) -> Result<Response, Problem> {
    let mut key_params: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    key_params.sort();
    let key = format!("api:{}?{}", e.name, key_params.join("&"));
    let version = state.cache.version();
    if let Some(body) = state.cache.get(&key) {
        return Ok(json_response(body.to_string(), version));
    }
    let client = connection(state).await?;
    let bound = bind(&plan.params);
    let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = bound
        .iter()
        .map(|b| b.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    let rows = client
        .query(&plan.sql, &refs)
        .await
        .map_err(|err| db_problem(&err, e.name))?;
    let more = rows.len() as u64 > plan.limit && plan.limit > 0;
    let shown = &rows[..rows.len().min(plan.limit as usize)];
    let mut body = String::with_capacity(64 + shown.len() * 128);
    body.push_str("{\"data\":[");
    for (i, r) in shown.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(r.get::<_, &str>(0));
    }
    body.push_str("],");
    let next = if !more {
        None
    } else if e.cursor {
        let last = &shown[shown.len() - 1];
        let k: Vec<String> = (0..plan.key_columns)
            .map(|i| last.get::<_, Option<String>>(1 + i).unwrap_or_default())
            .collect();
        let cursor = state.api.cursors.encode(e.name, &k);
        body.push_str(&format!(
            "\"next_cursor\":{},",
            serde_json::Value::from(cursor.clone())
        ));
        Some(link(e, params, ("cursor", &cursor)))
    } else {
        Some(link(
            e,
            params,
            ("offset", &(plan.offset + plan.limit).to_string()),
        ))
    };
    if e.cursor && !more {
        body.push_str("\"next_cursor\":null,");
    }
    body.push_str(&format!(
        "\"limit\":{},\"offset\":{},\"returned\":{},\"next\":{}}}",
        plan.limit,
        plan.offset,
        shown.len(),
        serde_json::Value::from(next)
    ));
    let body: Arc<str> = body.into();
    state.cache.put(key, version, body.clone());
    Ok(json_response(body.to_string(), version))
}

fn json_response(body: String, version: Option<i64>) -> Response {
    let mut resp = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    if let Some(v) = version.and_then(|v| HeaderValue::from_str(&v.to_string()).ok()) {
        resp.headers_mut().insert("x-gold-version", v);
    }
    resp
}

async fn csv_answer(
    state: &AppState,
    e: &Endpoint,
    columns: &[&catalog::Column],
    plan: Plan,
) -> Result<Response, Problem> {
    let client = connection(state).await?;
    let bound = bind(&plan.params);
    let stream = client
        .query_raw(
            &plan.sql,
            bound
                .iter()
                .map(|b| b.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync)),
        )
        .await
        .map_err(|err| db_problem(&err, e.name))?;
    let header: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
    let body = super::csv_export::body(header, client, stream, plan.limit as usize, e.name);
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}.csv\"", e.name),
            ),
            (
                header::HeaderName::from_static("x-row-cap"),
                plan.limit.to_string(),
            ),
        ],
        body,
    )
        .into_response())
}
