//! `bench-api`: a JSON API serving N synthetic records in pages (`/items?page=P&per_page=M`,
//! an empty page past the end), rendered once at start so that serving costs the same for
//! every client. `/stats` tells when the first `/items` request arrived (microseconds since
//! the epoch), which starts the clock of the agent's run in bench/http.sh.

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use bench::now_micros;
use clap::Parser;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Parser)]
#[command(about = "Synthetic paged JSON API for bench/http.sh")]
struct Cli {
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: String,
    #[arg(long, default_value_t = 100_000)]
    records: usize,
    #[arg(long, default_value_t = 1000)]
    per_page: usize,
}

struct App {
    per_page: usize,
    pages: Vec<Vec<u8>>,
    empty: Vec<u8>,
    first_us: AtomicI64,
    requests: AtomicU64,
    bytes: AtomicU64,
}

fn record(i: usize) -> serde_json::Value {
    serde_json::json!({
        "id": format!("R{i:08}"),
        "name": format!("Record number {i}"),
        "category": format!("Category {}", i % 17),
        "price": format!("{}.{:02}", 10 + i % 990, i % 100),
        "stock": i % 250,
        "updated_at": format!("2026-01-{:02}T{:02}:{:02}:00Z", 1 + i % 28, i % 24, i % 60),
        "tags": ["bench", if i.is_multiple_of(2) { "even" } else { "odd" }],
    })
}

async fn items(
    State(app): State<Arc<App>>,
    Query(q): Query<HashMap<String, String>>,
) -> impl IntoResponse {
    let _ = app
        .first_us
        .compare_exchange(0, now_micros(), Ordering::SeqCst, Ordering::SeqCst);
    app.requests.fetch_add(1, Ordering::Relaxed);
    let page: usize = q
        .get("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .max(1);
    let per_page: usize = q
        .get("per_page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(app.per_page);
    let body = if per_page != app.per_page {
        b"{\"error\":\"per_page must be the server's\"}".to_vec()
    } else {
        app.pages.get(page - 1).unwrap_or(&app.empty).clone()
    };
    app.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
    ([(header::CONTENT_TYPE, "application/json")], body)
}

async fn stats(State(app): State<Arc<App>>) -> impl IntoResponse {
    axum::Json(serde_json::json!({
        "first_request_us": app.first_us.load(Ordering::SeqCst),
        "requests": app.requests.load(Ordering::Relaxed),
        "bytes": app.bytes.load(Ordering::Relaxed),
        "pages": app.pages.len(),
    }))
}

async fn reset(State(app): State<Arc<App>>) -> impl IntoResponse {
    app.first_us.store(0, Ordering::SeqCst);
    app.requests.store(0, Ordering::Relaxed);
    app.bytes.store(0, Ordering::Relaxed);
    "ok"
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let per_page = cli.per_page.max(1);
    let pages: Vec<Vec<u8>> = (0..cli.records)
        .collect::<Vec<_>>()
        .chunks(per_page)
        .enumerate()
        .map(|(p, ids)| {
            let items: Vec<serde_json::Value> = ids.iter().map(|i| record(*i)).collect();
            serde_json::to_vec(&serde_json::json!({"items": items, "page": p + 1})).expect("json")
        })
        .collect();
    let empty = serde_json::to_vec(&serde_json::json!({"items": [], "page": pages.len() + 1}))?;
    let total: usize = pages.iter().map(Vec::len).sum();
    let app = Arc::new(App {
        per_page,
        pages,
        empty,
        first_us: AtomicI64::new(0),
        requests: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
    });
    let router = Router::new()
        .route("/items", get(items))
        .route("/stats", get(stats))
        .route("/reset", get(reset))
        .route("/health", get(|| async { "ok" }))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(&cli.addr).await?;
    // The address on stdout (the script reads it), details on stderr.
    println!("{}", listener.local_addr()?);
    eprintln!(
        "bench-api: {} records, {} per page, {} bytes of pages",
        cli.records, per_page, total
    );
    axum::serve(listener, router).await?;
    Ok(())
}
