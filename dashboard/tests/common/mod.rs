//! Helpers of the dashboard's integration tests: a scratch database per test on the real
//! PostgreSQL (ETL_TEST_PG_URL, default postgres://postgres@127.0.0.1:5432/postgres), the
//! transform binary for the schema and gold.
#![allow(dead_code)]

use std::path::Path;

use dashboard::ssr::db;
use tokio_postgres::NoTls;

pub fn admin_url() -> String {
    std::env::var("ETL_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn db_url(admin: &str, name: &str) -> String {
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
pub fn transform(url: &str, command: &str) {
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

pub async fn exec(url: &str, sql: &str) {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.expect("connect");
    tokio::spawn(conn);
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql:.60}: {}", db::chain(&e)));
}

/// A fresh database `name` (dropped first if a failed run left it); returns its URL and an
/// admin connection to drop it afterwards.
pub async fn scratch(name: &str) -> (String, tokio_postgres::Client) {
    let admin = admin_url();
    let (admin_client, conn) = tokio_postgres::connect(&admin, NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!("no PostgreSQL at {admin} (ETL_TEST_PG_URL; `./dev stack` starts it): {e}")
        });
    tokio::spawn(conn);
    for sql in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        admin_client.batch_execute(&sql).await.unwrap();
    }
    (db_url(&admin, name), admin_client)
}

pub async fn drop_db(admin: &tokio_postgres::Client, name: &str) {
    let _ = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await;
}
