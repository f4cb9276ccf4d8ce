//! The login page (plain HTML: it works before the client bundle loads and without
//! JavaScript) and logout.

use std::sync::Arc;

use axum::{
    extract::{FromRequest, Query, Request, State},
    http::{header, StatusCode},
    response::{Html, IntoResponse, Redirect, Response},
    Form,
};
use serde::Deserialize;

use super::{client_addr, token::TokenKind, Auth, AuthError};
use crate::ssr::ratelimit::retry_after_secs;

#[derive(Debug, Default, Deserialize)]
pub struct NextParam {
    #[serde(default)]
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    next: Option<String>,
}

/// `GET /login`: the form (or straight on when the session is still valid).
pub async fn page(
    State(auth): State<Arc<Auth>>,
    Query(q): Query<NextParam>,
    req: Request,
) -> Response {
    let next = safe_next(q.next.as_deref());
    if auth.authenticate(req.headers()).await.is_ok() {
        return Redirect::to(next).into_response();
    }
    Html(form(next, None)).into_response()
}

/// `POST /login`: checks the password, sets the session cookie, goes to `next`.
pub async fn submit(State(auth): State<Arc<Auth>>, req: Request) -> Response {
    let addr = client_addr(req.extensions());
    if let Err(wait) = auth.login_limiter.check(&addr) {
        let secs = retry_after_secs(wait);
        let mut resp = (
            StatusCode::TOO_MANY_REQUESTS,
            Html(form(
                "/",
                Some(&format!("Too many attempts: try again in {secs} s.")),
            )),
        )
            .into_response();
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            secs.to_string()
                .parse()
                .unwrap_or(header::HeaderValue::from_static("60")),
        );
        return resp;
    }
    let Form(f) = match Form::<LoginForm>::from_request(req, &()).await {
        Ok(f) => f,
        Err(_) => {
            return (
                StatusCode::BAD_REQUEST,
                Html(form("/", Some("Enter a username and a password."))),
            )
                .into_response()
        }
    };
    let next = safe_next(f.next.as_deref());
    match auth.login(&f.username, &f.password).await {
        Ok(user) => {
            let token = auth.issue(&user, TokenKind::Session);
            tracing::info!(username = %user.username, role = %user.role, "signed in");
            let mut resp = Redirect::to(next).into_response();
            resp.headers_mut()
                .insert(header::SET_COOKIE, auth.session_cookie(Some(&token)));
            resp
        }
        Err(e @ AuthError::Unavailable(_)) => {
            tracing::warn!(error = %e, "login: warehouse unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Html(form(
                    next,
                    Some("The warehouse cannot be reached; try again shortly."),
                )),
            )
                .into_response()
        }
        Err(_) => (
            StatusCode::UNAUTHORIZED,
            Html(form(next, Some("Wrong username or password."))),
        )
            .into_response(),
    }
}

/// `POST /logout`: clears the cookie.
pub async fn logout(State(auth): State<Arc<Auth>>) -> Response {
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, auth.session_cookie(None));
    resp
}

/// Only a path on this site (no `//host`, no scheme): anything else goes to `/`.
pub fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n,
        _ => "/",
    }
}

fn form(next: &str, error: Option<&str>) -> String {
    let error = error
        .map(|e| {
            format!(
                r#"<p class="notice error" role="alert" data-testid="login-error">{}</p>"#,
                escape(e)
            )
        })
        .unwrap_or_default();
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"/><meta name="viewport" content="width=device-width, initial-scale=1"/>
<title>Sign in · Sales analytics</title><link rel="icon" type="image/svg+xml" href="/favicon.svg"/><link rel="stylesheet" href="/style.css"/></head>
<body><main class="page login">
<h1>Sales analytics</h1>
<form method="post" action="/login" class="login-form">
{error}
<label>Username <input name="username" autocomplete="username" required autofocus/></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required/></label>
<input type="hidden" name="next" value="{next}"/>
<button type="submit">Sign in</button>
</form>
</main></body></html>"#,
        next = escape(next),
    )
}

/// HTML text and attribute escaping.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encoding of a path and query for a `next=` parameter.
pub use crate::format::url_encode;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_the_site() {
        assert_eq!(
            safe_next(Some("/sales?from=2024-01-01")),
            "/sales?from=2024-01-01"
        );
        for bad in ["//evil.example", "https://evil.example", "/\\evil", "evil"] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad}");
        }
        assert_eq!(safe_next(None), "/");
        assert_eq!(url_encode("/sales?a=1&b=é"), "/sales%3Fa%3D1%26b%3D%C3%A9");
        assert!(form("/\"><script>", None).contains("/&quot;&gt;&lt;script&gt;"));
    }
}
