//! Silver mirrors of database tables: `silver.<db>_<table>` holds the current state of each
//! captured MySQL/MariaDB table, one row per primary key, with the source's columns typed
//! (DECIMAL as numeric, DATETIME as timestamp, TIMESTAMP as timestamptz, BLOB as bytea...).
//!
//! The columns follow the source without a restart. The agent announces a table's columns
//! with a schema event (`op: "s"`) on every partition of its topic, before the rows written
//! with them; this module creates the table, then renames, adds, drops and retypes columns
//! as announced. Partitions are consumed independently, so a row written before a change can
//! arrive after it (from a partition that lags): such a row is read through the recorded
//! renames, and values of dropped columns are ignored. A schema event older than the one
//! applied (the same change seen on another partition) changes nothing.
//!
//! A schema event can also say that rows are gone without row events: `TRUNCATE`, and the
//! end of a snapshot (rows the snapshot did not see were deleted while the binlog could not
//! be read). Both remove the rows whose binlog position is before the event's; rows written
//! later (already applied from another partition) stay.
//!
//! The key of a mirror row (`_key`) is the JSON array of its primary-key values, so that it
//! survives a renamed key column.

mod types;

pub use types::PgType;

use super::{SilverEvent, SilverStats};
use crate::sql::DbError;
use etl_contract::Op;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use tokio_postgres::Transaction;
use tracing::{info, warn};

/// Lineage columns of every mirror table (a source column may not use these names).
const LINEAGE: [(&str, &str, &str); 9] = [
    ("_key", "text PRIMARY KEY", "Primary-key values of the source row as a JSON array (the whole row for a table without a primary key)."),
    ("_op", "char(1) NOT NULL", "Last change applied: c (insert), u (update) or r (snapshot read)."),
    ("_source_key", "text NOT NULL", "Source key of the change event that produced this version of the row."),
    ("_bronze_event_id", "bigint NOT NULL", "Lineage: bronze.events.event_id of that event."),
    ("_binlog_file", "text NOT NULL", "Binlog file of the change (for a snapshot row: the snapshot's binlog coordinates)."),
    ("_binlog_pos", "bigint NOT NULL", "Binlog position of the change (for a snapshot row: the snapshot's)."),
    ("_snapshot_id", "text", "Snapshot that read the row, when it comes from a snapshot."),
    ("_committed_at", "timestamptz", "When the source committed the change (snapshot rows: when they were read)."),
    ("_updated_at", "timestamptz NOT NULL DEFAULT now()", "When the warehouse applied it."),
];

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
struct Col {
    name: String,
    #[serde(rename = "type")]
    ty: PgType,
}

#[derive(Debug, Deserialize)]
struct PosIn {
    file: String,
    pos: i64,
}

#[derive(Debug, Deserialize)]
struct RenameIn {
    from: String,
    to: String,
}

#[derive(Debug, Deserialize)]
struct SnapIn {
    id: String,
    phase: String,
}

#[derive(Debug, Deserialize)]
struct SchemaIn {
    db: String,
    table: String,
    columns: Vec<Col>,
    #[serde(default)]
    pk: Vec<String>,
    #[serde(default)]
    renames: Vec<RenameIn>,
    position: PosIn,
    #[serde(default)]
    truncated: bool,
    #[serde(default)]
    snapshot: Option<SnapIn>,
}

impl SchemaIn {
    /// What PostgreSQL would accept but the mirror could not work with: checked before any
    /// DDL is built. (Types are checked when the event is read: see [`PgType`].)
    fn check(&self) -> Result<(), String> {
        if self.columns.is_empty() {
            return Err("the schema event lists no columns".into());
        }
        let mut seen = BTreeSet::new();
        for c in &self.columns {
            if c.name.is_empty() || c.name.len() > 63 || c.name.contains('\0') {
                return Err(format!(
                    "column name {:?} is empty, longer than 63 bytes or holds a NUL byte (PostgreSQL would cut or refuse it)",
                    c.name.chars().take(80).collect::<String>()
                ));
            }
            if LINEAGE.iter().any(|(n, _, _)| *n == c.name) {
                return Err(format!(
                    "column {:?} has the name of a lineage column of the mirror",
                    c.name
                ));
            }
            if !seen.insert(c.name.as_str()) {
                return Err(format!("column {:?} is listed twice", c.name));
            }
        }
        if let Some(k) = self.pk.iter().find(|k| !seen.contains(k.as_str())) {
            return Err(format!("primary-key column {k:?} is not among the columns"));
        }
        Ok(())
    }
}

