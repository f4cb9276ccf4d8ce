//! The REST API and the login guard against a real PostgreSQL: a scratch warehouse made by
//! the transform binary (migrate, then rebuild of gold from silver rows inserted here), the
//! dashboard's router served in-process. Fails, naming the URL, without PostgreSQL.
#![cfg(feature = "ssr")]

mod common;

use std::collections::HashSet;

use axum::{
    body::Body,
    http::{header, Request, StatusCode},
    Router,
};
use common::{exec, scratch, transform};
use dashboard::{
    model::Role,
    ssr::{
        auth::{
            token::{Keys, TokenKind},
            users,
        },
        db,
        server::leptos_options,
        AppState, Settings,
    },
};
use figment::{providers::Format, Figment};
use serde_json::Value;
use tower::ServiceExt;

const SECRET: &str = "api-test-secret-0123456789abcdef0123456789";
const PASSWORD: &str = "correct horse battery";

const SEED: &str = "
INSERT INTO silver.customers (customer_id, full_name, country, _bronze_event_id, _source) VALUES
  ('C1', 'Ada', 'France', 1, '{}'), ('C2', 'Alan', 'Germany', 2, '{}'), ('C3', 'Grace', 'Spain', 3, '{}');
INSERT INTO silver.products (product_id, product_name, category, unit_price, _bronze_event_id, _source) VALUES
  ('P1', 'Lamp', 'Home', 10.00, 4, '{}'), ('P2', 'Desk', 'Office', 250.00, 5, '{}');
INSERT INTO silver.sales (sale_id, order_id, sale_date, customer_id, product_id, quantity, unit_price, amount, _bronze_event_id, _source)
SELECT 'S' || lpad(i::text, 3, '0'), 'O' || (i / 2), DATE '2024-01-01' + (i % 40),
       'C' || (1 + i % 3), 'P' || (1 + i % 2), 1 + i % 4, 10.25, round((1 + i % 4) * 10.25 + i * 0.01, 2),
       100 + i, '{}'
FROM generate_series(1, 157) AS i;
";

struct Harness {
    app: Router,
    url: String,
}

fn settings(url: &str, extra: &str) -> Settings {
    let toml = format!("[warehouse]\nurl = \"{url}\"\n[dashboard]\nsecret = \"{SECRET}\"\n{extra}");
    Settings::from_figment(Figment::new().merge(figment::providers::Toml::string(&toml))).unwrap()
}

async fn harness(url: &str, extra: &str) -> Harness {
    let site = std::env::temp_dir().join(format!("etl-api-site-{}", std::process::id()));
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("style.css"), "body{}").unwrap();
    let s = settings(url, extra);
    let pool = db::pool(url, 4).unwrap();
    let state = AppState::new(&s, pool, leptos_options(&site, s.dashboard.addr), None);
    Harness {
        app: dashboard::ssr::router(state),
        url: url.to_string(),
    }
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

impl Harness {
    async fn call(&self, req: Request<Body>) -> Answer {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        let mut req = Request::get(path);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        self.call(req.body(Body::empty()).unwrap()).await
    }

    async fn get_csv(&self, path: &str, token: &str) -> Answer {
        let req = Request::get(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::ACCEPT, "text/csv")
            .body(Body::empty())
            .unwrap();
        self.call(req).await
    }

    async fn login(&self, user: &str, password: &str) -> Answer {
        let body = serde_json::json!({"username": user, "password": password}).to_string();
        let req = Request::post("/api/v1/auth/login")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap();
        self.call(req).await
    }

    async fn token(&self, user: &str) -> String {
        let a = self.login(user, PASSWORD).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        a.json()["access_token"].as_str().unwrap().to_string()
    }

