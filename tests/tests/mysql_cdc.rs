//! MySQL/MariaDB binlog CDC end to end, against the real server (binlog on) and broker:
//! snapshot + streaming reproduce the tables exactly when the topics are folded by key, with
//! exact values; `kill -9` of the agent during the snapshot and during a DML load loses
//! nothing and gives every source key a single row version.

use anyhow::{bail, Context, Result};
use e2e_tests::{read_topic, test_seed, wait_for, MysqlScratch, Scratch};
use mysql_async::prelude::Queryable;
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

/// A configuration with only the MySQL source, reading `<db>.*` but `<db>.ignored`.
fn config(s: &Scratch, db: &str, chunk: usize) -> Result<PathBuf> {
    e2e_tests::mysql_config(
        s,
        "mysql.toml",
        3,
        e2e_tests::random_server_id(),
        &format!(
            "include = [\"{db}.*\"]\nexclude = [\"{db}.ignored\"]\nsnapshot_chunk_rows = {chunk}"
        ),
    )
}

fn topic(s: &Scratch, db: &str, table: &str) -> String {
    format!("{}.mysql.{db}_{table}", s.prefix)
}

/// Folds a topic by key (last image wins, deletes remove) and checks that every source key
/// maps to one row version.
fn fold(records: &[e2e_tests::Record]) -> Result<(BTreeMap<String, Value>, usize)> {
    let mut state = BTreeMap::new();
    let mut versions: HashMap<String, String> = HashMap::new();
    let mut resent = 0;
    for (k, v) in records {
        let key: Value = serde_json::from_slice(k.as_deref().context("record without a key")?)?;
        let ev: Value = serde_json::from_slice(v)?;
        if ev["op"] == "s" {
            // Schema events (columns of the table, on every partition) are not rows.
            continue;
        }
        let sk = ev["source"]["source_key"]
            .as_str()
            .context("no source_key")?
            .to_string();
        let version = format!("{}|{}|{}", ev["op"], ev["before"], ev["after"]);
        match versions.get(&sk) {
            Some(prev) if prev != &version => {
                bail!("source key {sk} maps to two row versions:\n{prev}\n{version}")
            }
            Some(_) => resent += 1,
            None => {
                versions.insert(sk, version);
            }
        }
        if ev["op"] == "d" {
            state.remove(&key.to_string());
        } else {
            state.insert(key.to_string(), ev["after"].clone());
        }
    }
    Ok((state, resent))
}

/// The table's rows in the agent's canonical form, computed by MySQL itself (text protocol,
/// explicit formatting), keyed like the topic.
async fn items_state(conn: &mut mysql_async::Conn) -> Result<BTreeMap<String, Value>> {
    conn.query_drop("SET time_zone = '+00:00'").await?;
    let has_extra: Option<String> = conn
        .query_first("SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'items' AND COLUMN_NAME = 'extra'")
        .await?;
    let extra = if has_extra.is_some() { "extra" } else { "NULL" };
    let rows: Vec<mysql_async::Row> = conn
        .query(format!(
            "SELECT CAST(id AS CHAR), CAST(price AS CHAR), DATE_FORMAT(created, '%Y-%m-%d %H:%i:%s.%f'),
                    CONCAT(DATE_FORMAT(seen, '%Y-%m-%dT%H:%i:%s.'), LEFT(DATE_FORMAT(seen, '%f'), 3), 'Z'),
                    CAST(status AS CHAR), CAST(tags AS CHAR), doc, REPLACE(TO_BASE64(img), '\\n', ''),
                    CAST(qty AS CHAR), note, CAST(t AS CHAR), CAST(y AS CHAR), CAST(d AS CHAR), {extra}
             FROM items"
        ))
        .await?;
    let mut out = BTreeMap::new();
    for r in rows {
        let vals: Vec<Option<String>> = (0..14)
            .map(|i| r.get::<Option<String>, _>(i).flatten())
            .collect();
        let s = |i: usize| vals[i].clone().map(Value::String).unwrap_or(Value::Null);
        let n = |i: usize| {
            vals[i]
                .as_deref()
                .map(|v| serde_json::from_str::<Value>(v).expect("a number"))
                .unwrap_or(Value::Null)
        };
        let mut m = Map::new();
        m.insert("id".into(), n(0));
        m.insert("price".into(), s(1));
        m.insert("created".into(), s(2));
        m.insert("seen".into(), s(3));
        m.insert("status".into(), s(4));
        m.insert("tags".into(), s(5));
        m.insert("doc".into(), s(6));
        m.insert("img".into(), s(7));
        m.insert("qty".into(), n(8));
        m.insert("note".into(), s(9));
        m.insert("t".into(), s(10));
        m.insert("y".into(), n(11));
        m.insert("d".into(), s(12));
        if has_extra.is_some() {
            m.insert("extra".into(), s(13));
        }
        let key = serde_json::json!({"id": m["id"].clone()}).to_string();
        out.insert(key, Value::Object(m));
    }
    Ok(out)
}

