//! A captured table's shape: column names, kinds and primary key, read from a binlog
//! TABLE_MAP event (its optional metadata, `binlog_row_metadata=FULL`) or from
//! `information_schema` for the snapshot; and the change events built from it.

use super::values::{fnv1a, KeyImage, Kind, Out, RowImage};
use etl_contract::{data_topic, Envelope, Op, CONTRACT_VERSION};
use mysql_async::binlog::events::{OptionalMetaExtractor, OptionalMetadataField, TableMapEvent};
use mysql_async::consts::ColumnType;
use serde::Serialize;
use std::sync::Arc;

/// Connector name, in topics and source blocks.
pub const CONNECTOR: &str = "mysql";

#[derive(Debug)]
pub struct TableSchema {
    pub db: String,
    pub table: String,
    /// `<db>_<table>`, with characters a topic cannot hold replaced by `_`.
    pub entity: String,
    pub topic: Arc<str>,
    pub names: Vec<String>,
    pub kinds: Vec<Kind>,
    /// PostgreSQL type of each column in the warehouse's silver mirror (see [`pg_type`]).
    pub types: Vec<String>,
    /// Indexes of the primary-key columns (empty: the table has none; the key is then the
    /// whole row).
    pub pk: Vec<usize>,
}

/// Entity name of a table: `<db>_<table>` (topic parts allow only `[A-Za-z0-9_-]`).
pub fn entity_name(db: &str, table: &str) -> String {
    format!("{db}_{table}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub fn topic_name(prefix: &str, db: &str, table: &str) -> Result<String, String> {
    data_topic(prefix, CONNECTOR, &entity_name(db, table)).map_err(|e| e.to_string())
}

/// Why a TABLE_MAP event cannot be decoded into named columns.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("table {db}.{table}: the binlog carries no column names; set binlog_row_metadata=FULL on the server (SET GLOBAL binlog_row_metadata=FULL and in its configuration file) so that every TABLE_MAP event names its columns")]
    NoColumnNames { db: String, table: String },
    #[error("table {db}.{table}: cannot read the TABLE_MAP metadata: {reason}")]
    Metadata {
        db: String,
        table: String,
        reason: String,
    },
    #[error("table {db}.{table}: {reason}")]
    Topic {
        db: String,
        table: String,
        reason: String,
    },
}

/// The labels of the ENUM and of the SET columns of a TABLE_MAP event (its optional
/// metadata), each list in column order.
#[allow(clippy::type_complexity)]
fn enum_and_set_labels(
    tme: &TableMapEvent<'_>,
    meta_err: &dyn Fn(String) -> SchemaError,
) -> Result<(Vec<Arc<[String]>>, Vec<Arc<[String]>>), SchemaError> {
    let mut enums: Vec<Arc<[String]>> = Vec::new();
    let mut sets: Vec<Arc<[String]>> = Vec::new();
    for field in tme.iter_optional_meta() {
        match field.map_err(|e| meta_err(e.to_string()))? {
            OptionalMetadataField::EnumStrValue(v) => {
                for col in v.iter_values() {
                    let col = col.map_err(|e| meta_err(e.to_string()))?;
                    enums.push(
                        col.values()
                            .iter()
                            .map(|l| l.value().into_owned())
                            .collect(),
                    );
                }
            }
            OptionalMetadataField::SetStrValue(v) => {
                for col in v.iter_values() {
                    let col = col.map_err(|e| meta_err(e.to_string()))?;
                    sets.push(
                        col.values()
                            .iter()
                            .map(|l| l.value().into_owned())
                            .collect(),
                    );
                }
            }
            _ => {}
        }
    }
    Ok((enums, sets))
}

/// Column types that carry a signedness flag in the TABLE_MAP metadata.
fn is_numeric(ty: ColumnType) -> bool {
    use ColumnType::*;
    matches!(
        ty,
        MYSQL_TYPE_TINY
            | MYSQL_TYPE_SHORT
            | MYSQL_TYPE_INT24
            | MYSQL_TYPE_LONG
            | MYSQL_TYPE_LONGLONG
            | MYSQL_TYPE_NEWDECIMAL
            | MYSQL_TYPE_FLOAT
            | MYSQL_TYPE_DOUBLE
    )
}

