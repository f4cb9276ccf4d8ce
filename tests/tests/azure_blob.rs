//! Azure Blob source, end to end against the real Azurite, broker and PostgreSQL with the
//! release binaries: blobs in CSV, JSON lines, JSON arrays and gzip (date-partitioned and
//! not), a blob that changes (new etag), a blob that is not gzip at all and bad records
//! (dead letters with container, name, etag and reason), a large blob read in ranged
//! chunks; the warehouse (bronze, silver, gold) must end equal to what the container holds.
//! A second test kills the agent with SIGKILL five times mid-blob.

use anyhow::{Context, Result};
use azure_storage_blobs::prelude::ContainerClient;
use e2e_tests::{
    azurite_container, azurite_url, blob_checkpoint, blob_half_read, blob_scratch, count, gzip,
    query_pairs, query_value, read_topic, test_seed, wait_blob_progress, wait_for, Scratch,
};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

async fn put(c: &ContainerClient, name: &str, body: Vec<u8>) -> Result<()> {
    c.blob_client(name)
        .put_block_blob(body)
        .await
        .with_context(|| format!("uploading {name}"))?;
    Ok(())
}

const FIELDS: [&str; 9] = [
    "event_id",
    "ts",
    "channel",
    "event_type",
    "session_id",
    "customer_id",
    "page",
    "device",
    "app_version",
];

fn event(id: &str, day: &str, channel: &str, n: usize, page: &str) -> Value {
    json!({
        "event_id": id,
        "ts": format!("{day}T{:02}:{:02}:00Z", 8 + n % 12, n % 60),
        "channel": channel,
        "event_type": if n.is_multiple_of(5) { "session_start" } else if channel == "web" { "page_view" } else { "screen_view" },
        "session_id": format!("S-{day}-{}", n / 5),
        "customer_id": if n.is_multiple_of(3) { Value::Null } else { Value::String(format!("C{:05}", 1 + n % 1500)) },
        "page": page,
        "device": if channel == "web" { "desktop" } else { "android" },
        "app_version": if channel == "app" { Value::String("3.2.1".into()) } else { Value::Null },
    })
}

fn jsonl(events: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in events {
        serde_json::to_writer(&mut out, e).unwrap();
        out.push(b'\n');
    }
    out
}

fn csv(events: &[Value]) -> Vec<u8> {
    let mut out = FIELDS.join(",");
    out.push('\n');
    for e in events {
        let row: Vec<String> = FIELDS
            .iter()
            .map(|f| match &e[*f] {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                v => v.to_string(),
            })
            .collect();
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out.into_bytes()
}

fn events(prefix: &str, day: &str, channel: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            event(
                &format!("{prefix}-{i:06}"),
                day,
                channel,
                i,
                &format!("/p/{}", i % 17),
            )
        })
        .collect()
}

/// Expected silver content: event_id -> page, with the per-day/channel event counts.
#[derive(Default)]
struct Expect {
    pages: BTreeMap<String, String>,
    published: i64,
}

impl Expect {
    fn add(&mut self, evs: &[Value]) {
        for e in evs {
            self.pages.insert(
                e["event_id"].as_str().unwrap().to_string(),
                e["page"].as_str().unwrap_or("").to_string(),
            );
        }
        self.published += evs.len() as i64;
    }
}

