//! `transform verify`: recomputes every incrementally kept mart from silver in polars (an
//! independent path: no SQL aggregation, no deltas, no helper tables) and compares it
//! with the stored table cell by cell on its key, to the cent.
//!
//! Silver and the stored marts are read in one REPEATABLE READ, READ ONLY transaction
//! ([`load`]); money and quantities are exact integers ([`fixed`]); the marts are
//! recomputed with the semantics of their SQL ([`marts`], [`distribution`], with the
//! periods of [`calendar`]) and compared ([`compare`]).
//!
//! Known limit: `min()` of a text (an order's customer, country or employee when its
//! lines disagree) is the byte order in polars and the database collation's order in the
//! stored marts; the two agree under the C collation and for ASCII names of one case.

pub mod calendar;
pub mod compare;
pub mod distribution;
pub mod fixed;
pub mod load;
pub mod marts;

use load::Ty;
use polars::prelude::DataFrame;
use std::collections::HashMap;
use tokio_postgres::Client;

/// A DataFrame whose numeric columns are integers of units of 10^-scale.
pub struct Table {
    pub df: DataFrame,
    /// Scale of each numeric column.
    pub scales: HashMap<String, u32>,
}

/// One mart's comparison.
#[derive(Debug, Clone)]
pub struct MartCheck {
    pub mart: &'static str,
    pub stored_rows: i64,
    /// Rows stored whose key the recomputation lacks.
    pub extra: i64,
    /// Rows of the recomputation whose key is not stored.
    pub missing: i64,
    /// Rows of both whose cells differ.
    pub differing_rows: i64,
    /// Differing cells over those rows.
    pub differing_cells: i64,
    /// The columns with differing cells, with their counts (`revenue (2)`).
    pub differing_columns: Vec<String>,
    /// Up to 3 differences, as text.
    pub samples: Vec<String>,
}

impl MartCheck {
    pub fn ok(&self) -> bool {
        self.extra == 0 && self.missing == 0 && self.differing_cells == 0
    }
}

/// A stored mart: what to read and how to compare it.
struct Stored {
    mart: &'static str,
    sql: &'static str,
    key: &'static [&'static str],
    cols: &'static [(&'static str, Ty)],
}

const MONEY: Ty = Ty::Num(2);
const SIX: Ty = Ty::Num(6);
const QTY: Ty = Ty::Num(0);

const PERIOD_MEASURES: [(&str, Ty); 6] = [
    ("revenue", MONEY),
    ("lines", Ty::Int),
    ("units", QTY),
    ("orders", Ty::Int),
    ("customers", Ty::Int),
    ("avg_basket", MONEY),
];

macro_rules! period_cols {
    ($($c:expr),*) => {
        &[$($c,)* PERIOD_MEASURES[0], PERIOD_MEASURES[1], PERIOD_MEASURES[2],
          PERIOD_MEASURES[3], PERIOD_MEASURES[4], PERIOD_MEASURES[5]]
    };
}

