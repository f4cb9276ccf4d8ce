#!/usr/bin/env python3
"""DuckDB side of bench/gold.sh (run with a Python that has duckdb, e.g. the dev venv's).

  gen   --rows N --dir D [--shuffle]   writes D/sales_gold.csv (N lines), D/customers.csv,
                                       D/products.csv, D/employees.csv
  marts --dir D --out O [--threads T]  computes the gold marts from those CSV files and
                                       writes each one to O/<mart>.parquet

Both print one JSON object on stdout. `marts` is the baseline of `transform verify`: the
same marts (facts, orders, sales by period with growth, country and employee sales,
product x month, customer lifetime value, distribution statistics), computed from the
source files by an independent engine.
"""
import argparse
import json
import os
import sys
import time

import duckdb

COUNTRIES = ["France", "Germany", "Spain", "Italy", "Portugal", "Belgium", "Netherlands",
             "Austria", "Switzerland", "Poland", "Sweden", "Norway", "Denmark", "Finland",
             "Ireland", "United Kingdom", "United States", "Canada", "Brazil", "Japan"]
CATEGORIES = ["Electronics", "Books", "Garden", "Toys", "Clothing", "Sports", "Kitchen",
              "Beauty", "Music", "Office"]
CUSTOMERS = 50_000
PRODUCTS = 500
EMPLOYEES = 30
DAYS = 1096  # 2022-01-01 .. 2024-12-31


def sql_list(xs):
    return "[" + ", ".join("'" + x + "'" for x in xs) + "]"


def gen(args):
    t0 = time.time()
    n = args.rows
    d = args.dir
    os.makedirs(d, exist_ok=True)
    con = duckdb.connect()
    if args.threads:
        con.execute(f"SET threads = {args.threads}")
    # Unit price of a product, the same in products.csv and in the sales lines.
    con.execute("CREATE MACRO price(p) AS CAST((199 + hash(p, 6) % 49800) / 100.0 AS DECIMAL(12, 2))")
    con.execute(f"""COPY (
        SELECT printf('C%06d', i) AS customer_id, 'Customer ' || i AS full_name,
               printf('c%06d@example.com', i) AS email,
               {sql_list(COUNTRIES)}[1 + CAST(hash(i, 7) % {len(COUNTRIES)} AS INTEGER)] AS country,
               'City ' || (1 + hash(i, 8) % 200) AS city,
               DATE '2019-01-01' + CAST(hash(i, 9) % 1000 AS INTEGER) AS signup_date,
               ['Retail', 'Business'][1 + CAST(hash(i, 10) % 2 AS INTEGER)] AS segment
        FROM range(1, {CUSTOMERS + 1}) t(i) ORDER BY i
    ) TO '{d}/customers.csv' (HEADER, DELIMITER ',')""")
    con.execute(f"""COPY (
        SELECT printf('P%04d', i) AS product_id, 'Product ' || i AS product_name,
               {sql_list(CATEGORIES)}[1 + CAST(hash(i, 12) % {len(CATEGORIES)} AS INTEGER)] AS category,
               price(i) AS unit_price
        FROM range(1, {PRODUCTS + 1}) t(i) ORDER BY i
    ) TO '{d}/products.csv' (HEADER, DELIMITER ',')""")
    con.execute(f"""COPY (
        SELECT printf('E%03d', i) AS employee_id, 'Employee ' || i AS full_name,
               'Sales Representative' AS title,
               {sql_list(COUNTRIES)}[1 + CAST(hash(i, 13) % {len(COUNTRIES)} AS INTEGER)] AS country,
               DATE '2015-01-01' + CAST(hash(i, 14) % 2000 AS INTEGER) AS hire_date
        FROM range(1, {EMPLOYEES + 1}) t(i) ORDER BY i
    ) TO '{d}/employees.csv' (HEADER, DELIMITER ',')""")
    # Orders of 1-4 lines (2.5 on average); `start` = index of the order's first line. An
    # order's lines share its date, customer and sales person; the dates follow the line
    # index over three years (a history export in sale order), or are shuffled.
    n_orders = n * 2 // 5 + 10_000
    con.execute(f"""CREATE TABLE o AS
        SELECT i AS o, k, sum(k) OVER (ORDER BY i ROWS UNBOUNDED PRECEDING) - k AS start
        FROM (SELECT i, 1 + CAST(hash(i, 1) % 4 AS INTEGER) AS k FROM range({n_orders}) t(i))""")
    order_by = "hash(sale_id)" if args.shuffle else "line"
    con.execute(f"""COPY (
        SELECT printf('S%010d', line + 1) AS sale_id, printf('O%09d', o + 1) AS order_id,
               DATE '2022-01-01' + CAST(floor(start * {DAYS}.0 / {n}) AS INTEGER) AS sale_date,
               printf('C%06d', 1 + hash(o, 2) % {CUSTOMERS}) AS customer_id,
               printf('P%04d', p) AS product_id,
               printf('E%03d', 1 + hash(o, 3) % {EMPLOYEES}) AS employee_id,
               printf('%d.00', q) AS quantity, price(p) AS unit_price, price(p) * q AS amount
        FROM (SELECT o, start, start + j AS line,
                     CAST(1 + hash(o, j, 4) % {PRODUCTS} AS INTEGER) AS p,
                     CAST(1 + hash(o, j, 5) % 10 AS INTEGER) AS q
              FROM (SELECT o, start, unnest(range(k)) AS j FROM o WHERE start < {n}))
        WHERE line < {n}
        ORDER BY {order_by}
    ) TO '{d}/sales_gold.csv' (HEADER, DELIMITER ',')""")
    files = {f: os.path.getsize(f"{d}/{f}") for f in
             ("sales_gold.csv", "customers.csv", "products.csv", "employees.csv")}
    print(json.dumps({"rows": n, "customers": CUSTOMERS, "products": PRODUCTS,
                      "employees": EMPLOYEES, "shuffled": bool(args.shuffle), "bytes": files,
                      "seconds": round(time.time() - t0, 3)}))


