#!/usr/bin/env python3
"""PySpark baseline of bench/gold.sh's backfill: the same gold marts as transform keeps,
computed from the same CSV files (bench/gold_duckdb.py gen) and written to parquet.

  gold_pyspark.py --dir D --out O [--master local[2]] [--driver-memory 4g]

Marts: fact sales (customer country, unknown members) and fact orders, sales by day, ISO
week, month, quarter, year and all with distinct orders and customers and growth, sales by
country x month / year / all and by employee x month / all, product x month with distinct
orders, rank, share and growth, customer lifetime value, and distribution statistics (count,
sum, mean, sample stddev, min, exact p25 / median / p75, max) of line amounts and basket
values per month and per country. Prints one JSON object on stdout (session start-up,
computation and total seconds, rows per mart).
"""
import argparse
import json
import os
import sys
import time

T_START = time.time()

from pyspark.sql import SparkSession  # noqa: E402


def period(grain, col):
    if grain == "all":
        return "DATE '0001-01-01'"
    if grain == "day":
        return col
    return f"CAST(date_trunc('{grain}', {col}) AS DATE)"


def prev_start(grain, p):
    return {"day": f"date_sub({p}, 1)", "week": f"date_sub({p}, 7)",
            "month": f"add_months({p}, -1)", "quarter": f"add_months({p}, -3)",
            "year": f"add_months({p}, -12)"}[grain]


def year_ago(grain, p):
    return f"date_sub({p}, 364)" if grain == "week" else f"add_months({p}, -12)"