    async fn sql_one(&self, sql: &str) -> String {
        let (c, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        c.query_one(sql, &[]).await.unwrap().get(0)
    }
}

fn problem(a: &Answer, status: StatusCode, contains: &str) {
    assert_eq!(a.status, status, "{}", a.body);
    assert_eq!(
        a.headers.get(header::CONTENT_TYPE).unwrap(),
        "application/problem+json"
    );
    let detail = a.json()["detail"].as_str().unwrap_or_default().to_string();
    assert!(detail.contains(contains), "{contains:?} not in {detail:?}");
}

async fn refusals(h: &Harness) {
    for e in dashboard::ssr::api::catalog::ENDPOINTS {
        let a = h.get(&format!("/api/v1/{}", e.name), None).await;
        problem(&a, StatusCode::UNAUTHORIZED, "sign in");
        assert!(a.headers.contains_key(header::WWW_AUTHENTICATE));
    }
    problem(
        &h.login("viewer", "wrong password").await,
        StatusCode::UNAUTHORIZED,
        "wrong username or password",
    );
    problem(
        &h.login("nobody", PASSWORD).await,
        StatusCode::UNAUTHORIZED,
        "wrong username or password",
    );

    let now = chrono::Utc::now().timestamp();
    let keys = Keys::new(SECRET.as_bytes());
    let expired = keys.issue("admin", Role::Admin, 1, TokenKind::Access, now - 7200, 60);
    problem(
        &h.get("/api/v1/sales-by-period", Some(&expired)).await,
        StatusCode::UNAUTHORIZED,
        "expired",
    );
    let forged = Keys::new(b"not-the-secret-not-the-secret-xx").issue(
        "admin",
        Role::Admin,
        1,
        TokenKind::Access,
        now,
        600,
    );
    problem(
        &h.get("/api/v1/sales-by-period", Some(&forged)).await,
        StatusCode::UNAUTHORIZED,
        "signature",
    );
    let refresh = keys.issue("admin", Role::Admin, 1, TokenKind::Refresh, now, 600);
    problem(
        &h.get("/api/v1/sales-by-period", Some(&refresh)).await,
        StatusCode::UNAUTHORIZED,
        "an access token is needed",
    );
    problem(
        &h.get("/api/v1/sales-by-period", Some("garbage")).await,
        StatusCode::UNAUTHORIZED,
        "malformed",
    );

    let viewer = h.token("viewer").await;
    problem(
        &h.get("/api/v1/sales-lines", Some(&viewer)).await,
        StatusCode::FORBIDDEN,
        "analyst role",
    );
    problem(
        &h.get_csv("/api/v1/sales-by-period", &viewer).await,
        StatusCode::FORBIDDEN,
        "analyst role",
    );
    assert_eq!(
        h.get("/api/v1/sales-by-period", Some(&viewer)).await.status,
        StatusCode::OK
    );
    let me = h.get("/api/v1/me", Some(&viewer)).await.json();
    assert_eq!(
        me,
        serde_json::json!({"username": "viewer", "role": "viewer"})
    );

    // Pages: a redirect to the login page; server functions and docs: 401; health and assets: public.
    let page = h.get("/sales?grain=month", None).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(
        page.headers[header::LOCATION],
        "/login?next=/sales%3Fgrain%3Dmonth"
    );
    assert_eq!(
        h.get("/rpc/get_overview", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        h.get("/api-docs/openapi.json", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Swagger UI is a page: to the login form.
    assert_eq!(
        h.get("/swagger-ui/", None).await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(h.get("/login", None).await.status, StatusCode::OK);
    assert_eq!(h.get("/style.css", None).await.status, StatusCode::OK);
}

async fn pagination(h: &Harness, token: &str) {
    let total: i64 = h
        .sql_one("SELECT count(*)::text FROM gold.sales_by_period WHERE grain = 'day'")
        .await
        .parse()
        .unwrap();
    assert_eq!(total, 40);
    let zero = h
        .get("/api/v1/sales-by-period?grain=day&limit=0", Some(token))
        .await
        .json();
    assert_eq!(
        (
            zero["returned"].as_i64(),
            zero["data"].as_array().map(Vec::len)
        ),
        (Some(0), Some(0))
    );
    assert!(zero["next"].is_null());
    problem(
        &h.get("/api/v1/sales-by-period?limit=1001", Some(token))
            .await,
        StatusCode::BAD_REQUEST,
        "maximum of 1000",
    );
    problem(
        &h.get("/api/v1/sales-by-period?limit=-5", Some(token)).await,
        StatusCode::BAD_REQUEST,
        "whole number",
    );
    let past = h
        .get("/api/v1/sales-by-period?grain=day&offset=500", Some(token))
        .await
        .json();
    assert_eq!(past["data"], serde_json::json!([]));
    assert!(past["next"].is_null());

    // Following `next` visits every row once, in order.
    let mut path = "/api/v1/sales-by-period?grain=day&limit=7".to_string();
    let mut days = Vec::new();
    loop {
        let page = h.get(&path, Some(token)).await.json();
        for row in page["data"].as_array().unwrap() {
            days.push(row["period_start"].as_str().unwrap().to_string());
        }
        match page["next"].as_str() {
            Some(next) => path = next.to_string(),
            None => break,
        }
    }
    let mut sorted = days.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!((days.len(), sorted), (40, days.clone()));

    // Cursor: the 157 lines exactly once, in (sale_date, sale_id) order.
    let mut path = "/api/v1/sales-lines?limit=10".to_string();
    let mut ids = Vec::new();
    let mut last_cursor = String::new();
    loop {
        let page = h.get(&path, Some(token)).await.json();
        for row in page["data"].as_array().unwrap() {
            ids.push((
                row["sale_date"].as_str().unwrap().to_string(),
                row["sale_id"].as_str().unwrap().to_string(),
            ));
            assert!(row.get("_bronze_event_id").is_none(), "lineage is hidden");
        }
        match page["next_cursor"].as_str() {
            Some(c) => {
                last_cursor = c.to_string();
                path = page["next"].as_str().unwrap().to_string();
            }
            None => break,
        }
    }
    let unique: HashSet<_> = ids.iter().collect();
    assert_eq!((ids.len(), unique.len()), (157, 157));
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    let tampered = format!("{}A", last_cursor);
    problem(
        &h.get(
            &format!("/api/v1/sales-lines?cursor={tampered}"),
            Some(token),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "cursor",
    );
    let (body, mac) = last_cursor.split_once('.').unwrap();
    let mut b = body.to_string();
    b.replace_range(0..1, if b.starts_with('W') { "X" } else { "W" });
    problem(
        &h.get(
            &format!("/api/v1/sales-lines?cursor={b}.{mac}"),
            Some(token),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "cursor",
    );
    problem(
        &h.get("/api/v1/sales-lines?offset=10", Some(token)).await,
        StatusCode::BAD_REQUEST,
        "cursor",
    );
}

async fn injection(h: &Harness, token: &str) {
    let evil = "/api/v1/country-sales?country=%27%3B%20DROP%20TABLE%20gold.fact_sales%3B%20--";
    let a = h.get(evil, Some(token)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.json()["data"], serde_json::json!([]));
    assert_eq!(
        h.sql_one("SELECT count(*)::text FROM gold.fact_sales")
            .await,
        "157"
    );
    for (path, why) in [
        (
            "/api/v1/sales-by-period?sort=revenue%3BDROP%20TABLE%20x",
            "no column",
        ),
        (
            "/api/v1/sales-by-period?from=2024-01-01%27%20OR%201%3D1",
            "a date",
        ),
        ("/api/v1/sales-by-period?grain=day&grain=month", "twice"),
        ("/api/v1/sales-by-period?1%3D1", "unknown parameter"),
        ("/api/v1/anomalies?is_anomaly=yes", "true or false"),
    ] {
        problem(
            &h.get(path, Some(token)).await,
            StatusCode::BAD_REQUEST,
            why,
        );
    }
    problem(
        &h.get("/api/v1/no-such-mart", Some(token)).await,
        StatusCode::NOT_FOUND,
        "GET /api/v1",
    );
}

fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let mut out = vec![r.headers().unwrap().iter().map(str::to_string).collect()];
    out.extend(
        r.records()
            .map(|rec| rec.unwrap().iter().map(str::to_string).collect()),
    );
    out
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

async fn csv_equals_json(h: &Harness, token: &str) {
    for path in [
        "/api/v1/sales-by-period?grain=month&limit=1000",
        "/api/v1/sales-lines?limit=1000",
        "/api/v1/freshness?limit=1000",
        "/api/v1/country-sales?grain=all&sort=-revenue&limit=1000",
    ] {
        let json = h.get(path, Some(token)).await.json();
        let csv = h.get_csv(path, token).await;
        assert_eq!(csv.status, StatusCode::OK, "{path}: {}", csv.body);
        assert!(csv.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/csv"));
        let table = parse_csv(&csv.body);
        let rows = json["data"].as_array().unwrap();
        assert_eq!(table.len() - 1, rows.len(), "{path}");
        assert!(!rows.is_empty(), "{path}: no rows to compare");
        for (r, row) in table[1..].iter().zip(rows) {
            let from_json: Vec<String> = table[0].iter().map(|c| cell(&row[c.as_str()])).collect();
            assert_eq!(r, &from_json, "{path}");
        }
    }
}

async fn figures(h: &Harness, token: &str) {
    // Revenue of all time and per country, against silver directly.
    let all = h
        .get("/api/v1/sales-by-period?grain=all", Some(token))
        .await
        .json();
    let expected = h
        .sql_one("SELECT sum(amount)::text FROM silver.sales")
        .await;
    assert_eq!(cell(&all["data"][0]["revenue"]), expected);
    let by_country = h
        .get("/api/v1/country-sales?grain=all&sort=-revenue", Some(token))
        .await
        .json();
    let expected = h
        .sql_one(
            "SELECT string_agg(country || '=' || revenue, ',' ORDER BY revenue DESC, country) FROM (
               SELECT c.country, sum(s.amount)::text AS revenue FROM silver.sales s
               JOIN silver.customers c USING (customer_id) GROUP BY 1) t",
        )
        .await;
    let got: Vec<String> = by_country["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| format!("{}={}", cell(&r["country"]), cell(&r["revenue"])))
        .collect();
    assert_eq!(got.join(","), expected);
    let filtered = h
        .get(
            "/api/v1/sales-by-period?grain=day&from=2024-01-10&to=2024-01-12",
            Some(token),
        )
        .await
        .json();
    let days: Vec<String> = filtered["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| cell(&r["period_start"]))
        .collect();
    assert_eq!(days, ["2024-01-10", "2024-01-11", "2024-01-12"]);
}

async fn openapi(h: &Harness, token: &str) {
    let doc = h.get("/api-docs/openapi.json", Some(token)).await;
    assert_eq!(doc.status, StatusCode::OK);
    let doc = doc.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for e in dashboard::ssr::api::catalog::ENDPOINTS {
        let op = &doc["paths"][format!("/api/v1/{}", e.name)]["get"];
        assert!(op.is_object(), "{} is documented", e.name);
        assert!(
            !op["description"]
                .as_str()
                .unwrap()
                .starts_with("Not available"),
            "{}: {}",
            e.name,
            op["description"]
        );
    }
    let row = &doc["paths"]["/api/v1/sales-by-period"]["get"]["responses"]["200"]["content"]
        ["application/json"]["schema"]["properties"]["data"]["items"]["properties"];
    assert_eq!(
        row["revenue"]["type"],
        serde_json::json!(["number", "null"])
    );
    assert!(
        row["revenue"]["description"].is_string(),
        "column comments are the descriptions"
    );
    let ui = h.get("/swagger-ui/", Some(token)).await;
    assert_eq!(ui.status, StatusCode::OK);
    assert!(
        ui.body.contains("swagger"),
        "{}",
        &ui.body[..ui.body.len().min(200)]
    );
}

async fn revocation(h: &Harness) {
    let token = h.token("analyst").await;
    assert_eq!(
        h.get("/api/v1/me", Some(&token)).await.status,
        StatusCode::OK
    );
    let tokens = h.login("analyst", PASSWORD).await.json();
    let (c, conn) = tokio_postgres::connect(&h.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    users::passwd(&c, "analyst", Some("another long password"), None)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    problem(
        &h.get("/api/v1/me", Some(&token)).await,
        StatusCode::UNAUTHORIZED,
        "sign in again",
    );
    let body = serde_json::json!({"refresh_token": tokens["refresh_token"]}).to_string();
    let req = Request::post("/api/v1/auth/refresh")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap();
    problem(
        &h.call(req).await,
        StatusCode::UNAUTHORIZED,
        "sign in again",
    );
    users::passwd(&c, "analyst", Some(PASSWORD), None)
        .await
        .unwrap();
    let fresh = h.login("analyst", PASSWORD).await.json();
    let body = serde_json::json!({"refresh_token": fresh["refresh_token"]}).to_string();
    let req = Request::post("/api/v1/auth/refresh")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap();
    let a = h.call(req).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(a.json()["access_token"].is_string());
}

async fn rate_limit(url: &str) {
    let h = harness(url, "rate_per_second = 1\nrate_burst = 3\n").await;
    let token = h.token("viewer").await;
    for _ in 0..3 {
        assert_eq!(
            h.get("/api/v1/me", Some(&token)).await.status,
            StatusCode::OK
        );
    }
    let a = h.get("/api/v1/me", Some(&token)).await;
    problem(&a, StatusCode::TOO_MANY_REQUESTS, "rate limit");
    assert_eq!(a.headers[header::RETRY_AFTER], "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_end_to_end() {
    let name = format!("etl_dashboard_api_{}", std::process::id());
    let (url, admin) = scratch(&name).await;
    let checks = tokio::spawn({
        let url = url.clone();
        async move {
            transform(&url, "migrate");
            exec(&url, SEED).await;
            transform(&url, "rebuild");
            let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            for (user, role) in [
                ("viewer", Role::Viewer),
                ("analyst", Role::Analyst),
                ("admin", Role::Admin),
            ] {
                users::add(&c, user, role, PASSWORD).await.unwrap();
            }
            let h = harness(&url, "").await;
            refusals(&h).await;
            let analyst = h.token("analyst").await;
            pagination(&h, &analyst).await;
            injection(&h, &analyst).await;
            csv_equals_json(&h, &analyst).await;
            figures(&h, &analyst).await;
            openapi(&h, &analyst).await;
            revocation(&h).await;
            rate_limit(&url).await;
        }
    })
    .await;
    common::drop_db(&admin, &name).await;
    if let Err(e) = checks {
        std::panic::resume_unwind(e.into_panic());
    }
}
