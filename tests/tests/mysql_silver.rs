//! MySQL/MariaDB → Kafka → bronze → silver mirror, end to end against the real MariaDB
//! (binlog on), broker and PostgreSQL, with the real `ingest` and `transform` binaries:
//! three tables (50,000 rows, one with a composite key), random inserts, updates and deletes
//! while the schema changes mid-stream (ADD, RENAME and DROP COLUMN), `kill -9` of the agent
//! once during the snapshot and five times during the load (and of the transform twice).
//! At the end every silver mirror equals its MariaDB table row for row (compared by
//! checksum of canonical rows, with the differing rows printed otherwise), and the DDL is in
//! the warehouse's schema history.

use anyhow::{Context, Result};
use e2e_tests::{wait_for, MysqlScratch, Scratch};
use mysql_async::prelude::Queryable;
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn config(s: &Scratch, db: &str) -> Result<PathBuf> {
    e2e_tests::mysql_config(
        s,
        "mysql.toml",
        3,
        e2e_tests::random_server_id(),
        &format!("include = [\"{db}.*\"]\nsnapshot_chunk_rows = 1000"),
    )
}

const CUSTOMERS: usize = 5_000;
const ORDERS: usize = 20_000;
/// Two lines for each of the first 12,500 orders.
const LINES_PER_ORDER: usize = 2;
const LINES: usize = 25_000;

async fn setup(my: &MysqlScratch, rng: &mut StdRng) -> Result<()> {
    let mut c = my.conn().await?;
    c.query_drop(
        "CREATE TABLE customers (id INT NOT NULL PRIMARY KEY, name VARCHAR(100) NOT NULL, email VARCHAR(200) NULL,
           balance DECIMAL(12,2) NOT NULL, updated DATETIME(6) NOT NULL, tier ENUM('bronze','silver','gold') NULL) ENGINE=InnoDB",
    )
    .await?;
    c.query_drop(
        "CREATE TABLE orders (id BIGINT NOT NULL PRIMARY KEY, customer_id INT NOT NULL, total DECIMAL(12,2) NOT NULL,
           status VARCHAR(20) NOT NULL, placed_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3), note TEXT NULL) ENGINE=InnoDB",
    )
    .await?;
    c.query_drop(
        "CREATE TABLE order_lines (order_id BIGINT NOT NULL, line_no INT NOT NULL, qty INT UNSIGNED NOT NULL,
           price DECIMAL(10,2) NOT NULL, sku VARBINARY(16) NULL, legacy TINYINT NULL, PRIMARY KEY (order_id, line_no)) ENGINE=InnoDB",
    )
    .await?;
    let ids: Vec<usize> = (1..=CUSTOMERS).collect();
    for chunk in ids.chunks(1000) {
        let v: Vec<String> = chunk.iter().map(|&i| customer_values(rng, i)).collect();
        c.query_drop(format!("INSERT INTO customers VALUES {}", v.join(",")))
            .await?;
    }
    let ids: Vec<usize> = (1..=ORDERS).collect();
    for chunk in ids.chunks(1000) {
        let v: Vec<String> = chunk.iter().map(|&i| order_values(rng, i)).collect();
        c.query_drop(format!(
            "INSERT INTO orders (id, customer_id, total, status, placed_at, note) VALUES {}",
            v.join(",")
        ))
        .await?;
    }
    let mut lines = Vec::new();
    'outer: for o in 1..=ORDERS {
        for l in 1..=LINES_PER_ORDER {
            if lines.len() == LINES {
                break 'outer;
            }
            lines.push((o, l));
        }
    }
    for chunk in lines.chunks(1000) {
        let v: Vec<String> = chunk
            .iter()
            .map(|&(o, l)| line_values(rng, o, l, true))
            .collect();
        c.query_drop(format!("INSERT INTO order_lines VALUES {}", v.join(",")))
            .await?;
    }
    Ok(())
}

fn customer_values(rng: &mut StdRng, id: usize) -> String {
    let email = if rng.random_bool(0.2) {
        "NULL".to_string()
    } else {
        format!("'c{id}.{}@example.com'", rng.random_range(0..1000))
    };
    let tier = ["'bronze'", "'silver'", "'gold'", "NULL"][rng.random_range(0..4)];
    format!(
        "({id}, 'Client {id} \\'{}\\'', {email}, {}.{:02}, '2026-0{}-1{} 1{}:2{}:3{}.{:06}', {tier})",
        rng.random_range(0..100),
        rng.random_range(-1000..100_000),
        rng.random_range(0..100),
        rng.random_range(1..10),
        rng.random_range(0..10),
        rng.random_range(0..10),
        rng.random_range(0..10),
        rng.random_range(0..10),
        rng.random_range(0..1_000_000)
    )
}

