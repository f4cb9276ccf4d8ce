#!/usr/bin/env python3
"""The gold seed marts computed independently with DuckDB from the CSV files that
tests/tests/gold_vs_duckdb.rs writes (no PostgreSQL, no code shared with transform).

Usage: python marts.py <csv_dir> <out.json>

Input (the test's own dataset, files read in name order = the order they were dropped):
  customers_*.csv  client_id,name,country,city
  products_*.csv   sku,title,category,list_price
  sales_*.csv      line_id,order_no,date,customer,article,qty,price,total

Cleaning, as documented for silver and re-implemented here:
  * text is trimmed and inner whitespace collapsed; ids upper-cased; country Title-cased
    (a letter after a space, '-' or apostrophe is upper-cased, the others lower-cased);
  * dates: %Y-%m-%d or %d.%m.%Y, on the whole value or on its part before 'T' / ' ';
  * numbers: '.' decimal separator, spaces, apostrophes and currency signs dropped, ','
    as thousands grouping (`17.00`, `2.500`, `1,234.50`, `1 234.50`);
  * a sale is rejected (silver.quarantine) when sale_date, customer, product or quantity is
    missing or unparseable, quantity <= 0, a price or amount is negative or not a number,
    or neither amount nor price is given; a row without a line_id never reaches silver;
  * amount = the source total rounded to the cent, else round(quantity * price, 2) half
    away from zero; order_id = order_no, else the sale id;
  * the last valid row per key wins (file order, then line order); a sale whose last
    valid row has product SAMPLE is filtered out (the test's row filter).

Marts (definitions of transform/src/gold/marts/*.rs): sales_by_period, country_sales,
product_month, customer_ltv, distribution. Output: JSON with, per mart, its columns, the
number of key columns and its rows as strings (money with 2 decimals, units with 3, mean,
standard deviation, percentiles and shares with 6), plus the silver counts and the
quarantined sales. Rounding is exact (integer arithmetic, half away from zero, as
PostgreSQL's round(numeric)); DuckDB's own avg and stddev_samp cross-check it.
"""

import glob
import json
import os
import sys
from decimal import ROUND_HALF_UP, Decimal, getcontext

import duckdb

getcontext().prec = 60

FILES = {
    "raw_customers": ("customers_*.csv", ["client_id", "name", "country", "city"]),
    "raw_products": ("products_*.csv", ["sku", "title", "category", "list_price"]),
    "raw_sales": (
        "sales_*.csv",
        ["line_id", "order_no", "date", "customer", "article", "qty", "price", "total"],
    ),
}
DATE_FORMATS = ["%Y-%m-%d", "%d.%m.%Y"]
FILTERED_PRODUCT = "SAMPLE"

MACROS = [
    # Trimmed, empty -> NULL (what silver reads from a cell).
    r"CREATE MACRO strim(s) AS NULLIF(regexp_replace(s, '^\s+|\s+$', '', 'g'), '')",
    r"CREATE MACRO squish(s) AS regexp_replace(strim(s), '\s+', ' ', 'g')",
    r"""CREATE MACRO title(s) AS array_to_string(list_transform(range(1, length(s) + 1),
        i -> CASE WHEN i = 1 OR substr(s, i - 1, 1) IN (' ', '-', '''')
                  THEN upper(substr(s, i, 1)) ELSE lower(substr(s, i, 1)) END), '')""",
    r"""CREATE MACRO num(s) AS TRY_CAST(replace(regexp_replace(s, '[\s€$£''’]', '', 'g'), ',', '')
        AS DECIMAL(18, 6))""",
    "CREATE MACRO pdate1(s) AS CAST(coalesce("
    + ", ".join(f"try_strptime(s, '{f}')" for f in DATE_FORMATS)
    + ") AS DATE)",
    "CREATE MACRO pdate(s) AS coalesce(pdate1(s), pdate1(regexp_extract(s, '^[^T ]*')))",
    # An exact money value (scale 2) as integer cents.
    "CREATE MACRO cents(x) AS CAST(x * 100 AS HUGEINT)",
    # a / b rounded half away from zero to an integer (b > 0), exactly.
    """CREATE MACRO rdiv(a, b) AS CASE WHEN b > 0 THEN
        sign(a) * ((2 * abs(CAST(a AS HUGEINT)) + b) // (2 * CAST(b AS HUGEINT))) END""",
    """CREATE MACRO pstart(g, d) AS CASE g WHEN 'day' THEN d WHEN 'all' THEN DATE '0001-01-01'
        ELSE CAST(date_trunc(g, d) AS DATE) END""",
    """CREATE MACRO pshift(g, p) AS CASE g WHEN 'day' THEN p - 1 WHEN 'week' THEN p - 7
        WHEN 'month' THEN CAST(p - INTERVAL 1 MONTH AS DATE)
        WHEN 'quarter' THEN CAST(p - INTERVAL 3 MONTH AS DATE)
        WHEN 'year' THEN CAST(p - INTERVAL 1 YEAR AS DATE) END""",
    """CREATE MACRO year_ago(g, p) AS CASE g WHEN 'week' THEN p - 364 WHEN 'all' THEN NULL
        ELSE CAST(p - INTERVAL 1 YEAR AS DATE) END""",
    # Growth in percent, 2 decimals, as integer hundredths: 100 * (r / p - 1).
    "CREATE MACRO growth(r, p) AS rdiv(10000 * (cents(r) - cents(p)), cents(p))",
]