#[derive(Debug, Default, Deserialize)]
struct SrcIn {
    #[serde(default)]
    file: String,
    #[serde(default)]
    pos: i64,
    #[serde(default)]
    ts_ms: Option<i64>,
    #[serde(default)]
    server_id: Option<i64>,
    #[serde(default)]
    gtid: Option<String>,
    #[serde(default)]
    db: Option<String>,
    #[serde(default)]
    table: Option<String>,
}

/// What the warehouse knows about a mirrored table.
#[derive(Debug, Clone)]
struct Meta {
    columns: Vec<Col>,
    pk: Vec<String>,
    renames: BTreeMap<String, String>,
    dropped: BTreeSet<String>,
    file: String,
    pos: i64,
}

impl Meta {
    fn has(&self, name: &str) -> bool {
        self.columns.iter().any(|c| c.name == name)
    }

    /// The current name of a column written under `name`; `Ok(None)` for a dropped column.
    fn resolve<'a>(&'a self, name: &'a str) -> Result<Option<&'a str>, String> {
        let mut n = name;
        for _ in 0..64 {
            if self.has(n) {
                return Ok(Some(n));
            }
            match self.renames.get(n) {
                Some(next) => n = next,
                None if self.dropped.contains(n) => return Ok(None),
                None => break,
            }
        }
        Err(format!(
            "column {name:?} is not among the table's columns ({}) and no schema event renamed or dropped it",
            self.columns
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

fn qi(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

fn ql(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn table_ref(entity: &str) -> String {
    format!("silver.{}", qi(entity))
}

async fn load_meta(tx: &Transaction<'_>, entity: &str) -> Result<Option<Meta>, DbError> {
    let row = tx
        .query_opt(
            "SELECT columns::text, pk::text, renames::text, dropped::text, schema_file, schema_pos
             FROM pipeline.mirror_tables WHERE entity = $1",
            &[&entity],
        )
        .await
        .map_err(DbError::query(format!(
            "reading the mirror state of {entity}"
        )))?;
    let Some(r) = row else { return Ok(None) };
    let text = |i: usize| -> String { r.get(i) };
    let bad = |what: &str, e: serde_json::Error| {
        DbError::State {
        context: format!(
            "pipeline.mirror_tables.{what} of {entity} is not what this version writes: {e} (fix or delete that row, then replay the table's topic)"
        ),
    }
    };
    Ok(Some(Meta {
        columns: serde_json::from_str(&text(0)).map_err(|e| bad("columns", e))?,
        pk: serde_json::from_str(&text(1)).map_err(|e| bad("pk", e))?,
        renames: serde_json::from_str(&text(2)).map_err(|e| bad("renames", e))?,
        dropped: serde_json::from_str(&text(3)).map_err(|e| bad("dropped", e))?,
        file: r.get(4),
        pos: r.get(5),
    }))
}

async fn save_meta(
    tx: &Transaction<'_>,
    entity: &str,
    db: &str,
    table: &str,
    m: &Meta,
) -> Result<(), DbError> {
    let columns = serde_json::to_string(
        &m.columns
            .iter()
            .map(|c| serde_json::json!({"name": c.name, "type": c.ty}))
            .collect::<Vec<_>>(),
    )
    .unwrap_or_default();
    tx.execute(
        "INSERT INTO pipeline.mirror_tables (entity, connector, db, table_name, columns, pk, renames, dropped, schema_file, schema_pos)
         VALUES ($1, 'mysql', $2, $3, $4::text::jsonb, $5::text::jsonb, $6::text::jsonb, $7::text::jsonb, $8, $9)
         ON CONFLICT (entity) DO UPDATE SET columns = EXCLUDED.columns, pk = EXCLUDED.pk,
           renames = EXCLUDED.renames, dropped = EXCLUDED.dropped, schema_file = EXCLUDED.schema_file,
           schema_pos = EXCLUDED.schema_pos, updated_at = now()",
        &[
            &entity,
            &db,
            &table,
            &columns,
            &serde_json::to_string(&m.pk).unwrap_or_default(),
            &serde_json::to_string(&m.renames).unwrap_or_default(),
            &serde_json::to_string(&m.dropped).unwrap_or_default(),
            &m.file,
            &m.pos,
        ],
    )
    .await
    .map_err(DbError::query(format!("saving the mirror state of {entity}")))?;
    Ok(())
}

async fn exec(tx: &Transaction<'_>, sql: &str, what: &str) -> Result<(), DbError> {
    tx.batch_execute(sql)
        .await
        .map_err(DbError::query(what.to_string()))
}

/// Applies a schema event; returns the table's state afterwards.
async fn apply_schema(
    tx: &Transaction<'_>,
    entity: &str,
    meta: Option<Meta>,
    s: &SchemaIn,
) -> Result<Meta, DbError> {
    let newer = meta
        .as_ref()
        .is_none_or(|m| (s.position.file.as_str(), s.position.pos) > (m.file.as_str(), m.pos));
    let m = match meta {
        None => create_table(tx, entity, s).await?,
        Some(m) if newer => alter_table(tx, entity, m, s).await?,
        Some(m) => m,
    };
    purge_gone(tx, entity, s).await?;
    if newer {
        save_meta(tx, entity, &s.db, &s.table, &m).await?;
    }
    Ok(m)
}

fn column_comment(t: &str, s: &SchemaIn, c: &Col) -> String {
    format!(
        "COMMENT ON COLUMN {t}.{} IS {};\n",
        qi(&c.name),
        ql(&format!("Source column {}.{}.{}.", s.db, s.table, c.name))
    )
}

/// The first schema event of a table: creates it with the lineage columns and comments.
async fn create_table(tx: &Transaction<'_>, entity: &str, s: &SchemaIn) -> Result<Meta, DbError> {
    let t = table_ref(entity);
    let mut ddl = format!("CREATE TABLE IF NOT EXISTS {t} (");
    for c in &s.columns {
        ddl.push_str(&format!("{} {}, ", qi(&c.name), c.ty));
    }
    ddl.push_str(
        &LINEAGE
            .iter()
            .map(|(n, ty, _)| format!("{n} {ty}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    ddl.push_str(");\n");
    ddl.push_str(&format!(
        "CREATE INDEX IF NOT EXISTS {} ON {t} (_binlog_file, _binlog_pos);\n",
        qi(&format!("{entity}_binlog_idx"))
    ));
    ddl.push_str(&format!(
        "COMMENT ON TABLE {t} IS {};\n",
        ql(&format!(
            "Current state of the source table {}.{} (MySQL/MariaDB binlog), one row per primary key; columns follow the source's schema changes (see pipeline.mirror_tables and pipeline.schema_history).",
            s.db, s.table
        ))
    ));
    for (n, _, comment) in LINEAGE {
        ddl.push_str(&format!("COMMENT ON COLUMN {t}.{n} IS {};\n", ql(comment)));
    }
    for c in &s.columns {
        ddl.push_str(&column_comment(&t, s, c));
    }
    exec(tx, &ddl, &format!("creating the mirror table {t}")).await?;
    info!(entity, columns = s.columns.len(), "mirror table created");
    Ok(Meta {
        columns: s.columns.clone(),
        pk: s.pk.clone(),
        renames: BTreeMap::new(),
        dropped: BTreeSet::new(),
        file: s.position.file.clone(),
        pos: s.position.pos,
    })
}

/// A newer schema event: renames, drops, adds and retypes columns as announced.
async fn alter_table(
    tx: &Transaction<'_>,
    entity: &str,
    mut m: Meta,
    s: &SchemaIn,
) -> Result<Meta, DbError> {
    let t = table_ref(entity);
    let mut ddl = String::new();
    for r in &s.renames {
        if m.has(&r.from) && !m.has(&r.to) {
            ddl.push_str(&format!(
                "ALTER TABLE {t} RENAME COLUMN {} TO {};\n",
                qi(&r.from),
                qi(&r.to)
            ));
            for c in m.columns.iter_mut().filter(|c| c.name == r.from) {
                c.name = r.to.clone();
            }
            for v in m.renames.values_mut().filter(|v| **v == r.from) {
                *v = r.to.clone();
            }
            m.renames.insert(r.from.clone(), r.to.clone());
            m.dropped.remove(&r.to);
        }
    }
    let wanted: BTreeSet<&str> = s.columns.iter().map(|c| c.name.as_str()).collect();
    for c in m
        .columns
        .iter()
        .filter(|c| !wanted.contains(c.name.as_str()))
    {
        ddl.push_str(&format!(
            "ALTER TABLE {t} DROP COLUMN IF EXISTS {};\n",
            qi(&c.name)
        ));
        m.dropped.insert(c.name.clone());
    }
    m.columns.retain(|c| wanted.contains(c.name.as_str()));
    for c in &s.columns {
        if !m.has(&c.name) {
            ddl.push_str(&format!(
                "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS {} {};\n",
                qi(&c.name),
                c.ty
            ));
            ddl.push_str(&column_comment(&t, s, c));
            m.dropped.remove(&c.name);
            m.renames.remove(&c.name);
        }
    }
    if !ddl.is_empty() {
        exec(tx, &ddl, &format!("changing the columns of {t}")).await?;
    }
    retype_columns(tx, entity, &m, s).await?;
    m.columns = s.columns.clone();
    m.pk = s.pk.clone();
    m.file = s.position.file.clone();
    m.pos = s.position.pos;
    info!(entity, columns = m.columns.len(), renames = s.renames.len(), file = %m.file, pos = m.pos, "mirror columns follow the source");
    Ok(m)
}

/// Type changes: converted in place when PostgreSQL can; text otherwise.
async fn retype_columns(
    tx: &Transaction<'_>,
    entity: &str,
    m: &Meta,
    s: &SchemaIn,
) -> Result<(), DbError> {
    let t = table_ref(entity);
    for c in &s.columns {
        let Some(old) = m.columns.iter().find(|o| o.name == c.name && o.ty != c.ty) else {
            continue;
        };
        let col = qi(&c.name);
        exec(
            tx,
            "SAVEPOINT mirror_retype",
            "savepoint before a column type change",
        )
        .await?;
        let ty = &c.ty;
        let ok = tx
            .batch_execute(&format!(
                "ALTER TABLE {t} ALTER COLUMN {col} TYPE {ty} USING {col}::{ty}"
            ))
            .await;
        match ok {
            Ok(()) => {
                exec(
                    tx,
                    "RELEASE SAVEPOINT mirror_retype",
                    "releasing the savepoint",
                )
                .await?
            }
            Err(e) => {
                warn!(entity, column = %c.name, from = %old.ty, to = %c.ty, error = %crate::sql::pg_message(&e), "cannot convert the column in place; it becomes text");
                exec(
                    tx,
                    "ROLLBACK TO SAVEPOINT mirror_retype",
                    "rolling back a column type change",
                )
                .await?;
                exec(
                    tx,
                    &format!("ALTER TABLE {t} ALTER COLUMN {col} TYPE text USING {col}::text"),
                    &format!("changing the type of {t}.{col} to text"),
                )
                .await?;
            }
        }
    }
    Ok(())
}

/// `TRUNCATE` and the end of a snapshot: rows written before the event are gone.
async fn purge_gone(tx: &Transaction<'_>, entity: &str, s: &SchemaIn) -> Result<(), DbError> {
    let mut purge = false;
    if s.truncated {
        info!(entity, file = %s.position.file, pos = s.position.pos, "source table truncated");
        purge = true;
    }
    if let Some(snap) = s.snapshot.as_ref().filter(|snap| snap.phase == "end") {
        info!(entity, snapshot = %snap.id, "snapshot of the table complete: removing rows it did not see");
        purge = true;
    }
    if !purge {
        return Ok(());
    }
    let t = table_ref(entity);
    let n = tx
        .execute(
            &format!("DELETE FROM {t} WHERE (_binlog_file, _binlog_pos) < ($1::text, $2::bigint)"),
            &[&s.position.file, &s.position.pos],
        )
        .await
        .map_err(DbError::query(format!("removing rows gone from {t}")))?;
    if n > 0 {
        info!(entity, rows = n, "rows gone from the source removed");
    }
    Ok(())
}

/// Applies a schema event in a savepoint: a change PostgreSQL refuses (two columns of one
/// name, a name too long, too many columns...) is undone and the event quarantined with
/// PostgreSQL's words, while the table keeps its columns and the other topics carry on.
async fn apply_schema_or_refuse(
    tx: &Transaction<'_>,
    entity: &str,
    meta: &mut Option<Meta>,
    s: &SchemaIn,
) -> Result<Option<String>, DbError> {
    exec(
        tx,
        "SAVEPOINT mirror_schema",
        "savepoint before a schema change",
    )
    .await?;
    match apply_schema(tx, entity, meta.clone(), s).await {
        Ok(m) => {
            exec(
                tx,
                "RELEASE SAVEPOINT mirror_schema",
                "releasing the savepoint",
            )
            .await?;
            *meta = Some(m);
            Ok(None)
        }
        Err(e) if e.is_refused_statement() => {
            exec(
                tx,
                "ROLLBACK TO SAVEPOINT mirror_schema",
                "rolling back a refused schema change",
            )
            .await?;
            Ok(Some(format!(
                "schema event refused by the warehouse, the table keeps its columns: {e}"
            )))
        }
        Err(e) => Err(e),
    }
}

/// A row change waiting to be written, last one per key.
struct Change {
    delete: bool,
    row: Map<String, Value>,
}

#[derive(Default)]
struct Pending {
    order: Vec<String>,
    by_key: HashMap<String, Change>,
}

impl Pending {
    fn put(&mut self, key: String, c: Change) {
        if self.by_key.insert(key.clone(), c).is_none() {
            self.order.push(key);
        }
    }
}

async fn flush(
    tx: &Transaction<'_>,
    entity: &str,
    meta: &Meta,
    pending: &mut Pending,
    stats: &mut SilverStats,
) -> Result<(), DbError> {
    if pending.order.is_empty() {
        return Ok(());
    }
    let t = table_ref(entity);
    let mut upserts = Vec::new();
    let mut deletes = Vec::new();
    for k in pending.order.drain(..) {
        if let Some(c) = pending.by_key.remove(&k) {
            if c.delete {
                deletes.push(k);
            } else {
                upserts.push(Value::Object(c.row));
            }
        }
    }
    if !deletes.is_empty() {
        let n = tx
            .execute(
                &format!("DELETE FROM {t} WHERE _key = ANY($1)"),
                &[&deletes],
            )
            .await
            .map_err(DbError::query(format!("deleting from {t}")))?;
        stats.deletes += n;
    }
    if !upserts.is_empty() {
        let mut decl = Vec::new();
        let mut cols = Vec::new();
        let mut exprs = Vec::new();
        for c in &meta.columns {
            let q = qi(&c.name);
            let (d, e) = match c.ty.as_str() {
                "bytea" => ("text".to_string(), format!("decode(r.{q}, 'base64')")),
                "jsonb" => ("text".to_string(), format!("r.{q}::jsonb")),
                ty => (ty.to_string(), format!("r.{q}")),
            };
            decl.push(format!("{q} {d}"));
            cols.push(q);
            exprs.push(e);
        }
        let lineage = [
            ("_key", "text"),
            ("_op", "text"),
            ("_source_key", "text"),
            ("_bronze_event_id", "bigint"),
            ("_binlog_file", "text"),
            ("_binlog_pos", "bigint"),
            ("_snapshot_id", "text"),
        ];
        for (n, ty) in lineage {
            decl.push(format!("{n} {ty}"));
            cols.push(n.to_string());
            exprs.push(format!("r.{n}"));
        }
        decl.push("_ts_ms bigint".into());
        cols.push("_committed_at".into());
        exprs.push("to_timestamp(r._ts_ms / 1000.0)".into());
        cols.push("_updated_at".into());
        exprs.push("now()".into());
        let set: Vec<String> = cols
            .iter()
            .filter(|c| *c != "_key")
            .map(|c| format!("{c} = EXCLUDED.{c}"))
            .collect();
        let sql = format!(
            "INSERT INTO {t} ({}) SELECT {} FROM jsonb_to_recordset($1::text::jsonb) AS r({}) ON CONFLICT (_key) DO UPDATE SET {}",
            cols.join(", "),
            exprs.join(", "),
            decl.join(", "),
            set.join(", ")
        );
        let json = Value::Array(upserts).to_string();
        let n = tx
            .execute(&sql, &[&json])
            .await
            .map_err(DbError::query(format!("upserting into {t}")))?;
        stats.upserts += n;
    }
    Ok(())
}

fn snapshot_id(source_key: &str) -> Option<&str> {
    let mut parts = source_key.split(':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("mysql"), Some("snapshot"), Some(id)) => Some(id),
        _ => None,
    }
}

struct Quarantined<'a> {
    ev: &'a SilverEvent<'a>,
    reason: String,
}

/// Applies the events of one mirrored table (`entity`), in topic order.
pub async fn apply(
    tx: &Transaction<'_>,
    entity: &str,
    events: &[SilverEvent<'_>],
) -> Result<SilverStats, DbError> {
    let mut stats = SilverStats::default();
    let mut meta = load_meta(tx, entity).await?;
    let mut pending = Pending::default();
    let mut bad: Vec<Quarantined> = Vec::new();
    for ev in events {
        if ev.op == Op::Schema {
            let parsed = ev
                .after
                .ok_or_else(|| "schema event without an after image".to_string())
                .and_then(|a| serde_json::from_str::<SchemaIn>(a.get()).map_err(|e| e.to_string()))
                .and_then(|s| s.check().map(|()| s));
            match parsed {
                Ok(s) => {
                    if let Some(m) = &meta {
                        flush(tx, entity, m, &mut pending, &mut stats).await?;
                    }
                    if let Some(reason) = apply_schema_or_refuse(tx, entity, &mut meta, &s).await? {
                        bad.push(Quarantined { ev, reason });
                    }
                }
                Err(reason) => bad.push(Quarantined {
                    ev,
                    reason: format!("unreadable schema event: {reason}"),
                }),
            }
            continue;
        }
        let Some(m) = &meta else {
            bad.push(Quarantined {
                ev,
                reason: format!("no schema event seen for {entity} yet: the table's columns are unknown (a table is mirrored from its first schema event on)"),
            });
            continue;
        };
        let src: SrcIn = serde_json::from_str(ev.source.get()).unwrap_or_default();
        let image = if ev.op == Op::Delete {
            ev.before
        } else {
            ev.after
        };
        let row: Result<Map<String, Value>, String> = image
            .ok_or_else(|| "no row image".to_string())
            .and_then(|i| serde_json::from_str(i.get()).map_err(|e| e.to_string()));
        let translated = row.and_then(|row| {
            let mut out = Map::with_capacity(row.len() + 8);
            for (k, v) in row {
                if let Some(name) = m.resolve(&k)? {
                    out.insert(name.to_string(), v);
                }
            }
            Ok(out)
        });
        let mut row = match translated {
            Ok(r) => r,
            Err(reason) => {
                bad.push(Quarantined { ev, reason });
                continue;
            }
        };
        let key_vals: Vec<Value> = if m.pk.is_empty() {
            m.columns
                .iter()
                .map(|c| row.get(&c.name).cloned().unwrap_or(Value::Null))
                .collect()
        } else {
            m.pk.iter()
                .map(|c| row.get(c).cloned().unwrap_or(Value::Null))
                .collect()
        };
        if !m.pk.is_empty() && key_vals.iter().any(Value::is_null) {
            bad.push(Quarantined {
                ev,
                reason: format!("primary key ({}) missing from the row", m.pk.join(", ")),
            });
            continue;
        }
        let key = Value::Array(key_vals).to_string();
        if ev.op == Op::Delete {
            pending.put(
                key,
                Change {
                    delete: true,
                    row: Map::new(),
                },
            );
            continue;
        }
        row.insert("_key".into(), Value::String(key.clone()));
        row.insert("_op".into(), Value::String(ev.op.as_str().into()));
        row.insert("_source_key".into(), Value::String(ev.source_key.into()));
        row.insert("_bronze_event_id".into(), Value::from(ev.event_id));
        row.insert("_binlog_file".into(), Value::String(src.file));
        row.insert("_binlog_pos".into(), Value::from(src.pos));
        row.insert(
            "_snapshot_id".into(),
            snapshot_id(ev.source_key).map_or(Value::Null, |s| Value::String(s.into())),
        );
        row.insert("_ts_ms".into(), src.ts_ms.map_or(Value::Null, Value::from));
        pending.put(key, Change { delete: false, row });
    }
    if let Some(m) = &meta {
        flush(tx, entity, m, &mut pending, &mut stats).await?;
    }
    for q in &bad {
        let record =
            q.ev.after
                .or(q.ev.before)
                .map(|r| r.get().to_string())
                .unwrap_or_else(|| "null".into());
        stats.quarantined += tx
            .execute(
                "INSERT INTO silver.quarantine (model, bronze_event_id, topic, source_key, source, record, reason)
                 VALUES ($1, $2, $3, $4, $5::text::jsonb, $6::text::jsonb, $7) ON CONFLICT (model, source_key) DO NOTHING",
                &[&entity, &q.ev.event_id, &q.ev.topic, &q.ev.source_key, &q.ev.source.get(), &record, &q.reason],
            )
            .await
            .map_err(DbError::query(format!("quarantining a row of {entity}")))?;
        warn!(entity, source_key = q.ev.source_key, reason = %q.reason, "mirror row quarantined");
    }
    Ok(stats)
}

/// Records DDL history events (`<prefix>.mysql._ddl`) in `pipeline.schema_history`.
pub async fn record_ddl(tx: &Transaction<'_>, events: &[SilverEvent<'_>]) -> Result<u64, DbError> {
    let mut n = 0;
    for ev in events {
        let src: SrcIn = serde_json::from_str(ev.source.get()).unwrap_or_default();
        let after: Value = ev
            .after
            .and_then(|a| serde_json::from_str(a.get()).ok())
            .unwrap_or(Value::Null);
        let ddl = after["ddl"].as_str().unwrap_or_default();
        let table = after["table"]
            .as_str()
            .or(src.table.as_deref())
            .filter(|t| !t.is_empty());
        let db = after["db"].as_str().or(src.db.as_deref());
        n += tx
            .execute(
                "INSERT INTO pipeline.schema_history (connector, server_id, binlog_file, binlog_pos, gtid, db, table_name, verb, ddl, renames, executed_at, source_key)
                 VALUES ('mysql', $1, $2, $3, $4, $5, $6, $7, $8, $9::text::jsonb, to_timestamp($10::bigint / 1000.0), $11)
                 ON CONFLICT (source_key) DO NOTHING",
                &[
                    &src.server_id,
                    &src.file,
                    &src.pos,
                    &src.gtid,
                    &db,
                    &table,
                    &after["verb"].as_str(),
                    &ddl,
                    &after["renames"].to_string(),
                    &src.ts_ms,
                    &ev.source_key,
                ],
            )
            .await
            .map_err(DbError::query("recording a DDL statement in pipeline.schema_history"))?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta {
            columns: vec![
                Col {
                    name: "id".into(),
                    ty: PgType::parse("bigint").unwrap(),
                },
                Col {
                    name: "remark".into(),
                    ty: PgType::parse("text").unwrap(),
                },
            ],
            pk: vec!["id".into()],
            renames: [
                ("note".to_string(), "memo".to_string()),
                ("memo".to_string(), "remark".to_string()),
            ]
            .into_iter()
            .collect(),
            dropped: ["gone".to_string()].into_iter().collect(),
            file: "b.000001".into(),
            pos: 4,
        }
    }

    #[test]
    fn old_column_names_resolve_through_renames_and_drops() {
        let m = meta();
        assert_eq!(m.resolve("id"), Ok(Some("id")));
        assert_eq!(m.resolve("note"), Ok(Some("remark")));
        assert_eq!(m.resolve("memo"), Ok(Some("remark")));
        assert_eq!(m.resolve("gone"), Ok(None));
        assert!(m.resolve("other").unwrap_err().contains("id, remark"));
    }

    #[test]
    fn snapshot_ids_come_from_source_keys() {
        assert_eq!(snapshot_id("mysql:snapshot:abc:shop.t:[1]:9"), Some("abc"));
        assert_eq!(snapshot_id("mysql:1:b.000001:400:0"), None);
    }
}
