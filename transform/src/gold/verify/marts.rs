//! The marts recomputed from silver in polars, with the semantics of their SQL
//! (`transform/src/gold/marts/*.rs`): reference facts, period marts, growth, product
//! months, customer lifetime values, dimensions and web usage. Money is in cents
//! (Int64), quantities in units of 10^-S (S: the largest scale of silver quantities),
//! dates in days since 1970-01-01.

use super::calendar::{self, GRAINS};
use super::fixed::{div_round_expr, growth_pct};
use super::Table;
use polars::prelude::*;
use std::collections::HashMap;

/// What the recomputation reads: silver.sales, customers, products, customer_history
/// and web_events.
pub struct Silver {
    pub sales: Table,
    pub customers: Table,
    pub products: Table,
    pub history: Table,
    pub web: Table,
}

/// The reference facts: `lines` (one per silver sale, with its period starts) and
/// `orders` (one per order, with its period starts); `qty` the scale of quantities.
pub struct Facts {
    pub lines: LazyFrame,
    pub orders: LazyFrame,
    pub qty: u32,
}

pub fn left() -> JoinArgs {
    JoinArgs::new(JoinType::Left)
}

/// A FULL JOIN … USING: keys coalesced.
pub fn full_using() -> JoinArgs {
    JoinArgs::new(JoinType::Full).with_coalesce(JoinCoalesce::CoalesceColumns)
}

pub fn cols(names: &[&str]) -> Vec<Expr> {
    names.iter().map(|n| col(*n)).collect()
}

fn count() -> Expr {
    len().cast(DataType::Int64)
}

/// A table whose numeric columns have the given scales.
pub fn table(df: DataFrame, scales: &[(&str, u32)]) -> Table {
    let scales: HashMap<String, u32> = scales.iter().map(|(n, s)| (n.to_string(), *s)).collect();
    Table { df, scales }
}

/// `ref_fact_sales` and `ref_fact_orders` of the SQL: the customer's current country,
/// UNKNOWN members for missing customers and products.
pub fn facts(s: &Silver) -> PolarsResult<Facts> {
    let qty = s.sales.scales.get("quantity").copied().unwrap_or(0);
    let periods: Vec<Expr> = GRAINS.iter().map(|g| col(format!("p_{g}"))).collect();
    let cal = calendar::calendar(s.sales.df.column("sale_date")?)?;
    let customers = s.customers.df.clone().lazy().select([
        col("customer_id"),
        col("country"),
        lit(true).alias("_known_customer"),
    ]);
    let products = s
        .products
        .df
        .clone()
        .lazy()
        .select([col("product_id"), lit(true).alias("_known_product")]);
    let lines = s
        .sales
        .df
        .clone()
        .lazy()
        .join(
            customers,
            [col("customer_id")],
            [col("customer_id")],
            left(),
        )
        .join(products, [col("product_id")], [col("product_id")], left())
        .join(
            cal.clone().lazy(),
            [col("sale_date")],
            [col("date")],
            left(),
        )
        .select(
            [
                col("sale_id"),
                col("order_id"),
                col("date_key"),
                col("sale_date"),
                when(col("_known_customer").is_not_null())
                    .then(col("customer_id"))
                    .otherwise(lit("UNKNOWN"))
                    .alias("customer_key"),
                col("customer_id").alias("source_customer_id"),
                when(col("_known_product").is_not_null())
                    .then(col("product_id"))
                    .otherwise(lit("UNKNOWN"))
                    .alias("product_key"),
                col("product_id").alias("source_product_id"),
                col("employee_id")
                    .fill_null(lit("UNKNOWN"))
                    .alias("employee_key"),
                col("country").fill_null(lit("Unknown")),
                col("quantity"),
                col("unit_price"),
                col("amount"),
                col("_bronze_event_id"),
                col("prev_month"),
            ]
            .into_iter()
            .chain(periods.clone())
            .collect::<Vec<_>>(),
        )
        .cache();
    let orders = lines
        .clone()
        .group_by([col("order_id")])
        .agg([
            col("sale_date").min().alias("order_date"),
            col("customer_key").min(),
            col("country").min(),
            col("employee_key").min(),
            count().alias("lines"),
            col("quantity").sum().alias("units"),
            col("amount").sum(),
        ])
        .join(cal.lazy(), [col("order_date")], [col("date")], left())
        .select([cols(&FACT_ORDERS), periods].concat())
        .cache();
    Ok(Facts { lines, orders, qty })
}

const FACT_SALES: [&str; 14] = [
    "sale_id",
    "order_id",
    "date_key",
    "sale_date",
    "customer_key",
    "source_customer_id",
    "product_key",
    "source_product_id",
    "employee_key",
    "country",
    "quantity",
    "unit_price",
    "amount",
    "_bronze_event_id",
];
const FACT_ORDERS: [&str; 8] = [
    "order_id",
    "order_date",
    "customer_key",
    "country",
    "employee_key",
    "lines",
    "units",
    "amount",
];