def load(con, csv_dir):
    for table, (pattern, cols) in FILES.items():
        paths = sorted(glob.glob(os.path.join(csv_dir, pattern)))
        if not paths:
            sys.exit(f"marts.py: no {pattern} in {csv_dir}")
        con.execute(
            f"CREATE TABLE {table} (file_no INTEGER, filename VARCHAR, line_no BIGINT, "
            + ", ".join(f"{c} VARCHAR" for c in cols)
            + ")"
        )
        spec = "{" + ", ".join(f"'{c}': 'VARCHAR'" for c in cols) + "}"
        for file_no, path in enumerate(paths):
            with open(path, encoding="utf-8") as f:
                header = f.readline().strip().split(",")
            if header != cols:
                sys.exit(f"marts.py: {path} has the header {header}, expected {cols}")
            # One thread, no parallel scan: row_number() follows the file's line order.
            con.execute(
                f"""INSERT INTO {table}
                    SELECT ?, filename, row_number() OVER (), {', '.join(cols)}
                    FROM read_csv(?, header = true, auto_detect = false, columns = {spec},
                                  delim = ',', quote = '"', escape = '"', filename = true,
                                  parallel = false)""",
                [file_no, path],
            )


SILVER = [
    """CREATE TABLE silver_customers AS
       SELECT customer_id, country FROM (
           SELECT upper(squish(client_id)) AS customer_id, title(squish(country)) AS country,
                  row_number() OVER (PARTITION BY upper(squish(client_id))
                                     ORDER BY file_no DESC, line_no DESC) AS rn
           FROM raw_customers WHERE strim(client_id) IS NOT NULL)
       WHERE rn = 1""",
    """CREATE TABLE silver_products AS
       SELECT product_id FROM (
           SELECT upper(squish(sku)) AS product_id,
                  row_number() OVER (PARTITION BY upper(squish(sku))
                                     ORDER BY file_no DESC, line_no DESC) AS rn
           FROM raw_products
           WHERE strim(sku) IS NOT NULL
             AND (strim(list_price) IS NULL OR num(strim(list_price)) >= 0))
       WHERE rn = 1""",
    """CREATE TABLE sales_parsed AS
       SELECT file_no, line_no, strim(line_id) AS raw_id, upper(squish(line_id)) AS sale_id,
              upper(squish(order_no)) AS order_no, strim(date) AS date_raw,
              pdate(strim(date)) AS sale_date, upper(squish(customer)) AS customer_id,
              upper(squish(article)) AS product_id, strim(qty) AS qty_raw,
              num(strim(qty)) AS quantity, strim(price) AS price_raw,
              num(strim(price)) AS unit_price, strim(total) AS total_raw,
              num(strim(total)) AS total
       FROM raw_sales""",
    """CREATE TABLE sales_checked AS
       SELECT *, concat_ws('; ',
           CASE WHEN date_raw IS NULL THEN 'missing sale_date'
                WHEN sale_date IS NULL THEN 'bad sale_date' END,
           CASE WHEN customer_id IS NULL THEN 'missing customer_id' END,
           CASE WHEN product_id IS NULL THEN 'missing product_id' END,
           CASE WHEN qty_raw IS NULL THEN 'missing quantity'
                WHEN quantity IS NULL THEN 'quantity is not a number'
                WHEN quantity <= 0 THEN 'quantity must be positive' END,
           CASE WHEN price_raw IS NOT NULL AND unit_price IS NULL THEN 'unit_price is not a number'
                WHEN unit_price < 0 THEN 'unit_price is negative' END,
           CASE WHEN total_raw IS NOT NULL AND total IS NULL THEN 'amount is not a number'
                WHEN total < 0 THEN 'amount is negative' END,
           CASE WHEN total_raw IS NULL AND price_raw IS NULL THEN 'missing amount and unit_price' END
       ) AS reasons
       FROM sales_parsed WHERE sale_id IS NOT NULL""",
    """CREATE TABLE silver_sales AS
       SELECT sale_id, coalesce(order_no, sale_id) AS order_id, sale_date, customer_id,
              product_id, quantity,
              CAST(coalesce(round(total, 2), round(quantity * unit_price, 2)) AS DECIMAL(14, 2))
                  AS amount
       FROM (SELECT *, row_number() OVER (PARTITION BY sale_id ORDER BY file_no DESC, line_no DESC) AS rn
             FROM sales_checked WHERE reasons = '')
       WHERE rn = 1 AND product_id <> '"""
    + FILTERED_PRODUCT
    + "'",
    """CREATE TABLE fact AS
       SELECT s.sale_id, s.order_id, s.sale_date, coalesce(c.customer_id, 'UNKNOWN') AS customer_key,
              coalesce(c.country, 'Unknown') AS country, coalesce(p.product_id, 'UNKNOWN') AS product_key,
              s.quantity, s.amount
       FROM silver_sales s
       LEFT JOIN silver_customers c ON c.customer_id = s.customer_id
       LEFT JOIN silver_products p ON p.product_id = s.product_id""",
    # An order: its lines' (lowest) date, customer and country; lines, units, basket value.
    """CREATE TABLE orders AS
       SELECT order_id, min(sale_date) AS order_date, min(customer_key) AS customer_key,
              min(country) AS country, count(*) AS lines, sum(quantity) AS units,
              CAST(sum(amount) AS DECIMAL(18, 2)) AS amount
       FROM fact GROUP BY order_id""",
]


