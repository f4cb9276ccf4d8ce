//! The HTTP API source end to end, against a local API server that misbehaves on purpose
//! (429 with Retry-After in seconds and as a date, 500s, answers slower than the timeout,
//! one invalid-JSON page, a page size that changes mid-poll, late records, content updates
//! and deletes), through the real `ingest` and `transform` binaries, the broker and
//! PostgreSQL. The warehouse must end equal to what the server holds; the invalid page must
//! be in the dead letters with its URL, status and body. A second test kills the agent with
//! SIGKILL five times mid-poll: nothing lost, nothing duplicated in bronze.

use anyhow::Result;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use e2e_tests::{count, read_topic, wait_for, Scratch};
use rand::{rngs::StdRng, Rng, SeedableRng};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the server does to the n-th request of an endpoint (instead of, or before,
/// answering normally).
#[derive(Clone, Debug)]
enum Fault {
    TooMany(&'static str),
    TooManyDate,
    Status500,
    Slow(u64),
    InvalidJson,
    PageSize(usize),
}

#[derive(Clone, Debug, PartialEq)]
struct Item {
    name: String,
    price: String,
    category: String,
}

#[derive(Clone, Debug, PartialEq)]
struct Rate {
    rate: String,
    updated: i64,
}

#[derive(Default)]
struct Srv {
    items: BTreeMap<String, Item>,
    /// (currency, date) -> rate.
    rates: BTreeMap<(String, String), Rate>,
    clock: i64,
    item_page_size: Option<usize>,
    requests: HashMap<&'static str, u64>,
    faults: HashMap<(&'static str, u64), Fault>,
    /// (when, endpoint, status).
    log: Vec<(Instant, &'static str, u16)>,
    invalid: Option<(String, Vec<u8>)>,
    delay_ms: u64,
}

type Shared = Arc<Mutex<Srv>>;

const INVALID_BODY: &[u8] = b"{\"items\": [{\"id\": \"I0001\", \"name\": oops";

fn fnv(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for x in b {
        h = (h ^ *x as u64).wrapping_mul(0x100000001b3);
    }
    h
}

/// Applies the fault planned for this request, if any; `Some(response)` ends the request.
async fn misbehave(srv: &Shared, ep: &'static str, uri: &str) -> Option<Response> {
    let (fault, delay) = {
        let mut s = srv.lock().unwrap();
        let n = {
            let c = s.requests.entry(ep).or_default();
            *c += 1;
            *c
        };
        (s.faults.remove(&(ep, n)), s.delay_ms)
    };
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let log = |status: u16| srv.lock().unwrap().log.push((Instant::now(), ep, status));
    match fault? {
        Fault::TooMany(secs) => {
            log(429);
            Some(
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, secs)],
                    "slow down",
                )
                    .into_response(),
            )
        }
        Fault::TooManyDate => {
            log(503);
            let when = (chrono::Utc::now() + chrono::Duration::seconds(2))
                .format("%a, %d %b %Y %H:%M:%S GMT")
                .to_string();
            Some(
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::RETRY_AFTER, when)],
                    "maintenance",
                )
                    .into_response(),
            )
        }
        Fault::Status500 => {
            log(500);
            Some((StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response())
        }
        Fault::Slow(ms) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            None
        }
        Fault::InvalidJson => {
            log(200);
            srv.lock().unwrap().invalid = Some((uri.to_string(), INVALID_BODY.to_vec()));
            Some(
                (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/json")],
                    INVALID_BODY,
                )
                    .into_response(),
            )
        }
        Fault::PageSize(n) => {
            srv.lock().unwrap().item_page_size = Some(n);
            None
        }
    }
}