async fn pairs_state(conn: &mut mysql_async::Conn) -> Result<BTreeMap<String, Value>> {
    let rows: Vec<(String, i64, Option<String>, String)> = conn
        .query("SELECT region, num, name, CAST(balance AS CHAR) FROM pairs")
        .await?;
    Ok(rows
        .into_iter()
        .map(|(region, num, name, balance)| {
            let key = serde_json::json!({"region": region, "num": num}).to_string();
            (
                key,
                serde_json::json!({"region": region, "num": num, "name": name, "balance": balance}),
            )
        })
        .collect())
}

/// Columns added by an ALTER are absent from the last image of rows untouched since: they
/// must then hold their default in the table.
fn compare(
    what: &str,
    folded: &BTreeMap<String, Value>,
    table: &BTreeMap<String, Value>,
    added: &[(&str, Value)],
) -> Result<()> {
    let keys_f: Vec<&String> = folded.keys().collect();
    let keys_t: Vec<&String> = table.keys().collect();
    if keys_f != keys_t {
        let missing: Vec<_> = table
            .keys()
            .filter(|k| !folded.contains_key(*k))
            .take(5)
            .collect();
        let extra: Vec<_> = folded
            .keys()
            .filter(|k| !table.contains_key(*k))
            .take(5)
            .collect();
        bail!(
            "{what}: folded topic has {} keys, table {}; missing {missing:?}, extra {extra:?}",
            folded.len(),
            table.len()
        );
    }
    for (k, want) in table {
        let mut want = want.clone();
        let got = &folded[k];
        for (col, default) in added {
            if got.get(*col).is_none() {
                assert_eq!(
                    want.get(*col),
                    Some(default),
                    "{what} {k}: column {col} absent from the last image but not at its default"
                );
                want.as_object_mut().map(|o| o.remove(*col));
            }
        }
        if got != &want {
            bail!("{what} {k}: topic image\n{got}\ndiffers from the table\n{want}");
        }
    }
    Ok(())
}

const ITEMS_DDL: &str = "CREATE TABLE items (
    id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    price DECIMAL(12,3) NOT NULL,
    created DATETIME(6) NULL,
    seen TIMESTAMP(3) NULL DEFAULT NULL,
    status ENUM('new','paid','shipped') NULL,
    tags SET('red','green','blue') NOT NULL DEFAULT '',
    doc JSON NULL,
    img BLOB NULL,
    qty BIGINT UNSIGNED NOT NULL DEFAULT 0,
    note VARCHAR(100) NULL,
    t TIME(2) NULL,
    y YEAR NULL,
    d DATE NULL
) ENGINE=InnoDB";

