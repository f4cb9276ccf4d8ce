//! One consumed batch = one warehouse transaction: bronze rows, dead letters, silver changes
//! and the consumer offsets commit together.

use crate::bronze::{self, BronzeRow, DeadRow};
use crate::gold::{self, marts::quality::QualityRow};
use crate::silver::{self, Mapping, SilverEvent, SilverStats};
use crate::sql::DbError;
use etl_contract::{source_key, DeadLetter, EnvelopeIn, Op};
use rdkafka::message::{Message, OwnedMessage};
use serde_json::value::RawValue;
use std::collections::HashMap;
use tokio_postgres::{Client, Transaction};

/// What a batch did.
#[derive(Debug, Default, Clone, Copy)]
pub struct BatchStats {
    pub records: u64,
    pub bronze_inserted: u64,
    pub bronze_duplicates: u64,
    pub dead_letters: u64,
    pub tombstones: u64,
    pub silver: SilverStats,
    /// Orders whose facts the batch re-derived in gold.
    pub gold_orders: u64,
    /// The batch queued its gold changes (transform is catching up).
    pub gold_deferred: bool,
    /// What the batch's refresh drained from the queue of deferred batches.
    pub gold_drained: Option<gold::queue::Queued>,
}

impl BatchStats {
    /// Adds another batch's counts (a gold drain is kept from the first that had one).
    pub fn add(&mut self, s: &BatchStats) {
        self.records += s.records;
        self.bronze_inserted += s.bronze_inserted;
        self.bronze_duplicates += s.bronze_duplicates;
        self.dead_letters += s.dead_letters;
        self.tombstones += s.tombstones;
        self.silver.add(&s.silver);
        self.gold_orders += s.gold_orders;
        self.gold_deferred |= s.gold_deferred;
        self.gold_drained = self.gold_drained.or(s.gold_drained);
    }
}

/// Routing of topics to silver models, and the dead-letter topic.
pub struct Router {
    pub group: String,
    pub dlq_topic: String,
    pub models: HashMap<String, Mapping>,
    /// `<prefix>.mysql.`: topics of database tables, mirrored in silver (see
    /// [`silver::mirror`]); `<prefix>.mysql._ddl` feeds `pipeline.schema_history`.
    pub mirror_prefix: String,
}

struct Parsed<'a> {
    op: Op,
    before: Option<&'a RawValue>,
    after: Option<&'a RawValue>,
}

fn kafka_key(m: &OwnedMessage) -> Option<String> {
    let k = m.key()?;
    match serde_json::from_slice::<&RawValue>(k) {
        Ok(_) => Some(String::from_utf8_lossy(k).into_owned()),
        Err(_) => {
            Some(serde_json::Value::String(String::from_utf8_lossy(k).into_owned()).to_string())
        }
    }
}

fn kafka_origin(m: &OwnedMessage) -> (String, serde_json::Value) {
    (
        format!("kafka:{}:{}:{}", m.topic(), m.partition(), m.offset()),
        serde_json::json!({"topic": m.topic(), "partition": m.partition(), "offset": m.offset()}),
    )
}

/// A batch's records, decoded: change events for bronze (with their images for silver)
/// and records for the dead-letter table.
struct Decoded<'a> {
    rows: Vec<BronzeRow<'a>>,
    parsed: Vec<Parsed<'a>>,
    dead: Vec<DeadRow>,
    tombstones: u64,
}