async fn wait_equal(s: &Scratch, topic: &str, exp: &Expect, timeout: Duration) -> Result<()> {
    let db = s.db().await?;
    let (want_bronze, want_silver) = (exp.published, exp.pages.len() as i64);
    wait_for(
        timeout,
        "bronze and silver to hold the container's records",
        || {
            let db = &db;
            async move {
                let b = count(
                    db,
                    &format!("SELECT count(*) FROM bronze.events WHERE topic = '{topic}'"),
                )
                .await?;
                let sv = count(db, "SELECT count(*) FROM silver.web_events").await?;
                Ok((b == want_bronze && sv == want_silver).then_some(()))
            }
        },
    )
    .await
    .with_context(|| format!("ingest log:\n{}", s.log("ingest")))?;
    // Settle, then compare exactly: nothing lost, nothing duplicated.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let b = count(
        &db,
        &format!("SELECT count(*) FROM bronze.events WHERE topic = '{topic}'"),
    )
    .await?;
    assert_eq!(b, want_bronze, "bronze events");
    let distinct = count(
        &db,
        &format!("SELECT count(DISTINCT source_key) FROM bronze.events WHERE topic = '{topic}'"),
    )
    .await?;
    assert_eq!(distinct, want_bronze, "bronze source keys are unique");
    let got: BTreeMap<String, String> = query_pairs(
        &db,
        "SELECT event_id, coalesce(page, '') FROM silver.web_events ORDER BY event_id",
    )
    .await?
    .into_iter()
    .collect();
    assert_eq!(got.len(), exp.pages.len(), "silver rows");
    assert!(got == exp.pages, "silver differs from the container");
    let gold: i64 = query_value(
        &db,
        "SELECT coalesce(sum(events), 0)::bigint FROM gold.web_usage_daily",
    )
    .await?;
    assert_eq!(gold, want_silver, "gold events");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_of_every_format_changes_and_dead_letters_end_equal() -> Result<()> {
    let (s, cname) = blob_scratch(
        "blob",
        1 << 20,
        &[(
            "full_rescan_interval_s = 86400",
            "full_rescan_interval_s = 3",
        )],
    )
    .await?;
    let c = azurite_container(&cname).await?;
    let topic = format!("{}.blob.web_events", s.prefix);
    let mut exp = Expect::default();

    // CSV with one row of the wrong field count.
    let a = events("A", "2026-01-10", "web", 50);
    let mut body = csv(&a);
    body.extend_from_slice(b"A-bad,2026-01-10T09:00:00Z,web\n");
    put(&c, "2026/01/10/a.csv", body).await?;
    exp.add(&a);
    // JSON lines with a line that is not JSON (line 21).
    let b = events("B", "2026-01-10", "app", 50);
    let mut body = jsonl(&b[..20]);
    body.extend_from_slice(b"{\"event_id\": \"B-broken\", oops\n");
    body.extend_from_slice(&jsonl(&b[20..]));
    put(&c, "2026/01/10/b.jsonl", body).await?;
    exp.add(&b);
    // A JSON array, and gzip JSON lines.
    let cc = events("C", "2026-01-11", "app", 40);
    put(&c, "2026/01/11/c.json", serde_json::to_vec_pretty(&cc)?).await?;
    exp.add(&cc);
    let d = events("D", "2026-01-11", "web", 60);
    put(&c, "2026/01/11/d.jsonl.gz", gzip(&jsonl(&d))).await?;
    exp.add(&d);
    // Gzip CSV in an old day (settled after the first read: out of the listed window), and
    // JSON lines outside the date partitions.
    let e = events("E", "2026-01-05", "web", 30);
    put(&c, "2026/01/05/e.csv.gz", gzip(&csv(&e))).await?;
    exp.add(&e);
    let f = events("F", "2026-01-09", "app", 10);
    put(&c, "misc/f.jsonl", jsonl(&f)).await?;
    exp.add(&f);
    // Not gzip at all.
    put(
        &c,
        "2026/01/12/broken.jsonl.gz",
        b"this is not a gzip stream".to_vec(),
    )
    .await?;
    // A large blob (~30 MB), read in 1 MiB ranged GETs.
    let mut large = Vec::new();
    let mut n_large = 0;
    while large.len() < 30 << 20 {
        let mut ev = event(
            &format!("L-{n_large:07}"),
            "2026-01-12",
            "web",
            n_large,
            "/large",
        );
        ev["padding"] = Value::String("x".repeat(120));
        serde_json::to_writer(&mut large, &ev)?;
        large.push(b'\n');
        exp.pages.insert(format!("L-{n_large:07}"), "/large".into());
        n_large += 1;
    }
    exp.published += n_large as i64;
    put(&c, "2026/01/12/large.jsonl", large).await?;
    println!("large blob: {n_large} records");

    let _transform = s.start("transform")?;
    let _ingest = s.start("ingest")?;
    wait_equal(&s, &topic, &exp, Duration::from_secs(240)).await?;

    // Dead letters: container, blob, etag, record and reason.
    let dl = read_topic(&format!("{}.dlq", s.prefix), 3)?;
    let dl: Vec<Value> = dl
        .iter()
        .map(|(_, v)| serde_json::from_slice(v).unwrap())
        .collect();
    assert_eq!(dl.len(), 3, "{dl:#?}");
    let find = |blob: &str| {
        dl.iter()
            .find(|d| d["origin"]["blob"] == blob)
            .cloned()
            .unwrap()
    };
    let bad_csv = find("2026/01/10/a.csv");
    assert_eq!(bad_csv["origin"]["container"], cname.as_str());
    assert_eq!(bad_csv["origin"]["record"], 50);
    assert!(bad_csv["origin"]["etag"]
        .as_str()
        .is_some_and(|e| !e.is_empty()));
    assert!(
        bad_csv["reason"]
            .as_str()
            .unwrap()
            .contains("expected 9 fields"),
        "{bad_csv}"
    );
    let bad_line = find("2026/01/10/b.jsonl");
    assert_eq!(bad_line["origin"]["line"], 21);
    assert!(bad_line["reason"]
        .as_str()
        .unwrap()
        .contains("invalid JSON"));
    assert_eq!(bad_line["raw_text"], "{\"event_id\": \"B-broken\", oops");
    let bad_blob = find("2026/01/12/broken.jsonl.gz");
    assert_eq!(bad_blob["origin"]["whole_blob"], true);
    assert!(
        bad_blob["reason"].as_str().unwrap().contains("gzip"),
        "{bad_blob}"
    );
    let db = s.db().await?;
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM bronze.dead_letters WHERE connector = 'blob'"
        )
        .await?,
        3
    );

    // The JSON lines blob changes (new etag): changed pages, 10 new events; its records
    // come again as updates.
    let mut b2 = b.clone();
    for ev in b2.iter_mut().take(25) {
        ev["page"] = Value::String("/changed".into());
    }
    b2.extend(events("B2", "2026-01-10", "app", 10));
    put(&c, "2026/01/10/b.jsonl", jsonl(&b2)).await?;
    exp.add(&b2);
    wait_equal(&s, &topic, &exp, Duration::from_secs(120)).await?;
    let ops = count(
        &db,
        &format!("SELECT count(*) FROM bronze.events WHERE topic = '{topic}' AND op = 'u'"),
    )
    .await?;
    assert_eq!(
        ops,
        b2.len() as i64,
        "the changed blob's records are updates"
    );
    let day: (i64, i64) = {
        let r = db
            .query_one(
                "SELECT sessions, page_views FROM gold.web_usage_daily WHERE day = '2026-01-11' AND channel = 'web'",
                &[],
            )
            .await?;
        (r.get(0), r.get(1))
    };
    assert_eq!(
        day,
        (12, 48),
        "2026-01-11 web: 60 events in 12 sessions, 48 page views"
    );

    // Days before the newest minus lookback_days (2) are settled: out of the checkpoint's
    // blob map, a digest each; names outside the date layout stay tracked.
    let cp: Value = serde_json::from_str(&std::fs::read_to_string(blob_checkpoint(&s))?)?;
    let st = &cp["state"];
    assert_eq!(st["settled"][""], "2026/01/10", "{st}");
    assert!(st["digests"]["2026/01/05"].is_string(), "{st}");
    assert!(st["blobs"].get("2026/01/05/e.csv.gz").is_none(), "{st}");
    assert!(st["blobs"].get("misc/f.jsonl").is_some(), "{st}");
    assert!(st["blobs"].get("2026/01/12/large.jsonl").is_some(), "{st}");
    // A settled day that changes is found by the periodic full rescan (every 3 s here).
    let mut e2 = e.clone();
    for ev in e2.iter_mut() {
        ev["page"] = Value::String("/rescanned".into());
    }
    put(&c, "2026/01/05/e.csv.gz", gzip(&csv(&e2))).await?;
    exp.add(&e2);
    wait_equal(&s, &topic, &exp, Duration::from_secs(60)).await?;
    assert!(s
        .log("ingest")
        .contains("settled day changed since it was read"));
    c.delete().await.ok();
    s.cleanup().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_9_mid_blob_five_times_loses_and_duplicates_nothing() -> Result<()> {
    // 64 KiB chunks: hundreds of checkpoints per blob, so the kills land mid-blob.
    let (s, cname) = blob_scratch("blobcrash", 64 * 1024, &[]).await?;
    let c = azurite_container(&cname).await?;
    let topic = format!("{}.blob.web_events", s.prefix);
    let seed = test_seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut exp = Expect::default();
    let plain = events("P", "2026-02-01", "web", 150_000);
    put(&c, "2026/02/01/plain.jsonl", jsonl(&plain)).await?;
    exp.add(&plain);
    let zipped = events("Z", "2026-02-02", "app", 150_000);
    put(&c, "2026/02/02/zipped.jsonl.gz", gzip(&jsonl(&zipped))).await?;
    exp.add(&zipped);
    let arr = events("R", "2026-02-03", "app", 50_000);
    put(&c, "2026/02/03/array.json", serde_json::to_vec(&arr)?).await?;
    exp.add(&arr);
    let rows = events("V", "2026-02-03", "web", 50_000);
    put(&c, "2026/02/03/rows.csv", csv(&rows)).await?;
    exp.add(&rows);

    let _transform = s.start("transform")?;
    let mut ingest = s.start("ingest")?;
    let db = s.db().await?;
    let mut mid_blob = 0;
    let cp_path = blob_checkpoint(&s);
    for round in 1..=5 {
        // Kill once the restarted agent made progress on a blob (its checkpoint moved and
        // shows a blob half-read), plus a random delay: the kill lands mid-blob, anywhere
        // between two checkpoints.
        wait_blob_progress(&cp_path, Duration::from_secs(20)).await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..400))).await;
        ingest.kill9();
        let n = count(
            &db,
            &format!("SELECT count(*) FROM bronze.events WHERE topic = '{topic}'"),
        )
        .await?;
        let reading = blob_half_read(&cp_path);
        mid_blob += reading as usize;
        println!("round {round}: killed ingest (bronze {n}, a blob half-read in the checkpoint: {reading})");
        ingest = s.start("ingest")?;
    }
    assert!(
        mid_blob >= 3,
        "most kills should land mid-blob ({mid_blob}/5)"
    );
    wait_equal(&s, &topic, &exp, Duration::from_secs(300)).await?;
    // Each event id is in one blob once: a record re-read after a crash under another source
    // key would show here as a second bronze row of the same event.
    let db = s.db().await?;
    let ids = count(
        &db,
        &format!("SELECT count(DISTINCT payload->'after'->>'event_id') FROM bronze.events WHERE topic = '{topic}'"),
    )
    .await?;
    assert_eq!(ids, exp.published, "one bronze row per source record");
    let resumed = s.log("ingest").matches("resuming blob").count();
    assert!(resumed >= 3, "the agent resumed mid-blob {resumed} times");
    drop(ingest);
    c.delete().await.ok();
    s.cleanup().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_deletes_removes_the_keys_of_removed_and_shrunk_blobs() -> Result<()> {
    let (s, cname) = blob_scratch(
        "blobdel",
        1 << 20,
        &[
            ("emit_deletes = false", "emit_deletes = true"),
            ("partitioning = \"date\"", "partitioning = \"none\""),
        ],
    )
    .await?;
    let c = azurite_container(&cname).await?;
    let topic = format!("{}.blob.web_events", s.prefix);
    let mut exp = Expect::default();
    let x = events("X", "2026-03-01", "web", 40);
    put(&c, "x.jsonl", jsonl(&x)).await?;
    exp.add(&x);
    let y = events("Y", "2026-03-01", "app", 30);
    put(&c, "y.json", serde_json::to_vec(&y)?).await?;
    exp.add(&y);
    let _transform = s.start("transform")?;
    let _ingest = s.start("ingest")?;
    wait_equal(&s, &topic, &exp, Duration::from_secs(120)).await?;

    // x.jsonl shrinks to 25 events (5 of them changed); y.json is removed.
    let mut x2: Vec<Value> = x[..25].to_vec();
    for ev in x2.iter_mut().take(5) {
        ev["page"] = Value::String("/changed".into());
    }
    put(&c, "x.jsonl", jsonl(&x2)).await?;
    c.blob_client("y.json").delete().await?;
    exp.pages.clear();
    exp.add(&x2);
    exp.published += 15 + 30; // d events: the 15 keys x.jsonl lost, the 30 of y.json
    wait_equal(&s, &topic, &exp, Duration::from_secs(120)).await?;
    let db = s.db().await?;
    let deletes = count(
        &db,
        &format!("SELECT count(*) FROM bronze.events WHERE topic = '{topic}' AND op = 'd'"),
    )
    .await?;
    assert_eq!(deletes, 45);
    c.delete().await.ok();
    s.cleanup().await;
    Ok(())
}

