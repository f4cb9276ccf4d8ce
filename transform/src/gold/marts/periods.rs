//! Sales by period (`gold.sales_by_period`: day, ISO week, month, quarter, year, all), by
//! country and period (`gold.country_sales`: month, year, all) and by sales person and
//! period (`gold.employee_sales`: month, all), kept by signed deltas. Distinct customers
//! of a period of a month or less (day, week, month; country and employee by month) are
//! recounted from `gold.fact_orders` for the touched periods (an index range scan over
//! the period's orders); those of longer periods (quarter, year, all) come from
//! `gold.customer_activity`, a multiplicity table (orders per customer and group): a row
//! that appears adds one customer to its group, a row whose count falls to zero removes
//! one, so a batch costs what it touches, not the group's size. (A multiplicity row per
//! customer and day or month would cost one upsert per order and grain, the bulk of a
//! backfill; a recount of a long period would read a year of orders per batch.) Growth
//! is recomputed for the touched periods and those that compare with them.
//!
//! Revenue, lines and units come from the lines (a line counts in the period of its date);
//! orders, customers and the average basket from the orders (in the period of the order's
//! date). Countries are the customers' current ones.

use crate::gold::{col, Column, Mart};
use crate::sql::DbError;
use tokio_postgres::Transaction;

const MEASURES: &[Column] = &[
    col(
        "revenue",
        "numeric",
        "Revenue: the sum of the lines' amounts.",
    ),
    col("lines", "bigint", "Sale lines."),
    col("units", "numeric", "Quantity sold."),
    col(
        "orders",
        "bigint",
        "Distinct orders (in the period of the order's date).",
    ),
    col(
        "customers",
        "bigint",
        "Distinct buying customers (UNKNOWN counts once).",
    ),
    col(
        "avg_basket",
        "numeric",
        "Average basket: revenue / orders, rounded to the cent.",
    ),
];

pub const SALES_BY_PERIOD: Mart = Mart {
    name: "sales_by_period",
    table: "gold.sales_by_period",
    comment: "Sales KPIs per period: one row per grain (day, week = ISO week from Monday, month, quarter, year, all) and period start. Growth against the previous period and the same period a year before (the same calendar day; the ISO week 52 weeks before).",
    columns: &[
        col("grain", "text", "day, week, month, quarter, year or all."),
        col("period_start", "date", "First day of the period (0001-01-01 for all)."),
        MEASURES[0], MEASURES[1], MEASURES[2], MEASURES[3], MEASURES[4], MEASURES[5],
        col("prev_revenue", "numeric", "Revenue of the previous period (null when it had no sales)."),
        col("growth_prev_pct", "numeric", "Growth against the previous period, in percent, 2 decimals."),
        col("yoy_revenue", "numeric", "Revenue of the same period a year before."),
        col("growth_yoy_pct", "numeric", "Growth against the same period a year before, in percent, 2 decimals."),
    ],
    key: &["grain", "period_start"],
    indexes: &[],
    module: "transform/src/gold/marts/periods.rs",
};

pub const COUNTRY_SALES: Mart = Mart {
    name: "country_sales",
    table: "gold.country_sales",
    comment: "Sales per customer country and period (grain month, year or all): revenue by country and year, by country and month, and overall.",
    columns: &[
        col("grain", "text", "month, year or all."),
        col("period_start", "date", "First day of the period (0001-01-01 for all)."),
        col("country", "text", "Customer's current country (Unknown when not known)."),
        MEASURES[0], MEASURES[1], MEASURES[2], MEASURES[3], MEASURES[4], MEASURES[5],
    ],
    key: &["grain", "period_start", "country"],
    indexes: &[],
    module: "transform/src/gold/marts/periods.rs",
};

pub const EMPLOYEE_MONTH: Mart = Mart {
    name: "employee_sales",
    table: "gold.employee_sales",
    comment:
        "Employee metrics: sales per sales person and month (grain month) and overall (grain all).",
    columns: &[
        col("grain", "text", "month or all."),
        col(
            "period_start",
            "date",
            "First day of the month (0001-01-01 for all).",
        ),
        col(
            "employee_key",
            "text",
            "Sales person (key into dim_employee; UNKNOWN for lines without one).",
        ),
        MEASURES[0],
        MEASURES[1],
        MEASURES[2],
        MEASURES[3],
        MEASURES[4],
        MEASURES[5],
    ],
    key: &["grain", "period_start", "employee_key"],
    indexes: &[],
    module: "transform/src/gold/marts/periods.rs",
};