fn random_item(rng: &mut StdRng) -> String {
    let statuses = ["'new'", "'paid'", "'shipped'", "NULL"];
    let tags = ["''", "'red'", "'green,blue'", "'red,green,blue'"];
    format!(
        "({}.{:03}, '2024-{:02}-{:02} {:02}:{:02}:{:02}.{:06}', {}, {}, {}, {}, {}, {}, {}, '{}:{:02}:{:02}.{:02}', {}, '20{:02}-0{}-1{}')",
        rng.random_range(-1000..100_000),
        rng.random_range(0..1000),
        rng.random_range(1..13),
        rng.random_range(1..29),
        rng.random_range(0..24),
        rng.random_range(0..60),
        rng.random_range(0..60),
        rng.random_range(0..1_000_000),
        if rng.random_bool(0.2) { "NULL".to_string() } else { format!("'2025-03-0{} 1{}:00:00.{:03}'", rng.random_range(1..10), rng.random_range(0..10), rng.random_range(0..1000)) },
        statuses[rng.random_range(0..4)],
        tags[rng.random_range(0..4)],
        if rng.random_bool(0.3) { "NULL".to_string() } else { format!("'{{\"k\": {}, \"s\": \"é\\\\\"q\"}}'", rng.random_range(0..100)) },
        if rng.random_bool(0.3) { "NULL".to_string() } else { format!("x'{:08x}00ff'", rng.random::<u32>()) },
        if rng.random_bool(0.1) { "18446744073709551615".to_string() } else { rng.random_range(0..1_000_000u64).to_string() },
        if rng.random_bool(0.3) { "NULL".to_string() } else { format!("'note {} – ünï'", rng.random_range(0..1000)) },
        rng.random_range(0..200),
        rng.random_range(0..60),
        rng.random_range(0..60),
        rng.random_range(0..100),
        if rng.random_bool(0.2) { "NULL".to_string() } else { rng.random_range(1901..2155).to_string() },
        rng.random_range(10..30),
        rng.random_range(1..10),
        rng.random_range(0..10),
    )
}

async fn setup_tables(
    db: &MysqlScratch,
    rng: &mut StdRng,
    items: usize,
    pairs: usize,
) -> Result<()> {
    let mut c = db.conn().await?;
    c.query_drop(ITEMS_DDL).await?;
    c.query_drop("CREATE TABLE pairs (region CHAR(2) NOT NULL, num INT NOT NULL, name VARCHAR(40) NULL, balance DECIMAL(10,2) NOT NULL, PRIMARY KEY (region, num)) ENGINE=InnoDB").await?;
    c.query_drop("CREATE TABLE ignored (id INT PRIMARY KEY)")
        .await?;
    for chunk in (0..items).collect::<Vec<_>>().chunks(500) {
        let values: Vec<String> = chunk.iter().map(|_| random_item(rng)).collect();
        c.query_drop(format!("INSERT INTO items (price, created, seen, status, tags, doc, img, qty, note, t, y, d) VALUES {}", values.join(","))).await?;
    }
    for i in 0..pairs {
        c.query_drop(format!(
            "INSERT INTO pairs VALUES ('{}', {i}, 'n{i}', {}.{:02})",
            ["FR", "DE", "US"][i % 3],
            rng.random_range(-500..500),
            rng.random_range(0..100)
        ))
        .await?;
    }
    c.query_drop("INSERT INTO ignored VALUES (1)").await?;
    Ok(())
}

/// One random transaction of 1–5 statements; returns a lower bound of the change events.
async fn random_txn(c: &mut mysql_async::Conn, rng: &mut StdRng, max_id: u32) -> Result<u64> {
    let mut events = 0;
    c.query_drop("BEGIN").await?;
    for _ in 0..rng.random_range(1..=5) {
        let id = rng.random_range(1..=max_id);
        let sql = match rng.random_range(0..10) {
            0..=3 => format!("INSERT INTO items (price, created, seen, status, tags, doc, img, qty, note, t, y, d) VALUES {}", random_item(rng)),
            4..=6 => format!(
                "UPDATE items SET price = price + 1.005, status = 'paid', tags = 'blue', qty = IF(qty < 1000000000, qty + 1, qty - 1), note = {} WHERE id = {id}",
                if rng.random_bool(0.5) { "NULL".to_string() } else { format!("'upd {}'", rng.random::<u16>()) }
            ),
            7 => format!("DELETE FROM items WHERE id = {id}"),
            8 => format!("UPDATE pairs SET balance = balance + 0.01, name = 'u{}' WHERE num = {}", rng.random::<u16>(), id % 50),
            _ => format!("INSERT INTO pairs VALUES ('{}', {}, NULL, 0.00) ON DUPLICATE KEY UPDATE name = NULL", ["FR", "DE", "US", "IT"][rng.random_range(0..4)], rng.random_range(0..2000)),
        };
        c.query_drop(sql).await?;
        events += c.affected_rows().min(1);
    }
    c.query_drop("COMMIT").await?;
    Ok(events)
}