pub fn fact_sales(f: &Facts) -> PolarsResult<Table> {
    let df = f.lines.clone().select(cols(&FACT_SALES)).collect()?;
    Ok(table(
        df,
        &[("quantity", f.qty), ("unit_price", 2), ("amount", 2)],
    ))
}

pub fn fact_orders(f: &Facts) -> PolarsResult<Table> {
    let df = f.orders.clone().select(cols(&FACT_ORDERS)).collect()?;
    Ok(table(df, &[("units", f.qty), ("amount", 2)]))
}

/// Rows of `lf` once per grain: `grain` and `period_start` (its `p_<grain>`) first.
fn by_grain(lf: &LazyFrame, grains: &[&str], keep: &[&str]) -> PolarsResult<LazyFrame> {
    let parts: Vec<LazyFrame> = grains
        .iter()
        .map(|g| {
            let mut sel = vec![
                lit(*g).alias("grain"),
                col(format!("p_{g}")).alias("period_start"),
            ];
            sel.extend(cols(keep));
            lf.clone().select(sel)
        })
        .collect();
    concat(parts, UnionArgs::default())
}

/// A period mart (sales_by_period, country_sales, employee_sales): revenue, lines and
/// units from the lines, orders and distinct customers from the orders, full-joined.
pub fn period_mart(f: &Facts, grains: &[&str], group: Option<&str>) -> PolarsResult<Table> {
    let mut keys = vec!["grain", "period_start"];
    keys.extend(group);
    let line_cols: Vec<&str> = group.into_iter().chain(["amount", "quantity"]).collect();
    let order_cols: Vec<&str> = group.into_iter().chain(["customer_key"]).collect();
    let l = by_grain(&f.lines, grains, &line_cols)?
        .group_by(cols(&keys))
        .agg([
            col("amount").sum().alias("revenue"),
            count().alias("lines"),
            col("quantity").sum().alias("units"),
        ]);
    let o = by_grain(&f.orders, grains, &order_cols)?
        .group_by(cols(&keys))
        .agg([
            count().alias("orders"),
            col("customer_key")
                .n_unique()
                .cast(DataType::Int64)
                .alias("customers"),
        ]);
    let mut out = cols(&keys);
    out.extend([
        col("revenue").fill_null(lit(0i64)),
        col("lines").fill_null(lit(0i64)),
        col("units").fill_null(lit(0i64)),
        col("orders").fill_null(lit(0i64)),
        col("customers").fill_null(lit(0i64)),
        // round(revenue / nullif(orders, 0), 2) on the unjoined values.
        div_round_expr(col("revenue"), col("orders")).alias("avg_basket"),
    ]);
    let df = l
        .join(o, cols(&keys), cols(&keys), full_using())
        .select(out)
        .collect()?;
    Ok(table(
        df,
        &[("revenue", 2), ("units", f.qty), ("avg_basket", 2)],
    ))
}

/// Growth of sales_by_period (grains other than all) against the previous period and the
/// same period a year before, from the recomputed `sales_by_period`.
pub fn growth(sales_by_period: &DataFrame) -> PolarsResult<Table> {
    let r = sales_by_period
        .clone()
        .lazy()
        .filter(col("grain").neq(lit("all")))
        .select([col("grain"), col("period_start"), col("revenue")])
        .collect()?;
    let shifts = calendar::shifts(r.column("grain")?, r.column("period_start")?)?;
    let other = |start: &str, revenue: &str| {
        r.clone().lazy().select([
            col("grain"),
            col("period_start").alias(start),
            col("revenue").alias(revenue),
        ])
    };
    let gp = [col("grain"), col("period_start")];
    let df = r
        .clone()
        .lazy()
        .join(shifts.lazy(), gp.clone(), gp, left())
        .join(
            other("prev_start", "prev_revenue"),
            [col("grain"), col("prev_start")],
            [col("grain"), col("prev_start")],
            left(),
        )
        .join(
            other("yoy_start", "yoy_revenue"),
            [col("grain"), col("yoy_start")],
            [col("grain"), col("yoy_start")],
            left(),
        )
        .select([
            col("grain"),
            col("period_start"),
            col("prev_revenue"),
            growth_pct(col("revenue"), col("prev_revenue")).alias("growth_prev_pct"),
            col("yoy_revenue"),
            growth_pct(col("revenue"), col("yoy_revenue")).alias("growth_yoy_pct"),
        ])
        .collect()?;
    Ok(table(
        df,
        &[
            ("prev_revenue", 2),
            ("growth_prev_pct", 2),
            ("yoy_revenue", 2),
            ("growth_yoy_pct", 2),
        ],
    ))
}

