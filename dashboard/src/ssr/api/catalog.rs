//! What the API serves: one [`Endpoint`] per gold mart (and the two facts as detail lists).
//!
//! The columns are not repeated here: the gold tables are defined once, by the transform
//! (transform/src/gold/marts/), with a `COMMENT` on every table and column. The server reads
//! names, types and comments from the warehouse ([`Schema::load`]) and builds the queries
//! and the OpenAPI document from them; an endpoint whose table or filter column is missing
//! is reported (OpenAPI description, `/health`) instead of answering with a SQL error.

use std::collections::BTreeMap;

use tokio_postgres::Client;

use crate::model::Role;

/// How a filter parameter compares with its column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `column = value`, or any of a comma-separated list.
    Eq,
    /// `column >= value`.
    Ge,
    /// `column <= value`.
    Le,
}

/// One query parameter that filters rows.
#[derive(Clone, Copy, Debug)]
pub struct Filter {
    pub param: &'static str,
    pub column: &'static str,
    pub op: Op,
}

const fn eq(param: &'static str, column: &'static str) -> Filter {
    Filter {
        param,
        column,
        op: Op::Eq,
    }
}
const fn from(column: &'static str) -> Filter {
    Filter {
        param: "from",
        column,
        op: Op::Ge,
    }
}
const fn to(column: &'static str) -> Filter {
    Filter {
        param: "to",
        column,
        op: Op::Le,
    }
}

/// One `GET /api/v1/<name>` route over one table.
#[derive(Clone, Copy, Debug)]
pub struct Endpoint {
    /// The URL segment.
    pub name: &'static str,
    pub table: &'static str,
    /// One line for the OpenAPI summary (the table's comment is the description).
    pub summary: &'static str,
    /// Least role that may read it.
    pub role: Role,
    pub filters: &'static [Filter],
    /// Default order; also the unique key that makes every order total.
    pub key: &'static [&'static str],
    /// Keyset pagination (`cursor`) instead of `offset`: long detail lists.
    pub cursor: bool,
    /// Columns kept out of the API (lineage, internal sums).
    pub hidden: &'static [&'static str],
}

const fn mart(
    name: &'static str,
    table: &'static str,
    summary: &'static str,
    filters: &'static [Filter],
    key: &'static [&'static str],
) -> Endpoint {
    Endpoint {
        name,
        table,
        summary,
        role: Role::Viewer,
        filters,
        key,
        cursor: false,
        hidden: &[],
    }
}

const PERIOD_COUNTRY: [Filter; 4] = [
    eq("grain", "grain"),
    from("period_start"),
    to("period_start"),
    eq("country", "country"),
];
const PERIOD: [Filter; 3] = [
    eq("grain", "grain"),
    from("period_start"),
    to("period_start"),
];

/// Every endpoint, in the order of the OpenAPI document.
pub const ENDPOINTS: &[Endpoint] = &[
    mart(
        "sales-by-period",
        "gold.sales_by_period",
        "Sales by day, ISO week, month, quarter, year or all time, with growth",
        &PERIOD,
        &["grain", "period_start"],
    ),
    mart(
        "country-sales",
        "gold.country_sales",
        "Revenue by country and period",
        &PERIOD_COUNTRY,
        &["grain", "period_start", "country"],
    ),
    mart(
        "country-sales-reporting",
        "gold.country_sales_reporting",
        "Revenue by country and period in the reporting currency",
        &PERIOD_COUNTRY,
        &["grain", "period_start", "country"],
    ),
    mart(
        "product-month",
        "gold.product_month",
        "Product performance per month: revenue, units, orders, rank, share, growth",
        &[from("month"), to("month"), eq("product", "product_key")],
        &["month", "product_key"],
    ),
    mart(
        "employee-sales",
        "gold.employee_sales",
        "Sales per employee and period",
        &[
            eq("grain", "grain"),
            from("period_start"),
            to("period_start"),
            eq("employee", "employee_key"),
        ],
        &["grain", "period_start", "employee_key"],
    ),
    mart(
        "customer-ltv",
        "gold.customer_ltv",
        "Customer lifetime value: first and last order, orders, revenue, basket, tenure",
        &[eq("customer", "customer_key"), eq("country", "country")],
        &["customer_key"],
    ),
    mart(
        "customer-rfm",
        "gold.customer_rfm",
        "RFM scores (1-5) and segment per customer",
        &[eq("customer", "customer_key"), eq("segment", "segment")],
        &["customer_key"],
    ),
    mart(
        "cohort-retention",
        "gold.cohort_retention",
        "Cohort retention by first-purchase month and months since (future cells null)",
        &[from("cohort_month"), to("cohort_month")],
        &["cohort_month", "months_since"],
    ),
    Endpoint {
        hidden: &["total", "sum_squares"],
        ..mart(
            "distribution",
            "gold.distribution",
            "Distribution statistics of line amounts and basket values per month and country",
            &[
                eq("scope", "scope"),
                eq("measure", "measure"),
                from("period_start"),
                to("period_start"),
                eq("country", "country"),
            ],
            &["scope", "period_start", "country", "measure"],
        )
    },
    mart(
        "forecast",
        "gold.forecast_daily",
        "Daily revenue forecast for the next 90 days with 80 % and 95 % bands",
        &[from("day"), to("day")],
        &["day"],
    ),
    mart(
        "forecast-runs",
        "gold.forecast_runs",
        "Forecast runs: method, parameters and backtest error (MASE)",
        &[],
        &["made_at"],
    ),
    mart(
        "anomalies",
        "gold.anomalies_daily",
        "Daily revenue anomalies per country (modified z-score)",
        &[
            from("day"),
            to("day"),
            eq("country", "country"),
            eq("is_anomaly", "is_anomaly"),
        ],
        &["day", "country"],
    ),
    mart(
        "web-usage",
        "gold.web_usage_daily",
        "Web and app usage per day and channel",
        &[from("day"), to("day"), eq("channel", "channel")],
        &["day", "channel"],
    ),
    mart(
        "data-quality",
        "gold.data_quality_daily",
        "Rows in, valid, quarantined and filtered per day and model",
        &[from("day"), to("day"), eq("model", "model")],
        &["day", "model"],
    ),
    mart(
        "freshness",
        "gold.freshness",
        "Freshness of each mart: newest event included, commit time, lag per stage",
        &[eq("mart", "mart")],
        &["mart"],
    ),
    mart(
        "products",
        "gold.dim_product",
        "Products",
        &[eq("product", "product_key"), eq("category", "category")],
        &["product_key"],
    ),
    Endpoint {
        role: Role::Analyst,
        cursor: true,
        ..mart(
            "orders",
            "gold.fact_orders",
            "Orders (baskets), one row per order: a detail list",
            &[
                from("order_date"),
                to("order_date"),
                eq("country", "country"),
                eq("customer", "customer_key"),
                eq("employee", "employee_key"),
            ],
            &["order_date", "order_id"],
        )
    },
    Endpoint {
        role: Role::Analyst,
        cursor: true,
        hidden: &["_bronze_event_id"],
        ..mart(
            "sales-lines",
            "gold.fact_sales",
            "Sale lines, one row per line: a detail list",
            &[
                from("sale_date"),
                to("sale_date"),
                eq("country", "country"),
                eq("product", "product_key"),
                eq("customer", "customer_key"),
                eq("employee", "employee_key"),
                eq("order", "order_id"),
            ],
            &["sale_date", "sale_id"],
        )
    },
];