def period_mart(grains, group):
    g = f", {group}" if group else ""
    parts = []
    for gr in grains:
        gsel = f", coalesce(l.{group}, o.{group}) AS {group}" if group else ""
        gon = f" AND l.{group} = o.{group}" if group else ""
        parts.append(f"""
        SELECT '{gr}' AS grain, coalesce(l.p, o.p) AS period_start{gsel},
               coalesce(l.revenue, 0) AS revenue, coalesce(l.lines, 0) AS lines, coalesce(l.units, 0) AS units,
               coalesce(o.orders, 0) AS orders, coalesce(o.customers, 0) AS customers,
               round(l.revenue / nullif(o.orders, 0), 2) AS avg_basket
        FROM (SELECT {period(gr, 'sale_date')} AS p{g}, sum(amount) AS revenue, count(*) AS lines,
                     sum(quantity) AS units FROM fact_sales GROUP BY 1{', 2' if group else ''}) l
        FULL JOIN (SELECT {period(gr, 'order_date')} AS p{g}, count(*) AS orders,
                          count(DISTINCT customer_key) AS customers FROM fact_orders GROUP BY 1{', 2' if group else ''}) o
          ON l.p = o.p{gon}""")
    return " UNION ALL ".join(parts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--driver-memory", default="4g")
    ap.add_argument("--shuffle-partitions", default="8")
    ap.add_argument("--local-dir")
    args = ap.parse_args()
    d, out = args.dir, args.out
    b = (SparkSession.builder.master(args.master).appName("gold-bench")
         .config("spark.driver.memory", args.driver_memory)
         .config("spark.sql.shuffle.partitions", args.shuffle_partitions)
         .config("spark.ui.enabled", "false")
         .config("spark.ui.showConsoleProgress", "false")
         .config("spark.sql.session.timeZone", "UTC"))
    if args.local_dir:
        b = b.config("spark.local.dir", args.local_dir)
    spark = b.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    t_session = time.time()

    sales = spark.read.csv(f"{d}/sales_gold.csv", header=True, schema=(
        "sale_id STRING, order_id STRING, sale_date DATE, customer_id STRING, product_id STRING, "
        "employee_id STRING, quantity DECIMAL(18,4), unit_price DECIMAL(12,2), amount DECIMAL(14,2)"))
    customers = spark.read.csv(f"{d}/customers.csv", header=True, schema=(
        "customer_id STRING, full_name STRING, email STRING, country STRING, city STRING, "
        "signup_date DATE, segment STRING"))
    products = spark.read.csv(f"{d}/products.csv", header=True, schema=(
        "product_id STRING, product_name STRING, category STRING, unit_price DECIMAL(12,2)"))
    sales.createOrReplaceTempView("sales")
    customers.createOrReplaceTempView("customers")
    products.createOrReplaceTempView("products")
    sql = spark.sql
    steps = {}

    fact_sales = sql("""
        SELECT s.sale_id, s.order_id, s.sale_date,
               coalesce(c.customer_id, 'UNKNOWN') AS customer_key, s.customer_id AS source_customer_id,
               coalesce(p.product_id, 'UNKNOWN') AS product_key, s.product_id AS source_product_id,
               coalesce(s.employee_id, 'UNKNOWN') AS employee_key, coalesce(c.country, 'Unknown') AS country,
               s.quantity, s.unit_price, s.amount
        FROM sales s LEFT JOIN customers c ON c.customer_id = s.customer_id
                     LEFT JOIN products p ON p.product_id = s.product_id""").persist()
    fact_sales.createOrReplaceTempView("fact_sales")
    fact_orders = sql("""
        SELECT order_id, min(sale_date) AS order_date, min(customer_key) AS customer_key,
               min(country) AS country, min(employee_key) AS employee_key, count(*) AS lines,
               sum(quantity) AS units, sum(amount) AS amount
        FROM fact_sales GROUP BY order_id""").persist()
    fact_orders.createOrReplaceTempView("fact_orders")

    grains = ["day", "week", "month", "quarter", "year", "all"]
    # Small (a few thousand rows): one partition, so that the growth self-joins do not
    # schedule a task per partition of each of the 6 unioned grains.
    sbp = sql(period_mart(grains, None)).coalesce(1).persist()
    sbp.createOrReplaceTempView("sbp")
    growth = " UNION ALL ".join(f"""
        SELECT b.grain, b.period_start, pr.revenue AS prev_revenue,
               round(100 * (b.revenue / nullif(pr.revenue, 0) - 1), 2) AS growth_prev_pct,
               yr.revenue AS yoy_revenue, round(100 * (b.revenue / nullif(yr.revenue, 0) - 1), 2) AS growth_yoy_pct
        FROM sbp b LEFT JOIN sbp pr ON pr.grain = b.grain AND pr.period_start = {prev_start(g, 'b.period_start')}
                   LEFT JOIN sbp yr ON yr.grain = b.grain AND yr.period_start = {year_ago(g, 'b.period_start')}
        WHERE b.grain = '{g}'""" for g in grains if g != "all")
    marts = {
        "fact_sales": fact_sales,
        "fact_orders": fact_orders,
        "sales_by_period": sql(f"""SELECT b.*, g.prev_revenue, g.growth_prev_pct, g.yoy_revenue, g.growth_yoy_pct
                                   FROM sbp b LEFT JOIN ({growth}) g USING (grain, period_start)"""),
        "country_sales": sql(period_mart(["month", "year", "all"], "country")),
        "employee_sales": sql(period_mart(["month", "all"], "employee_key")),
        "product_month": sql("""
            WITH m AS (SELECT CAST(date_trunc('month', sale_date) AS DATE) AS month, product_key,
                              sum(amount) AS revenue, sum(quantity) AS units, count(*) AS lines,
                              count(DISTINCT order_id) AS orders
                       FROM fact_sales GROUP BY 1, 2)
            SELECT m.*, rank() OVER (PARTITION BY m.month ORDER BY m.revenue DESC) AS revenue_rank,
                   round(m.revenue / nullif(sum(m.revenue) OVER (PARTITION BY m.month), 0), 6) AS revenue_share,
                   pr.revenue AS prev_revenue, round(100 * (m.revenue / nullif(pr.revenue, 0) - 1), 2) AS growth_prev_pct
            FROM m LEFT JOIN m pr ON pr.product_key = m.product_key AND pr.month = add_months(m.month, -1)"""),
        "customer_ltv": sql("""
            SELECT customer_key, min(country) AS country, min(order_date) AS first_order_date,
                   max(order_date) AS last_order_date, count(*) AS orders, sum(lines) AS lines,
                   sum(amount) AS revenue, round(sum(amount) / count(*), 2) AS avg_basket,
                   datediff(max(order_date), min(order_date)) AS tenure_days
            FROM fact_orders GROUP BY customer_key"""),
        "distribution": sql("""
            WITH x AS (SELECT 'month' AS scope, CAST(date_trunc('month', sale_date) AS DATE) AS period_start,
                              '' AS country, 'line' AS measure, amount FROM fact_sales
                       UNION ALL SELECT 'country', DATE '0001-01-01', country, 'line', amount FROM fact_sales
                       UNION ALL SELECT 'month', CAST(date_trunc('month', order_date) AS DATE), '', 'basket', amount FROM fact_orders
                       UNION ALL SELECT 'country', DATE '0001-01-01', country, 'basket', amount FROM fact_orders)
            SELECT scope, period_start, country, measure, count(*) AS n, sum(amount) AS total,
                   round(avg(amount), 6) AS mean, round(stddev_samp(amount), 6) AS stddev, min(amount) AS min,
                   percentile(amount, array(0.25, 0.5, 0.75)) AS p25_median_p75, max(amount) AS max
            FROM x GROUP BY 1, 2, 3, 4"""),
    }
    rows = {}
    for name, df in marts.items():
        t = time.time()
        df.write.mode("overwrite").parquet(os.path.join(out, name))
        steps[name] = round(time.time() - t, 3)
    for name in marts:
        rows[name] = spark.read.parquet(os.path.join(out, name)).count()
    t_done = time.time()
    a = spark.read.parquet(os.path.join(out, "sales_by_period")).where("grain = 'all'").collect()[0]
    result = {"engine": f"pyspark {spark.version}", "master": args.master,
              "session_seconds": round(t_session - T_START, 3),
              "compute_seconds": round(t_done - t_session, 3),
              "seconds": round(t_done - T_START, 3), "steps": steps, "rows": rows,
              "all": {"revenue": str(a["revenue"]), "lines": a["lines"], "orders": a["orders"],
                      "customers": a["customers"]}}
    spark.stop()
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