/// The warehouse type a binlog column type decides by itself (integers by signedness,
/// decimals by precision and scale from `meta`); empty: the one of its [`Kind`].
fn binlog_pg_type(ty: ColumnType, is_unsigned: bool, meta: &[u8]) -> String {
    use ColumnType::*;
    match ty {
        MYSQL_TYPE_LONG if is_unsigned => "bigint".to_string(),
        MYSQL_TYPE_LONGLONG if is_unsigned => "numeric(20,0)".to_string(),
        MYSQL_TYPE_LONGLONG => "bigint".to_string(),
        MYSQL_TYPE_TINY | MYSQL_TYPE_SHORT | MYSQL_TYPE_INT24 | MYSQL_TYPE_LONG => {
            "integer".to_string()
        }
        MYSQL_TYPE_NEWDECIMAL | MYSQL_TYPE_DECIMAL => numeric(
            meta.first().map(|&p| p as u64),
            meta.get(1).map(|&s| s as u64),
        ),
        _ => String::new(),
    }
}

/// How values of a binlog column are rendered: `dec` is the fractional-second precision,
/// `charset` the column's character set; an ENUM (SET) column takes the next labels of
/// `enums` (`sets`).
fn binlog_kind(
    ty: ColumnType,
    dec: u8,
    charset: Option<u16>,
    enums: &mut impl Iterator<Item = Arc<[String]>>,
    sets: &mut impl Iterator<Item = Arc<[String]>>,
) -> Kind {
    use ColumnType::*;
    match ty {
        MYSQL_TYPE_TINY | MYSQL_TYPE_SHORT | MYSQL_TYPE_INT24 | MYSQL_TYPE_LONG
        | MYSQL_TYPE_LONGLONG => Kind::Int,
        MYSQL_TYPE_FLOAT | MYSQL_TYPE_DOUBLE => Kind::Float,
        MYSQL_TYPE_DECIMAL | MYSQL_TYPE_NEWDECIMAL => Kind::Decimal,
        MYSQL_TYPE_YEAR => Kind::Year,
        MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => Kind::Date,
        MYSQL_TYPE_DATETIME => Kind::DateTime(0),
        MYSQL_TYPE_DATETIME2 => Kind::DateTime(dec),
        MYSQL_TYPE_TIMESTAMP => Kind::Timestamp(0),
        MYSQL_TYPE_TIMESTAMP2 => Kind::Timestamp(dec),
        MYSQL_TYPE_TIME => Kind::Time(0),
        MYSQL_TYPE_TIME2 => Kind::Time(dec),
        MYSQL_TYPE_JSON => Kind::Json,
        MYSQL_TYPE_ENUM => Kind::Enum(enums.next().unwrap_or_else(|| Arc::from(Vec::new()))),
        MYSQL_TYPE_SET => Kind::Set(sets.next().unwrap_or_else(|| Arc::from(Vec::new()))),
        MYSQL_TYPE_VARCHAR
        | MYSQL_TYPE_VAR_STRING
        | MYSQL_TYPE_STRING
        | MYSQL_TYPE_BLOB
        | MYSQL_TYPE_TINY_BLOB
        | MYSQL_TYPE_MEDIUM_BLOB
        | MYSQL_TYPE_LONG_BLOB => {
            // 63 is the `binary` character set: BINARY, VARBINARY and BLOB.
            if charset == Some(63) {
                Kind::Binary
            } else {
                Kind::Text
            }
        }
        _ => Kind::Binary,
    }
}

