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
        let (mut enums, mut sets) = (enums.into_iter(), sets.into_iter());
        let mut charsets = ex.iter_charset();
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
            use ColumnType::*;
            let kind = match ty {
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
                MYSQL_TYPE_ENUM => {
                    Kind::Enum(enums.next().unwrap_or_else(|| Arc::from(Vec::new())))
                }
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
            };
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
            pk,
        })
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
#[derive(Debug, Serialize)]
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
