//! Who is asking: sessions (cookie) for the pages, tokens (bearer) for the API, roles.
//!
//! Every route goes through [`guard`] except the public ones ([`Auth::is_public`]): `/health`,
//! `/metrics`, the login page, the API's login and refresh, and the static assets. Without a
//! valid session or token a page redirects to `/login` and everything else answers 401; a
//! valid one of too low a role gets 403 from the route itself ([`allows`]).

pub mod login;
pub mod password;
pub mod token;
pub mod users;

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
};
use deadpool_postgres::Pool;

use self::token::{Keys, TokenError, TokenKind};
use self::users::User;
use super::ratelimit::RateLimiter;
use crate::model::{Role, SessionUser};

/// Name of the session cookie.
pub const COOKIE: &str = "etl_session";
/// How long a looked-up user is trusted before the table is read again.
const USER_CACHE_TTL: Duration = Duration::from_secs(2);

/// Why a request is not authenticated.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("sign in first: no session cookie or bearer token")]
    Missing,
    #[error("{0}")]
    Token(#[from] TokenError),
    #[error("the account no longer exists or its password was changed; sign in again")]
    Revoked,
    #[error("wrong username or password")]
    BadCredentials,
    #[error("cannot check the user: {0}")]
    Unavailable(String),
}

impl AuthError {
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

/// Lifetimes of what [`Auth`] issues, in seconds.
#[derive(Clone, Copy, Debug)]
pub struct Lifetimes {
    pub session: i64,
    pub access: i64,
    pub refresh: i64,
}

/// The authentication state shared by every request.
pub struct Auth {
    keys: Keys,
    pool: Pool,
    pub lifetimes: Lifetimes,
    /// `Secure` on the cookie (everywhere but development, which runs on plain http).
    secure_cookie: bool,
    pub login_limiter: RateLimiter,
    /// File names at the top of the site root (style.css, favicon.svg, ...), public.
    public_files: HashSet<String>,
    cache: Mutex<HashMap<String, (Instant, Option<User>)>>,
}

impl Auth {
    pub fn new(
        secret: &str,
        pool: Pool,
        lifetimes: Lifetimes,
        secure_cookie: bool,
        login_per_minute: u32,
        public_files: HashSet<String>,
    ) -> Self {
        Self {
            keys: Keys::new(secret.as_bytes()),
            pool,
            lifetimes,
            secure_cookie,
            login_limiter: RateLimiter::new(f64::from(login_per_minute) / 60.0, login_per_minute),
            public_files,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Routes anyone may call.
    pub fn is_public(&self, path: &str) -> bool {
        matches!(
            path,
            "/health"
                | "/metrics"
                | "/login"
                | "/logout"
                | "/api/v1/auth/login"
                | "/api/v1/auth/refresh"
        ) || path.starts_with("/pkg/")
            || path
                .strip_prefix('/')
                .is_some_and(|name| self.public_files.contains(name))
    }

    /// The user behind a request's bearer token or session cookie.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<SessionUser, AuthError> {
        let claims = if let Some(bearer) = bearer(headers) {
            self.keys.verify(bearer, TokenKind::Access)?
        } else if let Some(cookie) = cookie(headers, COOKIE) {
            self.keys.verify(cookie, TokenKind::Session)?
        } else {
            return Err(AuthError::Missing);
        };
        self.current(&claims.sub, claims.ver).await
    }

    /// The user `name` as stored now, if `ver` is still their token version.
    pub async fn current(&self, name: &str, ver: i32) -> Result<SessionUser, AuthError> {
        let user = self.lookup(name).await?;
        match user {
            Some(u) if u.token_version == ver => Ok(SessionUser {
                username: u.username,
                role: u.role,
            }),
            _ => Err(AuthError::Revoked),
        }
    }

    async fn lookup(&self, name: &str) -> Result<Option<User>, AuthError> {
        {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, user)) = cache.get(name) {
                if at.elapsed() < USER_CACHE_TTL {
                    return Ok(user.clone());
                }
            }
        }
        let client = users::client(&self.pool)
            .await
            .map_err(|e| AuthError::Unavailable(e.to_string()))?;
        let user = users::find(&client, name)
            .await
            .map_err(|e| AuthError::Unavailable(e.to_string()))?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(name.to_string(), (Instant::now(), user.clone()));
        Ok(user)
    }