def periods_sql(grains, group):
    """Revenue, lines and units from the lines (period of the line's date); orders,
    customers and the average basket from the orders (period of the order's date)."""
    values = ", ".join(f"('{g}')" for g in grains)
    gsel = f", {group}" if group else ""
    gout = f", coalesce(l.{group}, o.{group}) AS {group}" if group else ""
    gjoin = f" AND l.{group} = o.{group}" if group else ""
    return f"""
        WITH g(grain) AS (VALUES {values}),
        l AS (SELECT grain, pstart(grain, sale_date) AS p{gsel}, sum(amount) AS revenue,
                     count(*) AS lines, sum(quantity) AS units
              FROM fact CROSS JOIN g GROUP BY ALL),
        o AS (SELECT grain, pstart(grain, order_date) AS p{gsel},
                     count(DISTINCT order_id) AS orders, count(DISTINCT customer_key) AS customers
              FROM orders CROSS JOIN g GROUP BY ALL)
        SELECT coalesce(l.grain, o.grain) AS grain, coalesce(l.p, o.p) AS period_start{gout},
               coalesce(l.revenue, 0) AS revenue, coalesce(l.lines, 0) AS lines,
               coalesce(l.units, 0) AS units, coalesce(o.orders, 0) AS orders,
               coalesce(o.customers, 0) AS customers,
               rdiv(cents(coalesce(l.revenue, 0)), coalesce(o.orders, 0)) AS avg_basket
        FROM l FULL JOIN o ON l.grain = o.grain AND l.p = o.p{gjoin}"""


SALES_BY_PERIOD = f"""
    WITH s AS ({periods_sql(['day', 'week', 'month', 'quarter', 'year', 'all'], None)})
    SELECT s.*, pr.revenue AS prev_revenue,
           CASE WHEN pr.revenue > 0 THEN growth(s.revenue, pr.revenue) END AS growth_prev_pct,
           yr.revenue AS yoy_revenue,
           CASE WHEN yr.revenue > 0 THEN growth(s.revenue, yr.revenue) END AS growth_yoy_pct
    FROM s
    LEFT JOIN s pr ON pr.grain = s.grain AND pr.period_start = pshift(s.grain, s.period_start)
    LEFT JOIN s yr ON yr.grain = s.grain AND yr.period_start = year_ago(s.grain, s.period_start)"""