/// Decodes every record of a batch; nothing here touches the database.
fn decode<'a>(router: &Router, batch: &'a [OwnedMessage]) -> Decoded<'a> {
    let mut tombstones = 0;
    let mut rows: Vec<BronzeRow> = Vec::with_capacity(batch.len());
    let mut parsed: Vec<Parsed> = Vec::with_capacity(batch.len());
    let mut dead: Vec<DeadRow> = Vec::new();
    for m in batch {
        let Some(payload) = m.payload() else {
            tombstones += 1;
            continue;
        };
        if m.topic() == router.dlq_topic {
            match serde_json::from_slice::<DeadLetter>(payload) {
                Ok(dl) => {
                    let raw = dl.raw().unwrap_or_else(|_| payload.to_vec());
                    dead.push(DeadRow {
                        topic: m.topic().into(),
                        partition: m.partition(),
                        offset: m.offset(),
                        source_key: dl.source_key,
                        connector: dl.connector,
                        origin: dl.origin,
                        reason: dl.reason,
                        raw,
                    });
                }
                Err(e) => {
                    let (sk, origin) = kafka_origin(m);
                    dead.push(DeadRow {
                        topic: m.topic().into(),
                        partition: m.partition(),
                        offset: m.offset(),
                        source_key: sk,
                        connector: "transform".into(),
                        origin,
                        reason: format!("unreadable dead-letter record: {}", json_problem(&e)),
                        raw: payload.to_vec(),
                    });
                }
            }
            continue;
        }
        let outcome = std::str::from_utf8(payload)
            .map_err(|e| format!("record value is not UTF-8: {e}"))
            .and_then(|text| {
                let (env, fields) = EnvelopeIn::parse(payload).map_err(|e| contract_problem(&e))?;
                let sk = source_key(&fields).map_err(|e| contract_problem(&e))?;
                Ok((text, env, sk))
            });
        match outcome {
            Ok((text, env, sk)) => {
                rows.push(BronzeRow {
                    topic: m.topic(),
                    partition: m.partition(),
                    offset: m.offset(),
                    key: kafka_key(m),
                    op: env.op,
                    source_key: sk,
                    source: env.source,
                    payload: text,
                    event_ts: env.ts_ms.and_then(chrono::DateTime::from_timestamp_millis),
                });
                parsed.push(Parsed {
                    op: env.op,
                    before: env.before,
                    after: env.after,
                });
            }
            Err(reason) => {
                let (sk, origin) = kafka_origin(m);
                dead.push(DeadRow {
                    topic: m.topic().into(),
                    partition: m.partition(),
                    offset: m.offset(),
                    source_key: sk,
                    connector: "transform".into(),
                    origin,
                    reason: format!("not a valid change event: {reason}"),
                    raw: payload.to_vec(),
                });
            }
        }
    }
    Decoded {
        rows,
        parsed,
        dead,
        tombstones,
    }
}

/// A batch's change events with their decoded images and bronze ids (`None`: a duplicate).
struct BatchRows<'b, 'a> {
    rows: &'b [BronzeRow<'a>],
    parsed: &'b [Parsed<'a>],
    ids: &'b [Option<i64>],
}

impl<'a> BatchRows<'_, 'a> {
    /// The new events (not duplicates) with their bronze ids, in batch order.
    fn events(&self) -> impl Iterator<Item = (&BronzeRow<'a>, SilverEvent<'_>)> {
        self.rows
            .iter()
            .zip(self.parsed)
            .zip(self.ids)
            .filter_map(|((r, p), id)| {
                let ev = SilverEvent {
                    event_id: (*id)?,
                    topic: r.topic,
                    source_key: &r.source_key,
                    source: r.source,
                    op: p.op,
                    before: p.before,
                    after: p.after,
                };
                Some((r, ev))
            })
    }
}

/// Silver models: each mapped topic's new events applied by its model, the gold groups they
/// touch recorded; returns the data-quality rows of the batch.
async fn apply_models(
    tx: &Transaction<'_>,
    router: &Router,
    batch: &BatchRows<'_, '_>,
    touched: &mut gold::Touched,
    stats: &mut BatchStats,
) -> Result<Vec<QualityRow>, DbError> {
    let mut quality: Vec<QualityRow> = Vec::new();
    for (topic, mapping) in &router.models {
        let events: Vec<SilverEvent> = batch
            .events()
            .filter(|(r, _)| r.topic == topic)
            .map(|(_, ev)| ev)
            .collect();
        let received = batch.rows.iter().filter(|r| r.topic == topic).count() as i64;
        if events.is_empty() {
            if received > 0 {
                quality.push(QualityRow {
                    model: mapping.model.name.into(),
                    rows_in: received,
                    duplicates: received,
                    ..Default::default()
                });
            }
            continue;
        }
        let web = mapping.model.name == silver::models::web_events::MODEL.name;
        if web {
            let keys = web_keys(mapping, &events);
            touched
                .web_days
                .extend(gold::marts::web_usage::days_of(tx, &keys).await?);
        }
        let applied = silver::apply(tx, mapping, &events).await?;
        let s = applied.stats;
        if web {
            touched
                .web_days
                .extend(gold::marts::web_usage::days_of(tx, &applied.touched).await?);
        }
        touched.record(mapping.model.name, applied.touched);
        stats.silver.add(&s);
        quality.push(QualityRow {
            model: mapping.model.name.into(),
            rows_in: received,
            valid: (s.upserts + s.deletes) as i64,
            quarantined: s.quarantined as i64,
            filtered: s.filtered as i64,
            control: s.control as i64,
            stale: s.stale as i64,
            duplicates: received - events.len() as i64,
            reasons: applied.reasons,
            ..Default::default()
        });
        count_silver(mapping.model.name, &s);
        metrics::counter!("transform_silver_filtered_total", "model" => mapping.model.name)
            .increment(s.filtered);
    }
    Ok(quality)
}

