//! Gold: the star schema, datamarts and KPIs, stored as tables and kept exact in the same
//! transaction as the silver change that moves them.
//!
//! One module per mart under [`marts`]; each declares its table once ([`Mart`]: columns,
//! types, comments, key, indexes). At start, [`ensure`] creates what is missing and refuses
//! to run when a stored table differs from its declaration, naming both.
//!
//! Per batch ([`refresh`]): the orders touched by the batch's silver changes are re-derived
//! from silver; their old fact rows (−1) and new ones (+1) form the line and order deltas
//! (`gold_d_lines`, `gold_d_orders`), from which each mart applies signed, pre-aggregated
//! deltas (`x = x + EXCLUDED.x`) and recomputes its non-additive measures (distinct counts,
//! percentiles, ranks, growth) for the touched groups only. A replayed batch touches
//! nothing, since silver ignores events it already holds.

pub mod analytics;
pub mod marts;
pub mod queue;
pub mod rebuild;
pub mod verify;

use crate::sql::DbError;
use std::collections::BTreeSet;
use tokio_postgres::{Client, Transaction};

/// One column of a mart: name, PostgreSQL type as `format_type` prints it, comment.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub ty: &'static str,
    pub comment: &'static str,
}

/// Shorthand for a [`Column`].
pub const fn col(name: &'static str, ty: &'static str, comment: &'static str) -> Column {
    Column { name, ty, comment }
}

/// A stored gold table, declared once.
#[derive(Debug, Clone, Copy)]
pub struct Mart {
    /// Name used by `transform rebuild --mart` and in `gold.freshness`.
    pub name: &'static str,
    /// Schema-qualified table.
    pub table: &'static str,
    /// Grain and meaning (the table's COMMENT).
    pub comment: &'static str,
    pub columns: &'static [Column],
    /// Primary key columns.
    pub key: &'static [&'static str],
    /// Extra index definitions: the column lists, e.g. `"customer_key, order_date"`.
    pub indexes: &'static [&'static str],
    /// The Rust module that declares it, for messages.
    pub module: &'static str,
}

impl Mart {
    /// `CREATE TABLE` with its comments and indexes.
    pub fn ddl(&self) -> String {
        let cols: Vec<String> = self
            .columns
            .iter()
            .map(|c| {
                let not_null = if self.key.contains(&c.name) {
                    " NOT NULL"
                } else {
                    ""
                };
                format!("{} {}{not_null}", c.name, c.ty)
            })
            .collect();
        let mut sql = format!(
            "CREATE TABLE {} ({}, PRIMARY KEY ({}));\n",
            self.table,
            cols.join(", "),
            self.key.join(", ")
        );
        sql.push_str(&format!(
            "COMMENT ON TABLE {} IS {};\n",
            self.table,
            quote(self.comment)
        ));
        for c in self.columns {
            sql.push_str(&format!(
                "COMMENT ON COLUMN {}.{} IS {};\n",
                self.table,
                c.name,
                quote(c.comment)
            ));
        }
        for (i, ix) in self.indexes.iter().enumerate() {
            let bare = self.table.split('.').nth(1).unwrap_or(self.table);
            sql.push_str(&format!(
                "CREATE INDEX {bare}_ix{i} ON {} ({ix});\n",
                self.table
            ));
        }
        sql
    }
}

/// A SQL string literal.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[derive(Debug, thiserror::Error)]
pub enum GoldError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("no gold mart named {name:?} (known: {known})")]
    Unknown { name: String, known: &'static str },
    #[error("gold table {table} does not match its declaration in {module}: {diff}. Run `transform rebuild --mart {mart}` to recreate it from silver")]
    Drift {
        table: String,
        module: String,
        mart: String,
        diff: String,
    },
}

/// Every stored gold table, in refresh order.
pub fn all_marts() -> Vec<&'static Mart> {
    marts::ALL.to_vec()
}

/// The declared marts by name.
pub fn mart(name: &str) -> Option<&'static Mart> {
    marts::ALL.iter().copied().find(|m| m.name == name)
}

