//! Server-rendered pages, cached per user, URL and gold version. The first paint of a page
//! costs one render per commit; data refreshes after hydration go through the server
//! functions, not here.
//!
//! Two rules keep the tail latency flat under load:
//! - **One render at a time per page** (single flight): when the gold version moves, the
//!   first request renders and the others for the same page wait for its result instead of
//!   rendering it again each.
//! - **Stale while revalidating**: a page rendered at the current version is fresh for
//!   [`FRESH`] (so that "data as of … ago" stays true); after that, one request re-renders it
//!   while the others keep getting the previous copy, up to [`STALE`]. A page of an older
//!   gold version is never served.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    extract::State,
    http::{header, Method, StatusCode},
    middleware,
    response::{IntoResponse, Response},
};

use super::server::AppState;

/// How long a rendered page is served without a new render.
pub const FRESH: Duration = Duration::from_secs(10);
/// How long a page past [`FRESH`] may still be served while another request re-renders it.
pub const STALE: Duration = Duration::from_secs(120);
const MAX_ENTRIES: usize = 4096;

/// A rendered page: its text and the same gzipped (browsers ask for it; compressed once).
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub html: axum::body::Bytes,
    pub gzip: Option<axum::body::Bytes>,
}

impl Page {
    pub fn new(html: axum::body::Bytes) -> Page {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let gzip = enc
            .write_all(&html)
            .and_then(|()| enc.finish())
            .ok()
            .map(axum::body::Bytes::from);
        Page { html, gzip }
    }
}

struct Entry {
    version: i64,
    at: Instant,
    page: Arc<Page>,
}

/// What the cache holds for a page at a version.
#[derive(Debug, PartialEq)]
pub enum Lookup {
    Fresh(Arc<Page>),
    Stale(Arc<Page>),
    Miss,
}

#[derive(Default)]
pub struct PageCache {
    entries: Mutex<HashMap<String, Entry>>,
    /// One lock per page being rendered; removed when nobody holds it.
    renders: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl PageCache {
    pub fn lookup(&self, key: &str, version: i64, now: Instant) -> Lookup {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.get(key) {
            Some(e) if e.version == version && now.duration_since(e.at) < FRESH => {
                Lookup::Fresh(e.page.clone())
            }
            Some(e) if e.version == version && now.duration_since(e.at) < STALE => {
                Lookup::Stale(e.page.clone())
            }
            _ => Lookup::Miss,
        }
    }

    pub fn put(&self, key: String, version: i64, at: Instant, page: Arc<Page>) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, e| e.version == version && at.duration_since(e.at) < STALE);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key, Entry { version, at, page });
    }

    fn render_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut renders = self.renders.lock().unwrap_or_else(|p| p.into_inner());
        renders.retain(|_, l| Arc::strong_count(l) > 1);
        renders.entry(key.to_string()).or_default().clone()
    }
}

/// Paths that are not pages (answered by their own handlers, never cached here).
const NOT_PAGES: [&str; 9] = [
    "/api",
    "/rpc/",
    "/export/",
    "/login",
    "/logout",
    "/health",
    "/metrics",
    "/pkg/",
    "/swagger-ui",
];

