//! `transform verify`: recomputes every incrementally kept mart from silver with full
//! `GROUP BY`s (an independent path: no deltas, no helper tables) and compares it with the
//! stored table in both directions (`EXCEPT`), cell by cell, to the cent.

use crate::sql::DbError;
use tokio_postgres::Client;

/// One mart's comparison.
#[derive(Debug, Clone)]
pub struct MartCheck {
    pub mart: &'static str,
    pub stored_rows: i64,
    /// Rows stored but not in the recomputation.
    pub extra: i64,
    /// Rows of the recomputation missing from the store.
    pub missing: i64,
    /// A few differing rows, as text (stored first, then recomputed).
    pub samples: Vec<String>,
}

impl MartCheck {
    pub fn ok(&self) -> bool {
        self.extra == 0 && self.missing == 0
    }
}

/// Reference facts straight from silver.
const REFERENCE: &str = "
CREATE TEMP VIEW ref_fact_sales AS
SELECT s.sale_id, s.order_id, to_char(s.sale_date, 'YYYYMMDD')::integer AS date_key, s.sale_date,
       coalesce(c.customer_id, 'UNKNOWN') AS customer_key, s.customer_id AS source_customer_id,
       coalesce(p.product_id, 'UNKNOWN') AS product_key, s.product_id AS source_product_id,
       coalesce(s.employee_id, 'UNKNOWN') AS employee_key, coalesce(c.country, 'Unknown') AS country,
       s.quantity, s.unit_price, s.amount, s._bronze_event_id
FROM silver.sales s
LEFT JOIN silver.customers c ON c.customer_id = s.customer_id
LEFT JOIN silver.products p ON p.product_id = s.product_id;
CREATE TEMP VIEW ref_fact_orders AS
SELECT order_id, min(sale_date) AS order_date, min(customer_key) AS customer_key, min(country) AS country,
       min(employee_key) AS employee_key, count(*) AS lines, sum(quantity) AS units, sum(amount) AS amount
FROM ref_fact_sales GROUP BY order_id;
CREATE TEMP VIEW ref_grains(grain) AS VALUES ('day'), ('week'), ('month'), ('quarter'), ('year'), ('all');
CREATE TEMP VIEW ref_period_lines AS
SELECT g.grain, gold.period_start(g.grain, f.sale_date) AS period_start, f.*
FROM ref_fact_sales f CROSS JOIN ref_grains g;
CREATE TEMP VIEW ref_period_orders AS
SELECT g.grain, gold.period_start(g.grain, o.order_date) AS period_start, o.*
FROM ref_fact_orders o CROSS JOIN ref_grains g;
";

