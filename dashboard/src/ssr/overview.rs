//! Queries of the overview page, over the stored gold marts (transform/src/gold/marts/).

use std::time::Instant;

use chrono::{NaiveDate, Utc};
use deadpool_postgres::{Pool, PoolError};
use leptos::prelude::*;
use rust_decimal::Decimal;
use tokio_postgres::{error::SqlState, IsolationLevel};

use super::server::AppState;
use crate::model::{
    AnomalyPoint, Change, CountryRow, DailyPoint, ForecastPoint, Kpis, Overview, OverviewData,
    PeriodChange, Warehouse,
};

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
/// Last 30 days of data (ending at the last sale date) against the 30 days before: revenue
/// and orders from the daily grain, distinct customers from the order-grain fact.
const CHANGE: &str =
    "WITH last AS (SELECT max(period_start) AS d FROM gold.sales_by_period WHERE grain = 'day'),
     p AS (SELECT s.period_start > l.d - 30 AS recent, s.revenue, s.orders
           FROM gold.sales_by_period s, last l
           WHERE s.grain = 'day' AND s.period_start > l.d - 60 AND s.period_start <= l.d),
     c AS (SELECT count(DISTINCT o.customer_key) FILTER (WHERE o.order_date > l.d - 30) AS now,
                  count(DISTINCT o.customer_key) FILTER (WHERE o.order_date <= l.d - 30) AS before
           FROM gold.fact_orders o, last l
           WHERE o.order_date > l.d - 60 AND o.order_date <= l.d)
     SELECT (SELECT d FROM last) - 29 AS from_day, (SELECT d FROM last) AS to_day,
            coalesce(sum(revenue) FILTER (WHERE recent), 0)::numeric(16,2) AS revenue_now,
            coalesce(sum(revenue) FILTER (WHERE NOT recent), 0)::numeric(16,2) AS revenue_before,
            coalesce(sum(orders) FILTER (WHERE recent), 0)::bigint AS orders_now,
            coalesce(sum(orders) FILTER (WHERE NOT recent), 0)::bigint AS orders_before,
            (SELECT now FROM c) AS customers_now, (SELECT before FROM c) AS customers_before
     FROM p";
const FORECAST: &str =
    "SELECT day, revenue::float8, lo80::float8, hi80::float8, lo95::float8, hi95::float8 \
                        FROM gold.forecast_daily ORDER BY day";
const ANOMALIES: &str =
    "SELECT day, revenue::float8, expected::float8, score FROM gold.anomalies_daily \
                         WHERE country = '' AND is_anomaly AND day > (SELECT max(period_start) \
                         FROM gold.sales_by_period WHERE grain = 'day') - 365 ORDER BY day";
const COUNTRIES: &str = "SELECT country, revenue, orders, customers FROM gold.country_sales \
                         WHERE grain = 'all' ORDER BY revenue DESC, country LIMIT 10";

/// Body of the `get_overview` server function: metrics around [`load`].
pub async fn get_overview() -> Result<Overview, ServerFnError> {
    let state = use_context::<AppState>().ok_or_else(|| {
        ServerFnError::new("the dashboard state is missing from the request context")
    })?;
    let started = Instant::now();
    let result = cached_load(&state).await;
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

/// [`load`], answered from the gold-version cache when gold has not moved since.
async fn cached_load(state: &AppState) -> Result<Warehouse, LoadError> {
    const KEY: &str = "overview";
    if let Some(w) = state
        .cache
        .get(KEY)
        .and_then(|json| serde_json::from_str::<Warehouse>(&json).ok())
    {
        return Ok(w);
    }
    let version = state.cache.version();
    let w = load(&state.pool).await?;
    if let Ok(json) = serde_json::to_string(&w) {
        state.cache.put(KEY.into(), version, json.into());
    }
    Ok(w)
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

    let change = period_change(&tx).await?;
    let day_of = |d: NaiveDate| (d - epoch).num_days() as i32;
    let iso = |d: NaiveDate| d.format("%Y-%m-%d").to_string();
    let forecast = tx
        .query(FORECAST, &[])
        .await?
        .iter()
        .map(|r| {
            let d: NaiveDate = r.try_get(0)?;
            let f = |i: usize| r.try_get::<_, Option<f64>>(i).map(|v| v.unwrap_or(0.0));
            Ok(ForecastPoint {
                date: iso(d),
                day: day_of(d),
                revenue: f(1)?,
                lo80: f(2)?,
                hi80: f(3)?,
                lo95: f(4)?,
                hi95: f(5)?,
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
    let anomalies = tx
        .query(ANOMALIES, &[])
        .await?
        .iter()
        .map(|r| {
            let d: NaiveDate = r.try_get(0)?;
            Ok(AnomalyPoint {
                date: iso(d),
                day: day_of(d),
                revenue: r.try_get::<_, Option<f64>>(1)?.unwrap_or(0.0),
                expected: r.try_get::<_, Option<f64>>(2)?.unwrap_or(0.0),
                score: r.try_get::<_, Option<f64>>(3)?.unwrap_or(0.0),
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
        change,
        daily,
        forecast,
        anomalies,
        countries,
    })))
}

fn change(now: Decimal, before: Decimal, show: impl Fn(Decimal) -> String) -> Change {
    let pct = (!before.is_zero())
        .then(|| ((now - before) / before * Decimal::ONE_HUNDRED).round_dp(1))
        .and_then(|p| p.to_string().parse().ok());
    Change {
        now: show(now),
        before: show(before),
        pct,
    }
}

/// The KPIs of the last 30 days against the 30 days before; `None` without sales.
async fn period_change(
    tx: &tokio_postgres::Transaction<'_>,
) -> Result<Option<PeriodChange>, tokio_postgres::Error> {
    let r = tx.query_one(CHANGE, &[]).await?;
    let (Some(from), Some(to)) = (
        r.try_get::<_, Option<NaiveDate>>("from_day")?,
        r.try_get::<_, Option<NaiveDate>>("to_day")?,
    ) else {
        return Ok(None);
    };
    let dec = |c: &str| r.try_get::<_, Decimal>(c);
    let int = |c: &str| r.try_get::<_, i64>(c).map(Decimal::from);
    let money = |d: Decimal| d.round_dp(2).to_string();
    let count = |d: Decimal| d.to_string();
    let basket = |rev: Decimal, n: Decimal| {
        if n.is_zero() {
            Decimal::ZERO
        } else {
            (rev / n).round_dp(2)
        }
    };
    let (rev_now, rev_before) = (dec("revenue_now")?, dec("revenue_before")?);
    let (ord_now, ord_before) = (int("orders_now")?, int("orders_before")?);
    Ok(Some(PeriodChange {
        period: format!("{} – {}", from.format("%Y-%m-%d"), to.format("%Y-%m-%d")),
        revenue: change(rev_now, rev_before, money),
        orders: change(ord_now, ord_before, count),
        customers: change(int("customers_now")?, int("customers_before")?, count),
        avg_basket: change(
            basket(rev_now, ord_now),
            basket(rev_before, ord_before),
            money,
        ),
    }))
}

fn is_missing_relation(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::UNDEFINED_TABLE || *c == SqlState::INVALID_SCHEMA_NAME
            || *c == SqlState::UNDEFINED_COLUMN
    )
}