/// The two ways to reach a real Azure account other than the emulator shortcut — a
/// connection string with an account key, and an account with a SAS token (read + list on
/// the container only) — against Azurite, which checks SharedKey and SAS signatures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_string_or_a_sas_token_reads_the_container() -> Result<()> {
    use azure_storage::clients::{EMULATOR_ACCOUNT, EMULATOR_ACCOUNT_KEY};
    use azure_storage::shared_access_signature::{service_sas::BlobSasPermissions, SasToken};
    for auth in ["connection_string", "sas_token"] {
        let (mut s, cname) = blob_scratch(&format!("blob{}", &auth[..3]), 1 << 20, &[]).await?;
        let c = azurite_container(&cname).await?;
        let topic = format!("{}.blob.web_events", s.prefix);
        let mut exp = Expect::default();
        let x = events(&auth[..3], "2026-04-01", "web", 25);
        put(&c, "2026/04/01/x.jsonl", jsonl(&x)).await?;
        exp.add(&x);
        s.extra_env
            .push(("ETL_INGEST__BLOB__EMULATOR".into(), "false".into()));
        if auth == "connection_string" {
            s.extra_env.push((
                "ETL_INGEST__BLOB__CONNECTION_STRING".into(),
                format!(
                    "DefaultEndpointsProtocol=http;AccountName={EMULATOR_ACCOUNT};AccountKey={EMULATOR_ACCOUNT_KEY};BlobEndpoint={};",
                    azurite_url()
                ),
            ));
        } else {
            let sas = c
                .shared_access_signature(
                    BlobSasPermissions {
                        read: true,
                        list: true,
                        ..Default::default()
                    },
                    time::OffsetDateTime::now_utc() + time::Duration::hours(1),
                )
                .await?
                .token()?;
            s.extra_env
                .push(("ETL_INGEST__BLOB__ACCOUNT".into(), EMULATOR_ACCOUNT.into()));
            s.extra_env
                .push(("ETL_INGEST__BLOB__SAS_TOKEN".into(), sas));
        }
        let _transform = s.start("transform")?;
        let _ingest = s.start("ingest")?;
        wait_equal(&s, &topic, &exp, Duration::from_secs(90))
            .await
            .with_context(|| format!("{auth}: {}", s.log("ingest")))?;
        let log = s.log("ingest");
        assert!(
            !log.contains(EMULATOR_ACCOUNT_KEY),
            "{auth}: the account key is never logged"
        );
        c.delete().await.ok();
        s.cleanup().await;
    }
    Ok(())
}