fn order_values(rng: &mut StdRng, id: usize) -> String {
    let note = if rng.random_bool(0.5) {
        "NULL".to_string()
    } else {
        format!("'note {} é ✓'", rng.random_range(0..1000))
    };
    format!(
        "({id}, {}, {}.{:02}, '{}', '2026-0{}-0{} 0{}:1{}:2{}.{:03}', {note})",
        rng.random_range(1..=CUSTOMERS),
        rng.random_range(1..5000),
        rng.random_range(0..100),
        ["placed", "paid", "shipped"][rng.random_range(0..3)],
        rng.random_range(1..10),
        rng.random_range(1..10),
        rng.random_range(0..10),
        rng.random_range(0..10),
        rng.random_range(0..10),
        rng.random_range(0..1000)
    )
}

fn line_values(rng: &mut StdRng, order: usize, line: usize, with_legacy: bool) -> String {
    let sku = if rng.random_bool(0.1) {
        "NULL".to_string()
    } else {
        format!("X'{:016x}'", rng.random::<u64>())
    };
    let legacy = if with_legacy {
        format!(", {}", rng.random_range(0..2))
    } else {
        String::new()
    };
    format!(
        "({order}, {line}, {}, {}.{:02}, {sku}{legacy})",
        rng.random_range(1..4_000_000_000u64),
        rng.random_range(1..1000),
        rng.random_range(0..100)
    )
}