    /// Checks a username and password (always at the cost of one Argon2 verification).
    pub async fn login(&self, username: &str, password: &str) -> Result<User, AuthError> {
        let client = users::client(&self.pool)
            .await
            .map_err(|e| AuthError::Unavailable(e.to_string()))?;
        let user = if users::valid_name(username) {
            users::find(&client, username)
                .await
                .map_err(|e| AuthError::Unavailable(e.to_string()))?
        } else {
            None
        };
        let ok = password::verify_async(
            password.to_string(),
            user.as_ref().map(|u| u.password_hash.clone()),
        )
        .await;
        match user {
            Some(user) if ok => {
                if let Err(e) = users::touch_login(&client, &user.username).await {
                    tracing::warn!(error = %e, "cannot record the login time");
                }
                metrics::counter!("dashboard_logins_total", "outcome" => "ok").increment(1);
                Ok(user)
            }
            _ => {
                metrics::counter!("dashboard_logins_total", "outcome" => "refused").increment(1);
                tracing::info!(username, "login refused");
                Err(AuthError::BadCredentials)
            }
        }
    }

    /// A token of `kind` for `user`.
    pub fn issue(&self, user: &User, kind: TokenKind) -> String {
        let ttl = match kind {
            TokenKind::Session => self.lifetimes.session,
            TokenKind::Access => self.lifetimes.access,
            TokenKind::Refresh => self.lifetimes.refresh,
        };
        self.keys.issue(
            &user.username,
            user.role,
            user.token_version,
            kind,
            chrono::Utc::now().timestamp(),
            ttl,
        )
    }

    /// `Set-Cookie` value of a new session (or, with `None`, of a logout).
    pub fn session_cookie(&self, token: Option<&str>) -> HeaderValue {
        let secure = if self.secure_cookie { "; Secure" } else { "" };
        let text = match token {
            Some(t) => format!(
                "{COOKIE}={t}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
                self.lifetimes.session
            ),
            None => format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
        };
        HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The client's address (the socket peer; no proxy header is trusted).
pub fn client_addr(req_extensions: &axum::http::Extensions) -> String {
    req_extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// The middleware in front of every route: puts the [`SessionUser`] in the request's
/// extensions, or refuses.
pub async fn guard(State(auth): State<Arc<Auth>>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if auth.is_public(&path) {
        return next.run(req).await;
    }
    match auth.authenticate(req.headers()).await {
        Ok(user) => {
            req.extensions_mut().insert(user);
            next.run(req).await
        }
        Err(e) => {
            let is_page = req.method() == axum::http::Method::GET
                && !path.starts_with("/api")
                && !path.starts_with("/rpc/")
                && !path.starts_with("/export/");
            if is_page && e.status() == StatusCode::UNAUTHORIZED {
                let next_url = req
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/");
                let to = format!("/login?next={}", login::url_encode(next_url));
                return Redirect::to(&to).into_response();
            }
            refuse(e.status(), &e.to_string())
        }
    }
}

/// A 401, 403 or 503 as `application/problem+json`, with `WWW-Authenticate` on 401.
pub fn refuse(status: StatusCode, detail: &str) -> Response {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    let mut resp = (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"etl-dashboard\""),
        );
    }
    resp
}

/// Whether `user` has at least `role` (a route answers 403 otherwise).
pub fn allows(user: &SessionUser, role: Role) -> bool {
    user.role >= role
}

/// The signed-in user of a Leptos server function or page render.
pub fn current_user() -> Option<SessionUser> {
    leptos::prelude::use_context::<axum::http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<SessionUser>().cloned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bearer_and_cookie() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc.def"),
        );
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; etl_session=xyz"),
        );
        assert_eq!(bearer(&h), Some("abc.def"));
        assert_eq!(cookie(&h, COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "b"), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
    }
}
