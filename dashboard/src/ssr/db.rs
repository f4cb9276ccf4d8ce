//! The shared warehouse connection pool.

use std::{str::FromStr, time::Duration};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use tokio_postgres::NoTls;

use super::error::DashboardError;

/// Builds the pool. Connections are opened lazily, so this succeeds while the warehouse
/// is down; the pages then show that it cannot be reached and `/health` answers 503.
pub fn pool(url: &str, max_size: usize) -> Result<Pool, DashboardError> {
    let mut pg = tokio_postgres::Config::from_str(url).map_err(DashboardError::WarehouseUrl)?;
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(Duration::from_secs(3));
    }
    if pg.get_application_name().is_none() {
        pg.application_name("etl-dashboard");
    }
    let manager = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(max_size)
        .runtime(Runtime::Tokio1)
        .timeouts(Timeouts {
            wait: Some(Duration::from_secs(5)),
            create: Some(Duration::from_secs(5)),
            recycle: Some(Duration::from_secs(2)),
        })
        .build()
        .map_err(|e| DashboardError::Pool(e.to_string()))
}

/// `SELECT 1` on a pooled connection.
pub async fn ping(pool: &Pool) -> Result<(), String> {
    let client = pool.get().await.map_err(|e| chain(&e))?;
    client
        .query_one("SELECT 1", &[])
        .await
        .map_err(|e| chain(&e))?;
    Ok(())
}

/// An error and its sources on one line (tokio-postgres' own message is just "db error";
/// the server's message is in the source).
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let part = e.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = e.source();
    }
    text
}
