//! `transform replay --model M [--reason TEXT]`: re-validates a model's quarantined rows
//! with the current configuration. Rows that now pass go to silver and gold (guarded by
//! their event position like any upsert, so a newer version is never overwritten) and
//! leave the quarantine, in one transaction: a second replay finds nothing to do. The
//! others stay, with their new reason.

use super::{apply, Mapping, SilverEvent};
use crate::gold;
use crate::sql::DbError;
use etl_contract::Op;
use serde_json::value::RawValue;
use tokio_postgres::Client;

/// What a replay did.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReplayStats {
    pub examined: u64,
    pub released: u64,
    pub still_quarantined: u64,
}

struct Row {
    id: i64,
    event_id: i64,
    topic: String,
    source_key: String,
    source: Box<RawValue>,
    record: Box<RawValue>,
    op: Op,
}

fn op_of(c: &str) -> Op {
    match c {
        "d" => Op::Delete,
        "u" => Op::Update,
        "r" => Op::Read,
        _ => Op::Create,
    }
}

/// Replays the quarantined rows of `mapping`'s model whose reason contains `reason`.
pub async fn replay(
    client: &mut Client,
    mapping: &Mapping,
    reason: Option<&str>,
) -> Result<ReplayStats, DbError> {
    super::prepare_session(client).await?;
    gold::prepare_session(client).await?;
    let tx = client
        .transaction()
        .await
        .map_err(DbError::query("starting the replay"))?;
    let pattern = format!("%{}%", reason.unwrap_or(""));
    let rows = tx
        .query(
            "SELECT q.quarantine_id, q.bronze_event_id, q.topic, q.source_key, q.source::text, q.record::text,
                    coalesce(e.op::text, 'c')
             FROM silver.quarantine q LEFT JOIN bronze.events e ON e.event_id = q.bronze_event_id
             WHERE q.model = $1 AND q.reason LIKE $2 ORDER BY q.bronze_event_id FOR UPDATE OF q",
            &[&mapping.model.name, &pattern],
        )
        .await
        .map_err(DbError::query("reading the quarantine"))?;
    let mut parsed: Vec<Row> = Vec::with_capacity(rows.len());
    for r in &rows {
        let raw = |i: usize| RawValue::from_string(r.get::<_, String>(i));
        let (Ok(source), Ok(record)) = (raw(4), raw(5)) else {
            continue;
        };
        parsed.push(Row {
            id: r.get(0),
            event_id: r.get(1),
            topic: r.get(2),
            source_key: r.get(3),
            source,
            record,
            op: op_of(&r.get::<_, String>(6)),
        });
    }
    let mut stats = ReplayStats {
        examined: parsed.len() as u64,
        ..Default::default()
    };
    let mut passing: Vec<&Row> = Vec::new();
    for row in &parsed {
        let image = serde_json::from_str(row.record.get()).ok();
        let verdict = match (&image, row.op) {
            (Some(img), Op::Delete) => mapping
                .key_of(img)
                .map(|_| ())
                .ok_or_else(|| format!("delete without a {}", mapping.model.key)),
            (Some(img), _) => mapping.parse(img).map(|_| ()),
            (None, _) => Err("the row image is not a JSON object".to_string()),
        };
        match verdict {
            Ok(()) => passing.push(row),
            Err(why) => {
                stats.still_quarantined += 1;
                tx.execute(
                    "UPDATE silver.quarantine SET reason = $2 WHERE quarantine_id = $1",
                    &[&row.id, &why],
                )
                .await
                .map_err(DbError::query("updating a quarantine reason"))?;
            }
        }
    }
    let events: Vec<SilverEvent> = passing
        .iter()
        .map(|r| SilverEvent {
            event_id: r.event_id,
            topic: &r.topic,
            source_key: &r.source_key,
            source: &r.source,
            op: r.op,
            before: (r.op == Op::Delete).then_some(&*r.record),
            after: (r.op != Op::Delete).then_some(&*r.record),
        })
        .collect();
    let applied = apply(&tx, mapping, &events).await?;
    let ids: Vec<i64> = passing.iter().map(|r| r.id).collect();
    tx.execute(
        "DELETE FROM silver.quarantine WHERE quarantine_id = ANY($1)",
        &[&ids],
    )
    .await
    .map_err(DbError::query(
        "releasing replayed rows from the quarantine",
    ))?;
    stats.released = ids.len() as u64;
    let mut touched = gold::Touched::default();
    touched.record(mapping.model.name, applied.touched);
    gold::refresh(&tx, &touched).await?;
    tx.commit()
        .await
        .map_err(DbError::query("committing the replay"))?;
    Ok(stats)
}