def period(grain, col):
    return "DATE '0001-01-01'" if grain == "all" else (
        col if grain == "day" else f"CAST(date_trunc('{grain}', {col}) AS DATE)")


def prev_start(grain, p):
    return {"day": f"{p} - 1", "week": f"{p} - 7",
            "month": f"CAST({p} - INTERVAL 1 MONTH AS DATE)",
            "quarter": f"CAST({p} - INTERVAL 3 MONTH AS DATE)",
            "year": f"CAST({p} - INTERVAL 1 YEAR AS DATE)"}[grain]


def year_ago(grain, p):
    return f"{p} - 364" if grain == "week" else f"CAST({p} - INTERVAL 1 YEAR AS DATE)"


def period_mart(grains, group):
    """Lines, revenue and units by the lines' dates; orders, distinct customers and the
    average basket by the orders' dates; per grain (and group)."""
    g = f", {group}" if group else ""
    parts = []
    for gr in grains:
        parts.append(f"""
        SELECT '{gr}' AS grain, coalesce(l.p, o.p) AS period_start{', coalesce(l.' + group + ', o.' + group + ') AS ' + group if group else ''},
               coalesce(l.revenue, 0) AS revenue, coalesce(l.lines, 0) AS lines, coalesce(l.units, 0) AS units,
               coalesce(o.orders, 0) AS orders, coalesce(o.customers, 0) AS customers,
               round(l.revenue / nullif(o.orders, 0), 2) AS avg_basket
        FROM (SELECT {period(gr, 'sale_date')} AS p{g}, sum(amount) AS revenue, count(*) AS lines,
                     sum(quantity) AS units FROM fact_sales GROUP BY ALL) l
        FULL JOIN (SELECT {period(gr, 'order_date')} AS p{g}, count(*) AS orders,
                          count(DISTINCT customer_key) AS customers FROM fact_orders GROUP BY ALL) o
          ON l.p = o.p{' AND l.' + group + ' = o.' + group if group else ''}""")
    return " UNION ALL ".join(parts)


