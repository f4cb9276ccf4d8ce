//! The gold marts, one module each. [`ALL`] lists their tables in refresh order.

pub mod analytics;
pub mod customers;
pub mod dims;
pub mod distribution;
pub mod facts;
pub mod freshness;
pub mod periods;
pub mod products;
pub mod quality;
pub mod web_usage;

use super::Mart;
use crate::sql::DbError;
use tokio_postgres::Transaction;

/// Every stored gold table.
pub const ALL: &[&Mart] = &[
    &dims::DIM_DATE,
    &dims::DIM_CUSTOMER,
    &dims::DIM_PRODUCT,
    &dims::DIM_COUNTRY,
    &dims::DIM_EMPLOYEE,
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
    &web_usage::WEB_USAGE_DAILY,
    &quality::DATA_QUALITY_DAILY,
    &quality::QUARANTINE_REASONS_DAILY,
    &quality::DATA_QUALITY_BATCHES,
    &freshness::FRESHNESS,
    &freshness::VERSION,
    &analytics::CUSTOMER_RFM,
    &analytics::COHORT_RETENTION,
    &analytics::FORECAST_DAILY,
    &analytics::FORECAST_RUNS,
    &analytics::ANOMALIES_DAILY,
    &analytics::ANOMALIES_LIVE,
    &analytics::COUNTRY_SALES_REPORTING,
];

/// Helper functions the marts' SQL uses (idempotent).
pub const FUNCTIONS: &str = r#"
CREATE SCHEMA IF NOT EXISTS gold;
CREATE OR REPLACE FUNCTION gold.period_start(grain text, d date) RETURNS date
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE grain WHEN 'day' THEN d WHEN 'all' THEN date '0001-01-01'
                      ELSE date_trunc(grain, d::timestamp)::date END
$$;
COMMENT ON FUNCTION gold.period_start(text, date) IS 'First day of the period of the given grain (day, week = ISO week from Monday, month, quarter, year; all = 0001-01-01) that contains the date.';
CREATE OR REPLACE FUNCTION gold.period_shift(grain text, p date, n integer) RETURNS date
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE grain WHEN 'day' THEN p + n WHEN 'week' THEN p + 7 * n
                      WHEN 'month' THEN (p + make_interval(months => n))::date
                      WHEN 'quarter' THEN (p + make_interval(months => 3 * n))::date
                      WHEN 'year' THEN (p + make_interval(years => n))::date END
$$;
COMMENT ON FUNCTION gold.period_shift(text, date, integer) IS 'The start of the period n periods after (n < 0: before) the one starting at p; null for grain all.';
CREATE OR REPLACE FUNCTION gold.year_ago(grain text, p date) RETURNS date
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE grain WHEN 'day' THEN (p - interval '1 year')::date WHEN 'week' THEN p - 364
                      WHEN 'all' THEN NULL ELSE (p - interval '1 year')::date END
$$;
CREATE OR REPLACE FUNCTION gold.amount_bucket(a numeric) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN abs(a) < 1000 THEN trunc(a) ELSE trunc(a, 3 - length(trunc(abs(a))::text)) END
$$;
COMMENT ON FUNCTION gold.amount_bucket(numeric) IS 'Bucket of an amount in gold.amount_buckets: truncated toward zero to whole units below 1000, to three significant digits above. Monotonic: buckets sort as their amounts do.';
CREATE OR REPLACE FUNCTION gold.amount_bucket_width(b numeric) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN abs(b) < 1000 THEN 1::numeric ELSE 10::numeric ^ (length(trunc(abs(b))::text) - 3) END
$$;
COMMENT ON FUNCTION gold.amount_bucket_width(numeric) IS 'Width of a bucket of gold.amount_bucket: its amounts lie within one width of it.';
COMMENT ON FUNCTION gold.year_ago(text, date) IS 'The same period a year before: the same calendar day, the ISO week 52 weeks before, the same month, quarter or year.';
"#;

/// Convenience objects over the stored marts, recreated at every start: the live shop
/// pipeline function over its silver mirror.
pub const VIEWS: &str = r#"
CREATE OR REPLACE FUNCTION gold.shop_order_status(p_entity text DEFAULT 'shop_orders')
RETURNS TABLE (status text, orders bigint, order_value numeric, last_change timestamptz)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF to_regclass(format('silver.%I', p_entity)) IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT status::text, count(*), coalesce(sum(total), 0)::numeric, max(_committed_at) FROM silver.%I GROUP BY status ORDER BY 1',
        p_entity);
END
$$;
COMMENT ON FUNCTION gold.shop_order_status(text) IS 'Live order pipeline of the demo shop (MySQL binlog → silver mirror silver.<p_entity>, default shop_orders): orders and their value per status (placed, paid, shipped), and the last change applied. Empty while the mirror does not exist.';
"#;

/// Fills a newly created mart from silver (or with its static rows).
pub async fn seed(tx: &Transaction<'_>, m: &Mart) -> Result<(), DbError> {
    match m.name {
        "dim_date" => dims::seed_dates(tx).await,
        "version" => freshness::seed_version(tx).await,
        "amount_buckets" => {
            tx.batch_execute(distribution::SEED_BUCKETS)
                .await
                .map_err(DbError::query(
                    "filling gold.amount_buckets from the histogram",
                ))
        }
        _ => Ok(()),
    }
}