fn count_silver(model: &'static str, s: &SilverStats) {
    metrics::counter!("transform_silver_upserts_total", "model" => model).increment(s.upserts);
    metrics::counter!("transform_silver_deletes_total", "model" => model).increment(s.deletes);
    metrics::counter!("transform_silver_quarantined_total", "model" => model)
        .increment(s.quarantined);
}

/// Database tables: one silver mirror per topic, events in consumed order; the DDL topic
/// feeds the schema history.
async fn apply_mirrors(
    tx: &Transaction<'_>,
    router: &Router,
    batch: &BatchRows<'_, '_>,
    stats: &mut BatchStats,
) -> Result<(), DbError> {
    let mut mirrored: Vec<(&str, Vec<SilverEvent>)> = Vec::new();
    for (r, ev) in batch.events() {
        let Some(entity) = r.topic.strip_prefix(router.mirror_prefix.as_str()) else {
            continue;
        };
        match mirrored.iter_mut().find(|(e, _)| *e == entity) {
            Some((_, v)) => v.push(ev),
            None => mirrored.push((entity, vec![ev])),
        }
    }
    for (entity, events) in &mirrored {
        if *entity == "_ddl" {
            let n = silver::mirror::record_ddl(tx, events).await?;
            metrics::counter!("transform_schema_history_total").increment(n);
            continue;
        }
        let s = silver::mirror::apply(tx, entity, events).await?;
        stats.silver.add(&s);
        count_silver("mirror", &s);
    }
    Ok(())
}

/// How a batch treats gold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoldMode {
    /// Gold is brought up to date in the batch's transaction (draining the queue).
    Refresh,
    /// The batch queues its gold changes ([`gold::queue`]): transform is behind.
    Defer,
}

/// Applies a batch in one transaction.
pub async fn process_batch(
    client: &mut Client,
    router: &Router,
    batch: &[OwnedMessage],
    mode: GoldMode,
) -> Result<BatchStats, DbError> {
    let mut stats = BatchStats {
        records: batch.len() as u64,
        ..Default::default()
    };
    let Decoded {
        rows,
        parsed,
        dead,
        tombstones,
    } = decode(router, batch);
    stats.tombstones = tombstones;

    let tx = client
        .transaction()
        .await
        .map_err(DbError::query("starting a batch transaction"))?;
    let ids = bronze::load(&tx, &rows).await?;
    stats.bronze_inserted = ids.iter().filter(|i| i.is_some()).count() as u64;
    stats.bronze_duplicates = rows.len() as u64 - stats.bronze_inserted;
    stats.dead_letters = bronze::load_dead_letters(&tx, &dead).await?;

    let mut touched = gold::Touched {
        newest_event_ms: rows
            .iter()
            .filter_map(|r| r.event_ts.map(|t| t.timestamp_millis()))
            .max(),
        newest_kafka_ms: batch.iter().filter_map(|m| m.timestamp().to_millis()).max(),
        ..Default::default()
    };
    let batch_rows = BatchRows {
        rows: &rows,
        parsed: &parsed,
        ids: &ids,
    };
    let mut quality = apply_models(&tx, router, &batch_rows, &mut touched, &mut stats).await?;
    apply_mirrors(&tx, router, &batch_rows, &mut stats).await?;

    let g = match mode {
        GoldMode::Refresh => gold::refresh(&tx, &touched).await?,
        GoldMode::Defer => gold::defer(&tx, &touched, batch.len() as u64).await?,
    };
    stats.gold_orders = g.orders;
    stats.gold_deferred = g.deferred;
    stats.gold_drained = g.drained;
    if let Some(q) = quality.iter_mut().find(|q| q.model == "sales") {
        q.unknown_refs = gold::marts::quality::unknown_refs(&tx).await?;
    }
    if stats.dead_letters > 0 {
        quality.push(QualityRow {
            model: "dlq".into(),
            rows_in: dead.len() as i64,
            dead_lettered: stats.dead_letters as i64,
            ..Default::default()
        });
    }
    gold::marts::quality::record(&tx, &quality).await?;
    store_offsets(&tx, router, batch).await?;
    tx.commit()
        .await
        .map_err(DbError::query("committing a batch"))?;
    Ok(stats)
}

