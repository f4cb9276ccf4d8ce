//! Data quality per day and model (`gold.data_quality_daily`): rows in, valid, quarantined,
//! filtered, control events, stale images, dead letters, duplicates absorbed and lines with
//! an unknown reference, added by every batch (by the day it was processed); quarantine
//! reasons per day in `gold.quarantine_reasons_daily`.

use crate::gold::{col, Mart};
use crate::sql::DbError;
use tokio_postgres::Transaction;

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
        col("rows_in", "bigint", "Events received for the model."),
        col("valid", "bigint", "Rows written to silver (upserts and deletes)."),
        col("quarantined", "bigint", "Rows quarantined."),
        col("filtered", "bigint", "Rows removed by a configured row filter."),
        col("control", "bigint", "Schema events and snapshot markers (not rows)."),
        col("stale", "bigint", "Images older than the stored row, ignored."),
        col("dead_lettered", "bigint", "Records dead-lettered by the source or the transform."),
        col("duplicates", "bigint", "Events already in bronze, absorbed."),
        col("unknown_refs", "bigint", "Sale lines written with an unknown customer or product."),
    ],
    key: &["day", "model"],
    indexes: &[],
    module: "transform/src/gold/marts/quality.rs",
};

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