/// Schema stage of the writer: 0 initial, 1 after `ADD COLUMN orders.channel`, 2 after
/// `DROP COLUMN order_lines.legacy`, 3 after `RENAME COLUMN customers.email TO contact_email`.
async fn random_txn(
    c: &mut mysql_async::Conn,
    rng: &mut StdRng,
    stage: u8,
    next_order: &mut usize,
) -> Result<()> {
    let mut tx = c.start_transaction(mysql_async::TxOpts::default()).await?;
    for _ in 0..rng.random_range(1..5) {
        let email_col = if stage >= 3 { "contact_email" } else { "email" };
        match rng.random_range(0..10) {
            0 => {
                let id = rng.random_range(1..=CUSTOMERS + 500);
                let v = customer_values(rng, id);
                tx.query_drop(format!("REPLACE INTO customers VALUES {v}"))
                    .await?;
            }
            1 => {
                let id = rng.random_range(1..=CUSTOMERS);
                tx.query_drop(format!(
                    "UPDATE customers SET {email_col} = {}, balance = balance + 1.25, updated = NOW(6) WHERE id = {id}",
                    if rng.random_bool(0.3) { "NULL".to_string() } else { format!("'u{}@example.org'", rng.random_range(0..99999)) }
                ))
                .await?;
            }
            2 => {
                let id = rng.random_range(1..=CUSTOMERS + 500);
                tx.query_drop(format!("DELETE FROM customers WHERE id = {id}"))
                    .await?;
            }
            3 | 4 => {
                *next_order += 1;
                let id = *next_order;
                let v = order_values(rng, id);
                if stage >= 1 {
                    let v = v.trim_end_matches(')');
                    tx.query_drop(format!(
                        "INSERT INTO orders (id, customer_id, total, status, placed_at, note, channel) VALUES {v}, '{}')",
                        ["web", "app", "store"][rng.random_range(0..3)]
                    ))
                    .await?;
                } else {
                    tx.query_drop(format!(
                        "INSERT INTO orders (id, customer_id, total, status, placed_at, note) VALUES {v}"
                    ))
                    .await?;
                }
                let lines: Vec<String> = (1..=rng.random_range(1..4))
                    .map(|l| line_values(rng, id, l, stage < 2))
                    .collect();
                tx.query_drop(format!(
                    "INSERT INTO order_lines VALUES {}",
                    lines.join(",")
                ))
                .await?;
            }
            5 | 6 => {
                let id = rng.random_range(1..=*next_order);
                let channel = if stage >= 1 && rng.random_bool(0.5) {
                    ", channel = 'app'"
                } else {
                    ""
                };
                tx.query_drop(format!(
                    "UPDATE orders SET status = '{}', total = total + 0.01{channel} WHERE id = {id}",
                    ["paid", "shipped", "returned"][rng.random_range(0..3)]
                ))
                .await?;
            }
            7 => {
                let id = rng.random_range(1..=*next_order);
                tx.query_drop(format!("DELETE FROM order_lines WHERE order_id = {id}"))
                    .await?;
                tx.query_drop(format!("DELETE FROM orders WHERE id = {id}"))
                    .await?;
            }
            8 => {
                let id = rng.random_range(1..=*next_order);
                tx.query_drop(format!(
                    "UPDATE order_lines SET qty = qty + 1, price = price * 2 WHERE order_id = {id}"
                ))
                .await?;
            }
            _ => {
                // A primary-key change: a delete of the old key and an insert of the new one.
                let id = rng.random_range(1..=*next_order);
                tx.query_drop(format!(
                    "UPDATE order_lines SET line_no = line_no + 100 WHERE order_id = {id} AND line_no < 100"
                ))
                .await?;
            }
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Canonical rows of a table, as `(mariadb expression, postgres expression)` per column.
fn columns(table: &str) -> Vec<(&'static str, &'static str)> {
    match table {
        "customers" => vec![
            ("CAST(id AS CHAR)", "id::text"),
            ("name", "name"),
            ("IFNULL(contact_email, '∅')", "coalesce(contact_email, '∅')"),
            ("CAST(balance AS CHAR)", "balance::text"),
            (
                "DATE_FORMAT(updated, '%Y-%m-%d %H:%i:%s.%f')",
                "to_char(updated, 'YYYY-MM-DD HH24:MI:SS.US')",
            ),
            ("IFNULL(CAST(tier AS CHAR), '∅')", "coalesce(tier, '∅')"),
        ],
        "orders" => vec![
            ("CAST(id AS CHAR)", "id::text"),
            ("CAST(customer_id AS CHAR)", "customer_id::text"),
            ("CAST(total AS CHAR)", "total::text"),
            ("status", "status"),
            (
                "DATE_FORMAT(placed_at, '%Y-%m-%d %H:%i:%s.%f')",
                "to_char(placed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')",
            ),
            ("IFNULL(note, '∅')", "coalesce(note, '∅')"),
            ("IFNULL(channel, '∅')", "coalesce(channel, '∅')"),
        ],
        _ => vec![
            ("CAST(order_id AS CHAR)", "order_id::text"),
            ("CAST(line_no AS CHAR)", "line_no::text"),
            ("CAST(qty AS CHAR)", "qty::text"),
            ("CAST(price AS CHAR)", "price::text"),
            (
                "IFNULL(LOWER(HEX(sku)), '∅')",
                "coalesce(encode(sku, 'hex'), '∅')",
            ),
        ],
    }
}

fn order_by(table: &str) -> &'static str {
    match table {
        "order_lines" => "order_id, line_no",
        _ => "id",
    }
}

async fn mysql_rows(c: &mut mysql_async::Conn, table: &str) -> Result<Vec<String>> {
    c.query_drop("SET time_zone = '+00:00'").await?;
    let exprs: Vec<&str> = columns(table).iter().map(|c| c.0).collect();
    let rows: Vec<String> = c
        .query(format!(
            "SELECT CONCAT_WS('|', {}) FROM {table} ORDER BY {}",
            exprs.join(", "),
            order_by(table)
        ))
        .await?;
    Ok(rows)
}

async fn silver_rows(
    db: &tokio_postgres::Client,
    entity: &str,
    table: &str,
) -> Result<Vec<String>> {
    let exprs: Vec<&str> = columns(table).iter().map(|c| c.1).collect();
    let rows = db
        .query(
            &format!(
                "SELECT concat_ws('|', {}) FROM silver.\"{entity}\" ORDER BY {}",
                exprs.join(", "),
                order_by(table)
            ),
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

fn checksum(rows: &[String]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for r in rows {
        for b in r.bytes().chain(std::iter::once(b'\n')) {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    h
}

fn first_differences(a: &[String], b: &[String]) -> String {
    let sa: std::collections::BTreeSet<&String> = a.iter().collect();
    let sb: std::collections::BTreeSet<&String> = b.iter().collect();
    let only_a: Vec<&&String> = sa.difference(&sb).take(5).collect();
    let only_b: Vec<&&String> = sb.difference(&sa).take(5).collect();
    format!("only in MariaDB: {only_a:?}\nonly in silver: {only_b:?}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silver_mirrors_equal_the_tables_through_schema_changes_and_kill_9() -> Result<()> {
    let mut s = Scratch::new("mysilver", None).await?;
    let my = MysqlScratch::new("silver").await?;
    let seed: u64 = std::env::var("ETL_TEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    println!("seed {seed} (set ETL_TEST_SEED to replay)");
    let mut rng = StdRng::seed_from_u64(seed);
    setup(&my, &mut rng).await?;
    s.config = config(&s, &my.db)?;

    let stage = Arc::new(AtomicU8::new(0));
    let progress = Arc::new(AtomicUsize::new(0));
    const TOTAL: usize = 2400;
    let mut transform = s.start("transform")?;
    let mut ingest = s.start("ingest")?;
    // The first kill lands during the snapshot.
    e2e_tests::wait_snapshot_under_way(&s).await?;
    ingest.kill9();
    println!("killed ingest during the snapshot");
    ingest = s.start("ingest")?;

    // The DML load, with the schema changes at 25%, 50% and 75%.
    let pool = my.pool.clone();
    let st = stage.clone();
    let done = progress.clone();
    let writer = tokio::spawn(async move {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
        let mut c = pool.get_conn().await?;
        let mut next_order = ORDERS;
        let total = TOTAL;
        for i in 0..total {
            done.store(i, Ordering::SeqCst);
            if i == total / 4 {
                c.query_drop("ALTER TABLE orders ADD COLUMN channel VARCHAR(10) NULL")
                    .await?;
                st.store(1, Ordering::SeqCst);
            } else if i == total / 2 {
                c.query_drop("ALTER TABLE order_lines DROP COLUMN legacy")
                    .await?;
                st.store(2, Ordering::SeqCst);
            } else if i == 3 * total / 4 {
                c.query_drop("ALTER TABLE customers RENAME COLUMN email TO contact_email")
                    .await?;
                st.store(3, Ordering::SeqCst);
            }
            random_txn(&mut c, &mut rng, st.load(Ordering::SeqCst), &mut next_order).await?;
            if i % 20 == 0 {
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        }
        anyhow::Ok(())
    });
    // Kill rounds spread over the load: one in each sixth of it (so after every schema
    // change too), at a random point.
    for round in 1..=5 {
        let at = round * TOTAL / 6 + rng.random_range(0..TOTAL / 12);
        while progress.load(Ordering::SeqCst) < at && !writer.is_finished() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let ms = rng.random_range(0..200);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        ingest.kill9();
        if round % 2 == 0 {
            transform.kill9();
        }
        println!(
            "round {round}: killed ingest{} at transaction {} (schema stage {})",
            if round % 2 == 0 { " and transform" } else { "" },
            progress.load(Ordering::SeqCst),
            stage.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..300))).await;
        ingest = s.start("ingest")?;
        if round % 2 == 0 {
            transform = s.start("transform")?;
        }
    }
    writer.await??;
    println!("load done");

    let mut c = my.conn().await?;
    let db = s.db().await?;
    let tables = ["customers", "orders", "order_lines"];
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let report = loop {
        let mut report = Vec::new();
        let mut diff = None;
        for t in tables {
            let entity = format!("{}_{t}", my.db);
            let src = mysql_rows(&mut c, t).await?;
            let dst = silver_rows(&db, &entity, t).await.unwrap_or_default();
            let (a, b) = (checksum(&src), checksum(&dst));
            if a != b {
                diff = Some(format!(
                    "{t}: {} rows in MariaDB (checksum {a:016x}), {} in silver ({b:016x})\n{}",
                    src.len(),
                    dst.len(),
                    first_differences(&src, &dst)
                ));
            }
            report.push(format!("{t}: {} rows, checksum {a:016x}", src.len()));
        }
        match diff {
            None => break report,
            Some(d) if std::time::Instant::now() > deadline => anyhow::bail!(
                "the silver mirrors did not reach the MariaDB tables in 180 s (seed {seed}):\n{d}\ntransform log tail:\n{}",
                s.log("transform")
                    .lines()
                    .rev()
                    .take(30)
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
            Some(_) => tokio::time::sleep(Duration::from_millis(1000)).await,
        }
    };
    for r in &report {
        println!("equal: {r}");
    }
    let total_rows: usize = report
        .iter()
        .filter_map(|r| {
            r.split(": ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .sum();
    assert!(
        total_rows >= 49_000,
        "about 50k rows compared: {total_rows}"
    );

    // The schema followed the source, and the DDL is in the history.
    let cols: Vec<String> = db
        .query(
            "SELECT column_name::text FROM information_schema.columns WHERE table_schema = 'silver' AND table_name = $1 ORDER BY ordinal_position",
            &[&format!("{}_customers", my.db)],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        cols.contains(&"contact_email".to_string()) && !cols.contains(&"email".to_string()),
        "renamed in silver: {cols:?}"
    );
    let lines_cols: i64 = db
        .query_one(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'silver' AND table_name = $1 AND column_name = 'legacy'",
            &[&format!("{}_order_lines", my.db)],
        )
        .await?
        .get(0);
    assert_eq!(lines_cols, 0, "dropped in silver");
    let history: Vec<(String, String)> = db
        .query(
            "SELECT ddl, renames::text FROM pipeline.schema_history WHERE db = $1 ORDER BY binlog_file, binlog_pos",
            &[&my.db],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let ddls: Vec<&str> = history.iter().map(|h| h.0.as_str()).collect();
    for needle in [
        "ADD COLUMN channel",
        "DROP COLUMN legacy",
        "RENAME COLUMN email TO contact_email",
    ] {
        assert!(
            ddls.iter().filter(|d| d.contains(needle)).count() == 1,
            "{needle} recorded once in pipeline.schema_history: {ddls:?}"
        );
    }
    assert!(
        history.iter().any(|h| h.1.contains("contact_email")),
        "the rename is recorded as such: {history:?}"
    );
    let quarantined: i64 = db
        .query_one("SELECT count(*) FROM silver.quarantine", &[])
        .await?
        .get(0);
    assert_eq!(quarantined, 0, "no mirror row quarantined");

    ingest.stop()?;
    transform.stop()?;
    drop(c);
    drop(db);
    my.cleanup().await;
    s.cleanup().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_and_type_change_reach_the_mirror() -> Result<()> {
    let mut s = Scratch::new("mytrunc", None).await?;
    let my = MysqlScratch::new("trunc").await?;
    let mut c = my.conn().await?;
    c.query_drop(
        "CREATE TABLE carts (id INT PRIMARY KEY, qty SMALLINT NOT NULL, label VARCHAR(20))",
    )
    .await?;
    c.query_drop("INSERT INTO carts VALUES (1, 1, 'a'), (2, 2, 'b'), (3, 3, 'c')")
        .await?;
    s.config = config(&s, &my.db)?;
    let mut transform = s.start("transform")?;
    let mut ingest = s.start("ingest")?;
    let db = s.db().await?;
    let entity = format!("{}_carts", my.db);
    wait_for(
        Duration::from_secs(60),
        "the snapshot in silver",
        || async {
            let n = db
                .query_one(&format!("SELECT count(*) FROM silver.\"{entity}\""), &[])
                .await
                .map(|r| r.get::<_, i64>(0))
                .unwrap_or(0);
            Ok((n == 3).then_some(()))
        },
    )
    .await
    .with_context(|| s.log("transform"))?;
    c.query_drop("INSERT INTO carts VALUES (4, 4, 'd')").await?;
    c.query_drop("TRUNCATE TABLE carts").await?;
    c.query_drop("INSERT INTO carts VALUES (5, 5, 'e')").await?;
    c.query_drop("ALTER TABLE carts MODIFY qty DECIMAL(8,3) NOT NULL")
        .await?;
    c.query_drop("INSERT INTO carts VALUES (6, 6.125, 'f')")
        .await?;
    wait_for(
        Duration::from_secs(60),
        "the truncate and the new type in silver",
        || async {
            let rows = db
                .query(
                    &format!("SELECT id, qty::text FROM silver.\"{entity}\" ORDER BY id"),
                    &[],
                )
                .await;
            Ok(rows.ok().and_then(|rows| {
                let got: Vec<(i32, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
                (got == vec![(5, "5.000".to_string()), (6, "6.125".to_string())]).then_some(())
            }))
        },
    )
    .await
    .with_context(|| s.log("transform"))?;
    let ty: String = db
        .query_one(
            "SELECT data_type::text FROM information_schema.columns WHERE table_schema = 'silver' AND table_name = $1 AND column_name = 'qty'",
            &[&entity],
        )
        .await?
        .get(0);
    assert_eq!(ty, "numeric");
    ingest.stop()?;
    transform.stop()?;
    drop(c);
    drop(db);
    my.cleanup().await;
    s.cleanup().await;
    Ok(())
}
