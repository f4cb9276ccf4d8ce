//! Gold's queue of silver changes (`pipeline.gold_queue`): catching up in bulk.
//!
//! A live batch brings gold up to date in its own transaction. While transform is behind
//! (its batches come full: a backlog after a stop, a backfill file), doing so per batch
//! costs what every batch touches again and again (the same months, customers, amounts):
//! instead such a batch lands bronze and silver, refreshes the dimensions, and queues the
//! keys it touched here, in the same transaction. The next batch that is not deferred
//! (transform has caught up, or the oldest queued change is `gold_catch_up_secs` old)
//! drains the queue into its own refresh, so gold moves once for all of them, exactly as
//! if each batch had moved it: the facts are re-derived from silver as it is at the drain.
//!
//! A crash loses nothing: the keys commit with silver, and the drain deletes them in the
//! transaction that applies them to gold.

use super::Touched;
use crate::sql::DbError;
use chrono::NaiveDate;
use std::collections::BTreeSet;
use tokio_postgres::{Client, Transaction};

/// The batch's keys by queue model (`web_day` for the days of web events).
fn keys(t: &Touched) -> (Vec<&'static str>, Vec<String>) {
    let mut models = Vec::new();
    let mut keys = Vec::new();
    for (model, set) in [
        ("sales", &t.sales),
        ("customers", &t.customers),
        ("products", &t.products),
    ] {
        for k in set {
            models.push(model);
            keys.push(k.clone());
        }
    }
    for d in &t.web_days {
        models.push("web_day");
        keys.push(d.format("%Y-%m-%d").to_string());
    }
    (models, keys)
}

/// Puts the batch's keys into the session's `gold_touched_keys`, then moves the queue's
/// keys there too (deleting them from the queue; a key may then be there twice, which the
/// readers absorb); returns the queue's state when it held
/// anything (its newest source and Kafka times, for the freshness).
pub async fn stage(tx: &Transaction<'_>, t: &Touched) -> Result<Option<Queued>, DbError> {
    let (models, keys) = keys(t);
    if !keys.is_empty() {
        tx.execute(
            "INSERT INTO gold_touched_keys (model, key) SELECT * FROM unnest($1::text[], $2::text[])",
            &[&models, &keys],
        )
        .await
        .map_err(DbError::query("staging the batch's touched keys"))?;
    }
    let row = tx
        .query_opt(
            "WITH old AS (SELECT * FROM pipeline.gold_queue_state WHERE since IS NOT NULL FOR UPDATE)
             UPDATE pipeline.gold_queue_state s
             SET since = NULL, batches = 0, records = 0, newest_event_ms = NULL, newest_kafka_ms = NULL,
                 drains_total = s.drains_total + 1
             FROM old
             RETURNING old.batches, old.records, old.newest_event_ms, old.newest_kafka_ms",
            &[],
        )
        .await
        .map_err(DbError::query("reading gold's queue state"))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let moved = tx
        .execute(
            "WITH q AS (DELETE FROM pipeline.gold_queue RETURNING model, key)
             INSERT INTO gold_touched_keys (model, key) SELECT model, key FROM q",
            &[],
        )
        .await
        .map_err(DbError::query("draining gold's queue"))?;
    Ok(Some(Queued {
        batches: row.get(0),
        records: row.get(1),
        keys: moved,
        newest_event_ms: row.get(2),
        newest_kafka_ms: row.get(3),
    }))
}

/// What a drain took from the queue.
#[derive(Debug, Clone, Copy)]
pub struct Queued {
    pub batches: i64,
    pub records: i64,
    pub keys: u64,
    pub newest_event_ms: Option<i64>,
    pub newest_kafka_ms: Option<i64>,
}

/// The days of web events among the staged keys.
pub async fn staged_web_days(tx: &Transaction<'_>) -> Result<BTreeSet<NaiveDate>, DbError> {
    let rows = tx
        .query(
            "SELECT DISTINCT key::date FROM gold_touched_keys WHERE model = 'web_day'",
            &[],
        )
        .await
        .map_err(DbError::query("reading the staged web days"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Queues the batch's keys instead of applying them to gold.
pub async fn defer(tx: &Transaction<'_>, t: &Touched, records: u64) -> Result<(), DbError> {
    let (models, keys) = keys(t);
    if !keys.is_empty() {
        tx.execute(
            "INSERT INTO pipeline.gold_queue (model, key)
             SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING",
            &[&models, &keys],
        )
        .await
        .map_err(DbError::query("queueing the batch's keys for gold"))?;
    }
    tx.execute(
        "UPDATE pipeline.gold_queue_state SET since = coalesce(since, now()), batches = batches + 1,
             deferred_total = deferred_total + 1,
             records = records + $1,
             newest_event_ms = greatest(newest_event_ms, $2), newest_kafka_ms = greatest(newest_kafka_ms, $3)",
        &[&(records as i64), &t.newest_event_ms, &t.newest_kafka_ms],
    )
    .await
    .map_err(DbError::query("recording gold's queue state"))?;
    Ok(())
}

/// Since when gold is behind silver (`None`: up to date), and how many records wait.
pub async fn state(
    client: &Client,
) -> Result<Option<(chrono::DateTime<chrono::Utc>, i64)>, DbError> {
    let row = client
        .query_one("SELECT since, records FROM pipeline.gold_queue_state", &[])
        .await
        .map_err(DbError::query("reading gold's queue state"))?;
    Ok(row
        .get::<_, Option<chrono::DateTime<chrono::Utc>>>(0)
        .map(|s| (s, row.get(1))))
}

/// Applies the queue to gold in a transaction of its own (transform is idle, or a
/// verification wants gold up to date); returns what it drained.
pub async fn drain(client: &mut Client) -> Result<Option<Queued>, DbError> {
    super::prepare_session(client).await?;
    let tx = client
        .transaction()
        .await
        .map_err(DbError::query("starting gold's catch-up"))?;
    let g = super::refresh(&tx, &Touched::default()).await?;
    if g.drained.is_some() {
        let unknown_refs = super::marts::quality::unknown_refs(&tx).await?;
        if unknown_refs > 0 {
            let row = super::marts::quality::QualityRow {
                model: "sales".into(),
                unknown_refs,
                ..Default::default()
            };
            super::marts::quality::record(&tx, &[row]).await?;
        }
    }
    tx.commit()
        .await
        .map_err(DbError::query("committing gold's catch-up"))?;
    Ok(g.drained)
}