pub const CUSTOMER_ACTIVITY: Mart = Mart {
    name: "customer_activity",
    table: "gold.customer_activity",
    comment: "Helper of the distinct-customer counts of the periods longer than a month: orders per customer, grain (quarter, year, all; country_year, country_all; employee_all), period and group (country or employee; empty for sales_by_period). A row exists while the count is above zero. Periods of a month or less are recounted from gold.fact_orders.",
    columns: &[
        col("grain", "text", "Grain, prefixed by the grouping (country_, employee_) when there is one."),
        col("period_start", "date", "First day of the period."),
        col("group_key", "text", "Country or employee; empty when ungrouped."),
        col("customer_key", "text", "Customer."),
        col("orders", "bigint", "Orders of the customer in the group and period."),
    ],
    key: &["grain", "period_start", "group_key", "customer_key"],
    indexes: &[],
    module: "transform/src/gold/marts/periods.rs",
};

/// Rows of `gold.customer_activity` for grains now recounted (warehouses made before the
/// recount kept them); deleted at start, a no-op once gone.
pub const RETIRED_HELPER_ROWS: &str = "DELETE FROM gold.customer_activity
    WHERE grain IN ('day', 'week', 'month', 'country_month', 'employee_month')";

/// A period mart: its table, grouping column and grains.
struct Spec {
    table: &'static str,
    /// Column of the deltas (and of the table) that groups rows; None for plain periods.
    group: Option<&'static str>,
    /// Prefix of the helper grains in customer_activity.
    helper: &'static str,
    grains: &'static [&'static str],
    /// The grains whose distinct customers are recounted from `gold.fact_orders` (the
    /// others are kept in `gold.customer_activity`).
    recount: &'static [&'static str],
    growth: bool,
}

const SPECS: &[Spec] = &[
    Spec {
        table: "gold.sales_by_period",
        group: None,
        helper: "",
        grains: &["day", "week", "month", "quarter", "year", "all"],
        recount: &["day", "week", "month"],
        growth: true,
    },
    Spec {
        table: "gold.country_sales",
        group: Some("country"),
        helper: "country_",
        grains: &["month", "year", "all"],
        recount: &["month"],
        growth: false,
    },
    Spec {
        table: "gold.employee_sales",
        group: Some("employee_key"),
        helper: "employee_",
        grains: &["month", "all"],
        recount: &["month"],
        growth: false,
    },
];

/// Applies the batch's deltas to every period mart.
pub async fn refresh(tx: &Transaction<'_>) -> Result<(), DbError> {
    for s in SPECS {
        refresh_one(tx, s)
            .await
            .map_err(DbError::query(format!("maintaining {}", s.table)))?;
    }
    Ok(())
}

/// `('a'), ('b')`: a VALUES list of grains.
fn values(grains: &[&str]) -> String {
    let v: Vec<String> = grains.iter().map(|g| format!("('{g}')")).collect();
    v.join(", ")
}