async fn wait_caught_up(s: &Scratch, admin: &mut mysql_async::Conn) -> Result<()> {
    let row: mysql_async::Row = admin
        .query_first("SHOW MASTER STATUS")
        .await?
        .context("binlog off")?;
    let target: (String, u64) = (row.get(0).context("file")?, row.get(1).context("pos")?);
    let cp = s.dir.join("checkpoints/mysql.json");
    wait_for(
        Duration::from_secs(120),
        "the agent's checkpoint to reach the binlog end",
        || async {
            let Ok(text) = std::fs::read_to_string(&cp) else {
                return Ok(None);
            };
            let v: Value = serde_json::from_str(&text)?;
            let p = &v["state"]["position"];
            let at = (
                p["file"].as_str().unwrap_or("").to_string(),
                p["pos"].as_u64().unwrap_or(0),
            );
            Ok((at >= target).then_some(()))
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\ningest log:\n{}", s.log("ingest")))
}

fn count_records(
    s: &Scratch,
    db: &str,
    table: &str,
    at_least: usize,
) -> Result<Vec<e2e_tests::Record>> {
    read_topic(&topic(s, db, table), at_least)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_then_stream_reproduce_the_tables_exactly() -> Result<()> {
    let mut s = Scratch::new("mysql", None).await?;
    let my = MysqlScratch::new("snap").await?;
    let mut rng = StdRng::seed_from_u64(test_seed());
    setup_tables(&my, &mut rng, 300, 60).await?;
    let mut c = my.conn().await?;
    // A row with known values, checked field by field below.
    c.query_drop("INSERT INTO items VALUES (100000, -0.500, '2024-01-02 03:04:05.000120', '2024-05-06 07:08:09.5', 'shipped', 'red,blue', '{\"a\": [1, 2.50]}', x'00ff10', 18446744073709551615, NULL, '-838:59:59.00', 2024, '2024-02-29')").await?;
    s.config = config(&s, &my.db, 100)?;
    let mut ingest = s.start("ingest")?;

    // Streaming: DML, an ALTER TABLE ADD COLUMN mid-stream, more DML, a key change.
    let mut events = 0;
    for _ in 0..40 {
        events += random_txn(&mut c, &mut rng, 320).await?;
    }
    c.query_drop("ALTER TABLE items ADD COLUMN extra VARCHAR(10) NULL DEFAULT 'x'")
        .await?;
    for _ in 0..40 {
        events += random_txn(&mut c, &mut rng, 340).await?;
    }
    c.query_drop("UPDATE items SET extra = 'set', price = 1.250 WHERE id = 100000")
        .await?;
    c.query_drop("UPDATE pairs SET num = 99999 WHERE region = 'FR' AND num = 0")
        .await?;
    c.query_drop("UPDATE ignored SET id = 2").await?;
    let mut admin =
        mysql_async::Conn::new(mysql_async::Opts::from_url(&e2e_tests::mysql_admin_url())?).await?;
    wait_caught_up(&s, &mut admin).await?;
    // Under load the agent may start late enough for its snapshot to see all of the DML
    // above: one more update, surely after the snapshot (the agent has caught up with the
    // binlog), gives the streamed-event checks below something to look at.
    c.query_drop(
        "UPDATE items SET note = 'after the snapshot' WHERE id <> 100000 ORDER BY id LIMIT 1",
    )
    .await?;
    wait_caught_up(&s, &mut admin).await?;

    println!("{events} row changes written while streaming");
    let items = count_records(&s, &my.db, "items", 301)?;
    let (folded, _) = fold(&items)?;
    compare(
        "items",
        &folded,
        &items_state(&mut c).await?,
        &[("extra", Value::String("x".into()))],
    )?;
    let known = &folded[&serde_json::json!({"id": 100000}).to_string()];
    assert_eq!(known["price"], "1.250");
    assert_eq!(known["created"], "2024-01-02 03:04:05.000120");
    assert_eq!(known["seen"], "2024-05-06T07:08:09.500Z");
    assert_eq!(known["status"], "shipped");
    assert_eq!(known["tags"], "red,blue");
    assert_eq!(known["doc"], "{\"a\": [1, 2.50]}");
    assert_eq!(known["img"], "AP8Q");
    assert_eq!(known["qty"], serde_json::json!(18446744073709551615u64));
    assert_eq!(known["note"], Value::Null);
    assert_eq!(known["t"], "-838:59:59.00");
    assert_eq!(known["y"], 2024);
    assert_eq!(known["d"], "2024-02-29");
    assert_eq!(known["extra"], "set");
    // Envelope and source block.
    let first: Value = serde_json::from_slice(&items[0].1)?;
    assert_eq!(first["source"]["connector"], "mysql");
    let snap = items
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.1))
        .collect::<Result<Vec<_>, _>>()?;
    // The DML above started while the agent was starting: the snapshot may already see some of it.
    let reads: Vec<&Value> = snap.iter().filter(|e| e["op"] == "r").collect();
    let read_keys: std::collections::HashSet<String> =
        reads.iter().map(|e| e["after"]["id"].to_string()).collect();
    assert!(
        reads.len() >= 301,
        "every existing row is read by the snapshot ({} reads)",
        reads.len()
    );
    assert_eq!(
        read_keys.len(),
        reads.len(),
        "the snapshot reads each row once"
    );
    assert!(reads.iter().all(|e| e["source"]["snapshot"] == true
        && e["source"]["source_key"]
            .as_str()
            .is_some_and(|k| k.starts_with("snapshot:"))));
    let streamed = snap
        .iter()
        .find(|e| e["op"] == "u")
        .context("an update event")?;
    assert_eq!(streamed["source"]["snapshot"], false);
    assert_eq!(streamed["source"]["db"], my.db.as_str());
    assert_eq!(streamed["source"]["table"], "items");
    assert!(
        streamed["source"]["gtid"]
            .as_str()
            .is_some_and(|g| g.split('-').count() == 3),
        "MariaDB GTID: {}",
        streamed["source"]
    );
    assert!(streamed["before"].is_object() && streamed["after"].is_object());
    let sk = streamed["source"]["source_key"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(
        sk,
        format!(
            "{}:{}:{}:{}",
            streamed["source"]["server_id"],
            streamed["source"]["file"].as_str().unwrap_or(""),
            streamed["source"]["pos"],
            streamed["source"]["row"]
        )
    );

    let pairs = count_records(&s, &my.db, "pairs", 60)?;
    let (folded, _) = fold(&pairs)?;
    compare("pairs", &folded, &pairs_state(&mut c).await?, &[])?;
    assert!(
        !folded.contains_key(&serde_json::json!({"region": "FR", "num": 0}).to_string()),
        "a key change deletes the old key"
    );

    ingest.stop()?;
    drop(c);
    my.cleanup().await;
    s.cleanup().await;
    Ok(())
}

/// Resume from the checkpoint's MariaDB GTID: stream, stop the agent, rotate the binlog a
/// few times while writing, restart with `resume = "gtid"`: the folded topic equals the
/// table and no change event was published twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_from_the_mariadb_gtid_after_rotations_loses_and_repeats_nothing() -> Result<()> {
    let mut s = Scratch::new("mygtid", None).await?;
    let my = MysqlScratch::new("gtid").await?;
    let mut rng = StdRng::seed_from_u64(test_seed());
    setup_tables(&my, &mut rng, 100, 20).await?;
    let mut c = my.conn().await?;
    s.config = config(&s, &my.db, 50)?;
    let mut admin =
        mysql_async::Conn::new(mysql_async::Opts::from_url(&e2e_tests::mysql_admin_url())?).await?;
    let mut ingest = s.start("ingest")?;
    for _ in 0..20 {
        random_txn(&mut c, &mut rng, 120).await?;
    }
    wait_caught_up(&s, &mut admin).await?;
    ingest.stop()?;
    let cp: Value = serde_json::from_str(&std::fs::read_to_string(
        s.dir.join("checkpoints/mysql.json"),
    )?)?;
    let stopped_at = cp["state"]["position"].clone();
    assert!(
        stopped_at["gtid"]
            .as_str()
            .is_some_and(|g| g.split('-').count() == 3),
        "the checkpoint records a MariaDB GTID: {stopped_at}"
    );

    // While the agent is down: writes between binlog rotations.
    for _ in 0..3 {
        for _ in 0..10 {
            random_txn(&mut c, &mut rng, 140).await?;
        }
        admin.query_drop("FLUSH BINARY LOGS").await?;
    }
    for _ in 0..5 {
        random_txn(&mut c, &mut rng, 140).await?;
    }
    let text = std::fs::read_to_string(&s.config)?;
    std::fs::write(
        &s.config,
        text.replace(
            "heartbeat_interval_ms = 500",
            "heartbeat_interval_ms = 500\nresume = \"gtid\"",
        ),
    )?;
    let mut ingest = s.start("ingest")?;
    wait_caught_up(&s, &mut admin).await?;
    for _ in 0..5 {
        random_txn(&mut c, &mut rng, 140).await?;
    }
    wait_caught_up(&s, &mut admin).await?;
    let log = s.log("ingest");
    assert!(
        log.contains("resuming from the checkpoint's GTID"),
        "the agent resumed from the GTID:\n{log}"
    );

    let items = count_records(&s, &my.db, "items", 100)?;
    let (folded, resent) = fold(&items)?;
    compare("items", &folded, &items_state(&mut c).await?, &[])?;
    assert_eq!(resent, 0, "no change event published twice");
    let pairs = count_records(&s, &my.db, "pairs", 20)?;
    let (folded, resent) = fold(&pairs)?;
    compare("pairs", &folded, &pairs_state(&mut c).await?, &[])?;
    assert_eq!(resent, 0, "no change event published twice");

    ingest.stop()?;
    drop(c);
    my.cleanup().await;
    s.cleanup().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_9_during_snapshot_and_load_keeps_the_topic_equal_to_the_table() -> Result<()> {
    let mut s = Scratch::new("mycrash", None).await?;
    let my = MysqlScratch::new("crash").await?;
    let seed: u64 = std::env::var("ETL_TEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    println!("seed {seed} (set ETL_TEST_SEED to replay)");
    let mut rng = StdRng::seed_from_u64(seed);
    setup_tables(&my, &mut rng, 20_000, 200).await?;
    s.config = config(&s, &my.db, 200)?;

    // The DML load runs concurrently: ~3000 transactions.
    let pool = my.pool.clone();
    let writer = tokio::spawn(async move {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
        let mut c = pool.get_conn().await?;
        let mut events = 0u64;
        for i in 0..3000 {
            events += random_txn(&mut c, &mut rng, 20_500 + i / 2).await?;
            if i % 50 == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        anyhow::Ok(events)
    });

    let mut ingest = s.start("ingest")?;
    // The first kill lands during the 20k-row snapshot (200-row chunks), the next ones
    // during streaming.
    e2e_tests::wait_snapshot_under_way(&s).await?;
    let cp = s.dir.join("checkpoints/mysql.json");
    for round in 1..=5 {
        let ms = if round == 1 {
            0
        } else {
            rng.random_range(500..2000)
        };
        tokio::time::sleep(Duration::from_millis(ms)).await;
        ingest.kill9();
        println!("round {round}: killed ingest after {ms} ms");
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..300))).await;
        ingest = s.start("ingest")?;
    }
    let events = writer.await??;
    println!("{events} row changes written during the crashes");
    let mut admin =
        mysql_async::Conn::new(mysql_async::Opts::from_url(&e2e_tests::mysql_admin_url())?).await?;
    wait_caught_up(&s, &mut admin).await?;
    let mut c = my.conn().await?;

    let items = count_records(&s, &my.db, "items", 20_000)?;
    let (folded, resent) = fold(&items)?;
    compare("items", &folded, &items_state(&mut c).await?, &[])?;
    let pairs = count_records(&s, &my.db, "pairs", 200)?;
    let (folded_pairs, resent_pairs) = fold(&pairs)?;
    compare("pairs", &folded_pairs, &pairs_state(&mut c).await?, &[])?;
    println!(
        "items: {} records for {} rows ({resent} identical re-sends); pairs: {} records ({resent_pairs} re-sends)",
        items.len(),
        folded.len(),
        pairs.len()
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&cp)?)?;
    assert!(
        v["state"]["snapshot"]["attempts"].as_u64() >= Some(2),
        "the snapshot was resumed after the kill: {v}"
    );
    let log = s.log("ingest");
    assert!(
        log.contains("snapshot complete"),
        "the snapshot completed:\n{log}"
    );

    ingest.stop()?;
    drop(c);
    my.cleanup().await;
    s.cleanup().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_privileges_stop_the_source_with_a_clear_message() -> Result<()> {
    let mut s = Scratch::new("mypriv", None).await?;
    let my = MysqlScratch::new("priv").await?;
    let user = format!("np{}", rand::random::<u32>());
    let mut c = my.conn().await?;
    c.query_drop(format!("CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'"))
        .await?;
    c.query_drop(format!("GRANT SELECT ON `{}`.* TO '{user}'@'%'", my.db))
        .await?;
    s.config = config(&s, &my.db, 100)?;
    let admin = mysql_async::Opts::from_url(&e2e_tests::mysql_admin_url())?;
    s.extra_env.push((
        "ETL_INGEST__MYSQL__URL".into(),
        format!(
            "mysql://{user}:pw@{}:{}",
            admin.ip_or_hostname(),
            admin.tcp_port()
        ),
    ));
    let mut ingest = s.start("ingest")?;
    let waited = wait_for(
        Duration::from_secs(30),
        "the privilege error in the log",
        || async {
            Ok(s.log("ingest")
                .contains("lacks REPLICATION SLAVE")
                .then_some(()))
        },
    )
    .await;
    let log = s.log("ingest");
    ingest.kill9();
    c.query_drop(format!("DROP USER '{user}'@'%'")).await?;
    drop(c);
    my.cleanup().await;
    s.cleanup().await;
    waited.map_err(|e| anyhow::anyhow!("{e}\n{log}"))?;
    assert!(
        log.contains("GRANT REPLICATION SLAVE, BINLOG MONITOR, SELECT"),
        "the message says what to do:\n{log}"
    );
    assert!(
        log.contains("source stopped"),
        "a missing privilege is not retried:\n{log}"
    );
    Ok(())
}

/// MySQL does not report its read view's binlog coordinates; the agent then streams from the
/// position read just before the read view (forced here on MariaDB with
/// `snapshot_coordinates = "preceding"`): under a concurrent load the folded topics still
/// equal the tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_from_preceding_coordinates_under_load_still_folds_to_the_table() -> Result<()> {
    let mut s = Scratch::new("myprec", None).await?;
    let my = MysqlScratch::new("prec").await?;
    let seed: u64 = std::env::var("ETL_TEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    println!("seed {seed} (set ETL_TEST_SEED to replay)");
    let mut rng = StdRng::seed_from_u64(seed);
    setup_tables(&my, &mut rng, 5_000, 100).await?;
    s.config = config(&s, &my.db, 100)?;
    s.extra_env.push((
        "ETL_INGEST__MYSQL__SNAPSHOT_COORDINATES".into(),
        "preceding".into(),
    ));
    let pool = my.pool.clone();
    let writer = tokio::spawn(async move {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x9e37);
        let mut c = pool.get_conn().await?;
        for i in 0..800 {
            random_txn(&mut c, &mut rng, 5_200 + i / 4).await?;
            if i % 20 == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        anyhow::Ok(())
    });
    let mut ingest = s.start("ingest")?;
    writer.await??;
    let mut admin =
        mysql_async::Conn::new(mysql_async::Opts::from_url(&e2e_tests::mysql_admin_url())?).await?;
    wait_caught_up(&s, &mut admin).await?;
    let mut c = my.conn().await?;
    let items = count_records(&s, &my.db, "items", 5_000)?;
    let (folded, _) = fold(&items)?;
    compare("items", &folded, &items_state(&mut c).await?, &[])?;
    let pairs = count_records(&s, &my.db, "pairs", 100)?;
    let (folded, _) = fold(&pairs)?;
    compare("pairs", &folded, &pairs_state(&mut c).await?, &[])?;
    let log = s.log("ingest");
    assert!(
        log.contains("position read just before"),
        "the preceding coordinates were used:\n{log}"
    );
    ingest.stop()?;
    drop(c);
    my.cleanup().await;
    s.cleanup().await;
    Ok(())
}