const STORED: &[Stored] = &[
    Stored {
        mart: "fact_sales",
        sql: "SELECT sale_id, order_id, date_key, sale_date, customer_key, source_customer_id, product_key, source_product_id, employee_key, country, quantity, unit_price, amount, _bronze_event_id FROM gold.fact_sales",
        key: &["sale_id"],
        cols: &[("sale_id", Ty::Text), ("order_id", Ty::Text), ("date_key", Ty::Int), ("sale_date", Ty::Date),
            ("customer_key", Ty::Text), ("source_customer_id", Ty::Text), ("product_key", Ty::Text),
            ("source_product_id", Ty::Text), ("employee_key", Ty::Text), ("country", Ty::Text),
            ("quantity", QTY), ("unit_price", MONEY), ("amount", MONEY), ("_bronze_event_id", Ty::Int)],
    },
    Stored {
        mart: "fact_orders",
        sql: "SELECT order_id, order_date, customer_key, country, employee_key, lines, units, amount FROM gold.fact_orders",
        key: &["order_id"],
        cols: &[("order_id", Ty::Text), ("order_date", Ty::Date), ("customer_key", Ty::Text), ("country", Ty::Text),
            ("employee_key", Ty::Text), ("lines", Ty::Int), ("units", QTY), ("amount", MONEY)],
    },
    Stored {
        mart: "sales_by_period",
        sql: "SELECT grain, period_start, revenue, lines, units, orders, customers, avg_basket FROM gold.sales_by_period",
        key: &["grain", "period_start"],
        cols: period_cols!(("grain", Ty::Text), ("period_start", Ty::Date)),
    },
    Stored {
        mart: "sales_by_period growth",
        sql: "SELECT grain, period_start, prev_revenue, growth_prev_pct, yoy_revenue, growth_yoy_pct FROM gold.sales_by_period WHERE grain <> 'all'",
        key: &["grain", "period_start"],
        cols: &[("grain", Ty::Text), ("period_start", Ty::Date), ("prev_revenue", MONEY),
            ("growth_prev_pct", MONEY), ("yoy_revenue", MONEY), ("growth_yoy_pct", MONEY)],
    },
    Stored {
        mart: "country_sales",
        sql: "SELECT grain, period_start, country, revenue, lines, units, orders, customers, avg_basket FROM gold.country_sales",
        key: &["grain", "period_start", "country"],
        cols: period_cols!(("grain", Ty::Text), ("period_start", Ty::Date), ("country", Ty::Text)),
    },
    Stored {
        mart: "employee_sales",
        sql: "SELECT grain, period_start, employee_key, revenue, lines, units, orders, customers, avg_basket FROM gold.employee_sales",
        key: &["grain", "period_start", "employee_key"],
        cols: period_cols!(("grain", Ty::Text), ("period_start", Ty::Date), ("employee_key", Ty::Text)),
    },
    Stored {
        mart: "product_month",
        sql: "SELECT month, product_key, revenue, units, lines, orders, revenue_rank, revenue_share, prev_revenue, growth_prev_pct FROM gold.product_month",
        key: &["month", "product_key"],
        cols: &[("month", Ty::Date), ("product_key", Ty::Text), ("revenue", MONEY), ("units", QTY),
            ("lines", Ty::Int), ("orders", Ty::Int), ("revenue_rank", Ty::Int), ("revenue_share", SIX),
            ("prev_revenue", MONEY), ("growth_prev_pct", MONEY)],
    },
    Stored {
        mart: "customer_ltv",
        sql: "SELECT customer_key, country, first_order_date, last_order_date, orders, lines, revenue, avg_basket, tenure_days FROM gold.customer_ltv",
        key: &["customer_key"],
        cols: &[("customer_key", Ty::Text), ("country", Ty::Text), ("first_order_date", Ty::Date),
            ("last_order_date", Ty::Date), ("orders", Ty::Int), ("lines", Ty::Int), ("revenue", MONEY),
            ("avg_basket", MONEY), ("tenure_days", Ty::Int)],
    },
    // Percentiles compared rounded to 6 decimals, as the stored SQL interpolates with
    // numerics of more digits.
    Stored {
        mart: "distribution",
        sql: "SELECT scope, period_start, country, measure, n, total, mean, stddev, min, round(p25, 6), round(median, 6), round(p75, 6), max FROM gold.distribution",
        key: &["scope", "period_start", "country", "measure"],
        cols: &[("scope", Ty::Text), ("period_start", Ty::Date), ("country", Ty::Text), ("measure", Ty::Text),
            ("n", Ty::Int), ("total", MONEY), ("mean", SIX), ("stddev", SIX), ("min", MONEY),
            ("p25", SIX), ("median", SIX), ("p75", SIX), ("max", MONEY)],
    },
    Stored {
        mart: "dim_customer",
        sql: "SELECT customer_key, version, country, is_current FROM gold.dim_customer WHERE customer_key <> 'UNKNOWN'",
        key: &["customer_key", "version"],
        cols: &[("customer_key", Ty::Text), ("version", Ty::Int), ("country", Ty::Text), ("is_current", Ty::Bool)],
    },
    Stored {
        mart: "dim_product",
        sql: "SELECT product_key, product_name, category, unit_price FROM gold.dim_product WHERE product_key <> 'UNKNOWN'",
        key: &["product_key"],
        cols: &[("product_key", Ty::Text), ("product_name", Ty::Text), ("category", Ty::Text), ("unit_price", MONEY)],
    },
    Stored {
        mart: "web_usage_daily",
        sql: "SELECT day, channel, sessions, page_views, customers, events FROM gold.web_usage_daily",
        key: &["day", "channel"],
        cols: &[("day", Ty::Date), ("channel", Ty::Text), ("sessions", Ty::Int), ("page_views", Ty::Int),
            ("customers", Ty::Int), ("events", Ty::Int)],
    },
];

/// Reads silver and every stored mart in one snapshot. Batches wait while gold catches up
/// with its queue ([`crate::gold::queue`]) and the snapshot is taken, so that the
/// snapshot's gold is up to date with its silver.
async fn read(client: &mut Client) -> anyhow::Result<(marts::Silver, Vec<Table>)> {
    use crate::gold::rebuild::GOLD_LOCK;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&GOLD_LOCK])
        .await
        .map_err(crate::sql::DbError::query("taking the gold lock"))?;
    let read = read_locked(client).await;
    if read.is_err() && !client.is_closed() {
        // Released already unless the failure came before the snapshot.
        let _ = client
            .execute("SELECT pg_advisory_unlock($1)", &[&GOLD_LOCK])
            .await;
    }
    read
}