pub fn find(name: &str) -> Option<&'static Endpoint> {
    ENDPOINTS.iter().find(|e| e.name == name)
}

/// One column as the warehouse declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// `format_type` of the column (`numeric(14,2)`, `date`, `text`, ...).
    pub pg_type: String,
    pub comment: Option<String>,
}

/// One table as the warehouse declares it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    pub comment: Option<String>,
    pub columns: Vec<Column>,
}

/// The gold tables found in the warehouse.
#[derive(Clone, Debug, Default)]
pub struct Schema {
    pub tables: BTreeMap<String, Table>,
}

impl Schema {
    pub async fn load(client: &Client) -> Result<Schema, tokio_postgres::Error> {
        let rows = client
            .query(
                "SELECT n.nspname || '.' || c.relname, obj_description(c.oid, 'pg_class'),
                        a.attname, format_type(a.atttypid, a.atttypmod), col_description(c.oid, a.attnum)
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                 WHERE n.nspname = 'gold' AND c.relkind IN ('r', 'p', 'v', 'm')
                 ORDER BY 1, a.attnum",
                &[],
            )
            .await?;
        let mut tables: BTreeMap<String, Table> = BTreeMap::new();
        for r in rows {
            let t = tables.entry(r.get(0)).or_default();
            t.comment = r.get(1);
            t.columns.push(Column {
                name: r.get(2),
                pg_type: r.get(3),
                comment: r.get(4),
            });
        }
        Ok(Schema { tables })
    }

    /// The columns `e` exposes, or what is missing for it.
    pub fn columns(&self, e: &Endpoint) -> Result<Vec<&Column>, String> {
        let table = self.tables.get(e.table).ok_or_else(|| {
            format!(
                "table {} does not exist yet (run the transform's migrations)",
                e.table
            )
        })?;
        let has = |c: &str| table.columns.iter().any(|col| col.name == c);
        for c in e
            .key
            .iter()
            .copied()
            .chain(e.filters.iter().map(|f| f.column))
        {
            if !has(c) {
                return Err(format!(
                    "{} has no column {c}, which /api/v1/{} uses (dashboard/src/ssr/api/catalog.rs)",
                    e.table, e.name
                ));
            }
        }
        Ok(table
            .columns
            .iter()
            .filter(|c| !e.hidden.contains(&c.name.as_str()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_urls_safe() {
        let mut seen = std::collections::HashSet::new();
        for e in ENDPOINTS {
            assert!(seen.insert(e.name), "{} twice", e.name);
            assert!(e.name.chars().all(|c| c.is_ascii_lowercase() || c == '-'));
            assert!(e.table.starts_with("gold."));
            assert!(!e.key.is_empty());
            let mut params = std::collections::HashSet::new();
            for f in e.filters {
                assert!(params.insert(f.param), "{}: {} twice", e.name, f.param);
                assert!(!super::super::query::RESERVED.contains(&f.param));
            }
        }
    }
}
