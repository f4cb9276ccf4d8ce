//! `demo-api`: a stand-in "public API" for the local stack, polled by the HTTP source.
//!
//! * `GET /v1/rates?since=YYYY-MM-DD&cursor=..&limit=N`: daily exchange rates, EUR base,
//!   for the currencies of the demo's countries (CHF, GBP) and USD, on business days from
//!   800 days ago to today (UTC). Sorted by date and currency; `next_cursor` in the body
//!   pages through them (keyset: the last date and currency returned); `since` asks for the
//!   dates from that day on (the agent's incremental cursor with a lookback).
//! * `GET /v1/products?page=N&per_page=M`: a product catalogue (the demo's products) whose
//!   list prices change every few minutes; page-number pagination, an `ETag` per page and
//!   `304 Not Modified` for a matching `If-None-Match`.
//!
//! Values are deterministic functions of the date (rates) and of the time (prices), so
//! that a restart serves the same data.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{Datelike, NaiveDate, Utc, Weekday};
use clap::Parser;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tracing::info;

#[derive(Parser)]
#[command(
    version,
    about = "Stand-in public API for the demo: exchange rates and a product catalogue"
)]
struct Cli {
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:9103", env = "ETL_DEMO_API_ADDR")]
    addr: String,
    /// Days of rate history served (up to today).
    #[arg(long, default_value_t = 800)]
    history_days: i64,
    /// Minutes between two catalogue price revisions.
    #[arg(long, default_value_t = 5)]
    price_period_min: i64,
}

/// Currencies per EUR around which the demo rates move.
const CURRENCIES: &[(&str, f64)] = &[("CHF", 0.95), ("GBP", 0.85), ("USD", 1.09)];

/// The demo's products (as in demo-data): id, name, category, base price in cents.
const PRODUCTS: &[(&str, &str, &str, i64)] = &[
    ("P001", "Laptop Pro 14", "Electronics", 119_900),
    ("P002", "Wireless Mouse", "Accessories", 2_490),
    ("P003", "Mechanical Keyboard", "Accessories", 8_900),
    ("P004", "27\" 4K Monitor", "Electronics", 37_900),
    ("P005", "Noise-Cancelling Headphones", "Audio", 24_900),
    ("P006", "Smartphone X12", "Electronics", 79_900),
    ("P007", "USB-C Dock, 12-in-1", "Accessories", 13_900),
    ("P008", "Ergonomic Office Chair", "Furniture", 32_900),
    ("P009", "Standing Desk (Electric)", "Furniture", 54_900),
    ("P010", "Tablet 11", "Electronics", 44_900),
];

struct App {
    history_days: i64,
    price_period_min: i64,
}

/// The rate of `currency` per EUR on `date`: a smooth deterministic walk, 4 decimals.
fn rate(currency_idx: usize, base: f64, date: NaiveDate) -> f64 {
    let d = date.num_days_from_ce() as f64;
    let phase = currency_idx as f64 * 1.7;
    let r = base * (1.0 + 0.03 * (d / 37.0 + phase).sin() + 0.01 * (d / 5.3 + 2.0 * phase).sin());
    (r * 10_000.0).round() / 10_000.0
}

fn business_day(d: NaiveDate) -> bool {
    !matches!(d.weekday(), Weekday::Sat | Weekday::Sun)
}

#[derive(Deserialize)]
struct RatesQuery {
    since: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

fn bad_request(msg: &str) -> Response {
    (StatusCode::BAD_REQUEST, axum::Json(json!({"error": msg}))).into_response()
}

async fn rates(State(app): State<Arc<App>>, Query(q): Query<RatesQuery>) -> Response {
    let today = Utc::now().date_naive();
    let first = today - chrono::Duration::days(app.history_days);
    let mut from = first;
    if let Some(s) = &q.since {
        match NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            Ok(d) => from = from.max(d),
            Err(_) => return bad_request("since must be YYYY-MM-DD"),
        }
    }
    // Keyset cursor: the last (date, currency) returned.
    let after: Option<(NaiveDate, String)> = match &q.cursor {
        None => None,
        Some(c) => match unhex(c).and_then(|t| {
            let (d, cur) = t.split_once('|')?;
            Some((
                NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()?,
                cur.to_string(),
            ))
        }) {
            Some(a) => Some(a),
            None => return bad_request("invalid cursor"),
        },
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let mut data = Vec::with_capacity(limit);
    let mut day = match &after {
        Some((d, _)) => (*d).max(from),
        None => from,
    };
    let mut last: Option<(NaiveDate, &str)> = None;
    'days: while day <= today {
        if business_day(day) {
            for (i, (cur, base)) in CURRENCIES.iter().enumerate() {
                if let Some((ad, ac)) = &after {
                    if day == *ad && *cur <= ac.as_str() {
                        continue;
                    }
                }
                if data.len() == limit {
                    break 'days;
                }
                data.push(json!({
                    "date": day.format("%Y-%m-%d").to_string(),
                    "currency": cur,
                    "rate": rate(i, *base, day),
                }));
                last = Some((day, cur));
            }
        }
        day += chrono::Duration::days(1);
    }
    let more = data.len() == limit && day <= today;
    let next_cursor = match (more, last) {
        (true, Some((d, c))) => json!(hex(&format!("{}|{c}", d.format("%Y-%m-%d")))),
        _ => serde_json::Value::Null,
    };
    axum::Json(json!({"base": "EUR", "data": data, "next_cursor": next_cursor})).into_response()
}

