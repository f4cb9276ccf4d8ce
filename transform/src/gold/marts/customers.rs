//! Customer lifetime value (`gold.customer_ltv`): per customer, first and last purchase,
//! orders, revenue, average basket and tenure, recomputed for the customers whose orders
//! the batch touched (min and max cannot be maintained by deltas). Recency depends on the
//! reporting date, so it lives with the RFM scores (`gold.customer_rfm`), refreshed by the
//! analytics job.

use crate::gold::{col, Mart};
use crate::sql::DbError;
use tokio_postgres::Transaction;

pub const CUSTOMER_LTV: Mart = Mart {
    name: "customer_ltv",
    table: "gold.customer_ltv",
    comment: "Customer lifetime value: one row per customer with at least one order (UNKNOWN gathers the orders of unknown customers).",
    columns: &[
        col("customer_key", "text", "Key into dim_customer."),
        col("country", "text", "The customer's current country."),
        col("first_order_date", "date", "Date of the first order."),
        col("last_order_date", "date", "Date of the last order."),
        col("orders", "bigint", "Distinct orders."),
        col("lines", "bigint", "Sale lines."),
        col("revenue", "numeric", "Revenue over the customer's lifetime."),
        col("avg_basket", "numeric", "revenue / orders, rounded to the cent."),
        col("tenure_days", "integer", "Days from the first to the last order."),
    ],
    key: &["customer_key"],
    indexes: &["revenue DESC"],
    module: "transform/src/gold/marts/customers.rs",
};

const SQL: &str = "
DELETE FROM gold_tc;
INSERT INTO gold_tc SELECT DISTINCT customer_key FROM gold_d_orders;
ANALYZE gold_tc;
DELETE FROM gold.customer_ltv t USING gold_tc c WHERE t.customer_key = c.customer_key;
INSERT INTO gold.customer_ltv (customer_key, country, first_order_date, last_order_date, orders,
    lines, revenue, avg_basket, tenure_days)
SELECT o.customer_key, min(o.country), min(o.order_date), max(o.order_date), count(*), sum(o.lines),
       sum(o.amount), round(sum(o.amount) / count(*), 2), max(o.order_date) - min(o.order_date)
FROM gold.fact_orders o JOIN gold_tc c USING (customer_key)
GROUP BY o.customer_key ORDER BY 1;
";

/// Recomputes the touched customers.
pub async fn refresh(tx: &Transaction<'_>) -> Result<(), DbError> {
    tx.batch_execute(SQL)
        .await
        .map_err(DbError::query("maintaining gold.customer_ltv"))
}