/// Product performance per month: rank and share within the month, growth against the
/// product's previous month.
pub fn product_month(f: &Facts) -> PolarsResult<Table> {
    let m = f
        .lines
        .clone()
        .group_by([col("p_month").alias("month"), col("product_key")])
        .agg([
            col("amount").sum().alias("revenue"),
            col("quantity").sum().alias("units"),
            count().alias("lines"),
            col("order_id")
                .n_unique()
                .cast(DataType::Int64)
                .alias("orders"),
            col("prev_month").first(),
        ])
        .cache();
    let prev = m.clone().select([
        col("month").alias("prev_month"),
        col("product_key"),
        col("revenue").alias("prev_revenue"),
    ]);
    let rank = RankOptions {
        method: RankMethod::Min,
        descending: true,
    };
    let on = [col("prev_month"), col("product_key")];
    let df = m
        .join(prev, on.clone(), on, left())
        .select([
            col("month"),
            col("product_key"),
            col("revenue"),
            col("units"),
            col("lines"),
            col("orders"),
            col("revenue")
                .rank(rank, None)
                .over([col("month")])?
                .cast(DataType::Int64)
                .alias("revenue_rank"),
            div_round_expr(
                col("revenue") * lit(1_000_000i64),
                col("revenue").sum().over([col("month")])?,
            )
            .alias("revenue_share"),
            col("prev_revenue"),
            growth_pct(col("revenue"), col("prev_revenue")).alias("growth_prev_pct"),
        ])
        .collect()?;
    Ok(table(
        df,
        &[
            ("revenue", 2),
            ("units", f.qty),
            ("revenue_share", 6),
            ("prev_revenue", 2),
            ("growth_prev_pct", 2),
        ],
    ))
}

/// Lifetime value per customer key, from the orders.
pub fn customer_ltv(f: &Facts) -> PolarsResult<Table> {
    let df = f
        .orders
        .clone()
        .group_by([col("customer_key")])
        .agg([
            col("country").min(),
            col("order_date").min().alias("first_order_date"),
            col("order_date").max().alias("last_order_date"),
            count().alias("orders"),
            col("lines").sum(),
            col("amount").sum().alias("revenue"),
        ])
        .with_columns([
            div_round_expr(col("revenue"), col("orders")).alias("avg_basket"),
            (col("last_order_date").cast(DataType::Int64)
                - col("first_order_date").cast(DataType::Int64))
            .alias("tenure_days"),
        ])
        .collect()?;
    Ok(table(df, &[("revenue", 2), ("avg_basket", 2)]))
}

/// The customer dimension's versions (the UNKNOWN member aside).
pub fn dim_customer(s: &Silver) -> PolarsResult<Table> {
    let df = s
        .history
        .df
        .clone()
        .lazy()
        .select([
            col("customer_id").alias("customer_key"),
            col("version"),
            col("country").fill_null(lit("Unknown")),
            col("is_current"),
        ])
        .collect()?;
    Ok(table(df, &[]))
}

pub fn dim_product(s: &Silver) -> PolarsResult<Table> {
    let df = s
        .products
        .df
        .clone()
        .lazy()
        .select([
            col("product_id").alias("product_key"),
            col("product_name"),
            col("category").fill_null(lit("Unknown")),
            col("unit_price"),
        ])
        .collect()?;
    Ok(table(df, &[("unit_price", 2)]))
}

/// Web usage per day and channel; distinct counts ignore nulls, as count(DISTINCT).
pub fn web_usage_daily(s: &Silver) -> PolarsResult<Table> {
    let ty = col("event_type");
    let df = s
        .web
        .df
        .clone()
        .lazy()
        .filter(col("event_date").is_not_null())
        .group_by([
            col("event_date").alias("day"),
            col("channel").fill_null(lit("unknown")),
        ])
        .agg([
            col("session_id")
                .drop_nulls()
                .n_unique()
                .cast(DataType::Int64)
                .alias("sessions"),
            ty.clone()
                .eq(lit("page_view"))
                .or(ty.eq(lit("screen_view")))
                .cast(DataType::Int64)
                .sum()
                .alias("page_views"),
            col("customer_id")
                .drop_nulls()
                .n_unique()
                .cast(DataType::Int64)
                .alias("customers"),
            count().alias("events"),
        ])
        .collect()?;
    Ok(table(df, &[]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn day(y: i32, m: u32, d: u32) -> i32 {
        calendar::to_days(NaiveDate::from_ymd_opt(y, m, d).unwrap())
    }

    #[test]
    fn growth_with_a_missing_previous_period() {
        // January 100.00, no February, March 150.00, April 120.00; January a year later
        // 120.00.
        let sbp = df!(
            "grain" => ["month", "month", "month", "month", "all"],
            "period_start" => [day(2024, 1, 1), day(2024, 3, 1), day(2024, 4, 1), day(2025, 1, 1), calendar::all_start()],
            "revenue" => [10_000i64, 15_000, 12_000, 12_000, 49_000],
        )
        .unwrap();
        let g = growth(&sbp)
            .unwrap()
            .df
            .sort(["period_start"], SortMultipleOptions::default())
            .unwrap();
        assert_eq!(g.height(), 4, "grain all has no growth");
        let get =
            |c: &str| -> Vec<Option<i64>> { g.column(c).unwrap().i64().unwrap().iter().collect() };
        assert_eq!(get("prev_revenue"), [None, None, Some(15_000), None]);
        assert_eq!(get("growth_prev_pct"), [None, None, Some(-2_000), None]);
        assert_eq!(get("yoy_revenue"), [None, None, None, Some(10_000)]);
        assert_eq!(get("growth_yoy_pct"), [None, None, None, Some(2_000)]);
    }
}
