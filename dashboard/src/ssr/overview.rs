//! Queries of the overview page, over the stored gold marts (transform/src/gold/marts/).

use std::time::Instant;

use chrono::{NaiveDate, Utc};
use deadpool_postgres::{Pool, PoolError};
use leptos::prelude::*;
use rust_decimal::Decimal;
use tokio_postgres::{error::SqlState, IsolationLevel};

use super::server::AppState;
use crate::model::{CountryRow, DailyPoint, Kpis, Overview, OverviewData, Warehouse};

const KPIS: &str = "SELECT coalesce(a.revenue, 0)::numeric(16,2) AS revenue, \
                    coalesce(a.orders, 0) AS orders, coalesce(a.customers, 0) AS customers, \
                    coalesce(a.avg_basket, 0) AS avg_basket, d.first AS first_sale_date, \
                    d.last AS last_sale_date \
                    FROM (SELECT min(period_start) AS first, max(period_start) AS last \
                          FROM gold.sales_by_period WHERE grain = 'day') d \
                    LEFT JOIN gold.sales_by_period a ON a.grain = 'all'";
const DAILY: &str = "SELECT period_start, revenue::float8 FROM gold.sales_by_period \
                     WHERE grain = 'day' AND period_start > (SELECT max(period_start) \
                     FROM gold.sales_by_period WHERE grain = 'day') - 365 \
                     ORDER BY period_start";
const COUNTRIES: &str = "SELECT country, revenue, orders, customers FROM gold.country_sales \
                         WHERE grain = 'all' ORDER BY revenue DESC, country LIMIT 10";

/// Body of the `get_overview` server function: metrics around [`load`].
pub async fn get_overview() -> Result<Overview, ServerFnError> {
    let state = use_context::<AppState>().ok_or_else(|| {
        ServerFnError::new("the dashboard state is missing from the request context")
    })?;
    let started = Instant::now();
    let result = load(&state.pool).await;
    let outcome = match &result {
        Ok(Warehouse::Ready(_)) => "ready",
        Ok(Warehouse::Waiting(_)) => "waiting",
        Err(_) => "error",
    };
    let elapsed = started.elapsed();
    metrics::counter!("dashboard_server_fn_calls_total", "fn" => "get_overview", "outcome" => outcome).increment(1);
    metrics::histogram!("dashboard_server_fn_duration_seconds", "fn" => "get_overview")
        .record(elapsed.as_secs_f64());
    match result {
        Ok(warehouse) => {
            tracing::debug!(
                outcome,
                elapsed_ms = elapsed.as_millis() as u64,
                "get_overview"
            );
            Ok(Overview {
                warehouse,
                updated_at: Utc::now().format("%H:%M:%S").to_string(),
                refresh_ms: state.refresh_ms,
            })
        }
        Err(e) => {
            tracing::warn!(error = %e, elapsed_ms = elapsed.as_millis() as u64, "get_overview failed");
            Err(ServerFnError::new(e))
        }
    }
}

/// Why the page cannot show data.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("no warehouse connection: {}", super::db::chain(.0))]
    Pool(#[from] PoolError),
    #[error("warehouse query failed: {}", super::db::chain(.0))]
    Query(#[from] tokio_postgres::Error),
}

/// Reads the three gold views in one read-only snapshot.
pub async fn load(pool: &Pool) -> Result<Warehouse, LoadError> {
    let mut client = match pool.get().await {
        Ok(c) => c,
        Err(PoolError::Backend(e)) if e.code() == Some(&SqlState::INVALID_CATALOG_NAME) => {
            return Ok(Warehouse::Waiting(
                "The warehouse database has not been created yet.".into(),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let kpi_row = match tx.query_one(KPIS, &[]).await {
        Ok(row) => row,
        Err(e) if is_missing_relation(&e) => {
            return Ok(Warehouse::Waiting(
                "The gold layer does not exist yet: the warehouse migrations have not been applied.".into(),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let orders: i64 = kpi_row.try_get("orders")?;
    if orders == 0 {
        return Ok(Warehouse::Waiting("The warehouse has no sales yet.".into()));
    }
    let date = |d: Option<NaiveDate>| d.map(|d| d.format("%Y-%m-%d").to_string());
    let kpis = Kpis {
        revenue: kpi_row
            .try_get::<_, Decimal>("revenue")?
            .round_dp(2)
            .to_string(),
        orders,
        customers: kpi_row.try_get("customers")?,
        avg_basket: kpi_row
            .try_get::<_, Decimal>("avg_basket")?
            .round_dp(2)
            .to_string(),
        first_sale_date: date(kpi_row.try_get("first_sale_date")?),
        last_sale_date: date(kpi_row.try_get("last_sale_date")?),
    };

    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    let daily = tx
        .query(DAILY, &[])
        .await?
        .iter()
        .map(|row| {
            let d: NaiveDate = row.try_get(0)?;
            Ok(DailyPoint {
                date: d.format("%Y-%m-%d").to_string(),
                day: (d - epoch).num_days() as i32,
                revenue: row.try_get::<_, Option<f64>>(1)?.unwrap_or(0.0),
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;

    let countries = tx
        .query(COUNTRIES, &[])
        .await?
        .iter()
        .map(|row| {
            Ok(CountryRow {
                country: row
                    .try_get::<_, Option<String>>("country")?
                    .unwrap_or_else(|| "Unknown".into()),
                revenue: row
                    .try_get::<_, Option<Decimal>>("revenue")?
                    .unwrap_or_default()
                    .round_dp(2)
                    .to_string(),
                orders: row.try_get("orders")?,
                customers: row.try_get("customers")?,
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
    tx.commit().await?;

    Ok(Warehouse::Ready(Box::new(OverviewData {
        kpis,
        daily,
        countries,
    })))
}

fn is_missing_relation(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::UNDEFINED_TABLE || *c == SqlState::INVALID_SCHEMA_NAME
            || *c == SqlState::UNDEFINED_COLUMN
    )
}