impl TableSchema {
    pub fn from_table_map(
        tme: &TableMapEvent<'_>,
        prefix: &str,
    ) -> Result<TableSchema, SchemaError> {
        let db = tme.database_name().into_owned();
        let table = tme.table_name().into_owned();
        let meta_err = |reason: String| SchemaError::Metadata {
            db: db.clone(),
            table: table.clone(),
            reason,
        };
        let ex = OptionalMetaExtractor::new(tme.iter_optional_meta())
            .map_err(|e| meta_err(e.to_string()))?;
        let names: Vec<String> = ex
            .iter_column_name()
            .map(|n| n.map(|n| n.name().into_owned()))
            .collect::<Result<_, _>>()
            .map_err(|e| meta_err(e.to_string()))?;
        let n = tme.columns_count() as usize;
        if names.len() != n {
            return Err(SchemaError::NoColumnNames { db, table });
        }
        let pk: Vec<usize> = ex
            .iter_primary_key()
            .map(|r| r.map(|i| i as usize))
            .collect::<Result<_, _>>()
            .map_err(|e| meta_err(e.to_string()))?;
        if let Some(i) = pk.iter().find(|&&i| i >= n) {
            return Err(meta_err(format!(
                "primary-key column {i} is past the table's {n} columns"
            )));
        }
        let (enums, sets) = enum_and_set_labels(tme, &meta_err)?;
        let (mut enums, mut sets) = (enums.into_iter(), sets.into_iter());
        let mut charsets = ex.iter_charset();
        // One flag per numeric column, in order (`true`: unsigned).
        let mut unsigned = ex.iter_signedness();
        let mut types = Vec::with_capacity(n);
        let mut kinds = Vec::with_capacity(n);
        for i in 0..n {
            let ty = tme
                .get_column_type(i)
                .map_err(|e| meta_err(format!("column {i}: {e}")))?
                .ok_or_else(|| meta_err(format!("column {i} has no type")))?;
            let meta = tme.get_column_metadata(i).unwrap_or(&[]);
            let charset = if ty.is_character_type() {
                charsets
                    .next()
                    .transpose()
                    .map_err(|e| meta_err(e.to_string()))?
            } else {
                None
            };
            let dec = meta.first().copied().unwrap_or(0).min(6);
            let is_unsigned = is_numeric(ty) && unsigned.next().unwrap_or(false);
            let pg = binlog_pg_type(ty, is_unsigned, meta);
            let kind = binlog_kind(ty, dec, charset, &mut enums, &mut sets);
            types.push(if pg.is_empty() {
                pg_type(&kind).to_string()
            } else {
                pg
            });
            kinds.push(kind);
        }
        let topic = topic_name(prefix, &db, &table).map_err(|reason| SchemaError::Topic {
            db: db.clone(),
            table: table.clone(),
            reason,
        })?;
        Ok(TableSchema {
            entity: entity_name(&db, &table),
            topic: topic.into(),
            db,
            table,
            names,
            kinds,
            types,
            pk,
        })
    }

    /// `db.table`.
    pub fn name(&self) -> String {
        format!("{}.{}", self.db, self.table)
    }

    /// The columns and key as the silver mirror sees them.
    pub fn shape(&self) -> TableShape {
        TableShape {
            columns: self
                .names
                .iter()
                .zip(&self.types)
                .map(|(n, t)| ColumnDef {
                    name: n.clone(),
                    ty: t.clone(),
                })
                .collect(),
            pk: self.pk.iter().map(|&i| self.names[i].clone()).collect(),
        }
    }

    /// The record key of a row image.
    pub fn key(&self, row: &[Out]) -> Vec<u8> {
        serde_json::to_vec(&KeyImage {
            names: &self.names,
            idx: &self.pk,
            values: row,
        })
        .unwrap_or_default()
    }

    /// Whether two row images have the same primary key.
    pub fn same_key(&self, a: &[Out], b: &[Out]) -> bool {
        if self.pk.is_empty() {
            return a == b;
        }
        self.pk.iter().all(|&i| a.get(i) == b.get(i))
    }
}

/// The `source` block of a MySQL change event (Debezium-like).
#[derive(Debug, Clone, Serialize)]
pub struct MysqlSourceBlock<'a> {
    pub version: &'a str,
    pub connector: &'a str,
    /// Logical name of the pipeline (the topic prefix).
    pub name: &'a str,
    pub entity: &'a str,
    /// When the change was committed on the server (binlog event time), or read (snapshot).
    pub ts_ms: i64,
    pub server_id: u32,
    pub file: &'a str,
    /// End position of the rows event in `file` (for the snapshot: its binlog coordinates).
    pub pos: u64,
    /// Index of the row in its rows event.
    pub row: u32,
    /// MariaDB GTID `domain-server-seq` (MySQL: `uuid:gno`) of the transaction, when known.
    pub gtid: Option<&'a str>,
    pub db: &'a str,
    pub table: &'a str,
    pub snapshot: bool,
    /// Stable identity of the event (see docs/change-events.md).
    pub source_key: &'a str,
}

/// One change event, ready to send.
pub struct Encoded {
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
    /// Sent to this partition (schema events go to every partition of their topic);
    /// `None`: the partitioner picks it from the key.
    pub partition: Option<i32>,
}