/// [`read`] under the session's gold lock, which it releases once its snapshot is taken.
async fn read_locked(client: &mut Client) -> anyhow::Result<(marts::Silver, Vec<Table>)> {
    use crate::sql::DbError;
    crate::gold::queue::drain(client).await?;
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(DbError::query("starting the verification"))?;
    let behind: bool = tx
        .query_one(
            "SELECT since IS NOT NULL FROM pipeline.gold_queue_state",
            &[],
        )
        .await
        .map_err(DbError::query("reading gold's queue state"))?
        .get(0);
    tx.execute(
        "SELECT pg_advisory_unlock($1)",
        &[&crate::gold::rebuild::GOLD_LOCK],
    )
    .await
    .map_err(DbError::query("releasing the gold lock"))?;
    anyhow::ensure!(
        !behind,
        "gold is still catching up with queued batches after draining them; run verify again"
    );
    tx.batch_execute("SET LOCAL datestyle TO ISO")
        .await
        .map_err(DbError::query("setting the date style"))?;
    let silver = marts::Silver {
        sales: load::copy(&tx, "silver.sales",
            "SELECT sale_id, order_id, sale_date, customer_id, product_id, employee_id, quantity, unit_price, amount, _bronze_event_id FROM silver.sales",
            &[("sale_id", Ty::Text), ("order_id", Ty::Text), ("sale_date", Ty::Date), ("customer_id", Ty::Text),
              ("product_id", Ty::Text), ("employee_id", Ty::Text), ("quantity", QTY), ("unit_price", MONEY),
              ("amount", MONEY), ("_bronze_event_id", Ty::Int)]).await?,
        customers: load::copy(&tx, "silver.customers", "SELECT customer_id, country FROM silver.customers",
            &[("customer_id", Ty::Text), ("country", Ty::Text)]).await?,
        products: load::copy(&tx, "silver.products",
            "SELECT product_id, product_name, category, unit_price FROM silver.products",
            &[("product_id", Ty::Text), ("product_name", Ty::Text), ("category", Ty::Text), ("unit_price", MONEY)]).await?,
        history: load::copy(&tx, "silver.customer_history",
            "SELECT customer_id, version, country, is_current FROM silver.customer_history",
            &[("customer_id", Ty::Text), ("version", Ty::Int), ("country", Ty::Text), ("is_current", Ty::Bool)]).await?,
        web: load::copy(&tx, "silver.web_events",
            "SELECT event_date, channel, event_type, session_id, customer_id FROM silver.web_events",
            &[("event_date", Ty::Date), ("channel", Ty::Text), ("event_type", Ty::Text), ("session_id", Ty::Text),
              ("customer_id", Ty::Text)]).await?,
    };
    let mut stored = Vec::with_capacity(STORED.len());
    for m in STORED {
        stored.push(load::copy(&tx, &format!("gold mart {}", m.mart), m.sql, m.cols).await?);
    }
    tx.rollback()
        .await
        .map_err(DbError::query("ending the verification"))?;
    Ok((silver, stored))
}

/// Every mart recomputed, in the order of [`STORED`].
fn recompute(s: &marts::Silver) -> anyhow::Result<Vec<Table>> {
    for (t, c) in [
        (&s.sales, "amount"),
        (&s.sales, "unit_price"),
        (&s.products, "unit_price"),
    ] {
        anyhow::ensure!(
            t.scales.get(c) == Some(&2),
            "silver {c} has more than 2 decimals"
        );
    }
    let f = marts::facts(s)?;
    let sales_by_period = marts::period_mart(&f, &calendar::GRAINS, None)?;
    let growth = marts::growth(&sales_by_period.df)?;
    Ok(vec![
        marts::fact_sales(&f)?,
        marts::fact_orders(&f)?,
        sales_by_period,
        growth,
        marts::period_mart(&f, &["month", "year", "all"], Some("country"))?,
        marts::period_mart(&f, &["month", "all"], Some("employee_key"))?,
        marts::product_month(&f)?,
        marts::customer_ltv(&f)?,
        distribution::distribution(&f)?,
        marts::dim_customer(s)?,
        marts::dim_product(s)?,
        marts::web_usage_daily(s)?,
    ])
}

/// Compares every mart with its recomputation from silver.
pub async fn verify(client: &mut Client) -> anyhow::Result<Vec<MartCheck>> {
    let t0 = std::time::Instant::now();
    let (silver, stored) = read(client).await?;
    tracing::info!(
        seconds = t0.elapsed().as_secs_f64(),
        sale_lines = silver.sales.df.height(),
        "verify: silver and the stored marts read"
    );
    tokio::task::spawn_blocking(move || {
        let t1 = std::time::Instant::now();
        let recomputed = recompute(&silver)?;
        drop(silver);
        let mut out = Vec::with_capacity(STORED.len());
        for ((m, s), r) in STORED.iter().zip(stored).zip(recomputed) {
            let shape = compare::Shape {
                mart: m.mart,
                key: m.key,
                cols: m.cols,
            };
            let check = compare::compare(&shape, s, r)
                .map_err(|e| anyhow::anyhow!("comparing gold mart {}: {e}", m.mart))?;
            out.push(check);
        }
        tracing::info!(
            seconds = t1.elapsed().as_secs_f64(),
            "verify: marts recomputed in polars and compared"
        );
        Ok(out)
    })
    .await?
}