/// (mart, stored columns, reference query producing the same columns).
fn checks() -> Vec<(&'static str, &'static str, String)> {
    let period = |table: &'static str, group: &str, grains: &str| -> String {
        let (gsel, gby) = if group.is_empty() {
            (String::new(), String::new())
        } else {
            (format!(", {group}"), format!(", {group}"))
        };
        format!(
            "WITH l AS (SELECT grain, period_start{gsel}, sum(amount) AS revenue, count(*) AS lines, sum(quantity) AS units
                        FROM ref_period_lines WHERE grain IN ({grains}) GROUP BY grain, period_start{gby}),
                  o AS (SELECT grain, period_start{gsel}, count(*) AS orders, count(DISTINCT customer_key) AS customers
                        FROM ref_period_orders WHERE grain IN ({grains}) GROUP BY grain, period_start{gby})
             SELECT grain, period_start{gsel}, coalesce(revenue, 0), coalesce(lines, 0), coalesce(units, 0),
                    coalesce(orders, 0), coalesce(customers, 0), round(revenue / nullif(orders, 0), 2)
             FROM l FULL JOIN o USING (grain, period_start{gby}) /* {table} */"
        )
    };
    vec![
        ("fact_sales", "SELECT sale_id, order_id, date_key, sale_date, customer_key, source_customer_id, product_key, source_product_id, employee_key, country, quantity, unit_price, amount, _bronze_event_id FROM gold.fact_sales",
         "SELECT * FROM ref_fact_sales".into()),
        ("fact_orders", "SELECT order_id, order_date, customer_key, country, employee_key, lines, units, amount FROM gold.fact_orders",
         "SELECT * FROM ref_fact_orders".into()),
        ("sales_by_period", "SELECT grain, period_start, revenue, lines, units, orders, customers, avg_basket FROM gold.sales_by_period",
         period("sales_by_period", "", "'day', 'week', 'month', 'quarter', 'year', 'all'")),
        ("sales_by_period growth", "SELECT grain, period_start, prev_revenue, growth_prev_pct, yoy_revenue, growth_yoy_pct FROM gold.sales_by_period WHERE grain <> 'all'",
         "WITH r AS (SELECT grain, period_start, sum(amount) AS revenue FROM ref_period_lines WHERE grain <> 'all' GROUP BY 1, 2)
          SELECT r.grain, r.period_start, pr.revenue, round(100 * (r.revenue / nullif(pr.revenue, 0) - 1), 2),
                 yr.revenue, round(100 * (r.revenue / nullif(yr.revenue, 0) - 1), 2)
          FROM r LEFT JOIN r pr ON pr.grain = r.grain AND pr.period_start = gold.period_shift(r.grain, r.period_start, -1)
                 LEFT JOIN r yr ON yr.grain = r.grain AND yr.period_start = gold.year_ago(r.grain, r.period_start)".into()),
        ("country_sales", "SELECT grain, period_start, country, revenue, lines, units, orders, customers, avg_basket FROM gold.country_sales",
         period("country_sales", "country", "'month', 'year', 'all'")),
        ("employee_sales", "SELECT grain, period_start, employee_key, revenue, lines, units, orders, customers, avg_basket FROM gold.employee_sales",
         period("employee_sales", "employee_key", "'month', 'all'")),
        ("product_month", "SELECT month, product_key, revenue, units, lines, orders, revenue_rank, revenue_share, prev_revenue, growth_prev_pct FROM gold.product_month",
         "WITH m AS (SELECT date_trunc('month', sale_date)::date AS month, product_key, sum(amount) AS revenue, sum(quantity) AS units,
                            count(*) AS lines, count(DISTINCT order_id) AS orders FROM ref_fact_sales GROUP BY 1, 2)
          SELECT m.*, rank() OVER (PARTITION BY m.month ORDER BY m.revenue DESC),
                 round(m.revenue / nullif(sum(m.revenue) OVER (PARTITION BY m.month), 0), 6),
                 pr.revenue, round(100 * (m.revenue / nullif(pr.revenue, 0) - 1), 2)
          FROM m LEFT JOIN m pr ON pr.product_key = m.product_key AND pr.month = (m.month - interval '1 month')::date".into()),
        ("customer_ltv", "SELECT customer_key, country, first_order_date, last_order_date, orders, lines, revenue, avg_basket, tenure_days FROM gold.customer_ltv",
         "SELECT customer_key, min(country), min(order_date), max(order_date), count(*), sum(lines), sum(amount),
                 round(sum(amount) / count(*), 2), max(order_date) - min(order_date)
          FROM ref_fact_orders GROUP BY customer_key".into()),
        ("distribution", "SELECT scope, period_start, country, measure, n, total, mean, stddev, min, round(p25, 6), round(median, 6), round(p75, 6), max FROM gold.distribution",
         "WITH x AS (SELECT 'month' AS scope, date_trunc('month', sale_date)::date AS period_start, '' AS country, 'line' AS measure, amount FROM ref_fact_sales
                     UNION ALL SELECT 'country', date '0001-01-01', country, 'line', amount FROM ref_fact_sales
                     UNION ALL SELECT 'month', date_trunc('month', order_date)::date, '', 'basket', amount FROM ref_fact_orders
                     UNION ALL SELECT 'country', date '0001-01-01', country, 'basket', amount FROM ref_fact_orders)
          SELECT scope, period_start, country, measure, count(*), sum(amount), round(avg(amount), 6),
                 round(stddev_samp(amount), 6), min(amount),
                 round(percentile_cont(0.25) WITHIN GROUP (ORDER BY amount)::numeric, 6),
                 round(percentile_cont(0.5) WITHIN GROUP (ORDER BY amount)::numeric, 6),
                 round(percentile_cont(0.75) WITHIN GROUP (ORDER BY amount)::numeric, 6), max(amount)
          FROM x GROUP BY 1, 2, 3, 4".into()),
        ("dim_customer", "SELECT customer_key, version, country, is_current FROM gold.dim_customer WHERE customer_key <> 'UNKNOWN'",
         "SELECT customer_id, version, coalesce(country, 'Unknown'), is_current FROM silver.customer_history".into()),
        ("dim_product", "SELECT product_key, product_name, category, unit_price FROM gold.dim_product WHERE product_key <> 'UNKNOWN'",
         "SELECT product_id, product_name, coalesce(category, 'Unknown'), unit_price FROM silver.products".into()),
        ("web_usage_daily", "SELECT day, channel, sessions, page_views, customers, events FROM gold.web_usage_daily",
         "SELECT event_date, coalesce(channel, 'unknown'), count(DISTINCT session_id),
                 count(*) FILTER (WHERE event_type IN ('page_view', 'screen_view')), count(DISTINCT customer_id), count(*)
          FROM silver.web_events WHERE event_date IS NOT NULL GROUP BY 1, 2".into()),
    ]
}

/// Compares every mart with its recomputation; percentiles are compared rounded to
/// 6 decimals (PostgreSQL's `percentile_cont` computes in double precision).
pub async fn verify(client: &mut Client) -> Result<Vec<MartCheck>, DbError> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(false)
        .start()
        .await
        .map_err(DbError::query("starting the verification"))?;
    tx.batch_execute(REFERENCE)
        .await
        .map_err(DbError::query("creating the reference views"))?;
    let mut out = Vec::new();
    for (mart, stored, reference) in checks() {
        let q = format!(
            "WITH s AS ({stored}), r AS ({reference}),
                  extra AS (SELECT * FROM s EXCEPT ALL SELECT * FROM r),
                  missing AS (SELECT * FROM r EXCEPT ALL SELECT * FROM s)
             SELECT (SELECT count(*) FROM s), (SELECT count(*) FROM extra), (SELECT count(*) FROM missing),
                    ARRAY(SELECT 'stored ' || e::text FROM extra e LIMIT 3) || ARRAY(SELECT 'recomputed ' || m::text FROM missing m LIMIT 3)"
        );
        let row = tx
            .query_one(&q, &[])
            .await
            .map_err(DbError::query(format!("verifying gold mart {mart}")))?;
        out.push(MartCheck {
            mart,
            stored_rows: row.get(0),
            extra: row.get(1),
            missing: row.get(2),
            samples: row.get(3),
        });
    }
    tx.rollback()
        .await
        .map_err(DbError::query("ending the verification"))?;
    Ok(out)
}
