//! `gold.fact_sales` (line grain) and `gold.fact_orders` (order grain), and the batch's
//! deltas the other marts are maintained from.
//!
//! A touched order is re-derived whole: every old line of it goes to `gold_d_lines` with
//! sign −1 and every new one with +1 (same for `gold_d_orders`), so a mart can count
//! distinct orders exactly from the deltas alone.
//!
//! Attributes: the country of a line is the customer's **current** country (a customer who
//! moves takes their sales with them; the history is in `gold.dim_customer`). A line whose
//! customer or product is not in silver points to the `UNKNOWN` member and keeps the source
//! reference; when the customer or product arrives, the line is re-resolved.

use crate::gold::{col, Mart};
use crate::sql::DbError;
use tokio_postgres::Transaction;

pub const FACT_SALES: Mart = Mart {
    name: "fact_sales",
    table: "gold.fact_sales",
    comment: "Sales fact, one row per valid sale line of silver.sales, with keys into dim_date, dim_customer, dim_product, dim_employee and dim_country. Country is the customer's current country.",
    columns: &[
        col("sale_id", "text", "Natural key of the sale line."),
        col("order_id", "text", "Order (basket) of the line; the line's sale_id when the source has no order."),
        col("date_key", "integer", "Key into dim_date (YYYYMMDD)."),
        col("sale_date", "date", "Date of the sale."),
        col("customer_key", "text", "Key into dim_customer: the customer id, or UNKNOWN when silver has no such customer."),
        col("source_customer_id", "text", "Customer reference as the source wrote it (cleaned)."),
        col("product_key", "text", "Key into dim_product: the product id, or UNKNOWN."),
        col("source_product_id", "text", "Product reference as the source wrote it (cleaned)."),
        col("employee_key", "text", "Key into dim_employee: the sales person, or UNKNOWN when the line has none."),
        col("country", "text", "Key into dim_country: the customer's current country, Unknown when not known."),
        col("quantity", "numeric", "Quantity sold (may be fractional)."),
        col("unit_price", "numeric(12,2)", "Price per unit."),
        col("amount", "numeric(14,2)", "Revenue of the line."),
        col("_bronze_event_id", "bigint", "Lineage: bronze event of the silver row."),
    ],
    key: &["sale_id"],
    indexes: &[
        "order_id",
        "source_customer_id",
        "source_product_id",
        "sale_date",
    ],
    module: "transform/src/gold/marts/facts.rs",
};

pub const FACT_ORDERS: Mart = Mart {
    name: "fact_orders",
    table: "gold.fact_orders",
    comment: "Order (basket) fact, one row per order of gold.fact_sales. An order's date, customer, country and employee are those of its lines (the lowest when its lines disagree).",
    columns: &[
        col("order_id", "text", "Natural key of the order."),
        col("order_date", "date", "Date of the order (its first line's date)."),
        col("customer_key", "text", "Key into dim_customer."),
        col("country", "text", "The customer's current country."),
        col("employee_key", "text", "Sales person (UNKNOWN when none)."),
        col("lines", "bigint", "Number of lines."),
        col("units", "numeric", "Quantity over the lines."),
        col("amount", "numeric(14,2)", "Basket value: the sum of the lines' amounts."),
    ],
    key: &["order_id"],
    indexes: &["customer_key", "order_date", "employee_key, order_date"],
    module: "transform/src/gold/marts/facts.rs",
};

/// The session's delta tables, emptied at each commit.
pub const SESSION: &str = "
CREATE TEMP TABLE IF NOT EXISTS gold_touched_keys (model text NOT NULL, key text NOT NULL) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS gold_touched_orders (order_id text PRIMARY KEY) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS gold_d_lines (sign integer NOT NULL, sale_id text, order_id text,
    sale_date date, customer_key text, country text, product_key text, employee_key text,
    quantity numeric, amount numeric) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS gold_d_orders (sign integer NOT NULL, order_id text, order_date date,
    customer_key text, country text, employee_key text, lines bigint, units numeric, amount numeric)
    ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS gold_px (grain text, p date, grp text, revenue numeric,
             lines bigint, units numeric, orders bigint) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS gold_cx (grain text, p date, grp text, dc bigint) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS gold_pm (month date, product_key text, revenue numeric,
    units numeric, lines bigint, orders bigint) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS gold_tc (customer_key text PRIMARY KEY) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS gold_dh (scope text, period_start date, country text,
    measure text, amount numeric, n bigint) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS gold_dk (scope text, period_start date, country text, measure text) ON COMMIT DELETE ROWS;
";

const LINE_COLS: &str =
    "sale_id, order_id, sale_date, customer_key, country, product_key, employee_key, quantity, amount";
const ORDER_COLS: &str =
    "order_id, order_date, customer_key, country, employee_key, lines, units, amount";