async fn items(
    State(srv): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    if let Some(r) = misbehave(&srv, "items", &uri.to_string()).await {
        return r;
    }
    let mut s = srv.lock().unwrap();
    let page: usize = q
        .get("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .max(1);
    let per_page: usize = q.get("per_page").and_then(|p| p.parse().ok()).unwrap_or(10);
    let size = s.item_page_size.unwrap_or(per_page).max(1);
    let list: Vec<serde_json::Value> = s
        .items
        .iter()
        .skip((page - 1) * size)
        .take(size)
        .map(|(id, it)| serde_json::json!({"id": id, "name": it.name, "price": it.price, "category": it.category}))
        .collect();
    let body = serde_json::to_vec(&serde_json::json!({"items": list, "page": page})).unwrap();
    let etag = format!("\"{:016x}\"", fnv(&body));
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        == Some(etag.as_str())
    {
        s.log.push((Instant::now(), "items", 304));
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    s.log.push((Instant::now(), "items", 200));
    (
        StatusCode::OK,
        [
            (header::ETAG, etag),
            (header::CONTENT_TYPE, "application/json".into()),
        ],
        body,
    )
        .into_response()
}

/// Rates with updated >= since, ordered by (updated, currency, date), keyset cursor.
async fn rates(
    State(srv): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    uri: axum::http::Uri,
) -> Response {
    if let Some(r) = misbehave(&srv, "rates", &uri.to_string()).await {
        return r;
    }
    let mut s = srv.lock().unwrap();
    let since: i64 = q
        .get("since")
        .and_then(|p| p.parse().ok())
        .unwrap_or(i64::MIN);
    let limit: usize = q.get("limit").and_then(|p| p.parse().ok()).unwrap_or(20);
    let after: Option<(i64, String, String)> = q.get("cursor").and_then(|c| {
        let mut p = c.splitn(3, '|');
        Some((
            p.next()?.parse().ok()?,
            p.next()?.to_string(),
            p.next()?.to_string(),
        ))
    });
    let mut all: Vec<(i64, String, String, String)> = s
        .rates
        .iter()
        .filter(|(_, r)| r.updated >= since)
        .map(|((c, d), r)| (r.updated, c.clone(), d.clone(), r.rate.clone()))
        .filter(|(u, c, d, _)| match &after {
            Some(a) => (*u, c, d) > (a.0, &a.1, &a.2),
            None => true,
        })
        .collect();
    all.sort();
    let more = all.len() > limit;
    all.truncate(limit);
    let next = if more {
        let l = all.last().unwrap();
        serde_json::json!(format!("{}|{}|{}", l.0, l.1, l.2))
    } else {
        serde_json::Value::Null
    };
    let data: Vec<serde_json::Value> = all
        .iter()
        .map(|(u, c, d, r)| serde_json::json!({"date": d, "currency": c, "rate": r, "updated": u}))
        .collect();
    s.log.push((Instant::now(), "rates", 200));
    axum::Json(serde_json::json!({"data": data, "meta": {"next": next}})).into_response()
}

async fn serve(srv: Shared) -> Result<String> {
    let app = Router::new()
        .route("/v1/items", get(items))
        .route("/v1/rates", get(rates))
        .with_state(srv);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}"))
}

fn config(base: &str, items_extra: &str, with_rates: bool) -> String {
    let rates = if with_rates {
        format!(
            r#"
[[ingest.http.endpoints]]
name = "rates"
url = "{base}/v1/rates"
query = {{ limit = "20" }}
records = "data"
key = ["currency", "date"]
pagination = {{ type = "cursor", param = "cursor", next_path = "meta.next" }}
incremental = {{ field = "updated", param = "since", lookback = "50" }}
poll_interval_ms = 400
rate_limit_per_s = 0
"#
        )
    } else {
        String::new()
    };
    format!(
        r#"
mode = "development"

[kafka]
brokers = "127.0.0.1:9092"
topic_prefix = "overridden"

[warehouse]
url = "postgres://postgres@127.0.0.1:5432/overridden"

[ingest]
metrics_addr = "127.0.0.1:1"
checkpoint_dir = "overridden"

[ingest.csv]
watch_dir = "overridden"
entities = []

[ingest.http]
timeout_ms = 1000
connect_timeout_ms = 1000
max_attempts = 10
backoff_initial_ms = 100
backoff_max_ms = 1000

[[ingest.http.endpoints]]
name = "items"
url = "{base}/v1/items"
records = "items"
key = ["id"]
pagination = {{ type = "page", param = "page", size_param = "per_page", size = 25 }}
deletes = true
poll_interval_ms = 400
rate_limit_per_s = 0
{items_extra}
{rates}

[transform]
metrics_addr = "127.0.0.1:1"
group_id = "overridden"

[transform.silver.catalogue]
source = "api"
entity = "items"
[transform.silver.catalogue.columns]
product_id = "id"
product_name = "name"
list_price = "price"

[transform.silver.exchange_rates]
source = "api"
entity = "rates"
[transform.silver.exchange_rates.columns]
rate_date = "date"
"#
    )
}

fn write_config(name: &str, text: &str) -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("etl-http-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let p = dir.join("etl.toml");
    std::fs::write(&p, text)?;
    Ok(p)
}

fn price(rng: &mut StdRng) -> String {
    let c: i64 = rng.random_range(100..100_000);
    format!("{}.{:02}", c / 100, c % 100)
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap().normalize()
}

async fn silver_items(db: &tokio_postgres::Client) -> Result<BTreeMap<String, (String, String)>> {
    Ok(db
        .query(
            "SELECT product_id, product_name, list_price::text FROM silver.catalogue",
            &[],
        )
        .await
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    (
                        r.get::<_, String>(0),
                        (
                            r.get::<_, String>(1),
                            dec(&r.get::<_, String>(2)).to_string(),
                        ),
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

fn server_items(srv: &Shared) -> BTreeMap<String, (String, String)> {
    srv.lock()
        .unwrap()
        .items
        .iter()
        .map(|(k, v)| (k.clone(), (v.name.clone(), dec(&v.price).to_string())))
        .collect()
}

async fn silver_rates(db: &tokio_postgres::Client) -> Result<BTreeMap<(String, String), String>> {
    Ok(db
        .query(
            "SELECT currency, rate_date::text, rate::text FROM silver.exchange_rates",
            &[],
        )
        .await
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    (
                        (r.get::<_, String>(0), r.get::<_, String>(1)),
                        dec(&r.get::<_, String>(2)).to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

fn server_rates(srv: &Shared) -> BTreeMap<(String, String), String> {
    srv.lock()
        .unwrap()
        .rates
        .iter()
        .map(|(k, v)| (k.clone(), dec(&v.rate).to_string()))
        .collect()
}

/// The latest bronze event of each key of a topic: key -> (op, after image).
async fn bronze_latest(
    db: &tokio_postgres::Client,
    topic: &str,
) -> Result<BTreeMap<String, (String, Option<serde_json::Value>)>> {
    let rows = db
        .query(
            "SELECT DISTINCT ON (event_key) event_key::text, op::text, payload->'after'
             FROM bronze.events WHERE topic = $1 ORDER BY event_key, kafka_offset DESC",
            &[&topic],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get::<_, String>(0),
                (
                    r.get::<_, String>(1),
                    r.get::<_, Option<serde_json::Value>>(2),
                ),
            )
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misbehaving_api_ends_equal_in_the_warehouse() -> Result<()> {
    let mut rng = StdRng::seed_from_u64(4);
    let srv: Shared = Arc::new(Mutex::new(Srv::default()));
    {
        let mut s = srv.lock().unwrap();
        for i in 0..120 {
            s.items.insert(
                format!("I{i:04}"),
                Item {
                    name: format!("Item {i}"),
                    price: price(&mut rng),
                    category: ["Tools", "Toys", "Books"][i % 3].into(),
                },
            );
        }
        for d in 1..=30 {
            for c in ["CHF", "GBP", "USD", "SEK", "JPY"] {
                s.clock += 1;
                let r = Rate {
                    rate: format!(
                        "{}.{:04}",
                        rng.random_range(0..200),
                        rng.random_range(0..10_000)
                    ),
                    updated: s.clock,
                };
                s.rates.insert((c.into(), format!("2024-01-{d:02}")), r);
            }
        }
        // Faults by request number: the agent must ride them all out.
        for (n, f) in [
            (2, Fault::TooMany("1")),
            (4, Fault::Status500),
            (6, Fault::Slow(2500)),
            (8, Fault::InvalidJson),
            (13, Fault::PageSize(17)),
            (14, Fault::TooManyDate),
            (16, Fault::Status500),
        ] {
            s.faults.insert(("items", n), f);
        }
        for (n, f) in [
            (2, Fault::TooMany("1")),
            (3, Fault::Status500),
            (5, Fault::Slow(2500)),
            (9, Fault::Status500),
        ] {
            s.faults.insert(("rates", n), f);
        }
    }
    let base = serve(srv.clone()).await?;
    let cfg = write_config("misbehave", &config(&base, "", true))?;
    let s = Scratch::new("httpapi", Some(cfg)).await?;
    let mut ingest = s.start("ingest")?;
    let mut transform = s.start("transform")?;
    let db = s.db().await?;
    let logs = |e: anyhow::Error| {
        anyhow::anyhow!(
            "{e}\ningest log:\n{}\ntransform log:\n{}",
            s.log("ingest"),
            s.log("transform")
        )
    };

    // The initial load, through every fault.
    wait_for(
        Duration::from_secs(120),
        "the initial load in silver",
        || async {
            let items = silver_items(&db).await?;
            let rates = silver_rates(&db).await?;
            Ok((items == server_items(&srv) && rates == server_rates(&srv)).then_some(()))
        },
    )
    .await
    .map_err(logs)?;

    // Changes: prices, new and deleted items; revised rates, and late rates whose cursor
    // value is below what the agent has already seen (within its lookback).
    {
        let mut s = srv.lock().unwrap();
        let ids: Vec<String> = s.items.keys().cloned().collect();
        for id in ids.iter().step_by(6) {
            let p = price(&mut rng);
            s.items.get_mut(id).unwrap().price = p;
        }
        for id in ids.iter().skip(3).step_by(12) {
            s.items.remove(id);
        }
        for i in 200..215 {
            s.items.insert(
                format!("I{i:04}"),
                Item {
                    name: format!("New item {i}"),
                    price: price(&mut rng),
                    category: "New".into(),
                },
            );
        }
        s.items.get_mut("I0001").unwrap().name = "Renamed, \"quoted\" item".into();
        let keys: Vec<(String, String)> = s.rates.keys().cloned().collect();
        for k in keys.iter().step_by(17) {
            s.clock += 1;
            let u = s.clock;
            let r = s.rates.get_mut(k).unwrap();
            r.rate = format!("{}.5", &r.rate[..r.rate.find('.').unwrap()]);
            r.updated = u;
        }
        let late = s.clock - 10;
        for c in ["CHF", "GBP", "USD"] {
            s.rates.insert(
                (c.into(), "2023-12-31".into()),
                Rate {
                    rate: "0.9876".into(),
                    updated: late,
                },
            );
        }
    }
    wait_for(
        Duration::from_secs(120),
        "the changes in silver",
        || async {
            let items = silver_items(&db).await?;
            let rates = silver_rates(&db).await?;
            Ok((items == server_items(&srv) && rates == server_rates(&srv)).then_some(()))
        },
    )
    .await
    .map_err(logs)?;
    // Anything still in flight lands, so that an extra event would show.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        silver_items(&db).await?,
        server_items(&srv),
        "silver.catalogue = the server's items"
    );
    assert_eq!(
        silver_rates(&db).await?,
        server_rates(&srv),
        "silver.exchange_rates = the server's rates"
    );

    // Bronze: the latest event of every key is the server's record, deleted keys end in d.
    let items_topic = format!("{}.api.items", s.prefix);
    let latest = bronze_latest(&db, &items_topic).await?;
    let server = srv.lock().unwrap().items.clone();
    let mut deleted = 0;
    for (k, (op, after)) in &latest {
        let id: serde_json::Value = serde_json::from_str(k)?;
        let id = id["id"].as_str().unwrap().to_string();
        match server.get(&id) {
            Some(it) => {
                let a = after.as_ref().expect("an after image");
                assert_ne!(op, "d", "{id} exists");
                assert_eq!(
                    (a["name"].as_str().unwrap(), a["price"].as_str().unwrap()),
                    (it.name.as_str(), it.price.as_str()),
                    "{id}"
                );
            }
            None => {
                assert_eq!(op, "d", "{id} was deleted on the server");
                deleted += 1;
            }
        }
    }
    assert_eq!(latest.len() - deleted, server.len());
    assert_eq!(deleted, 10, "ten items were deleted");
    // Exactly one event per content version: 120 + 15 c; 20 u (prices) + 1 u (I0001
    // renamed; its price did not change); 10 d.
    let ops: BTreeMap<String, i64> = db
        .query(
            "SELECT op::text, count(*) FROM bronze.events WHERE topic = $1 GROUP BY op",
            &[&items_topic],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(ops.get("c"), Some(&135), "{ops:?}");
    assert_eq!(ops.get("u"), Some(&21), "{ops:?}");
    assert_eq!(ops.get("d"), Some(&10), "{ops:?}");
    let rates_topic = format!("{}.api.rates", s.prefix);
    let rates_events = count(
        &db,
        &format!("SELECT count(*) FROM bronze.events WHERE topic = '{rates_topic}'"),
    )
    .await?;
    assert_eq!(
        rates_events,
        150 + 9 + 3,
        "each rate version once (150 first, 9 revised, 3 late)"
    );

    // The invalid page: in the dead letters with its URL, status and raw body.
    let (bad_url, bad_body) = srv
        .lock()
        .unwrap()
        .invalid
        .clone()
        .expect("the invalid page was served");
    let dl = db
        .query(
            "SELECT origin->>'url', origin->>'status', raw, reason, connector FROM bronze.dead_letters",
            &[],
        )
        .await?;
    assert_eq!(dl.len(), 1, "one dead letter");
    let (url, status, raw, reason, connector): (String, String, Vec<u8>, String, String) = (
        dl[0].get(0),
        dl[0].get(1),
        dl[0].get(2),
        dl[0].get(3),
        dl[0].get(4),
    );
    assert!(url.ends_with(&bad_url), "{url} vs {bad_url}");
    assert_eq!(status, "200");
    assert_eq!(raw, bad_body);
    assert_eq!(connector, "api");
    assert!(reason.contains("not valid JSON"), "{reason}");

    // Politeness: after the 429 with Retry-After: 1 (and the 503 with a date 2 s ahead) the
    // next request came no sooner; conditional requests were answered with 304.
    let log = srv.lock().unwrap().log.clone();
    for (status, min_ms) in [(429u16, 900u128), (503, 900)] {
        let i = log
            .iter()
            .position(|(_, ep, st)| *ep == "items" && *st == status)
            .expect("fault served");
        let next = log[i + 1..]
            .iter()
            .find(|(_, ep, _)| *ep == "items")
            .expect("a retry");
        let gap = next.0.duration_since(log[i].0).as_millis();
        assert!(gap >= min_ms, "retry {gap} ms after a {status}");
    }
    assert!(
        log.iter().any(|(_, ep, st)| *ep == "items" && *st == 304),
        "conditional requests answered 304"
    );
    let quarantined = count(&db, "SELECT count(*) FROM silver.quarantine").await?;
    assert_eq!(quarantined, 0);
    // Poll 1 takes requests 1-10 (faults included), so the page size changes on page 3 of
    // poll 2: that poll must have been noticed as inconsistent.
    assert!(
        s.log("ingest").contains("the page size changed"),
        "page-size change detected"
    );

    ingest.stop()?;
    transform.stop()?;
    s.cleanup().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_9_mid_poll_loses_and_duplicates_nothing() -> Result<()> {
    const ITEMS: usize = 20_000;
    let seed: u64 = std::env::var("ETL_TEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    println!("seed {seed} (set ETL_TEST_SEED to replay)");
    let mut rng = StdRng::seed_from_u64(seed);
    let srv: Shared = Arc::new(Mutex::new(Srv::default()));
    let mut version = 0u64;
    {
        let mut s = srv.lock().unwrap();
        s.delay_ms = 15;
        for i in 0..ITEMS {
            s.items.insert(
                format!("K{i:06}"),
                Item {
                    name: format!("Item {i}"),
                    price: format!("{i}.00"),
                    category: "Bulk".into(),
                },
            );
        }
    }
    let base = serve(srv.clone()).await?;
    // Every poll reads every page (no conditional requests): polls take a few seconds.
    let extra = "conditional = false\nmax_pages = 1000\n";
    let cfg = write_config(
        "kill",
        &config(&base, extra, false).replace("size = 25", "size = 250"),
    )?;
    let s = Scratch::new("httpkill", Some(cfg)).await?;
    let mut ingest = s.start("ingest")?;
    let mut transform = s.start("transform")?;
    let mut next_id = ITEMS;
    for round in 1..=5 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..2500))).await;
        let busy = {
            let s = srv.lock().unwrap();
            s.log
                .last()
                .is_some_and(|(t, _, _)| t.elapsed() < Duration::from_millis(200))
        };
        ingest.kill9();
        println!(
            "round {round}: killed the agent ({})",
            if busy { "mid-poll" } else { "between polls" }
        );
        // Changes while it is down: unique new prices, deletes, new items.
        {
            let mut s = srv.lock().unwrap();
            let ids: Vec<String> = s.items.keys().cloned().collect();
            for _ in 0..200 {
                version += 1;
                let id = &ids[rng.random_range(0..ids.len())];
                if let Some(it) = s.items.get_mut(id) {
                    it.price = format!("{}.{:02}", 100_000 + version, round);
                }
            }
            for _ in 0..50 {
                let id = &ids[rng.random_range(0..ids.len())];
                s.items.remove(id);
            }
            for _ in 0..50 {
                s.items.insert(
                    format!("K{next_id:06}"),
                    Item {
                        name: format!("Item {next_id}"),
                        price: "1.00".into(),
                        category: "Bulk".into(),
                    },
                );
                next_id += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..400))).await;
        ingest = s.start("ingest")?;
    }
    let db = s.db().await?;
    let waited = wait_for(
        Duration::from_secs(120),
        "silver.catalogue equal to the server",
        || async { Ok((silver_items(&db).await? == server_items(&srv)).then_some(())) },
    )
    .await;
    if let Err(e) = waited {
        let (silver, server) = (silver_items(&db).await?, server_items(&srv));
        let diff: Vec<String> = server
            .iter()
            .filter(|(k, v)| silver.get(*k) != Some(v))
            .map(|(k, v)| format!("server {k} {v:?} silver {:?}", silver.get(k)))
            .chain(
                silver
                    .keys()
                    .filter(|k| !server.contains_key(*k))
                    .map(|k| format!("only in silver: {k}")),
            )
            .take(20)
            .collect();
        anyhow::bail!(
            "{e}; differences (first 20): {diff:#?}\ningest log:\n{}\ntransform log:\n{}",
            s.log("ingest"),
            s.log("transform")
        );
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(silver_items(&db).await?, server_items(&srv));

    let topic = format!("{}.api.items", s.prefix);
    // Every content version of a key is unique by construction (prices carry a version
    // number, deleted keys never come back), so two bronze events with the same key, op and
    // image would be a duplicate.
    let row = db
        .query_one(
            "SELECT count(*), count(DISTINCT (event_key::text, op, coalesce((payload->'after')::text, '')))
             FROM bronze.events WHERE topic = $1",
            &[&topic],
        )
        .await?;
    let (events, distinct): (i64, i64) = (row.get(0), row.get(1));
    let published = read_topic(&topic, events as usize)?.len();
    println!(
        "bronze {events} events; kafka {published} records (re-published after kills: {})",
        published as i64 - events
    );
    assert_eq!(events, distinct, "no event duplicated in bronze");
    let latest = bronze_latest(&db, &topic).await?;
    let server = server_items(&srv);
    let live = latest.values().filter(|(op, _)| op != "d").count();
    assert_eq!(
        live,
        server.len(),
        "bronze's latest events are the server's items"
    );
    let dead = count(&db, "SELECT count(*) FROM bronze.dead_letters").await?;
    assert_eq!(dead, 0);
    assert!(s.log("ingest").contains("poll complete"));

    ingest.stop()?;
    transform.stop()?;
    s.cleanup().await;
    Ok(())
}