def marts(args):
    t0 = time.time()
    d, out = args.dir, args.out
    os.makedirs(out, exist_ok=True)
    con = duckdb.connect()
    if args.threads:
        con.execute(f"SET threads = {args.threads}")
    if args.memory_limit:
        con.execute(f"SET memory_limit = '{args.memory_limit}'")
    steps = {}

    def step(name, sql):
        t = time.time()
        con.execute(sql)
        steps[name] = round(time.time() - t, 3)

    step("fact_sales", f"""CREATE TABLE fact_sales AS
        SELECT s.sale_id, s.order_id, s.sale_date,
               coalesce(c.customer_id, 'UNKNOWN') AS customer_key, s.customer_id AS source_customer_id,
               coalesce(p.product_id, 'UNKNOWN') AS product_key, s.product_id AS source_product_id,
               coalesce(s.employee_id, 'UNKNOWN') AS employee_key, coalesce(c.country, 'Unknown') AS country,
               s.quantity, s.unit_price, s.amount
        FROM read_csv('{d}/sales_gold.csv', header = true, columns = {{
                 'sale_id': 'VARCHAR', 'order_id': 'VARCHAR', 'sale_date': 'DATE',
                 'customer_id': 'VARCHAR', 'product_id': 'VARCHAR', 'employee_id': 'VARCHAR',
                 'quantity': 'DECIMAL(18,4)', 'unit_price': 'DECIMAL(12,2)', 'amount': 'DECIMAL(14,2)'}}) s
        LEFT JOIN read_csv('{d}/customers.csv', header = true, all_varchar = true) c ON c.customer_id = s.customer_id
        LEFT JOIN read_csv('{d}/products.csv', header = true, all_varchar = true) p ON p.product_id = s.product_id""")
    step("fact_orders", """CREATE TABLE fact_orders AS
        SELECT order_id, min(sale_date) AS order_date, min(customer_key) AS customer_key,
               min(country) AS country, min(employee_key) AS employee_key, count(*) AS lines,
               sum(quantity) AS units, sum(amount) AS amount
        FROM fact_sales GROUP BY order_id""")
    grains = ["day", "week", "month", "quarter", "year", "all"]
    growth = " UNION ALL ".join(f"""
        SELECT b.grain, b.period_start, pr.revenue AS prev_revenue,
               round(100 * (b.revenue / nullif(pr.revenue, 0) - 1), 2) AS growth_prev_pct,
               yr.revenue AS yoy_revenue, round(100 * (b.revenue / nullif(yr.revenue, 0) - 1), 2) AS growth_yoy_pct
        FROM sbp b LEFT JOIN sbp pr ON pr.grain = b.grain AND pr.period_start = {prev_start(g, 'b.period_start')}
                   LEFT JOIN sbp yr ON yr.grain = b.grain AND yr.period_start = {year_ago(g, 'b.period_start')}
        WHERE b.grain = '{g}'""" for g in grains if g != "all")
    step("sales_by_period", f"CREATE TABLE sbp AS {period_mart(grains, None)}")
    step("sales_by_period growth", f"""CREATE TABLE sales_by_period AS
        SELECT b.*, g.prev_revenue, g.growth_prev_pct, g.yoy_revenue, g.growth_yoy_pct
        FROM sbp b LEFT JOIN ({growth}) g USING (grain, period_start)""")
    step("country_sales", f"CREATE TABLE country_sales AS {period_mart(['month', 'year', 'all'], 'country')}")
    step("employee_sales", f"CREATE TABLE employee_sales AS {period_mart(['month', 'all'], 'employee_key')}")
    step("product_month", """CREATE TABLE product_month AS
        WITH m AS (SELECT CAST(date_trunc('month', sale_date) AS DATE) AS month, product_key,
                          sum(amount) AS revenue, sum(quantity) AS units, count(*) AS lines,
                          count(DISTINCT order_id) AS orders
                   FROM fact_sales GROUP BY ALL)
        SELECT m.*, rank() OVER (PARTITION BY m.month ORDER BY m.revenue DESC) AS revenue_rank,
               round(m.revenue / nullif(sum(m.revenue) OVER (PARTITION BY m.month), 0), 6) AS revenue_share,
               pr.revenue AS prev_revenue, round(100 * (m.revenue / nullif(pr.revenue, 0) - 1), 2) AS growth_prev_pct
        FROM m LEFT JOIN m pr ON pr.product_key = m.product_key
                             AND pr.month = CAST(m.month - INTERVAL 1 MONTH AS DATE)""")
    step("customer_ltv", """CREATE TABLE customer_ltv AS
        SELECT customer_key, min(country) AS country, min(order_date) AS first_order_date,
               max(order_date) AS last_order_date, count(*) AS orders, sum(lines) AS lines,
               sum(amount) AS revenue, round(sum(amount) / count(*), 2) AS avg_basket,
               max(order_date) - min(order_date) AS tenure_days
        FROM fact_orders GROUP BY customer_key""")
    step("distribution", """CREATE TABLE distribution AS
        WITH x AS (SELECT 'month' AS scope, CAST(date_trunc('month', sale_date) AS DATE) AS period_start,
                          '' AS country, 'line' AS measure, amount FROM fact_sales
                   UNION ALL SELECT 'country', DATE '0001-01-01', country, 'line', amount FROM fact_sales
                   UNION ALL SELECT 'month', CAST(date_trunc('month', order_date) AS DATE), '', 'basket', amount FROM fact_orders
                   UNION ALL SELECT 'country', DATE '0001-01-01', country, 'basket', amount FROM fact_orders)
        SELECT scope, period_start, country, measure, count(*) AS n, sum(amount) AS total,
               round(avg(amount), 6) AS mean, round(stddev_samp(amount), 6) AS stddev, min(amount) AS min,
               quantile_cont(amount, 0.25) AS p25, quantile_cont(amount, 0.5) AS median,
               quantile_cont(amount, 0.75) AS p75, max(amount) AS max
        FROM x GROUP BY ALL""")
    names = ["fact_sales", "fact_orders", "sales_by_period", "country_sales", "employee_sales",
             "product_month", "customer_ltv", "distribution"]
    t = time.time()
    rows = {}
    for m in names:
        con.execute(f"COPY {m} TO '{out}/{m}.parquet' (FORMAT parquet)")
        rows[m] = con.execute(f"SELECT count(*) FROM {m}").fetchone()[0]
    steps["write parquet"] = round(time.time() - t, 3)
    rev, lines, orders, customers = con.execute(
        "SELECT revenue::VARCHAR, lines, orders, customers FROM sales_by_period WHERE grain = 'all'").fetchone()
    print(json.dumps({"engine": f"duckdb {duckdb.__version__}",
                      "threads": con.execute("SELECT current_setting('threads')").fetchone()[0],
                      "seconds": round(time.time() - t0, 3), "steps": steps, "rows": rows,
                      "all": {"revenue": rev, "lines": lines, "orders": orders, "customers": customers}}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen")
    g.add_argument("--rows", type=int, required=True)
    g.add_argument("--dir", required=True)
    g.add_argument("--shuffle", action="store_true")
    g.add_argument("--threads", type=int)
    m = sub.add_parser("marts")
    m.add_argument("--dir", required=True)
    m.add_argument("--out", required=True)
    m.add_argument("--threads", type=int)
    m.add_argument("--memory-limit")
    args = ap.parse_args()
    {"gen": gen, "marts": marts}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