/// Re-derives the orders of the staged keys (`gold_touched_keys`): the orders of the touched
/// sale lines, old and new, and those whose customer or product resolution changed;
/// returns (orders touched, delta lines).
pub async fn refresh(tx: &Transaction<'_>) -> Result<(u64, u64), DbError> {
    tx.batch_execute("ANALYZE gold_touched_keys")
        .await
        .map_err(DbError::query("analysing the touched keys"))?;
    let orders = tx
        .execute(
            "INSERT INTO gold_touched_orders (order_id)
             SELECT f.order_id FROM gold.fact_sales f
                   JOIN gold_touched_keys k ON k.model = 'sales' AND k.key = f.sale_id
             UNION SELECT s.order_id FROM silver.sales s
                   JOIN gold_touched_keys k ON k.model = 'sales' AND k.key = s.sale_id
             UNION SELECT f.order_id FROM gold.fact_sales f
                   JOIN gold_touched_keys k ON k.model = 'customers' AND k.key = f.source_customer_id
                   LEFT JOIN silver.customers c ON c.customer_id = f.source_customer_id
                   WHERE (f.customer_key, f.country) IS DISTINCT FROM
                         (coalesce(c.customer_id, 'UNKNOWN'), coalesce(c.country, 'Unknown'))
             UNION SELECT f.order_id FROM gold.fact_sales f
                   JOIN gold_touched_keys k ON k.model = 'products' AND k.key = f.source_product_id
                   LEFT JOIN silver.products p ON p.product_id = f.source_product_id
                   WHERE f.product_key IS DISTINCT FROM coalesce(p.product_id, 'UNKNOWN')
             ON CONFLICT DO NOTHING",
            &[],
        )
        .await
        .map_err(DbError::query("finding the orders the batch touches"))?;
    if orders == 0 {
        return Ok((0, 0));
    }
    let lines = rederive(tx).await?;
    Ok((orders, lines))
}

/// Replaces the facts of `gold_touched_orders` and fills the deltas.
pub async fn rederive(tx: &Transaction<'_>) -> Result<u64, DbError> {
    let sql = format!(
        "ANALYZE gold_touched_orders;
         INSERT INTO gold_d_lines (sign, {LINE_COLS})
         SELECT -1, {LINE_COLS} FROM gold.fact_sales f JOIN gold_touched_orders USING (order_id);
         DELETE FROM gold.fact_sales f USING gold_touched_orders t WHERE f.order_id = t.order_id;
         INSERT INTO gold.fact_sales (sale_id, order_id, date_key, sale_date, customer_key,
             source_customer_id, product_key, source_product_id, employee_key, country,
             quantity, unit_price, amount, _bronze_event_id)
         SELECT s.sale_id, s.order_id, to_char(s.sale_date, 'YYYYMMDD')::integer, s.sale_date,
                coalesce(c.customer_id, 'UNKNOWN'), s.customer_id,
                coalesce(p.product_id, 'UNKNOWN'), s.product_id,
                coalesce(s.employee_id, 'UNKNOWN'), coalesce(c.country, 'Unknown'),
                s.quantity, s.unit_price, s.amount, s._bronze_event_id
         FROM silver.sales s JOIN gold_touched_orders USING (order_id)
         LEFT JOIN silver.customers c ON c.customer_id = s.customer_id
         LEFT JOIN silver.products p ON p.product_id = s.product_id;
         INSERT INTO gold_d_lines (sign, {LINE_COLS})
         SELECT 1, {LINE_COLS} FROM gold.fact_sales f JOIN gold_touched_orders USING (order_id);
         INSERT INTO gold_d_orders (sign, {ORDER_COLS})
         SELECT -1, {ORDER_COLS} FROM gold.fact_orders JOIN gold_touched_orders USING (order_id);
         DELETE FROM gold.fact_orders o USING gold_touched_orders t WHERE o.order_id = t.order_id;
         INSERT INTO gold.fact_orders ({ORDER_COLS})
         SELECT order_id, min(sale_date), min(customer_key), min(country), min(employee_key),
                count(*), sum(quantity), sum(amount)
         FROM gold_d_lines WHERE sign = 1 GROUP BY order_id;
         INSERT INTO gold_d_orders (sign, {ORDER_COLS})
         SELECT 1, {ORDER_COLS} FROM gold.fact_orders JOIN gold_touched_orders USING (order_id);
         ANALYZE gold_d_lines;
         ANALYZE gold_d_orders;"
    );
    tx.batch_execute(&sql)
        .await
        .map_err(DbError::query("re-deriving the touched orders' facts"))?;
    let n: i64 = tx
        .query_one("SELECT count(*) FROM gold_d_lines", &[])
        .await
        .map_err(DbError::query("counting the line deltas"))?
        .get(0);
    Ok(n as u64)
}