PRODUCT_MONTH = """
    WITH pm AS (SELECT CAST(date_trunc('month', sale_date) AS DATE) AS month, product_key,
                       sum(amount) AS revenue, sum(quantity) AS units, count(*) AS lines,
                       count(DISTINCT order_id) AS orders
                FROM fact GROUP BY ALL),
    r AS (SELECT *, rank() OVER (PARTITION BY month ORDER BY revenue DESC) AS revenue_rank,
                 sum(revenue) OVER (PARTITION BY month) AS month_revenue
          FROM pm)
    SELECT r.month, r.product_key, r.revenue, r.units, r.lines, r.orders, r.revenue_rank,
           rdiv(cents(r.revenue) * 1000000, cents(r.month_revenue)) AS revenue_share,
           pr.revenue AS prev_revenue,
           CASE WHEN pr.revenue > 0 THEN growth(r.revenue, pr.revenue) END AS growth_prev_pct
    FROM r LEFT JOIN pm pr
      ON pr.product_key = r.product_key AND pr.month = CAST(r.month - INTERVAL 1 MONTH AS DATE)"""

CUSTOMER_LTV = """
    SELECT customer_key, min(country) AS country, min(order_date) AS first_order_date,
           max(order_date) AS last_order_date, count(DISTINCT order_id) AS orders,
           sum(lines) AS lines, sum(amount) AS revenue,
           rdiv(cents(sum(amount)), count(DISTINCT order_id)) AS avg_basket,
           datediff('day', min(order_date), max(order_date)) AS tenure_days
    FROM orders GROUP BY customer_key"""

DISTRIBUTION = """
    WITH v AS (
        SELECT 'month' AS scope, CAST(date_trunc('month', sale_date) AS DATE) AS period_start,
               '' AS country, 'line' AS measure, CAST(amount AS DECIMAL(18, 2)) AS amount FROM fact
        UNION ALL SELECT 'country', DATE '0001-01-01', country, 'line', amount FROM fact
        UNION ALL SELECT 'month', CAST(date_trunc('month', order_date) AS DATE), '', 'basket', amount FROM orders
        UNION ALL SELECT 'country', DATE '0001-01-01', country, 'basket', amount FROM orders)
    SELECT scope, period_start, country, measure, count(*) AS n, sum(amount) AS total,
           sum(amount * amount) AS sum_squares,
           rdiv(cents(sum(amount)) * 10000, count(*)) AS mean,
           -- exact: n * sum(c^2) - (sum c)^2 in cents^2, for the Decimal square root below
           count(*) * sum(cents(amount) * cents(amount)) - cents(sum(amount)) * cents(sum(amount)) AS var_num,
           stddev_samp(CAST(amount AS DOUBLE)) AS stddev_check, avg(CAST(amount AS DOUBLE)) AS mean_check,
           min(amount) AS min,
           quantile_cont(CAST(amount AS DECIMAL(18, 6)), 0.25) AS p25,
           quantile_cont(CAST(amount AS DECIMAL(18, 6)), 0.5) AS median,
           quantile_cont(CAST(amount AS DECIMAL(18, 6)), 0.75) AS p75,
           max(amount) AS max
    FROM v GROUP BY ALL"""

# Column kinds: t text, d date, i integer, (m, p) exact decimal printed with p places,
# (s, p) integer count of 10^-p units.
M2, U3, S2, S6 = ("m", 2), ("m", 3), ("s", 2), ("s", 6)
PERIOD_MEASURES = [("revenue", M2), ("lines", "i"), ("units", U3), ("orders", "i"),
                   ("customers", "i"), ("avg_basket", S2)]