/// The middleware (after the login guard, which puts the user in the request).
pub async fn layer(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    let path = req.uri().path();
    let is_page = req.method() == Method::GET
        && !NOT_PAGES.iter().any(|p| path.starts_with(p))
        && !path.contains('.');
    let user = req.extensions().get::<crate::model::SessionUser>().cloned();
    let (true, Some(user), Some(version)) = (is_page, user, state.cache.version()) else {
        return next.run(req).await;
    };
    let key = format!("{}:{}:{}", user.username, user.role, req.uri());
    let gzip = accepts_gzip(req.headers());
    let pages = &state.pages;
    let _rendering = match pages.lookup(&key, version, Instant::now()) {
        Lookup::Fresh(html) => return html_response(&html, gzip, "fresh"),
        Lookup::Stale(html) => match pages.render_lock(&key).try_lock_owned() {
            Ok(guard) => guard,
            Err(_) => return html_response(&html, gzip, "stale"),
        },
        Lookup::Miss => pages.render_lock(&key).lock_owned().await,
    };
    // Another request may have rendered the page while this one waited.
    if let Lookup::Fresh(html) = pages.lookup(&key, version, Instant::now()) {
        return html_response(&html, gzip, "waited");
    }
    let at = Instant::now();
    let resp = next.run(req).await;
    if resp.status() != StatusCode::OK {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    match axum::body::to_bytes(body, 16 << 20).await {
        Ok(bytes) => {
            let page = Arc::new(Page::new(bytes));
            // Kept only if gold did not move during the render.
            if state.cache.version() == Some(version) {
                pages.put(key, version, at, page.clone());
            }
            metrics::counter!("dashboard_page_cache_total", "outcome" => "rendered").increment(1);
            let mut resp = html_response(&page, gzip, "sent");
            for (name, value) in parts.headers.iter() {
                if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                    resp.headers_mut().insert(name.clone(), value.clone());
                }
            }
            resp
        }
        Err(e) => {
            tracing::warn!(error = %e, uri = %key, "page render failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn accepts_gzip(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|e| {
            let mut parts = e.trim().split(';');
            parts.next().is_some_and(|name| name.trim() == "gzip")
                && parts.all(|p| p.trim() != "q=0")
        })
}

fn html_response(page: &Page, gzip: bool, outcome: &'static str) -> Response {
    metrics::counter!("dashboard_page_cache_total", "outcome" => outcome).increment(1);
    let html_type = (header::CONTENT_TYPE, "text/html; charset=utf-8");
    let vary = (header::VARY, "accept-encoding");
    match (&page.gzip, gzip) {
        (Some(gz), true) => (
            [html_type, vary, (header::CONTENT_ENCODING, "gzip")],
            gz.clone(),
        )
            .into_response(),
        _ => ([html_type, vary], page.html.clone()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_then_stale_then_gone_and_never_across_versions() {
        let c = PageCache::default();
        let t0 = Instant::now();
        assert_eq!(c.lookup("p", 1, t0), Lookup::Miss);
        let one = Arc::new(Page::new("one".into()));
        c.put("p".into(), 1, t0, one.clone());
        assert_eq!(c.lookup("p", 1, t0 + FRESH / 2), Lookup::Fresh(one.clone()));
        assert_eq!(c.lookup("p", 1, t0 + FRESH), Lookup::Stale(one));
        assert_eq!(c.lookup("p", 1, t0 + STALE), Lookup::Miss);
        assert_eq!(
            c.lookup("p", 2, t0),
            Lookup::Miss,
            "an older version is never served"
        );
    }

    #[test]
    fn pages_are_kept_gzipped_and_sent_so_to_who_asks() {
        use std::io::Read;
        let html = "<p>x</p>".repeat(1000);
        let page = Page::new(html.clone().into());
        let gz = page.gzip.clone().unwrap();
        assert!(gz.len() < html.len() / 10);
        let mut back = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut back)
            .unwrap();
        assert_eq!(back, html);
        let mut h = axum::http::HeaderMap::new();
        assert!(!accepts_gzip(&h));
        h.insert(header::ACCEPT_ENCODING, "br, gzip;q=0.8".parse().unwrap());
        assert!(accepts_gzip(&h));
        h.insert(header::ACCEPT_ENCODING, "gzip;q=0, br".parse().unwrap());
        assert!(!accepts_gzip(&h));
        let r = html_response(&page, true, "test");
        assert_eq!(r.headers()[header::CONTENT_ENCODING], "gzip");
        assert_eq!(r.headers()[header::VARY], "accept-encoding");
    }

    #[tokio::test]
    async fn one_render_lock_per_page_and_released_locks_are_forgotten() {
        let c = PageCache::default();
        let a = c.render_lock("p");
        let held = a.clone().try_lock_owned().unwrap();
        let b = c.render_lock("p");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(
            b.clone().try_lock_owned().is_err(),
            "the same page renders once at a time"
        );
        assert!(
            c.render_lock("q").try_lock_owned().is_ok(),
            "another page is not blocked"
        );
        drop((held, a, b));
        c.render_lock("r");
        let renders = c.renders.lock().unwrap();
        assert!(!renders.contains_key("p") && !renders.contains_key("q"));
    }
}
