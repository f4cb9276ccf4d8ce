//! `transform rebuild [--mart NAME]`: recreates marts from silver in bulk, in one
//! transaction, through the same code as the stream (every fact replayed as a +1 delta),
//! so the result is what the stream would have built. The consumer may keep running: the
//! rebuild holds the gold lock that every batch takes, so batches wait for it and then
//! apply their changes on top.

use super::{marts, recreate, GoldError, Mart, Touched};
use crate::sql::DbError;
use tokio_postgres::{Client, Transaction};

/// Marts rebuilt together (they share helper tables or deltas).
fn family(name: &str) -> Option<&'static [&'static Mart]> {
    use marts::*;
    const FACTS: &[&Mart] = &[
        &facts::FACT_SALES,
        &facts::FACT_ORDERS,
        &periods::SALES_BY_PERIOD,
        &periods::COUNTRY_SALES,
        &periods::EMPLOYEE_MONTH,
        &periods::CUSTOMER_ACTIVITY,
        &products::PRODUCT_MONTH,
        &customers::CUSTOMER_LTV,
        &distribution::AMOUNT_HISTOGRAM,
        &distribution::AMOUNT_BUCKETS,
        &distribution::DISTRIBUTION,
        &dims::DIM_CUSTOMER,
        &dims::DIM_PRODUCT,
        &dims::DIM_COUNTRY,
        &dims::DIM_EMPLOYEE,
        &web_usage::WEB_USAGE_DAILY,
    ];
    const PERIODS: &[&Mart] = &[
        &periods::SALES_BY_PERIOD,
        &periods::COUNTRY_SALES,
        &periods::EMPLOYEE_MONTH,
        &periods::CUSTOMER_ACTIVITY,
    ];
    const PRODUCTS: &[&Mart] = &[&products::PRODUCT_MONTH];
    const LTV: &[&Mart] = &[&customers::CUSTOMER_LTV];
    const DIST: &[&Mart] = &[
        &distribution::AMOUNT_HISTOGRAM,
        &distribution::AMOUNT_BUCKETS,
        &distribution::DISTRIBUTION,
    ];
    const WEB: &[&Mart] = &[&web_usage::WEB_USAGE_DAILY];
    Some(match name {
        "all" | "fact_sales" | "fact_orders" => FACTS,
        "sales_by_period" | "country_sales" | "employee_sales" | "customer_activity" => PERIODS,
        "product_month" => PRODUCTS,
        "customer_ltv" => LTV,
        "amount_histogram" | "amount_buckets" | "distribution" => DIST,
        "web_usage_daily" => WEB,
        "dim_customer" | "dim_product" | "dim_country" | "dim_employee" => FACTS,
        _ => return None,
    })
}

/// Names accepted by `--mart`.
pub const REBUILDABLE: &str = "all, fact_sales, fact_orders, sales_by_period, country_sales, employee_sales, customer_activity, product_month, customer_ltv, amount_histogram, amount_buckets, distribution, web_usage_daily, dim_customer, dim_product, dim_country, dim_employee";

/// Serialises rebuilds with the batches (taken by every batch that changes gold).
pub const GOLD_LOCK: i64 = 0x6574_6c5f_676f_6c62; // "etl_golb"

/// Rebuilds the named mart's family (or everything); returns the marts rebuilt and the
/// fact lines replayed.
pub async fn rebuild(
    client: &mut Client,
    name: &str,
) -> Result<(Vec<&'static str>, u64), GoldError> {
    let fam = family(name).ok_or_else(|| GoldError::Unknown {
        name: name.into(),
        known: REBUILDABLE,
    })?;
    super::prepare_session(client).await?;
    let tx = client
        .transaction()
        .await
        .map_err(DbError::query("starting the rebuild"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&GOLD_LOCK])
        .await
        .map_err(DbError::query("taking the gold lock"))?;
    for m in fam {
        recreate(&tx, m).await?;
    }
    let has = |m: &Mart| fam.iter().any(|f| f.name == m.name);
    let lines = if has(&marts::facts::FACT_SALES) {
        all_keys_dims(&tx).await?;
        tx.batch_execute(
            "INSERT INTO gold_touched_orders SELECT DISTINCT order_id FROM silver.sales;
             DELETE FROM pipeline.gold_queue;
             UPDATE pipeline.gold_queue_state SET since = NULL, batches = 0, records = 0,
                 newest_event_ms = NULL, newest_kafka_ms = NULL;",
        )
        .await
        .map_err(DbError::query("listing the orders to rebuild"))?;
        marts::facts::rederive(&tx).await?
    } else {
        replay_facts(&tx).await?
    };
    if has(&marts::periods::SALES_BY_PERIOD) {
        marts::periods::refresh(&tx).await?;
    }
    if has(&marts::products::PRODUCT_MONTH) {
        marts::products::refresh(&tx).await?;
    }
    if has(&marts::customers::CUSTOMER_LTV) {
        marts::customers::refresh(&tx).await?;
    }
    if has(&marts::distribution::DISTRIBUTION) {
        marts::distribution::refresh(&tx).await?;
    }
    if has(&marts::web_usage::WEB_USAGE_DAILY) {
        let days = tx
            .query(
                "SELECT DISTINCT event_date FROM silver.web_events WHERE event_date IS NOT NULL",
                &[],
            )
            .await
            .map_err(DbError::query("listing web event days"))?;
        let days = days.iter().map(|r| r.get(0)).collect();
        marts::web_usage::refresh(&tx, &days).await?;
    }
    let names: Vec<&'static str> = fam.iter().map(|m| m.name).collect();
    marts::freshness::bump(&tx, &names, &Touched::default()).await?;
    tx.commit()
        .await
        .map_err(DbError::query("committing the rebuild"))?;
    Ok((names, lines))
}

/// Every fact as a +1 delta, for a mart rebuilt without its facts.
async fn replay_facts(tx: &Transaction<'_>) -> Result<u64, DbError> {
    tx.batch_execute(
        "INSERT INTO gold_d_lines SELECT 1, sale_id, order_id, sale_date, customer_key, country, product_key,
             employee_key, quantity, amount FROM gold.fact_sales;
         INSERT INTO gold_d_orders SELECT 1, order_id, order_date, customer_key, country, employee_key,
             lines, units, amount FROM gold.fact_orders;",
    )
    .await
    .map_err(DbError::query("replaying the facts as deltas"))?;
    let n: i64 = tx
        .query_one("SELECT count(*) FROM gold_d_lines", &[])
        .await
        .map_err(DbError::query("counting the replayed facts"))?
        .get(0);
    Ok(n as u64)
}

/// The dimensions, every member.
async fn all_keys_dims(tx: &Transaction<'_>) -> Result<(), DbError> {
    let keys = |sql: &'static str| async move {
        tx.query(sql, &[])
            .await
            .map(|rows| rows.iter().map(|r| r.get::<_, String>(0)).collect())
            .map_err(DbError::query("listing dimension members"))
    };
    let t = Touched {
        customers: keys("SELECT DISTINCT customer_id FROM silver.customer_history").await?,
        products: keys("SELECT product_id FROM silver.products").await?,
        employees: keys("SELECT employee_id FROM silver.employees").await?,
        countries: keys("SELECT country_code FROM silver.countries").await?,
        ..Default::default()
    };
    marts::dims::refresh(tx, &t).await
}