MARTS = {
    "sales_by_period": (
        2,
        [("grain", "t"), ("period_start", "d")] + PERIOD_MEASURES
        + [("prev_revenue", M2), ("growth_prev_pct", S2), ("yoy_revenue", M2), ("growth_yoy_pct", S2)],
        SALES_BY_PERIOD,
    ),
    "country_sales": (
        3,
        [("grain", "t"), ("period_start", "d"), ("country", "t")] + PERIOD_MEASURES,
        periods_sql(["month", "year", "all"], "country"),
    ),
    "product_month": (
        2,
        [("month", "d"), ("product_key", "t"), ("revenue", M2), ("units", U3), ("lines", "i"),
         ("orders", "i"), ("revenue_rank", "i"), ("revenue_share", S6), ("prev_revenue", M2),
         ("growth_prev_pct", S2)],
        PRODUCT_MONTH,
    ),
    "customer_ltv": (
        1,
        [("customer_key", "t"), ("country", "t"), ("first_order_date", "d"),
         ("last_order_date", "d"), ("orders", "i"), ("lines", "i"), ("revenue", M2),
         ("avg_basket", S2), ("tenure_days", "i")],
        CUSTOMER_LTV,
    ),
}
DISTRIBUTION_COLUMNS = [
    ("scope", "t"), ("period_start", "d"), ("country", "t"), ("measure", "t"), ("n", "i"),
    ("total", M2), ("sum_squares", ("m", 4)), ("mean", S6), ("stddev", ("m", 6)), ("min", M2),
    ("p25", ("m", 6)), ("median", ("m", 6)), ("p75", ("m", 6)), ("max", M2),
]


def fmt(v, kind):
    if v is None:
        return None
    if kind == "t":
        return str(v)
    if kind == "d":
        return v.isoformat()
    if kind == "i":
        return str(int(v))
    tag, places = kind
    d = Decimal(int(v)).scaleb(-places) if tag == "s" else Decimal(v)
    q = d.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    if tag == "m" and q != d:
        raise ValueError(f"{v!r} has more than {places} decimals")
    return format(q, "f")


def mart_rows(con, sql, columns):
    names = [c for c, _ in columns]
    rel = con.sql(f"SELECT {', '.join(names)} FROM ({sql}) ORDER BY ALL")
    return [[fmt(v, k) for v, (_, k) in zip(row, columns)] for row in rel.fetchall()]


def distribution_rows(con):
    rows = []
    for r in con.sql(f"SELECT * FROM ({DISTRIBUTION}) ORDER BY ALL").fetchall():
        (scope, start, country, measure, n, total, ssq, mean, var_num, sd_check, mean_check,
         lo, p25, med, p75, hi) = r
        stddev = None
        if n > 1:
            # sqrt((n * S2 - S1^2) / (n (n - 1))) in cents, at 60 significant digits.
            stddev = (Decimal(int(var_num)) / Decimal(n * (n - 1))).sqrt() / 100
            if abs(float(stddev) - sd_check) > 1e-6:
                sys.exit(f"marts.py: stddev {stddev} differs from stddev_samp {sd_check} ({r})")
        if abs(int(mean) / 1e6 - mean_check) > 1e-6:
            sys.exit(f"marts.py: mean {mean} differs from avg {mean_check} ({r})")
        values = [scope, start, country, measure, n, total, ssq, mean,
                  None if stddev is None else stddev.quantize(Decimal("0.000001"), ROUND_HALF_UP),
                  lo, p25, med, p75, hi]
        rows.append([fmt(v, k) for v, (_, k) in zip(values, DISTRIBUTION_COLUMNS)])
    return rows


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: python marts.py <csv_dir> <out.json>")
    csv_dir, out = sys.argv[1], sys.argv[2]
    con = duckdb.connect()
    con.execute("SET threads = 1")
    for m in MACROS:
        con.execute(m)
    load(con, csv_dir)
    for s in SILVER:
        con.execute(s)
    result = {"engine": f"duckdb {duckdb.__version__}", "marts": {}}
    for name, (key, columns, sql) in MARTS.items():
        result["marts"][name] = {
            "key": key,
            "columns": [c for c, _ in columns],
            "rows": mart_rows(con, sql, columns),
        }
    result["marts"]["distribution"] = {
        "key": 4,
        "columns": [c for c, _ in DISTRIBUTION_COLUMNS],
        "rows": distribution_rows(con),
    }
    one = lambda sql: con.sql(sql).fetchone()[0]  # noqa: E731
    result["silver"] = {
        "sales": one("SELECT count(*) FROM silver_sales"),
        "customers": one("SELECT count(*) FROM silver_customers"),
        "products": one("SELECT count(*) FROM silver_products"),
        "fact_orders": one("SELECT count(*) FROM orders"),
        "dead_letters": one("SELECT count(*) FROM sales_parsed WHERE sale_id IS NULL"),
    }
    result["quarantined"] = [
        [raw_id, reasons]
        for raw_id, reasons in con.sql(
            "SELECT raw_id, reasons FROM sales_checked WHERE reasons <> '' ORDER BY ALL"
        ).fetchall()
    ]
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main()