/// Creates the gold schema's helper functions and every missing mart; fails when a stored
/// mart's columns differ from its declaration (a missing, extra or retyped column).
pub async fn ensure(client: &mut Client) -> Result<Vec<&'static str>, GoldError> {
    let tx = client
        .transaction()
        .await
        .map_err(DbError::query("starting the gold schema check"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await
        .map_err(DbError::query("taking the gold schema lock"))?;
    tx.batch_execute(marts::FUNCTIONS)
        .await
        .map_err(DbError::query("creating the gold helper functions"))?;
    let mut created = Vec::new();
    for m in marts::ALL {
        let rows = tx
            .query(
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod)
                 FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
                 ORDER BY a.attnum",
                &[&m.table],
            )
            .await
            .map_err(DbError::query(format!("reading the columns of {}", m.table)))?;
        if rows.is_empty() {
            tx.batch_execute(&m.ddl())
                .await
                .map_err(DbError::query(format!("creating {}", m.table)))?;
            marts::seed(&tx, m).await?;
            created.push(m.name);
            continue;
        }
        let stored: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        if let Some(diff) = drift(m, &stored) {
            return Err(GoldError::Drift {
                table: m.table.into(),
                module: m.module.into(),
                mart: m.name.into(),
                diff,
            });
        }
    }
    tx.batch_execute(marts::VIEWS)
        .await
        .map_err(DbError::query("creating the gold convenience objects"))?;
    tx.batch_execute(marts::periods::RETIRED_HELPER_ROWS)
        .await
        .map_err(DbError::query(
            "deleting the retired rows of gold.customer_activity",
        ))?;
    tx.commit()
        .await
        .map_err(DbError::query("committing the gold schema"))?;
    Ok(created)
}

const LOCK_KEY: i64 = 0x6574_6c5f_676f_6c64; // "etl_gold"

/// What differs between a declaration and the stored columns, if anything.
pub fn drift(m: &Mart, stored: &[(String, String)]) -> Option<String> {
    let mut diffs = Vec::new();
    for c in m.columns {
        match stored.iter().find(|(n, _)| n == c.name) {
            None => diffs.push(format!("column {} is missing", c.name)),
            Some((_, ty)) if ty != c.ty => diffs.push(format!(
                "column {} is {ty} in the warehouse, {} in the code",
                c.name, c.ty
            )),
            _ => {}
        }
    }
    for (n, _) in stored {
        if !m.columns.iter().any(|c| c.name == n) {
            diffs.push(format!(
                "column {n} is in the warehouse but not in the code"
            ));
        }
    }
    (!diffs.is_empty()).then(|| diffs.join("; "))
}

/// Drops and recreates a mart's table (its data is rebuilt by the caller).
pub async fn recreate(tx: &Transaction<'_>, m: &Mart) -> Result<(), DbError> {
    tx.batch_execute(&format!(
        "DROP TABLE IF EXISTS {} CASCADE;\n{}",
        m.table,
        m.ddl()
    ))
    .await
    .map_err(DbError::query(format!("recreating {}", m.table)))?;
    marts::seed(tx, m).await
}

/// The session's delta tables (temporary, emptied at each commit).
pub async fn prepare_session(client: &Client) -> Result<(), DbError> {
    client
        .batch_execute(marts::facts::SESSION)
        .await
        .map_err(DbError::query("creating the gold delta tables"))
}

/// What the batch changed in silver, by model.
#[derive(Debug, Default)]
pub struct Touched {
    pub sales: BTreeSet<String>,
    pub customers: BTreeSet<String>,
    pub products: BTreeSet<String>,
    pub employees: BTreeSet<String>,
    pub countries: BTreeSet<String>,
    /// Days of web events before and after the batch.
    pub web_days: BTreeSet<chrono::NaiveDate>,
    /// Newest source event time and Kafka time in the batch (ms since the epoch).
    pub newest_event_ms: Option<i64>,
    pub newest_kafka_ms: Option<i64>,
}

impl Touched {
    pub fn record(&mut self, model: &str, keys: Vec<String>) {
        let set = match model {
            "sales" => &mut self.sales,
            "customers" => &mut self.customers,
            "products" => &mut self.products,
            "employees" => &mut self.employees,
            "countries" => &mut self.countries,
            _ => return,
        };
        set.extend(keys);
    }