/// Keys of a batch's web events, from their images (before silver changes them).
fn web_keys(mapping: &Mapping, events: &[SilverEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| {
            let raw = if e.op == Op::Delete {
                e.before
            } else {
                e.after
            }?;
            let image = serde_json::from_str(raw.get()).ok()?;
            mapping.key_of(&image)
        })
        .collect()
}

/// Stores the next offsets of the batch's partitions (never moving one backwards).
async fn store_offsets(
    tx: &tokio_postgres::Transaction<'_>,
    router: &Router,
    batch: &[OwnedMessage],
) -> Result<(), DbError> {
    let offsets = crate::consumer::next_offsets(batch);
    let topics: Vec<&str> = offsets.iter().map(|o| o.0.as_str()).collect();
    let parts: Vec<i32> = offsets.iter().map(|o| o.1).collect();
    let nexts: Vec<i64> = offsets.iter().map(|o| o.2).collect();
    tx.execute(
        "INSERT INTO pipeline.consumer_offsets (group_id, topic, partition, next_offset)
         SELECT $1, t, p, o FROM unnest($2::text[], $3::int[], $4::bigint[]) AS x(t, p, o)
         ON CONFLICT (group_id, topic, partition) DO UPDATE
         SET next_offset = GREATEST(pipeline.consumer_offsets.next_offset, EXCLUDED.next_offset), updated_at = now()",
        &[&router.group, &topics, &parts, &nexts],
    )
    .await
    .map_err(DbError::query("storing consumer offsets"))?;
    Ok(())
}

