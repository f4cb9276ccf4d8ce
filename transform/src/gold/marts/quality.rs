//! Data quality per day and model (`gold.data_quality_daily`): rows in, valid, quarantined,
//! filtered, control events, stale images, dead letters, duplicates absorbed and lines with
//! an unknown reference, added by every batch (by the day it was processed); quarantine
//! reasons per day in `gold.quarantine_reasons_daily`; the same counts per committed batch in
//! `gold.data_quality_batches` (kept 7 days).

use crate::gold::{col, Column, Mart};
use crate::sql::DbError;
use tokio_postgres::Transaction;

/// The counts of a quality row, per day and per batch.
const COUNTS: [Column; 9] = [
    col("rows_in", "bigint", "Events received for the model."),
    col(
        "valid",
        "bigint",
        "Rows written to silver (upserts and deletes).",
    ),
    col("quarantined", "bigint", "Rows quarantined."),
    col(
        "filtered",
        "bigint",
        "Rows removed by a configured row filter.",
    ),
    col(
        "control",
        "bigint",
        "Schema events and snapshot markers (not rows).",
    ),
    col(
        "stale",
        "bigint",
        "Images older than the stored row, ignored.",
    ),
    col(
        "dead_lettered",
        "bigint",
        "Records dead-lettered by the source or the transform.",
    ),
    col(
        "duplicates",
        "bigint",
        "Events already in bronze, absorbed.",
    ),
    col(
        "unknown_refs",
        "bigint",
        "Sale lines written with an unknown customer or product.",
    ),
];

pub const QUARANTINE_REASONS_DAILY: Mart = Mart {
    name: "quarantine_reasons_daily",
    table: "gold.quarantine_reasons_daily",
    comment: "Quarantined rows per processing day, model and kind of failure (the failure's text with the offending values left out). A row failing two checks counts under both.",
    columns: &[
        col("day", "date", "Day the batches were committed (UTC)."),
        col("model", "text", "Silver model."),
        col("reason", "text", "Kind of failure, e.g. sale_date \"…\" matches none of the date formats."),
        col("rows", "bigint", "Rows quarantined for it."),
    ],
    key: &["day", "model", "reason"],
    indexes: &[],
    module: "transform/src/gold/marts/quality.rs",
};

pub const DATA_QUALITY_DAILY: Mart = Mart {
    name: "data_quality_daily",
    table: "gold.data_quality_daily",
    comment: "Data quality per processing day and model (the silver models; dlq: dead letters): counts added by each committed batch.",
    columns: &[
        col("day", "date", "Day the batches were committed (UTC)."),
        col("model", "text", "Silver model, or bronze / dlq / mirror."),
        COUNTS[0], COUNTS[1], COUNTS[2], COUNTS[3], COUNTS[4], COUNTS[5], COUNTS[6], COUNTS[7], COUNTS[8],
    ],
    key: &["day", "model"],
    indexes: &[],
    module: "transform/src/gold/marts/quality.rs",
};

pub const DATA_QUALITY_BATCHES: Mart = Mart {
    name: "data_quality_batches",
    table: "gold.data_quality_batches",
    comment: "Data quality per committed batch and model, the counts of gold.data_quality_daily for one batch, with its quarantine reasons. Rows older than 7 days are removed by later batches.",
    columns: &[
        col("batch_xid", "bigint", "PostgreSQL transaction id of the batch (unique per batch)."),
        col("model", "text", "Silver model, or dlq."),
        col("committed_at", "timestamp with time zone", "When the batch's transaction started."),
        COUNTS[0], COUNTS[1], COUNTS[2], COUNTS[3], COUNTS[4], COUNTS[5], COUNTS[6], COUNTS[7], COUNTS[8],
        col("reasons", "jsonb", "Quarantined rows by kind of failure: {\"reason\": rows}."),
    ],
    key: &["batch_xid", "model"],
    indexes: &["committed_at"],
    module: "transform/src/gold/marts/quality.rs",
};

/// How long `gold.data_quality_batches` keeps a batch.
const BATCH_RETENTION: &str = "7 days";

/// One batch's counts for one model.
#[derive(Debug, Default, Clone)]
pub struct QualityRow {
    pub model: String,
    pub rows_in: i64,
    pub valid: i64,
    pub quarantined: i64,
    pub filtered: i64,
    pub control: i64,
    pub stale: i64,
    pub dead_lettered: i64,
    pub duplicates: i64,
    pub unknown_refs: i64,
    /// Quarantined rows by kind of failure.
    pub reasons: std::collections::BTreeMap<String, i64>,
}

/// Adds the batch's counts to today's row of each model.
pub async fn record(tx: &Transaction<'_>, rows: &[QualityRow]) -> Result<(), DbError> {
    for r in rows {
        tx.execute(
            "INSERT INTO gold.data_quality_daily AS q VALUES ((now() AT TIME ZONE 'UTC')::date, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (day, model) DO UPDATE SET rows_in = q.rows_in + EXCLUDED.rows_in,
                 valid = q.valid + EXCLUDED.valid, quarantined = q.quarantined + EXCLUDED.quarantined,
                 filtered = q.filtered + EXCLUDED.filtered, control = q.control + EXCLUDED.control,
                 stale = q.stale + EXCLUDED.stale, dead_lettered = q.dead_lettered + EXCLUDED.dead_lettered,
                 duplicates = q.duplicates + EXCLUDED.duplicates, unknown_refs = q.unknown_refs + EXCLUDED.unknown_refs",
            &[&r.model, &r.rows_in, &r.valid, &r.quarantined, &r.filtered, &r.control, &r.stale, &r.dead_lettered, &r.duplicates, &r.unknown_refs],
        )
        .await
        .map_err(DbError::query("recording the batch's data quality"))?;
        let reasons = serde_json::to_value(&r.reasons).unwrap_or_default();
        tx.execute(
            "INSERT INTO gold.data_quality_batches VALUES (pg_current_xact_id()::text::bigint, $1, now(),
                 $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            &[&r.model, &r.rows_in, &r.valid, &r.quarantined, &r.filtered, &r.control, &r.stale, &r.dead_lettered, &r.duplicates, &r.unknown_refs, &reasons],
        )
        .await
        .map_err(DbError::query("recording the batch's data quality per batch"))?;
        for (reason, n) in &r.reasons {
            tx.execute(
                "INSERT INTO gold.quarantine_reasons_daily AS q VALUES ((now() AT TIME ZONE 'UTC')::date, $1, $2, $3)
                 ON CONFLICT (day, model, reason) DO UPDATE SET rows = q.rows + EXCLUDED.rows",
                &[&r.model, reason, n],
            )
            .await
            .map_err(DbError::query("recording the batch's quarantine reasons"))?;
        }
    }
    if !rows.is_empty() {
        tx.execute(
            &format!("DELETE FROM gold.data_quality_batches WHERE committed_at < now() - interval '{BATCH_RETENTION}'"),
            &[],
        )
        .await
        .map_err(DbError::query("removing old rows of gold.data_quality_batches"))?;
    }
    Ok(())
}

/// Sale lines of this batch's deltas that point to an unknown member.
pub async fn unknown_refs(tx: &Transaction<'_>) -> Result<i64, DbError> {
    Ok(tx
        .query_one(
            "SELECT count(*) FROM gold_d_lines WHERE sign = 1 AND (customer_key = 'UNKNOWN' OR product_key = 'UNKNOWN')",
            &[],
        )
        .await
        .map_err(DbError::query("counting unknown references"))?
        .get(0))
}
