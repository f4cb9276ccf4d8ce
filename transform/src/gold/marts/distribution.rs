//! Distribution statistics per month and per country (`gold.distribution`): count, mean,
//! median, p25, p75, sample standard deviation, min and max of line amounts and of basket
//! values, exact. Count, sum and sum of squares follow the deltas; the order statistics
//! come from `gold.amount_histogram` (each distinct amount with its multiplicity), read for
//! the touched groups only. Percentiles are continuous (linear interpolation between the
//! two nearest ranks, as PostgreSQL's `percentile_cont` and DuckDB's `quantile_cont`).

use crate::gold::{col, Mart};
use crate::sql::DbError;
use tokio_postgres::Transaction;

pub const AMOUNT_HISTOGRAM: Mart = Mart {
    name: "amount_histogram",
    table: "gold.amount_histogram",
    comment: "Helper of gold.distribution: each distinct amount of a scope (month or country) and measure (line or basket) with how many lines or orders have it.",
    columns: &[
        col("scope", "text", "month or country."),
        col("period_start", "date", "Month (scope month) or 0001-01-01 (scope country)."),
        col("country", "text", "Country (scope country) or empty (scope month)."),
        col("measure", "text", "line (line amounts) or basket (order values)."),
        col("amount", "numeric", "The amount."),
        col("n", "bigint", "How many lines or orders have it."),
    ],
    key: &["scope", "period_start", "country", "measure", "amount"],
    indexes: &[],
    module: "transform/src/gold/marts/distribution.rs",
};

pub const DISTRIBUTION: Mart = Mart {
    name: "distribution",
    table: "gold.distribution",
    comment: "Distribution statistics of line amounts and basket values per month (scope month; a line in the month of its date, an order in the month of its date) and per customer country (scope country, all time).",
    columns: &[
        col("scope", "text", "month or country."),
        col("period_start", "date", "Month (scope month) or 0001-01-01 (scope country)."),
        col("country", "text", "Country (scope country) or empty (scope month)."),
        col("measure", "text", "line or basket."),
        col("n", "bigint", "Count of lines or orders."),
        col("total", "numeric", "Sum of the amounts."),
        col("sum_squares", "numeric", "Sum of the squared amounts (for the variance)."),
        col("mean", "numeric", "Mean, 6 decimals."),
        col("stddev", "numeric", "Sample standard deviation (n - 1), 6 decimals; null below 2 values."),
        col("min", "numeric", "Smallest amount."),
        col("p25", "numeric", "25th percentile (continuous)."),
        col("median", "numeric", "Median (continuous)."),
        col("p75", "numeric", "75th percentile (continuous)."),
        col("max", "numeric", "Largest amount."),
    ],
    key: &["scope", "period_start", "country", "measure"],
    indexes: &[],
    module: "transform/src/gold/marts/distribution.rs",
};

const SQL: &str = "
DELETE FROM gold_dh;
INSERT INTO gold_dh
SELECT 'month', date_trunc('month', sale_date)::date, '', 'line', amount, sum(sign) FROM gold_d_lines GROUP BY 2, 5
UNION ALL
SELECT 'country', date '0001-01-01', country, 'line', amount, sum(sign) FROM gold_d_lines GROUP BY 3, 5
UNION ALL
SELECT 'month', date_trunc('month', order_date)::date, '', 'basket', amount, sum(sign) FROM gold_d_orders GROUP BY 2, 5
UNION ALL
SELECT 'country', date '0001-01-01', country, 'basket', amount, sum(sign) FROM gold_d_orders GROUP BY 3, 5;
DELETE FROM gold_dh WHERE n = 0;
INSERT INTO gold.amount_histogram AS h (scope, period_start, country, measure, amount, n)
SELECT * FROM gold_dh ORDER BY 1, 2, 3, 4, 5
ON CONFLICT (scope, period_start, country, measure, amount) DO UPDATE SET n = h.n + EXCLUDED.n;
DELETE FROM gold.amount_histogram h USING gold_dh d
WHERE h.scope = d.scope AND h.period_start = d.period_start AND h.country = d.country
  AND h.measure = d.measure AND h.amount = d.amount AND h.n = 0;
DELETE FROM gold_dk;
INSERT INTO gold_dk SELECT DISTINCT scope, period_start, country, measure FROM gold_dh;
DELETE FROM gold.distribution t USING gold_dk k
WHERE t.scope = k.scope AND t.period_start = k.period_start AND t.country = k.country AND t.measure = k.measure;
INSERT INTO gold.distribution
WITH h AS (
    SELECT h.scope, h.period_start, h.country, h.measure, h.amount, h.n,
           sum(h.n) OVER w - h.n AS below,
           sum(h.n) OVER (PARTITION BY h.scope, h.period_start, h.country, h.measure) AS cnt
    FROM gold.amount_histogram h JOIN gold_dk k USING (scope, period_start, country, measure)
    WINDOW w AS (PARTITION BY h.scope, h.period_start, h.country, h.measure ORDER BY h.amount)),
g AS (SELECT scope, period_start, country, measure, max(cnt) AS n, sum(amount * n) AS total,
             sum(amount * amount * n) AS sum_squares, min(amount) AS min, max(amount) AS max
      FROM h GROUP BY 1, 2, 3, 4),
q(q) AS (VALUES (0.25), (0.5), (0.75)),
v AS (SELECT h.scope, h.period_start, h.country, h.measure, q.q,
             q.q * (h.cnt - 1) - floor(q.q * (h.cnt - 1)) AS frac,
             max(h.amount) FILTER (WHERE h.below <= floor(q.q * (h.cnt - 1))
                                     AND floor(q.q * (h.cnt - 1)) < h.below + h.n) AS lo,
             max(h.amount) FILTER (WHERE h.below <= ceil(q.q * (h.cnt - 1))
                                     AND ceil(q.q * (h.cnt - 1)) < h.below + h.n) AS hi
      FROM h CROSS JOIN q GROUP BY 1, 2, 3, 4, 5, 6),
p AS (SELECT scope, period_start, country, measure,
             max(lo + frac * (hi - lo)) FILTER (WHERE q = 0.25) AS p25,
             max(lo + frac * (hi - lo)) FILTER (WHERE q = 0.5) AS median,
             max(lo + frac * (hi - lo)) FILTER (WHERE q = 0.75) AS p75
      FROM v GROUP BY 1, 2, 3, 4)
SELECT g.scope, g.period_start, g.country, g.measure, g.n, g.total, g.sum_squares,
       round(g.total / g.n, 6),
       CASE WHEN g.n > 1 THEN round(sqrt(greatest((g.sum_squares - g.total * g.total / g.n) / (g.n - 1), 0)), 6) END,
       g.min, p.p25, p.median, p.p75, g.max
FROM g JOIN p USING (scope, period_start, country, measure)
ORDER BY 1, 2, 3, 4;
";

/// Applies the batch's deltas and recomputes the touched groups' statistics.
pub async fn refresh(tx: &Transaction<'_>) -> Result<(), DbError> {
    tx.batch_execute(SQL)
        .await
        .map_err(DbError::query("maintaining gold.distribution"))
}
