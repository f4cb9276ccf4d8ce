//! Distribution statistics per month and per country (`gold.distribution`): count, mean,
//! median, p25, p75, sample standard deviation, min and max of line amounts and of basket
//! values, exact. Count, sum and sum of squares follow the deltas; the order statistics
//! come from `gold.amount_histogram` (each distinct amount with its multiplicity) and
//! `gold.amount_buckets` (the same, summed by bucket), read for the touched groups only:
//! min and max by index, a percentile by a running count over the buckets, then over the
//! one bucket that holds its rank. Percentiles are continuous (linear interpolation between the
//! two nearest ranks, as PostgreSQL's `percentile_cont` and DuckDB's `quantile_cont`).

use crate::gold::{col, Column, Mart};
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

/// The group columns the distribution tables share.
const GROUP: [Column; 4] = [
    col("scope", "text", "month or country."),
    col(
        "period_start",
        "date",
        "Month (scope month) or 0001-01-01 (scope country).",
    ),
    col(
        "country",
        "text",
        "Country (scope country) or empty (scope month).",
    ),
    col("measure", "text", "line or basket."),
];

pub const AMOUNT_BUCKETS: Mart = Mart {
    name: "amount_buckets",
    table: "gold.amount_buckets",
    comment: "Helper of gold.distribution: gold.amount_histogram summed by bucket (gold.amount_bucket: whole units below 1000, three significant digits above), so that a percentile of a large group reads a few thousand rows, not every distinct amount.",
    columns: &[
        GROUP[0],
        GROUP[1],
        GROUP[2],
        GROUP[3],
        col("bucket", "numeric", "gold.amount_bucket of the amounts it counts."),
        col("n", "bigint", "How many lines or orders have an amount in the bucket."),
    ],
    key: &["scope", "period_start", "country", "measure", "bucket"],
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

/// Deltas per distinct amount, the histogram and its buckets, then the additive sums.
const APPLY: &str = "
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
ANALYZE gold_dh;
INSERT INTO gold.amount_histogram AS h (scope, period_start, country, measure, amount, n)
SELECT * FROM gold_dh ORDER BY 1, 2, 3, 4, 5
ON CONFLICT (scope, period_start, country, measure, amount) DO UPDATE SET n = h.n + EXCLUDED.n;
DELETE FROM gold.amount_histogram h USING gold_dh d
WHERE h.scope = d.scope AND h.period_start = d.period_start AND h.country = d.country
  AND h.measure = d.measure AND h.amount = d.amount AND h.n = 0;
INSERT INTO gold.amount_buckets AS b (scope, period_start, country, measure, bucket, n)
SELECT scope, period_start, country, measure, gold.amount_bucket(amount), sum(n) FROM gold_dh
GROUP BY 1, 2, 3, 4, 5 HAVING sum(n) <> 0 ORDER BY 1, 2, 3, 4, 5
ON CONFLICT (scope, period_start, country, measure, bucket) DO UPDATE SET n = b.n + EXCLUDED.n;
DELETE FROM gold.amount_buckets b
USING (SELECT DISTINCT scope, period_start, country, measure, gold.amount_bucket(amount) AS bucket FROM gold_dh) d
WHERE b.scope = d.scope AND b.period_start = d.period_start AND b.country = d.country
  AND b.measure = d.measure AND b.bucket = d.bucket AND b.n = 0;
INSERT INTO gold.distribution AS t (scope, period_start, country, measure, n, total, sum_squares)
SELECT scope, period_start, country, measure, sum(n), sum(amount * n), sum(amount * amount * n)
FROM gold_dh GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
ON CONFLICT (scope, period_start, country, measure) DO UPDATE SET n = t.n + EXCLUDED.n,
    total = t.total + EXCLUDED.total, sum_squares = t.sum_squares + EXCLUDED.sum_squares;
DELETE FROM gold_dk;
INSERT INTO gold_dk SELECT DISTINCT scope, period_start, country, measure FROM gold_dh;
ANALYZE gold_dk;
DELETE FROM gold.distribution t USING gold_dk k
WHERE t.scope = k.scope AND t.period_start = k.period_start AND t.country = k.country
  AND t.measure = k.measure AND t.n = 0;
";

/// The order statistics of the touched groups. Min and max are index lookups; a
/// percentile's two nearest ranks (0-based, m = n − 1: ⌊q·m⌋ and ⌈q·m⌉, in integers for
/// q = ¼, ½, ¾) are found first among the group's buckets (a running count over at most a
/// few thousand rows), then inside the one bucket that holds each.
const STATS: &str = "
WITH bk AS (SELECT b.scope, b.period_start, b.country, b.measure, b.bucket, b.n,
              (sum(b.n) OVER w - b.n)::bigint AS below, (sum(b.n) OVER g)::bigint - 1 AS m
       FROM gold.amount_buckets b JOIN gold_dk USING (scope, period_start, country, measure)
       WINDOW w AS (PARTITION BY b.scope, b.period_start, b.country, b.measure ORDER BY b.bucket),
              g AS (PARTITION BY b.scope, b.period_start, b.country, b.measure)),
hit AS (SELECT * FROM bk
        WHERE (below <= m / 4 AND m / 4 < below + n) OR (below <= (m + 3) / 4 AND (m + 3) / 4 < below + n)
           OR (below <= m / 2 AND m / 2 < below + n) OR (below <= (m + 1) / 2 AND (m + 1) / 2 < below + n)
           OR (below <= 3 * m / 4 AND 3 * m / 4 < below + n)
           OR (below <= (3 * m + 3) / 4 AND (3 * m + 3) / 4 < below + n)),
rb AS (SELECT hit.scope, hit.period_start, hit.country, hit.measure, hit.bucket, hit.below, x.q, x.which, x.frac, x.rnk
       FROM hit CROSS JOIN LATERAL (VALUES
           (0.25, 'lo', m / 4, (m % 4) / 4.0), (0.25, 'hi', (m + 3) / 4, (m % 4) / 4.0),
           (0.5, 'lo', m / 2, (m % 2) / 2.0), (0.5, 'hi', (m + 1) / 2, (m % 2) / 2.0),
           (0.75, 'lo', 3 * m / 4, (3 * m % 4) / 4.0), (0.75, 'hi', (3 * m + 3) / 4, (3 * m % 4) / 4.0)
       ) AS x(q, which, rnk, frac)
       WHERE hit.below <= x.rnk AND x.rnk < hit.below + hit.n),
rv AS (SELECT rb.scope, rb.period_start, rb.country, rb.measure, rb.q, rb.which, rb.frac,
              (SELECT c.amount FROM (
                   SELECT h.amount, sum(h.n) OVER (ORDER BY h.amount) AS cum
                   FROM gold.amount_histogram h
                   WHERE h.scope = rb.scope AND h.period_start = rb.period_start AND h.country = rb.country
                     AND h.measure = rb.measure
                     AND h.amount BETWEEN rb.bucket - gold.amount_bucket_width(rb.bucket)
                                      AND rb.bucket + gold.amount_bucket_width(rb.bucket)
                     AND gold.amount_bucket(h.amount) = rb.bucket) c
               WHERE rb.below + c.cum > rb.rnk ORDER BY c.amount LIMIT 1) AS v
       FROM rb),
p AS (SELECT scope, period_start, country, measure, q,
             max(v) FILTER (WHERE which = 'lo') AS lo, max(v) FILTER (WHERE which = 'hi') AS hi, max(frac) AS frac
      FROM rv GROUP BY 1, 2, 3, 4, 5),
s AS (SELECT scope, period_start, country, measure,
             max(lo + frac * (hi - lo)) FILTER (WHERE q = 0.25) AS p25,
             max(lo + frac * (hi - lo)) FILTER (WHERE q = 0.5) AS median,
             max(lo + frac * (hi - lo)) FILTER (WHERE q = 0.75) AS p75
      FROM p GROUP BY 1, 2, 3, 4)
UPDATE gold.distribution t SET
    mean = round(t.total / t.n, 6),
    stddev = CASE WHEN t.n > 1 THEN round(sqrt(greatest((t.sum_squares - t.total * t.total / t.n) / (t.n - 1), 0)), 6) END,
    min = (SELECT min(h.amount) FROM gold.amount_histogram h WHERE h.scope = t.scope
             AND h.period_start = t.period_start AND h.country = t.country AND h.measure = t.measure),
    max = (SELECT max(h.amount) FROM gold.amount_histogram h WHERE h.scope = t.scope
             AND h.period_start = t.period_start AND h.country = t.country AND h.measure = t.measure),
    p25 = s.p25, median = s.median, p75 = s.p75
FROM s
WHERE t.scope = s.scope AND t.period_start = s.period_start AND t.country = s.country AND t.measure = s.measure;
";

/// Fills a newly created `gold.amount_buckets` from the histogram.
pub const SEED_BUCKETS: &str = "
INSERT INTO gold.amount_buckets (scope, period_start, country, measure, bucket, n)
SELECT scope, period_start, country, measure, gold.amount_bucket(amount), sum(n)
FROM gold.amount_histogram GROUP BY 1, 2, 3, 4, 5;
";

/// Applies the batch's deltas and recomputes the touched groups' statistics.
pub async fn refresh(tx: &Transaction<'_>) -> Result<(), DbError> {
    tx.batch_execute(APPLY).await.map_err(DbError::query(
        "maintaining gold.amount_histogram and its buckets",
    ))?;
    tx.batch_execute(STATS)
        .await
        .map_err(DbError::query("maintaining gold.distribution"))
}