/// Applies a batch the warehouse refused by halves, each in its own transaction, down to
/// the single record it refuses (SQLSTATE class 22/23), which goes to
/// `bronze.dead_letters` with the reason; the rest of the batch carries on, in order.
pub async fn process_one_by_one(
    client: &mut Client,
    router: &Router,
    batch: &[OwnedMessage],
    mode: GoldMode,
) -> Result<BatchStats, DbError> {
    let mut total = BatchStats::default();
    // Slices still to apply, the next one on top.
    let mut todo: Vec<&[OwnedMessage]> = vec![batch];
    while let Some(part) = todo.pop() {
        match process_batch(client, router, part, mode).await {
            Ok(s) => total.add(&s),
            Err(e) if e.is_data_error() && part.len() > 1 => {
                let (left, right) = part.split_at(part.len() / 2);
                todo.push(right);
                todo.push(left);
            }
            Err(e) if e.is_data_error() => {
                total.dead_letters += dead_letter_refused(client, router, &part[0], &e).await?;
                total.records += 1;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

/// A JSON error as a dead letter's reason tells it: its kind, its position and, for a
/// missing or unknown field, the field's name (capped), never a value of the input (serde's
/// `invalid type: string "…"` quotes it).
fn json_problem(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let at = format!("at line {} column {}", e.line(), e.column());
    match e.classify() {
        Category::Io => "an I/O error while reading the JSON".into(),
        Category::Eof => format!("truncated JSON ({at})"),
        Category::Syntax => format!("not valid JSON ({at})"),
        Category::Data => {
            let msg = e.to_string();
            let field = ["missing field `", "unknown field `", "duplicate field `"]
                .iter()
                .find(|p| msg.starts_with(*p))
                .and_then(|p| msg[p.len()..].split('`').next().map(|f| (p, f)));
            match field {
                Some((p, f)) => {
                    let f: String = f.chars().take(80).collect();
                    format!("{p}{f}` ({at})")
                }
                None => format!("a field has the wrong type or value ({at})"),
            }
        }
    }
}

/// A contract error as a dead letter's reason tells it (see [`json_problem`]), capped.
fn contract_problem(e: &etl_contract::ContractError) -> String {
    match e {
        etl_contract::ContractError::Json(e) => {
            format!("not a change-event envelope: {}", json_problem(e))
        }
        etl_contract::ContractError::Invalid(s) => s.chars().take(200).collect(),
    }
}

/// Why the warehouse refused a record, without the values PostgreSQL's message and detail
/// quote (`invalid input syntax for type integer: "…"`, `Key (id)=(…) already exists`):
/// the SQLSTATE, and the table, column and constraint it names.
fn refusal_reason(e: &DbError) -> String {
    let (context, db) = match e {
        DbError::Query {
            context, source, ..
        } => (context.as_str(), source.as_db_error()),
        other => return format!("the warehouse refused the record: {other}"),
    };
    let Some(db) = db else {
        return format!("the warehouse refused the record ({context})");
    };
    let code = db.code().code();
    let kind = match &code[..2] {
        "22" => "a value does not fit its column (data exception)",
        "23" => "an integrity constraint is violated",
        _ => "an error",
    };
    let mut s = format!("the warehouse refused the record ({context}): {kind}, SQLSTATE {code}");
    for (what, v) in [
        ("table", db.table()),
        ("column", db.column()),
        ("constraint", db.constraint()),
    ] {
        if let Some(v) = v {
            s.push_str(&format!(
                ", {what} {:?}",
                v.chars().take(80).collect::<String>()
            ));
        }
    }
    s
}

/// Dead-letters one record the warehouse refused, with its offset, in its own transaction.
async fn dead_letter_refused(
    client: &mut Client,
    router: &Router,
    m: &OwnedMessage,
    e: &DbError,
) -> Result<u64, DbError> {
    tracing::warn!(topic = m.topic(), partition = m.partition(), offset = m.offset(), error = %e, "record refused by the warehouse; dead-lettered");
    let (source_key, origin) = kafka_origin(m);
    let dead = DeadRow {
        topic: m.topic().into(),
        partition: m.partition(),
        offset: m.offset(),
        source_key,
        connector: "transform".into(),
        origin,
        reason: refusal_reason(e),
        raw: m.payload().unwrap_or_default().to_vec(),
    };
    let tx = client
        .transaction()
        .await
        .map_err(DbError::query("starting a dead-letter transaction"))?;
    let n = bronze::load_dead_letters(&tx, &[dead]).await?;
    store_offsets(&tx, router, std::slice::from_ref(m)).await?;
    tx.commit()
        .await
        .map_err(DbError::query("committing a dead letter"))?;
    Ok(n)
}

#[cfg(test)]
mod reason_tests {
    use super::{contract_problem, json_problem};

    /// Bad records' reasons describe the problem and its position, never the content.
    #[test]
    fn reasons_never_embed_the_records_content() {
        let big = "x".repeat(10_000);
        let inputs: Vec<Vec<u8>> = vec![
            b"\xff\xfeSECRET".to_vec(),
            format!("{{\"op\":\"SECRET{big}\"}}").into_bytes(),
            b"{\"op\":\"c\",\"after\":{},\"ts_ms\":\"SECRET\x01\"}".to_vec(),
            format!("{{\"reason\": 7, \"raw_base64\": \"SECRET{big}\"}}").into_bytes(),
            b"{\"op\": \"c\", \"source\": {\"connector\": 5}, \"SECRET\": 1".to_vec(),
        ];
        let mut reasons = Vec::new();
        for i in &inputs {
            if let Err(e) = etl_contract::EnvelopeIn::parse(i) {
                reasons.push(contract_problem(&e));
            }
            if let Err(e) = serde_json::from_slice::<etl_contract::DeadLetter>(i) {
                reasons.push(json_problem(&e));
            }
        }
        assert_eq!(reasons.len(), 2 * inputs.len(), "{reasons:#?}");
        for r in &reasons {
            assert!(
                !r.contains("SECRET")
                    && !r.contains("xxxxxxxxxx")
                    && !r.chars().any(char::is_control),
                "{r}"
            );
            assert!(r.len() < 300, "{r}");
        }
        let missing = serde_json::from_slice::<etl_contract::DeadLetter>(b"{}").unwrap_err();
        assert_eq!(
            json_problem(&missing),
            "missing field `reason` (at line 1 column 2)"
        );
    }
}