/// `numeric(p,s)`, or plain `numeric` when the precision is unknown.
pub fn numeric(precision: Option<u64>, scale: Option<u64>) -> String {
    match precision {
        Some(p) if (1..=1000).contains(&p) => format!("numeric({p},{})", scale.unwrap_or(0).min(p)),
        _ => "numeric".to_string(),
    }
}

/// PostgreSQL type of a column of this kind, when width and sign do not matter.
pub fn pg_type(kind: &Kind) -> String {
    match kind {
        Kind::Int => "bigint".into(),
        Kind::Float => "double precision".into(),
        Kind::Decimal => "numeric".into(),
        Kind::Year => "smallint".into(),
        Kind::Date => "date".into(),
        Kind::DateTime(p) => format!("timestamp({p})"),
        Kind::Timestamp(p) => format!("timestamptz({p})"),
        // MySQL's TIME spans -838:59:59 to 838:59:59: no PostgreSQL time type holds it.
        Kind::Time(_) => "text".into(),
        Kind::Json => "jsonb".into(),
        Kind::Binary => "bytea".into(),
        Kind::Text | Kind::Enum(_) | Kind::Set(_) => "text".into(),
    }
}

/// PostgreSQL type of a column described by `information_schema.COLUMNS` (the snapshot's
/// side): the same mapping as the binlog side, so that both agree.
pub fn pg_type_from_information_schema(
    kind: &Kind,
    data_type: &str,
    column_type: &str,
    precision: Option<u64>,
    scale: Option<u64>,
) -> String {
    let unsigned = column_type.to_ascii_lowercase().contains("unsigned");
    match data_type.to_ascii_lowercase().as_str() {
        "tinyint" | "smallint" | "mediumint" => "integer".into(),
        "int" | "integer" if unsigned => "bigint".into(),
        "int" | "integer" => "integer".into(),
        "bigint" if unsigned => "numeric(20,0)".into(),
        "bigint" => "bigint".into(),
        "decimal" | "numeric" => numeric(precision, scale),
        _ => pg_type(kind),
    }
}

/// A column of the silver mirror: name and PostgreSQL type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ColumnDef {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
}

/// A table's columns and primary key, as announced in schema events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct TableShape {
    pub columns: Vec<ColumnDef>,
    pub pk: Vec<String>,
}

/// A binlog position in a schema event.
#[derive(Debug, Clone, Serialize)]
pub struct PositionRef<'a> {
    pub file: &'a str,
    pub pos: u64,
}

/// Snapshot marker of a schema event: `start` precedes the snapshot rows of a table,
/// `end` follows the last one (the warehouse then removes rows the snapshot did not see).
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotMark<'a> {
    pub id: &'a str,
    pub phase: &'a str,
}

/// `after` of a schema event (`op: "s"`).
#[derive(Debug, Serialize)]
pub struct SchemaChange<'a> {
    pub db: &'a str,
    pub table: &'a str,
    pub columns: &'a [ColumnDef],
    pub pk: &'a [String],
    /// Columns renamed since the previous schema event, `{from, to}`.
    pub renames: Vec<Rename<'a>>,
    /// DDL statements since the previous schema event of the table.
    pub ddl: &'a [String],
    /// Binlog position from which these columns apply (for the snapshot: its coordinates).
    pub position: PositionRef<'a>,
    /// `TRUNCATE`: rows written before `position` are gone.
    pub truncated: bool,
    pub snapshot: Option<SnapshotMark<'a>>,
}

#[derive(Debug, Serialize)]
pub struct Rename<'a> {
    pub from: &'a str,
    pub to: &'a str,
}

/// Builds the schema events of a table, one per partition of its topic (consumers of one
/// partition see the schema before the rows written with it).
pub fn encode_schema_change(
    change: &SchemaChange<'_>,
    before: Option<&TableShape>,
    source: &MysqlSourceBlock<'_>,
    partitions: i32,
    now_ms: i64,
) -> Vec<Encoded> {
    let key = serde_json::to_vec(
        &serde_json::json!({ "__schema": format!("{}.{}", change.db, change.table) }),
    )
    .unwrap_or_default();
    (0..partitions.max(1))
        .map(|p| {
            let source_key = format!("{}:p{p}", source.source_key);
            let src = MysqlSourceBlock {
                source_key: &source_key,
                ..source.clone()
            };
            let env = Envelope {
                before: before.map(|b| serde_json::json!({"columns": b.columns, "pk": b.pk})),
                after: serde_json::to_value(change).ok(),
                op: Op::Schema,
                source: &src,
                ts_ms: now_ms,
            };
            Encoded {
                key: key.clone(),
                payload: serde_json::to_vec(&env).unwrap_or_default(),
                partition: Some(p),
            }
        })
        .collect()
}

