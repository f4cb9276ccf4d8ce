//! Bronze: every change event as it arrived, append-only, loaded with binary COPY into a
//! staging table and then inserted with `ON CONFLICT DO NOTHING` on the source key, so that
//! an event published twice is stored once. The envelope's `source`, `op` and `ts_ms` are
//! stored once, in their own columns; `bronze.events_envelope` puts the envelope back.

use crate::sql::{DbError, RawJson};
use etl_contract::Op;
use futures::pin_mut;
use serde_json::value::RawValue;
use std::collections::HashMap;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Transaction};

/// One change event bound for `bronze.events`.
pub struct BronzeRow<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// The Kafka key, as JSON text.
    pub key: Option<String>,
    pub op: Op,
    pub source_key: String,
    pub source: &'a RawValue,
    pub payload: &'a str,
    pub event_ts: Option<chrono::DateTime<chrono::Utc>>,
}

/// One record bound for `bronze.dead_letters`.
pub struct DeadRow {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub source_key: String,
    pub connector: String,
    pub origin: serde_json::Value,
    pub reason: String,
    pub raw: Vec<u8>,
}

pub async fn prepare_session(client: &Client) -> Result<(), DbError> {
    client
        .batch_execute(
            "CREATE TEMP TABLE IF NOT EXISTS stage_bronze (
                seq integer, topic text, kafka_partition integer, kafka_offset bigint,
                event_key jsonb, op char(1), source_key text, source jsonb, payload jsonb,
                event_ts timestamptz) ON COMMIT DELETE ROWS",
        )
        .await
        .map_err(DbError::query("creating the bronze staging table"))
}

/// Loads the rows; returns, for each row, its new `event_id`, or `None` when the event was
/// already in bronze (or earlier in this batch).
pub async fn load(
    tx: &Transaction<'_>,
    rows: &[BronzeRow<'_>],
) -> Result<Vec<Option<i64>>, DbError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let sink = tx
        .copy_in(
            "COPY stage_bronze (seq, topic, kafka_partition, kafka_offset, event_key, op, source_key, source, payload, event_ts) FROM STDIN (FORMAT binary)",
        )
        .await
        .map_err(DbError::query("staging bronze rows"))?;
    let writer = BinaryCopyInWriter::new(
        sink,
        &[
            Type::INT4,
            Type::TEXT,
            Type::INT4,
            Type::INT8,
            Type::JSONB,
            Type::BPCHAR,
            Type::TEXT,
            Type::JSONB,
            Type::JSONB,
            Type::TIMESTAMPTZ,
        ],
    );
    pin_mut!(writer);
    for (i, r) in rows.iter().enumerate() {
        let seq = i as i32;
        let key = r.key.as_deref().map(RawJson);
        writer
            .as_mut()
            .write(&[
                &seq,
                &r.topic,
                &r.partition,
                &r.offset,
                &key,
                &r.op.as_str(),
                &r.source_key,
                &RawJson(r.source.get()),
                &RawJson(r.payload),
                &r.event_ts,
            ])
            .await
            .map_err(DbError::query("staging bronze rows"))?;
    }
    writer
        .finish()
        .await
        .map_err(DbError::query("staging bronze rows"))?;
    let inserted = tx
        .query(
            "INSERT INTO bronze.events (topic, kafka_partition, kafka_offset, event_key, op, source_key, source, payload, event_ts)
             SELECT topic, kafka_partition, kafka_offset, event_key, op, source_key, source,
                    payload - 'source' - 'op' - 'ts_ms', event_ts
             FROM stage_bronze ORDER BY seq
             ON CONFLICT (topic, source_key) DO NOTHING
             RETURNING event_id, topic, source_key",
            &[],
        )
        .await
        .map_err(DbError::query("inserting into bronze.events"))?;
    let mut ids: HashMap<(String, String), i64> = inserted
        .iter()
        .map(|r| {
            (
                (r.get::<_, String>(1), r.get::<_, String>(2)),
                r.get::<_, i64>(0),
            )
        })
        .collect();
    // The first occurrence of a source key in the batch is the one inserted.
    Ok(rows
        .iter()
        .map(|r| ids.remove(&(r.topic.to_string(), r.source_key.clone())))
        .collect())
}

/// Stores dead letters; returns how many were new.
pub async fn load_dead_letters(tx: &Transaction<'_>, rows: &[DeadRow]) -> Result<u64, DbError> {
    let mut n = 0;
    for r in rows {
        n += tx
            .execute(
                "INSERT INTO bronze.dead_letters (topic, kafka_partition, kafka_offset, source_key, connector, origin, reason, raw)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (source_key) DO NOTHING",
                &[&r.topic, &r.partition, &r.offset, &r.source_key, &r.connector, &r.origin, &r.reason.replace('\0', "\\0"), &r.raw],
            )
            .await
            .map_err(DbError::query("inserting into bronze.dead_letters"))?;
    }
    Ok(n)
}