    pub fn is_empty(&self) -> bool {
        self.sales.is_empty()
            && self.customers.is_empty()
            && self.products.is_empty()
            && self.employees.is_empty()
            && self.countries.is_empty()
            && self.web_days.is_empty()
    }

    /// Whether a dimension's members moved.
    fn dims_touched(&self) -> bool {
        !(self.customers.is_empty()
            && self.products.is_empty()
            && self.employees.is_empty()
            && self.countries.is_empty())
    }
}

/// What a refresh did.
#[derive(Debug, Default, Clone, Copy)]
pub struct GoldStats {
    pub orders: u64,
    pub lines_delta: u64,
    pub version: i64,
    /// What it drained from the queue of deferred batches.
    pub drained: Option<queue::Queued>,
    /// The batch queued its changes instead ([`defer`]).
    pub deferred: bool,
}

/// The marts a change of sales moves.
const SALES_MARTS: &[&str] = &[
    "fact_sales",
    "fact_orders",
    "sales_by_period",
    "country_sales",
    "employee_sales",
    "product_month",
    "customer_ltv",
    "distribution",
];

const DIM_MARTS: &[&str] = &["dim_customer", "dim_product", "dim_country", "dim_employee"];

/// Takes the lock that batches share and a rebuild or a verification takes alone.
async fn lock_shared(tx: &Transaction<'_>) -> Result<(), DbError> {
    tx.execute(
        "SELECT pg_advisory_xact_lock_shared($1)",
        &[&rebuild::GOLD_LOCK],
    )
    .await
    .map_err(DbError::query("taking the gold lock"))?;
    Ok(())
}

/// Brings every mart in line with the batch's silver changes and with the queue of
/// deferred batches ([`queue`]), inside the batch's transaction, and bumps
/// `gold.version` when anything moved.
pub async fn refresh(tx: &Transaction<'_>, t: &Touched) -> Result<GoldStats, DbError> {
    let mut stats = GoldStats::default();
    lock_shared(tx).await?;
    let drained = queue::stage(tx, t).await?;
    if t.is_empty() && drained.is_none() {
        return Ok(stats);
    }
    stats.drained = drained;
    // Room for the batch's sorts and hashes (the default 4 MB spills a batch's windows to disk).
    tx.batch_execute("SET LOCAL work_mem = '64MB'")
        .await
        .map_err(DbError::query("setting the batch's work_mem"))?;
    marts::dims::refresh(tx, t).await?;
    let (orders, lines) = marts::facts::refresh(tx).await?;
    stats.orders = orders;
    stats.lines_delta = lines;
    if lines > 0 {
        marts::periods::refresh(tx).await?;
        marts::products::refresh(tx).await?;
        marts::customers::refresh(tx).await?;
        marts::distribution::refresh(tx).await?;
    }
    let web_days = match drained {
        Some(_) => queue::staged_web_days(tx).await?,
        None => t.web_days.clone(),
    };
    marts::web_usage::refresh(tx, &web_days).await?;
    let mut names: Vec<&str> = DIM_MARTS.to_vec();
    if lines > 0 {
        names.extend(SALES_MARTS);
    }
    if !web_days.is_empty() {
        names.push(marts::web_usage::WEB_USAGE_DAILY.name);
    }
    let newest = Touched {
        newest_event_ms: t
            .newest_event_ms
            .max(drained.and_then(|q| q.newest_event_ms)),
        newest_kafka_ms: t
            .newest_kafka_ms
            .max(drained.and_then(|q| q.newest_kafka_ms)),
        ..Default::default()
    };
    stats.version = marts::freshness::bump(tx, &names, &newest).await?;
    Ok(stats)
}

/// A batch while transform is behind: the dimensions now, the facts and marts queued for
/// the next [`refresh`] (`records`: the batch's size, for the queue's state).
pub async fn defer(tx: &Transaction<'_>, t: &Touched, records: u64) -> Result<GoldStats, DbError> {
    let mut stats = GoldStats {
        deferred: true,
        ..Default::default()
    };
    lock_shared(tx).await?;
    marts::dims::refresh(tx, t).await?;
    queue::defer(tx, t, records).await?;
    if t.dims_touched() {
        stats.version = marts::freshness::bump(tx, DIM_MARTS, t).await?;
    }
    Ok(stats)
}