pub fn encode(
    schema: &TableSchema,
    op: Op,
    before: Option<&[Out]>,
    after: Option<&[Out]>,
    source: &MysqlSourceBlock<'_>,
    now_ms: i64,
) -> Encoded {
    let key_row = after.or(before).unwrap_or(&[]);
    let env = Envelope {
        before: before.map(|v| RowImage {
            names: &schema.names,
            values: v,
        }),
        after: after.map(|v| RowImage {
            names: &schema.names,
            values: v,
        }),
        op,
        source,
        ts_ms: now_ms,
    };
    Encoded {
        key: schema.key(key_row),
        payload: serde_json::to_vec(&env).unwrap_or_default(),
        partition: None,
    }
}

/// Source key of a snapshot row: the snapshot's id, the table, the key and a fingerprint of
/// the row's content. A chunk re-read after a crash gets the same keys when the rows did not
/// change in between, and distinct keys for rows that did.
pub fn snapshot_source_key(snapshot_id: &str, schema: &TableSchema, row: &[Out]) -> String {
    let image = serde_json::to_vec(&RowImage {
        names: &schema.names,
        values: row,
    })
    .unwrap_or_default();
    format!(
        "snapshot:{snapshot_id}:{}.{}:{}:{}",
        schema.db,
        schema.table,
        String::from_utf8_lossy(&schema.key(row)),
        fnv1a(&image)
    )
}

pub fn version() -> &'static str {
    CONTRACT_VERSION
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_async::binlog::events::{Event, FormatDescriptionEvent};
    use mysql_async::binlog::{BinlogVersion, EventType};

    /// A TABLE_MAP event for `shop.t` with columns `id INT` and `name VARCHAR(10)`, and the
    /// given SIMPLE_PRIMARY_KEY column indexes, as the server writes it.
    fn table_map(pk: &[u8]) -> Event {
        let mut body = vec![1, 0, 0, 0, 0, 0, 0, 0]; // table id, flags
        body.extend(b"\x04shop\0\x01t\0");
        body.extend([
            2,
            ColumnType::MYSQL_TYPE_LONG as u8,
            ColumnType::MYSQL_TYPE_VARCHAR as u8,
        ]);
        body.extend([2, 10, 0]); // metadata: VARCHAR's maximum length
        body.push(0b11); // both nullable
        body.extend(b"\x04\x08\x02id\x04name"); // COLUMN_NAME
        body.extend([8, pk.len() as u8]); // SIMPLE_PRIMARY_KEY
        body.extend(pk);
        let mut ev = 1_700_000_000u32.to_le_bytes().to_vec();
        ev.push(EventType::TABLE_MAP_EVENT as u8);
        ev.extend(1u32.to_le_bytes()); // server id
        ev.extend((19 + body.len() as u32).to_le_bytes());
        ev.extend(4711u32.to_le_bytes()); // log pos
        ev.extend([0, 0]); // flags
        ev.extend(body);
        let fde = FormatDescriptionEvent::new(BinlogVersion::Version4);
        Event::read(&fde, &ev[..]).unwrap()
    }

    #[test]
    fn primary_key_past_the_columns_is_refused() {
        let ev = table_map(&[0]);
        let tme = ev.read_event::<TableMapEvent>().unwrap();
        let s = TableSchema::from_table_map(&tme, "etl").unwrap();
        assert_eq!(
            (s.names.as_slice(), s.pk.as_slice()),
            (&["id".to_string(), "name".into()][..], &[0][..])
        );
        assert_eq!(s.shape().pk, ["id"]);
        // Found by fuzz/fuzz_targets/binlog_value.rs: a key index past the last column was
        // accepted, and announcing the table's shape then panicked (index out of bounds).
        let ev = table_map(&[2]);
        let tme = ev.read_event::<TableMapEvent>().unwrap();
        let err = TableSchema::from_table_map(&tme, "etl").unwrap_err();
        assert!(matches!(err, SchemaError::Metadata { .. }), "{err}");
        assert!(err.to_string().contains("primary-key column 2"), "{err}");
    }
}
