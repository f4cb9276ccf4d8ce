//! Freshness per mart (`gold.freshness`) and the gold version (`gold.version`), both
//! written in the batch's transaction: the app caches its answers by the version and shows
//! "data as of" from the freshness.

use crate::gold::{col, Mart, Touched};
use crate::sql::DbError;
use tokio_postgres::Transaction;

pub const FRESHNESS: Mart = Mart {
    name: "freshness",
    table: "gold.freshness",
    comment: "Freshness of each gold mart: the newest source event it includes, when it was last committed, and the lag of each stage for that event.",
    columns: &[
        col("mart", "text", "Mart name."),
        col("newest_event_at", "timestamp with time zone", "Source time of the newest event included."),
        col("newest_kafka_at", "timestamp with time zone", "Kafka time of the newest event included."),
        col("committed_at", "timestamp with time zone", "Commit time of the last batch that changed the mart."),
        col("source_to_kafka_ms", "bigint", "Lag source -> Kafka of the newest event (ms)."),
        col("kafka_to_gold_ms", "bigint", "Lag Kafka -> bronze, silver and gold, one transaction (ms)."),
        col("version", "bigint", "gold.version of that commit."),
    ],
    key: &["mart"],
    indexes: &[],
    module: "transform/src/gold/marts/freshness.rs",
};

pub const VERSION: Mart = Mart {
    name: "version",
    table: "gold.version",
    comment:
        "One row: the gold version, bumped by every batch that changed gold, for the app's cache.",
    columns: &[
        col("only_row", "boolean", "Always true (one row)."),
        col(
            "version",
            "bigint",
            "Increases with every committed change of gold.",
        ),
        col(
            "committed_at",
            "timestamp with time zone",
            "Commit time of that change.",
        ),
    ],
    key: &["only_row"],
    indexes: &[],
    module: "transform/src/gold/marts/freshness.rs",
};

pub async fn seed_version(tx: &Transaction<'_>) -> Result<(), DbError> {
    tx.execute(
        "INSERT INTO gold.version VALUES (true, 0, now()) ON CONFLICT DO NOTHING",
        &[],
    )
    .await
    .map_err(DbError::query("creating gold.version"))?;
    Ok(())
}

/// Bumps the version and the freshness of the given marts; returns the new version.
pub async fn bump(tx: &Transaction<'_>, marts: &[&str], t: &Touched) -> Result<i64, DbError> {
    let v: i64 = tx
        .query_one(
            "UPDATE gold.version SET version = version + 1, committed_at = now() RETURNING version",
            &[],
        )
        .await
        .map_err(DbError::query("bumping gold.version"))?
        .get(0);
    tx.execute(
        "INSERT INTO gold.freshness AS f
         SELECT m, to_timestamp($2::bigint / 1000.0), to_timestamp($3::bigint / 1000.0), now(),
                $3::bigint - $2::bigint,
                (extract(epoch FROM clock_timestamp()) * 1000)::bigint - $3::bigint, $4
         FROM unnest($1::text[]) AS m
         ON CONFLICT (mart) DO UPDATE SET
             newest_event_at = greatest(f.newest_event_at, EXCLUDED.newest_event_at),
             newest_kafka_at = greatest(f.newest_kafka_at, EXCLUDED.newest_kafka_at),
             committed_at = EXCLUDED.committed_at,
             source_to_kafka_ms = coalesce(EXCLUDED.source_to_kafka_ms, f.source_to_kafka_ms),
             kafka_to_gold_ms = coalesce(EXCLUDED.kafka_to_gold_ms, f.kafka_to_gold_ms),
             version = EXCLUDED.version",
        &[&marts, &t.newest_event_ms, &t.newest_kafka_ms, &v],
    )
    .await
    .map_err(DbError::query("recording gold.freshness"))?;
    Ok(v)
}
