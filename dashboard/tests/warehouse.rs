//! The overview queries against a real PostgreSQL: a scratch database per test run.
//! Admin URL from ETL_TEST_PG_URL (default postgres://postgres@127.0.0.1:5432/postgres);
//! fails, naming the URL, when no server answers there (`./dev stack` starts one).
#![cfg(feature = "ssr")]

use std::path::Path;

use dashboard::{model::Warehouse, ssr::db};
use tokio_postgres::NoTls;

fn admin_url() -> String {
    std::env::var("ETL_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn db_url(admin: &str, name: &str) -> String {
    let (base, query) = admin.split_once('?').map_or((admin, ""), |(b, q)| (b, q));
    let server = base.rsplit_once('/').map_or(base, |(s, _)| s);
    if query.is_empty() {
        format!("{server}/{name}")
    } else {
        format!("{server}/{name}?{query}")
    }
}

/// Runs the transform binary (`ETL_BIN_DIR`, or the target dir's release folder) on the
/// scratch warehouse: `migrate` creates the schema and the gold marts, `rebuild` computes gold.
fn transform(url: &str, command: &str) {
    let dir = std::env::var("ETL_BIN_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::env::var("CARGO_TARGET_DIR")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
                .join("release")
        });
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/etl.toml");
    let out = std::process::Command::new(dir.join("transform"))
        .args(["--config", &config.display().to_string(), command])
        .env("ETL_WAREHOUSE__URL", url)
        .output()
        .expect("running the transform binary (./dev build)");
    assert!(
        out.status.success(),
        "transform {command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn exec(url: &str, sql: &str) {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.expect("connect");
    tokio::spawn(conn);
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql:.60}: {}", db::chain(&e)));
}

#[tokio::test]
async fn waiting_then_ready() {
    let admin = admin_url();
    let (admin_client, conn) = tokio_postgres::connect(&admin, NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!("no PostgreSQL at {admin} (ETL_TEST_PG_URL; `./dev stack` starts it): {e}")
        });
    tokio::spawn(conn);
    let name = format!("etl_dashboard_it_{}", std::process::id());
    for sql in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        admin_client.batch_execute(&sql).await.unwrap();
    }
    let url = db_url(&admin, &name);
    let pool = db::pool(&url, 2).unwrap();

    // Run the checks in a task so that a failed assertion still drops the database.
    let checks = tokio::spawn(async move {
        // No gold layer yet.
        let w = dashboard::ssr::overview::load(&pool).await.unwrap();
        assert!(matches!(&w, Warehouse::Waiting(r) if r.contains("gold layer does not exist")), "{w:?}");

        transform(&url, "migrate");
        let w = dashboard::ssr::overview::load(&pool).await.unwrap();
        assert!(matches!(&w, Warehouse::Waiting(r) if r.contains("no sales")), "{w:?}");

        exec(
            &url,
            "INSERT INTO silver.customers (customer_id, country, _bronze_event_id, _source) VALUES
               ('C1', 'France', 1, '{}'), ('C2', 'Germany', 2, '{}');
             INSERT INTO silver.sales (sale_id, order_id, sale_date, customer_id, product_id, quantity, amount, _bronze_event_id, _source) VALUES
               ('S1', 'S1', '2024-01-01', 'C1', 'P', 1, 1000.10, 3, '{}'),
               ('S2', 'S2', '2024-01-03', 'C2', 'P', 1, 20.00, 4, '{}'),
               ('S3', 'S3', '2024-01-03', 'C9', 'P', 1, 0.05, 5, '{}'),
               ('S0', 'S0', '2022-06-01', 'C1', 'P', 1, 7.00, 6, '{}');",
        )
        .await;
        // Gold is kept by transform; rebuild it from silver as the stream would.
        transform(&url, "rebuild");
        let Warehouse::Ready(data) = dashboard::ssr::overview::load(&pool).await.unwrap() else {
            panic!("expected data");
        };
        assert_eq!(data.kpis.revenue, "1027.15");
        assert_eq!(data.kpis.orders, 4);
        assert_eq!(data.kpis.customers, 3, "C1, C2 and the Unknown member");
        // Only the last 365 days of data: the 2022 sale is out of the chart, in the KPIs.
        let days: Vec<_> = data.daily.iter().map(|p| (p.date.as_str(), p.revenue)).collect();
        assert_eq!(days, [("2024-01-01", 1000.10), ("2024-01-03", 20.05)]);
        assert_eq!(data.daily[1].day - data.daily[0].day, 2);
        let countries: Vec<_> = data.countries.iter().map(|c| (c.country.as_str(), c.revenue.as_str())).collect();
        assert_eq!(countries, [("France", "1007.10"), ("Germany", "20.00"), ("Unknown", "0.05")]);
    })
    .await;

    admin_client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .unwrap();
    if let Err(e) = checks {
        std::panic::resume_unwind(e.into_panic());
    }
}