#[derive(Deserialize)]
struct ProductsQuery {
    page: Option<usize>,
    per_page: Option<usize>,
}

/// The list price of product `i` in price revision `rev`: within ±8% of its base price.
fn price_cents(i: usize, base: i64, rev: i64) -> i64 {
    let mut h: u64 = 0xcbf29ce484222325 ^ (i as u64) << 32 ^ rev as u64;
    h = h
        .wrapping_mul(0x100000001b3)
        .rotate_left(29)
        .wrapping_mul(0x9e3779b97f4a7c15);
    // A third of the products change at each revision.
    let changed = (h >> 7).is_multiple_of(3);
    let rev = if changed {
        rev
    } else {
        rev - 1 - (h >> 11) as i64 % 2
    };
    let wiggle =
        ((rev.wrapping_mul(2654435761) ^ (i as i64 * 97)).rem_euclid(161) - 80) as f64 / 1000.0;
    ((base as f64) * (1.0 + wiggle)).round() as i64
}

async fn products(
    State(app): State<Arc<App>>,
    Query(q): Query<ProductsQuery>,
    headers: HeaderMap,
) -> Response {
    let per_page = q.per_page.unwrap_or(4).clamp(1, 100);
    let page = q.page.unwrap_or(1).max(1);
    let rev = Utc::now().timestamp() / 60 / app.price_period_min.max(1);
    let total_pages = PRODUCTS.len().div_ceil(per_page);
    let items: Vec<serde_json::Value> = PRODUCTS
        .iter()
        .enumerate()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|(i, (id, name, cat, base))| {
            let c = price_cents(i, *base, rev);
            json!({
                "product_id": id, "name": name, "category": cat,
                "price": format!("{}.{:02}", c / 100, c % 100), "currency": "EUR",
            })
        })
        .collect();
    let body = serde_json::to_vec(
        &json!({"items": items, "page": page, "per_page": per_page, "total_pages": total_pages}),
    )
    .expect("json");
    let mut h: u64 = 0xcbf29ce484222325;
    for b in &body {
        h = (h ^ *b as u64).wrapping_mul(0x100000001b3);
    }
    let etag = format!("\"{h:016x}\"");
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let etag_value = HeaderValue::from_str(&etag).expect("etag header");
    if matches {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag_value)]).into_response();
    }
    (
        StatusCode::OK,
        [
            (header::ETAG, etag_value),
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
        ],
        body,
    )
        .into_response()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let app = Arc::new(App {
        history_days: cli.history_days,
        price_period_min: cli.price_period_min,
    });
    let router = Router::new()
        .route("/v1/rates", get(rates))
        .route("/v1/products", get(products))
        .route("/health", get(|| async { "ok" }))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(&cli.addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e} (use --addr)", cli.addr))?;
    info!(addr = %cli.addr, "demo API serving /v1/rates and /v1/products");
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_deterministic_and_near_their_base() {
        let d = NaiveDate::from_ymd_opt(2025, 3, 5).unwrap();
        assert_eq!(rate(0, 0.95, d), rate(0, 0.95, d));
        for (i, (_, base)) in CURRENCIES.iter().enumerate() {
            let r = rate(i, *base, d);
            assert!((r / base - 1.0).abs() < 0.05, "{r}");
        }
    }

    #[test]
    fn prices_change_but_stay_near_their_base() {
        let mut changed = 0;
        for (i, (_, _, _, base)) in PRODUCTS.iter().enumerate() {
            let a = price_cents(i, *base, 100);
            let b = price_cents(i, *base, 101);
            assert!(((a as f64) / (*base as f64) - 1.0).abs() <= 0.081);
            changed += (a != b) as usize;
        }
        assert!(changed > 0);
    }

    #[test]
    fn cursor_round_trip() {
        assert_eq!(unhex(&hex("2025-01-02|USD")).unwrap(), "2025-01-02|USD");
        assert!(unhex("zz").is_none());
    }
}
