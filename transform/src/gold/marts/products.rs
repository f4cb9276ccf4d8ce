//! Product performance per product and month (`gold.product_month`): revenue, units, lines,
//! distinct orders, rank and share of the month's revenue, growth against the previous
//! month. Top N for any period: sum the months of the period (see the README).
//!
//! Orders are exact from the deltas: a touched order is in `gold_d_lines` whole, with its
//! old lines (−1) and new lines (+1), so the change in distinct orders of a group is the
//! number of distinct new orders minus the number of distinct old ones.

use crate::gold::{col, Mart};
use crate::sql::DbError;
use tokio_postgres::Transaction;

pub const PRODUCT_MONTH: Mart = Mart {
    name: "product_month",
    table: "gold.product_month",
    comment: "Product performance: one row per product and month with sales (a line counts in the month of its date).",
    columns: &[
        col("month", "date", "First day of the month."),
        col("product_key", "text", "Key into dim_product (UNKNOWN for lines whose product is not in silver)."),
        col("revenue", "numeric", "Revenue of the product in the month."),
        col("units", "numeric", "Quantity sold."),
        col("lines", "bigint", "Sale lines."),
        col("orders", "bigint", "Distinct orders containing the product."),
        col("revenue_rank", "bigint", "Rank of the product by revenue within the month (1 = best; equal revenues share a rank)."),
        col("revenue_share", "numeric", "Share of the month's revenue, 0-1, 6 decimals."),
        col("prev_revenue", "numeric", "Revenue of the product in the previous month (null if none)."),
        col("growth_prev_pct", "numeric", "Growth against the previous month, percent, 2 decimals."),
    ],
    key: &["month", "product_key"],
    indexes: &["product_key, month"],
    module: "transform/src/gold/marts/products.rs",
};

const SQL: &str = "
DELETE FROM gold_pm;
INSERT INTO gold_pm
SELECT date_trunc('month', sale_date)::date, product_key, sum(sign * amount), sum(sign * quantity),
       sum(sign)::bigint,
       (count(DISTINCT order_id) FILTER (WHERE sign = 1) - count(DISTINCT order_id) FILTER (WHERE sign = -1))::bigint
FROM gold_d_lines GROUP BY 1, 2;
ANALYZE gold_pm;
INSERT INTO gold.product_month AS t (month, product_key, revenue, units, lines, orders)
SELECT month, product_key, revenue, units, lines, orders FROM gold_pm
WHERE revenue <> 0 OR units <> 0 OR lines <> 0 OR orders <> 0 ORDER BY 1, 2
ON CONFLICT (month, product_key) DO UPDATE SET revenue = t.revenue + EXCLUDED.revenue,
    units = t.units + EXCLUDED.units, lines = t.lines + EXCLUDED.lines, orders = t.orders + EXCLUDED.orders;
DELETE FROM gold.product_month t USING gold_pm x
WHERE t.month = x.month AND t.product_key = x.product_key AND t.lines = 0;
WITH m AS (SELECT DISTINCT month FROM gold_pm),
r AS (SELECT t.month, t.product_key,
             rank() OVER (PARTITION BY t.month ORDER BY t.revenue DESC) AS rnk,
             round(t.revenue / nullif(sum(t.revenue) OVER (PARTITION BY t.month), 0), 6) AS share
      FROM gold.product_month t JOIN m USING (month))
UPDATE gold.product_month t SET revenue_rank = r.rnk, revenue_share = r.share
FROM r WHERE t.month = r.month AND t.product_key = r.product_key
  AND (t.revenue_rank, t.revenue_share) IS DISTINCT FROM (r.rnk, r.share);
WITH k AS (SELECT month, product_key FROM gold_pm
           UNION SELECT (month + interval '1 month')::date, product_key FROM gold_pm)
UPDATE gold.product_month t SET prev_revenue = pr.revenue,
    growth_prev_pct = round(100 * (t.revenue / nullif(pr.revenue, 0) - 1), 2)
FROM k LEFT JOIN gold.product_month pr
     ON pr.product_key = k.product_key AND pr.month = (k.month - interval '1 month')::date
WHERE t.month = k.month AND t.product_key = k.product_key
  AND (t.prev_revenue, t.growth_prev_pct) IS DISTINCT FROM
      (pr.revenue, round(100 * (t.revenue / nullif(pr.revenue, 0) - 1), 2));
";

/// Applies the batch's line deltas.
pub async fn refresh(tx: &Transaction<'_>) -> Result<(), DbError> {
    tx.batch_execute(SQL)
        .await
        .map_err(DbError::query("maintaining gold.product_month"))
}
