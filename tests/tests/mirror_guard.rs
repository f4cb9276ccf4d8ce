//! A crafted schema event cannot run SQL in the warehouse. Whoever can write to a
//! `<prefix>.mysql.<db>_<table>` topic chooses the column types a schema event announces,
//! and the silver mirror turns them into DDL. This test writes change events straight to
//! the real broker (no MariaDB involved) and runs the real `transform`:
//!
//! 1. a valid schema event creates the mirror table, a row lands;
//! 2. a schema event adding a column whose type carries SQL (`integer; CREATE TABLE …`)
//!    is quarantined as unreadable, and nothing of it runs;
//! 3. a schema event PostgreSQL refuses (two columns of one name) is rolled back and
//!    quarantined with PostgreSQL's words, the table keeping its columns;
//! 5. the rows after them still land, in a table with exactly the announced columns.

use anyhow::{Context, Result};
use e2e_tests::{count, kafka_brokers, query_pairs, query_value, wait_for, Scratch};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{json, Value};
use std::time::Duration;

fn source(s: &Scratch, pos: u64, key: &str) -> Value {
    json!({
        "version": "test", "connector": "mysql", "name": s.prefix, "entity": "shop_items",
        "ts_ms": 1_700_000_000_000i64, "server_id": 7, "file": "bin.000001", "pos": pos, "row": 0,
        "gtid": null, "db": "shop", "table": "items", "snapshot": false,
        "source_key": format!("7:bin.000001:{pos}:{key}"),
    })
}

fn schema_event(s: &Scratch, pos: u64, columns: Value) -> (String, Value) {
    let after = json!({
        "db": "shop", "table": "items", "columns": columns, "pk": ["id"],
        "renames": [], "position": {"file": "bin.000001", "pos": pos},
    });
    (
        json!({"__schema": "shop.items"}).to_string(),
        json!({"before": null, "after": after, "op": "s", "source": source(s, pos, "s"), "ts_ms": 0}),
    )
}

fn row_event(s: &Scratch, pos: u64, id: i64, name: &str) -> (String, Value) {
    (
        json!([id]).to_string(),
        json!({"before": null, "after": {"id": id, "name": name}, "op": "c",
               "source": source(s, pos, "r"), "ts_ms": 0}),
    )
}

async fn publish(topic: &str, events: &[(String, Value)]) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .create()?;
    let created = admin
        .create_topics(
            &[NewTopic::new(topic, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .context("creating the test topic (is the broker up? ./dev stack)")?;
    for r in created {
        r.map_err(|(t, e)| anyhow::anyhow!("creating topic {t}: {e}"))?;
    }
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("enable.idempotence", "true")
        .create()?;
    for (key, value) in events {
        let value = value.to_string();
        producer
            .send(
                FutureRecord::to(topic)
                    .key(key)
                    .payload(&value)
                    .partition(0),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| anyhow::anyhow!("publishing to {topic}: {e}"))?;
    }
    Ok(())
}

/// A quarantine row `(source_key, reason)` is the one of `key`, its reason starting with
/// `start` and holding `part`.
fn assert_reason(row: &(String, String), key: &str, start: &str, part: &str) {
    assert_eq!(row.0, key);
    assert!(
        row.1.starts_with(start) && row.1.contains(part),
        "{}",
        row.1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn crafted_schema_events_are_quarantined_and_run_no_sql() -> Result<()> {
    let s = Scratch::new("mirrorguard", None).await?;
    let topic = format!("{}.mysql.shop_items", s.prefix);
    // Before the allow-list, this added the column and ran the CREATE TABLE.
    let crafted = "integer; CREATE TABLE public.pwned (x int)";
    let mut wide = vec![
        json!({"name": "id", "type": "integer"}),
        json!({"name": "name", "type": "text"}),
    ];
    wide.extend((0..1700).map(|i| json!({"name": format!("c{i}"), "type": "integer"})));
    let events = vec![
        schema_event(
            &s,
            100,
            json!([{"name": "id", "type": "integer"}, {"name": "name", "type": "text"}]),
        ),
        row_event(&s, 200, 1, "first"),
        schema_event(
            &s,
            300,
            json!([{"name": "id", "type": "integer"}, {"name": "name", "type": "text"},
                   {"name": "extra", "type": crafted}]),
        ),
        schema_event(
            &s,
            400,
            json!([{"name": "id", "type": "integer"}, {"name": "name", "type": "text"},
                   {"name": "extra", "type": "bigint"}, {"name": "extra", "type": "text"}]),
        ),
        schema_event(&s, 450, Value::Array(wide)),
        row_event(&s, 500, 2, "second"),
    ];
    publish(&topic, &events).await?;
    let mut transform = s.start("transform")?;
    let db = s.db().await?;
    wait_for(
        Duration::from_secs(90),
        "two mirror rows and three quarantined schema events",
        || async {
            let rows = count(&db, "SELECT count(*) FROM silver.shop_items").await?;
            let q = count(
                &db,
                "SELECT count(*) FROM silver.quarantine WHERE model = 'shop_items'",
            )
            .await?;
            Ok((rows == 2 && q == 3).then_some(()))
        },
    )
    .await
    .with_context(|| format!("transform log:\n{}", s.log("transform")))?;

    let pwned: Option<String> =
        query_value(&db, "SELECT to_regclass('public.pwned')::text").await?;
    assert_eq!(pwned, None, "the crafted type ran SQL");
    let cols: Vec<(String, String)> = query_pairs(
        &db,
        "SELECT column_name::text, data_type::text FROM information_schema.columns
         WHERE table_schema = 'silver' AND table_name = 'shop_items' AND column_name NOT LIKE '\\_%'
         ORDER BY ordinal_position",
    )
    .await?;
    assert_eq!(
        cols,
        vec![
            ("id".into(), "integer".into()),
            ("name".into(), "text".into())
        ]
    );
    let rows: Vec<(i32, String)> =
        query_pairs(&db, "SELECT id, name FROM silver.shop_items ORDER BY id").await?;
    assert_eq!(rows, vec![(1, "first".into()), (2, "second".into())]);
    let reasons: Vec<(String, String)> = query_pairs(
        &db,
        "SELECT source_key, reason FROM silver.quarantine WHERE model = 'shop_items' ORDER BY source_key",
    )
    .await?;
    assert_reason(
        &reasons[0],
        "mysql:7:bin.000001:300:s",
        "unreadable schema event: column type ",
        "is not one a mirror table may have",
    );
    assert_eq!(
        reasons[1],
        (
            "mysql:7:bin.000001:400:s".to_string(),
            "unreadable schema event: column \"extra\" is listed twice".to_string()
        )
    );
    assert_reason(
        &reasons[2],
        "mysql:7:bin.000001:450:s",
        "schema event refused by the warehouse, the table keeps its columns:",
        "54011",
    );
    // The quarantined record is the event's after image, as published.
    let record: String = query_value(
        &db,
        "SELECT record->'columns'->2->>'type' FROM silver.quarantine WHERE source_key = 'mysql:7:bin.000001:300:s'",
    )
    .await?;
    assert_eq!(record, crafted);
    // The mirror's state still holds the first schema.
    let state: String = query_value(
        &db,
        "SELECT columns::text FROM pipeline.mirror_tables WHERE entity = 'shop_items'",
    )
    .await?;
    assert_eq!(
        serde_json::from_str::<Value>(&state)?,
        json!([{"name": "id", "type": "integer"}, {"name": "name", "type": "text"}])
    );
    transform.stop()?;
    s.cleanup().await;
    Ok(())
}