async fn refresh_one(tx: &Transaction<'_>, s: &Spec) -> Result<(), tokio_postgres::Error> {
    let grains = values(s.grains);
    let kept: Vec<&str> = s
        .grains
        .iter()
        .copied()
        .filter(|g| !s.recount.contains(g))
        .collect();
    let kept = values(&kept);
    let recount = values(s.recount);
    let grp = s.group.unwrap_or("''");
    let ogrp = s.group.map_or("''".to_string(), |g| format!("o.{g}"));
    let (gcol, gsel, gkey) = match s.group {
        Some(g) => (format!(", {g}"), ", grp", format!(", {g}")),
        None => (String::new(), "", String::new()),
    };
    let gmatch = match s.group {
        Some(g) => format!(" AND t.{g} = x.grp"),
        None => String::new(),
    };
    let sql = format!(
        "DELETE FROM gold_px;
         INSERT INTO gold_px
         WITH g(grain) AS (VALUES {grains}),
         l AS (SELECT g.grain, gold.period_start(g.grain, d.sale_date) AS p, {grp} AS grp,
                      sum(d.sign * d.amount) AS revenue, sum(d.sign)::bigint AS lines,
                      sum(d.sign * d.quantity) AS units
               FROM gold_d_lines d CROSS JOIN g GROUP BY 1, 2, 3),
         o AS (SELECT g.grain, gold.period_start(g.grain, d.order_date) AS p, {grp} AS grp,
                      sum(d.sign)::bigint AS orders
               FROM gold_d_orders d CROSS JOIN g GROUP BY 1, 2, 3)
         SELECT coalesce(l.grain, o.grain), coalesce(l.p, o.p), coalesce(l.grp, o.grp),
                coalesce(l.revenue, 0), coalesce(l.lines, 0), coalesce(l.units, 0), coalesce(o.orders, 0)
         FROM l FULL JOIN o ON l.grain = o.grain AND l.p = o.p AND l.grp = o.grp;
         ANALYZE gold_px;
         INSERT INTO {t} AS t (grain, period_start{gcol}, revenue, lines, units, orders, customers)
         SELECT grain, p{gsel}, revenue, lines, units, orders, 0 FROM gold_px
         WHERE revenue <> 0 OR lines <> 0 OR units <> 0 OR orders <> 0
         ORDER BY 1, 2, 3
         ON CONFLICT (grain, period_start{gkey}) DO UPDATE SET revenue = t.revenue + EXCLUDED.revenue,
             lines = t.lines + EXCLUDED.lines, units = t.units + EXCLUDED.units,
             orders = t.orders + EXCLUDED.orders;
         DELETE FROM gold_cx;
         WITH up AS (
             INSERT INTO gold.customer_activity AS a (grain, period_start, group_key, customer_key, orders)
             SELECT '{h}' || g.grain, gold.period_start(g.grain, d.order_date), {grp}, d.customer_key, sum(d.sign)
             FROM gold_d_orders d CROSS JOIN (VALUES {kept}) AS g(grain)
             GROUP BY 1, 2, 3, 4 HAVING sum(d.sign) <> 0 ORDER BY 1, 2, 3, 4
             ON CONFLICT (grain, period_start, group_key, customer_key)
             DO UPDATE SET orders = a.orders + EXCLUDED.orders
             RETURNING a.grain, a.period_start, a.group_key, a.orders, (a.xmax = 0) AS inserted)
         INSERT INTO gold_cx (grain, p, grp, dc)
         SELECT substr(grain, {hl}), period_start, group_key,
                sum(CASE WHEN inserted THEN 1 WHEN orders = 0 THEN -1 ELSE 0 END)
         FROM up GROUP BY 1, 2, 3;
         ANALYZE gold_cx;
         DELETE FROM gold.customer_activity a USING gold_cx x
         WHERE a.grain = '{h}' || x.grain AND a.period_start = x.p AND a.group_key = x.grp AND a.orders = 0;
         UPDATE {t} AS t SET
             customers = t.customers + coalesce(c.dc, 0),
             avg_basket = round(t.revenue / nullif(t.orders, 0), 2)
         FROM (SELECT DISTINCT grain, p, grp FROM gold_px) x
              LEFT JOIN gold_cx c ON c.grain = x.grain AND c.p = x.p AND c.grp = x.grp
         WHERE t.grain = x.grain AND t.period_start = x.p{gmatch};
         WITH x AS (SELECT DISTINCT x.grain, x.p, x.grp FROM gold_px x JOIN (VALUES {recount}) AS r(grain) USING (grain)),
         xp AS (SELECT DISTINCT grain, p FROM x),
         c AS (SELECT xp.grain, xp.p, {ogrp} AS grp, count(DISTINCT o.customer_key) AS n
               FROM xp JOIN gold.fact_orders o
                 ON o.order_date >= xp.p AND o.order_date < gold.period_shift(xp.grain, xp.p, 1)
               GROUP BY 1, 2, 3)
         UPDATE {t} AS t SET customers = coalesce(c.n, 0)
         FROM x LEFT JOIN c ON c.grain = x.grain AND c.p = x.p AND c.grp = x.grp
         WHERE t.grain = x.grain AND t.period_start = x.p{gmatch};
         DELETE FROM {t} AS t USING (SELECT DISTINCT grain, p, grp FROM gold_px) x
         WHERE t.grain = x.grain AND t.period_start = x.p{gmatch} AND t.lines = 0 AND t.orders = 0;",
        t = s.table,
        h = s.helper,
        hl = s.helper.len() + 1,
    );
    tx.batch_execute(&sql).await?;
    if s.growth {
        tx.batch_execute(GROWTH).await?;
    }
    Ok(())
}

/// Growth of the touched periods, of the periods after them and of those a year later.
const GROWTH: &str = "
WITH x AS (SELECT DISTINCT grain, p FROM gold_px WHERE grain <> 'all'),
t AS (SELECT grain, p FROM x
      UNION SELECT grain, gold.period_shift(grain, p, 1) FROM x
      UNION SELECT grain, CASE grain WHEN 'week' THEN p + 364 ELSE (p + interval '1 year')::date END FROM x
      UNION SELECT grain, (p + interval '1 year')::date + 1 FROM x WHERE grain = 'day')
UPDATE gold.sales_by_period s SET
    prev_revenue = pr.revenue,
    growth_prev_pct = round(100 * (s.revenue / nullif(pr.revenue, 0) - 1), 2),
    yoy_revenue = yr.revenue,
    growth_yoy_pct = round(100 * (s.revenue / nullif(yr.revenue, 0) - 1), 2)
FROM t
LEFT JOIN gold.sales_by_period pr ON pr.grain = t.grain AND pr.period_start = gold.period_shift(t.grain, t.p, -1)
LEFT JOIN gold.sales_by_period yr ON yr.grain = t.grain AND yr.period_start = gold.year_ago(t.grain, t.p)
WHERE s.grain = t.grain AND s.period_start = t.p;
";
