//! Faults of the services under the pipeline, on the real services with the release
//! binaries. The standard: after a crash or restart of any process or service at any point,
//! the warehouse reconciles exactly with the sources, gold included.
//!
//! 1. The warehouse's PostgreSQL crashes (`stop -m immediate`) and is restarted (`-m fast`)
//!    while CSV sales are appended; the broker is a nisshi of the test's own whose storage is
//!    in the same PostgreSQL (as `./dev stack` runs the local broker), so it rides out the
//!    restarts too.
//! 2. The MariaDB CDC instance (port 3307) is killed with SIGKILL and later restarted
//!    gracefully while transactions go on; the silver mirrors equal the MariaDB tables and
//!    bronze holds each committed row change once.
//! 3. Azurite is restarted twice while the agent is in the middle of a blob.
//! 4. `ingest` and `transform` are killed together with `kill -9` mid-load, three times.
//!
//! Restarting a shared service disturbs whatever else uses it, so the tests of this binary
//! run one at a time (`SERIAL`). Services restarted here are started again exactly as they
//! ran (same program, arguments, environment and log), and `./dev`'s pid files follow them.
//! A test fails when a service it needs is missing.

use anyhow::{bail, ensure, Context, Result};
use e2e_tests::{
    assert_sales_exact, azurite_container, azurite_url, blob_checkpoint, blob_half_read,
    blob_scratch, count, gzip, kafka_brokers, mysql_admin_url, mysql_config, pg_cluster,
    query_pairs, query_value, random_server_id, restart_postgres, sales_truth, tail, test_seed,
    topic_partitions, wait_blob_progress, wait_for, wait_sales_in_silver, web_events_jsonl,
    AppendPlan, Daemon, MysqlScratch, NisshiBroker, Scratch, Service,
};
use mysql_async::prelude::Queryable;
use rand::{rngs::StdRng, Rng, SeedableRng};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Held by each test for its whole run: one fault at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Fails, naming the brokers, when no Kafka broker answers.
fn need_kafka() -> Result<()> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .create()?;
    c.fetch_metadata(None, Duration::from_secs(10))
        .with_context(|| {
            format!(
                "no Kafka broker answers at {} (set ETL_TEST_KAFKA; ./dev stack)",
                kafka_brokers()
            )
        })?;
    Ok(())
}

/// Both services still run (a fault must not make them exit); the error has their logs.
fn ensure_running(s: &Scratch, services: &mut [&mut Service]) -> Result<()> {
    for svc in services.iter_mut() {
        ensure!(
            svc.is_running(),
            "{} exited during the fault; its log (tail):\n{}",
            svc.name,
            tail(&s.log(&svc.name), 40)
        );
    }
    Ok(())
}

async fn silver_sales_now(s: &Scratch) -> i64 {
    match s.db().await {
        Ok(db) => count(&db, "SELECT count(*) FROM silver.sales")
            .await
            .unwrap_or(-1),
        Err(_) => -1,
    }
}

const PG_ROWS: usize = 30_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_mid_load_loses_and_duplicates_nothing() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = pg_cluster()?;
    println!("PostgreSQL cluster {} {}", cluster.0, cluster.1);
    let mut s = Scratch::new("pgrestart", None).await?;
    let mut broker = NisshiBroker::start_for(&mut s).await?;
    let seed = test_seed();
    let writer = AppendPlan {
        rows: PG_ROWS,
        files: 4,
        appends: 30,
        prefix: "G",
        customers: 300,
        split_chance: 0.2,
        pause: Duration::from_millis(150),
    }
    .spawn(&s.watch_dir, seed ^ 0x9057);
    let mut ingest = s.start("ingest")?;
    let mut transform = s.start("transform")?;
    // A crash (no checkpoint, WAL recovery) once the pipeline is at work, then a clean
    // restart once it has resumed by itself (more rows in silver), both mid-load.
    let mut last = 999;
    for (round, mode, down_ms) in [(1, "immediate", 3000), (2, "fast", 2000)] {
        let at = last + 1;
        let before = wait_for(
            Duration::from_secs(60),
            &format!("{at} rows in silver (the pipeline at work)"),
            || async { Ok(Some(silver_sales_now(&s).await).filter(|n| *n >= at)) },
        )
        .await
        .with_context(|| {
            format!(
                "ingest log (tail):\n{}\ntransform log (tail):\n{}\nbroker log (tail):\n{}",
                tail(&s.log("ingest"), 20),
                tail(&s.log("transform"), 30),
                tail(&broker.log_text(), 20)
            )
        })?;
        restart_postgres(mode, Duration::from_millis(down_ms)).await?;
        last = silver_sales_now(&s).await;
        println!(
            "round {round}: PostgreSQL stopped (-m {mode}) with {before} rows in silver, down {down_ms} ms, back with {last} (writer done: {})",
            writer.is_finished()
        );
    }
    writer.join().expect("writer thread")?;
    let loaded = wait_sales_in_silver(&s, PG_ROWS as i64, Duration::from_secs(150)).await;
    let broker_alive = broker.is_running();
    if let Err(e) = loaded {
        bail!(
            "{e}\nbroker running: {broker_alive}; broker log (tail):\n{}",
            tail(&broker.log_text(), 40)
        );
    }
    ensure!(
        broker_alive,
        "nisshi exited after the PostgreSQL restarts; its log (tail):\n{}",
        tail(&broker.log_text(), 40)
    );
    ensure_running(&s, &mut [&mut ingest, &mut transform])?;
    let truth = sales_truth(&s.watch_dir)?;
    ensure!(
        truth.lines == PG_ROWS as i64,
        "the files hold {} lines",
        truth.lines
    );
    assert_sales_exact(&s, &truth).await?;
    // A broker that lost the topic would have auto-created it with its own default.
    assert_eq!(
        topic_partitions(&broker.brokers(), &s.topic("sales"))?,
        3,
        "the topic keeps its 3 partitions"
    );
    ingest.stop()?;
    transform.stop()?;
    broker.cleanup().await;
    s.cleanup().await;
    Ok(())
}

const ITEMS: usize = 5_000;
const TXNS: usize = 2_000;

async fn my_conn(db: &str) -> Result<mysql_async::Conn> {
    let opts =
        mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(&mysql_admin_url())?)
            .db_name(Some(db));
    Ok(mysql_async::Conn::new(opts).await?)
}

/// `items` (the captured table) and `txlog`: one row per committed transaction with the
/// number of item rows it changed, written in the same transaction, so that the count of
/// committed changes is known even for a commit whose answer the crash swallowed.
async fn cdc_setup(db: &str) -> Result<()> {
    let mut c = my_conn(db).await?;
    c.query_drop(
        "CREATE TABLE items (id BIGINT PRIMARY KEY, qty INT NOT NULL, price DECIMAL(12,2) NOT NULL, note VARCHAR(64) NULL) ENGINE=InnoDB;
         CREATE TABLE txlog (txn BIGINT PRIMARY KEY, changes INT NOT NULL) ENGINE=InnoDB",
    )
    .await?;
    let mut rng = StdRng::seed_from_u64(ITEMS as u64);
    let ids: Vec<usize> = (1..=ITEMS).collect();
    for chunk in ids.chunks(1000) {
        let v: Vec<String> = chunk
            .iter()
            .map(|i| {
                format!(
                    "({i}, {}, {}.{:02}, 'n{}')",
                    rng.random_range(1..100),
                    rng.random_range(1..1000),
                    rng.random_range(0..100),
                    i % 7
                )
            })
            .collect();
        c.query_drop(format!("INSERT INTO items VALUES {}", v.join(",")))
            .await?;
    }
    Ok(())
}

/// One transaction of 1-4 inserts, updates (each changes the row: qty + 1) and deletes.
async fn cdc_txn(
    c: &mut mysql_async::Conn,
    rng: &mut StdRng,
    txn: u64,
    next_id: &mut u64,
) -> Result<()> {
    let mut tx = c.start_transaction(mysql_async::TxOpts::default()).await?;
    let mut changes = 0u64;
    for _ in 0..rng.random_range(1..=4) {
        let price = format!(
            "{}.{:02}",
            rng.random_range(1..1000),
            rng.random_range(0..100)
        );
        let note = rng.random_bool(0.8).then(|| format!("t{txn}"));
        let id = rng.random_range(1..=*next_id);
        match rng.random_range(0..10) {
            0..=3 => {
                *next_id += 1;
                tx.exec_drop(
                    "INSERT INTO items VALUES (?, ?, ?, ?)",
                    (*next_id, rng.random_range(1..100i32), price, note),
                )
                .await?;
            }
            4..=6 => {
                tx.exec_drop(
                    "UPDATE items SET qty = qty + 1, price = ?, note = ? WHERE id = ?",
                    (price, note, id),
                )
                .await?;
            }
            7 => {
                tx.exec_drop(
                    "UPDATE items SET qty = qty + 1 WHERE id BETWEEN ? AND ?",
                    (id, id + 4),
                )
                .await?;
            }
            _ => {
                tx.exec_drop("DELETE FROM items WHERE id = ?", (id,))
                    .await?;
            }
        }
        changes += tx.affected_rows();
    }
    tx.exec_drop("INSERT INTO txlog VALUES (?, ?)", (txn, changes))
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Commits `TXNS` transactions, reconnecting after every failure (the server going away);
/// returns the number of failed attempts.
async fn cdc_writer(db: String, seed: u64, progress: Arc<AtomicUsize>) -> Result<usize> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut conn: Option<mysql_async::Conn> = None;
    let (mut committed, mut failed, mut txn) = (0usize, 0usize, 0u64);
    let mut next_id = ITEMS as u64;
    let started = std::time::Instant::now();
    while committed < TXNS {
        if started.elapsed() > Duration::from_secs(150) {
            bail!("MariaDB took {committed} of {TXNS} transactions in 150 s ({failed} failed)");
        }
        if conn.is_none() {
            match my_conn(&db).await {
                Ok(c) => conn = Some(c),
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("connected above");
        txn += 1;
        match cdc_txn(c, &mut rng, txn, &mut next_id).await {
            Ok(()) => committed += 1,
            Err(_) => {
                failed += 1;
                conn = None;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        progress.store(committed, Ordering::SeqCst);
        if committed.is_multiple_of(10) {
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    }
    Ok(failed)
}

/// Canonical rows of `items` in MariaDB and of its silver mirror.
async fn items_rows(db: &str, s: &Scratch) -> Result<(Vec<String>, Vec<String>)> {
    let mut c = my_conn(db).await?;
    let src: Vec<String> = c
        .query("SELECT CONCAT_WS('|', id, qty, CAST(price AS CHAR), IFNULL(note, '∅')) FROM items ORDER BY id")
        .await?;
    let pg = s.db().await?;
    let dst = pg
        .query(
            &format!("SELECT concat_ws('|', id::text, qty::text, price::text, coalesce(note, '∅')) FROM silver.\"{db}_items\" ORDER BY id"),
            &[],
        )
        .await
        .map(|rows| rows.iter().map(|r| r.get(0)).collect())
        .unwrap_or_default();
    Ok((src, dst))
}

fn differences(a: &[String], b: &[String]) -> String {
    let sa: BTreeSet<&String> = a.iter().collect();
    let sb: BTreeSet<&String> = b.iter().collect();
    let only_a: Vec<&&String> = sa.difference(&sb).take(5).collect();
    let only_b: Vec<&&String> = sb.difference(&sa).take(5).collect();
    format!(
        "{} rows in MariaDB, {} in silver; only in MariaDB: {only_a:?}; only in silver: {only_b:?}",
        a.len(),
        b.len()
    )
}

fn mysql_port() -> Result<u16> {
    Ok(mysql_async::Opts::from_url(&mysql_admin_url())?.tcp_port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_restarted_mid_stream_the_mirror_equals_the_table() -> Result<()> {
    let _serial = SERIAL.lock().await;
    need_kafka()?;
    let my = MysqlScratch::new("fault").await?;
    let mut mariadb = Daemon::listening_on(mysql_port()?)?;
    let mut s = Scratch::new("myrestart", None).await?;
    s.config = mysql_config(
        &s,
        "mysql.toml",
        3,
        random_server_id(),
        &format!("include = [\"{}.*\"]", my.db),
    )?;
    cdc_setup(&my.db).await?;
    let mut transform = s.start("transform")?;
    let mut ingest = s.start("ingest")?;
    let pg = s.db().await?;
    let mirror = format!("silver.\"{}_items\"", my.db);
    wait_for(
        Duration::from_secs(60),
        "the snapshot in silver",
        || async {
            Ok(
                (count(&pg, &format!("SELECT count(*) FROM {mirror}")).await? == ITEMS as i64)
                    .then_some(()),
            )
        },
    )
    .await
    .with_context(|| tail(&s.log("ingest"), 40))?;

    let seed = test_seed();
    let progress = Arc::new(AtomicUsize::new(0));
    let writer = tokio::spawn(cdc_writer(my.db.clone(), seed, progress.clone()));
    // A crash (InnoDB recovery) at a third of the load, a clean restart at two thirds.
    for (round, signal, at) in [
        (1, libc::SIGKILL, TXNS / 3),
        (2, libc::SIGTERM, 2 * TXNS / 3),
    ] {
        while progress.load(Ordering::SeqCst) < at && !writer.is_finished() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let old = mariadb.pid;
        mariadb = mariadb
            .restart(signal, Duration::from_secs(60), Duration::from_secs(2))
            .await?;
        println!(
            "round {round}: MariaDB pid {old} stopped with signal {signal} at transaction {}, back as pid {}",
            progress.load(Ordering::SeqCst),
            mariadb.pid
        );
    }
    let failed = writer.await??;
    println!("{TXNS} transactions committed, {failed} attempts failed during the restarts");

    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (src, dst) = items_rows(&my.db, &s).await?;
        if src == dst {
            println!("silver mirror equals items: {} rows", src.len());
            break;
        }
        if std::time::Instant::now() > deadline {
            bail!(
                "the silver mirror did not reach the MariaDB table in 120 s (seed {seed}): {}\ningest log (tail):\n{}\ntransform log (tail):\n{}",
                differences(&src, &dst),
                tail(&s.log("ingest"), 40),
                tail(&s.log("transform"), 30)
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // Bronze: the snapshot once, and each committed row change once.
    let mut c = my_conn(&my.db).await?;
    let (txns, changes): (i64, i64) = c
        .query_first("SELECT count(*), CAST(coalesce(sum(changes), 0) AS SIGNED) FROM txlog")
        .await?
        .context("reading txlog")?;
    let topic = format!("{}.mysql.{}_items", s.prefix, my.db);
    let pg = s.db().await?;
    let ops: Vec<(String, i64)> = query_pairs(
        &pg,
        &format!("SELECT op::text, count(*) FROM bronze.events WHERE topic = '{topic}' GROUP BY op ORDER BY op"),
    )
    .await?;
    println!("txlog: {txns} transactions, {changes} row changes; bronze by op: {ops:?}");
    let of = |op: &str| ops.iter().find(|o| o.0 == op).map_or(0, |o| o.1);
    // A commit whose answer the crash swallowed may have committed: txlog knows.
    assert!(
        (TXNS..=TXNS + failed).contains(&(txns as usize)),
        "txlog holds the {TXNS} acknowledged transactions and at most the {failed} failed attempts: {txns}"
    );
    assert_eq!(of("r"), ITEMS as i64, "bronze holds the snapshot once");
    assert_eq!(
        of("c") + of("u") + of("d"),
        changes,
        "bronze holds each committed row change once"
    );
    let mirrored = count(
        &pg,
        &format!("SELECT count(*) FROM silver.\"{}_txlog\"", my.db),
    )
    .await?;
    assert_eq!(mirrored, txns, "the txlog mirror equals txlog");
    ensure_running(&s, &mut [&mut ingest, &mut transform])?;
    ingest.stop()?;
    transform.stop()?;
    let _ = c.query_drop(format!("DROP DATABASE `{}`", my.db)).await;
    drop(c);
    drop(pg);
    my.cleanup().await;
    s.cleanup().await;
    Ok(())
}

const BLOB_EVENTS: usize = 40_000;

fn azurite_port() -> Result<u16> {
    let url = azurite_url();
    let hostport = url
        .split("://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_default();
    hostport
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .with_context(|| format!("no port in ETL_TEST_AZURITE={url}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azurite_restarted_mid_blob_loses_and_duplicates_nothing() -> Result<()> {
    let _serial = SERIAL.lock().await;
    need_kafka()?;
    let mut azurite = Daemon::listening_on(azurite_port()?)?;
    let (s, cname) = blob_scratch("azrestart", 64 * 1024, &[]).await?;
    let c = azurite_container(&cname).await?;
    let topic = format!("{}.blob.web_events", s.prefix);
    let mut ids = BTreeSet::new();
    let (plain, plain_ids) = web_events_jsonl("P", "2026-05-01", "web", BLOB_EVENTS);
    c.blob_client("2026/05/01/plain.jsonl")
        .put_block_blob(plain)
        .await?;
    let (zipped, zipped_ids) = web_events_jsonl("Z", "2026-05-02", "app", BLOB_EVENTS);
    c.blob_client("2026/05/02/zipped.jsonl.gz")
        .put_block_blob(gzip(&zipped))
        .await?;
    ids.extend(plain_ids);
    ids.extend(zipped_ids);
    let want = ids.len() as i64;

    let mut transform = s.start("transform")?;
    let mut ingest = s.start("ingest")?;
    let cp_path = blob_checkpoint(&s);
    let mut mid_blob = 0;
    for round in 1..=2 {
        // Once the agent has made progress on a blob (its checkpoint moved and shows a blob
        // half-read): the restart lands between two chunks.
        wait_blob_progress(&cp_path, Duration::from_secs(20)).await;
        let reading = blob_half_read(&cp_path);
        mid_blob += reading as usize;
        let old = azurite.pid;
        azurite = azurite
            .restart(
                libc::SIGTERM,
                Duration::from_secs(5),
                Duration::from_secs(2),
            )
            .await?;
        println!(
            "round {round}: Azurite pid {old} restarted (a blob half-read: {reading}), now pid {}",
            azurite.pid
        );
    }
    assert!(mid_blob >= 1, "a restart landed mid-blob ({mid_blob}/2)");
    // Azurite kept the blobs across its restarts.
    let names: Vec<String> = {
        use futures::StreamExt;
        let mut names = Vec::new();
        let mut pages = c.list_blobs().into_stream();
        while let Some(page) = pages.next().await {
            names.extend(page?.blobs.blobs().map(|b| b.name.clone()));
        }
        names
    };
    assert_eq!(
        names.len(),
        2,
        "Azurite lists both blobs after its restarts: {names:?}"
    );

    let db = s.db().await?;
    wait_for(
        Duration::from_secs(150),
        "bronze and silver to hold every event",
        || async {
            let b = count(
                &db,
                &format!("SELECT count(*) FROM bronze.events WHERE topic = '{topic}'"),
            )
            .await?;
            let sv = count(&db, "SELECT count(*) FROM silver.web_events").await?;
            Ok((b >= want && sv >= want).then_some(()))
        },
    )
    .await
    .with_context(|| format!("ingest log (tail):\n{}", tail(&s.log("ingest"), 40)))?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let bronze = db
        .query_one(
            "SELECT count(*), count(DISTINCT payload->'after'->>'event_id') FROM bronze.events WHERE topic = $1",
            &[&topic],
        )
        .await?;
    let (rows, distinct): (i64, i64) = (bronze.get(0), bronze.get(1));
    assert_eq!(
        (rows, distinct),
        (want, want),
        "bronze (rows, distinct event ids)"
    );
    let got: BTreeSet<String> = db
        .query("SELECT event_id FROM silver.web_events", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        got == ids,
        "silver web_events holds the blobs' {want} events, it holds {}",
        got.len()
    );
    let gold: i64 = query_value(
        &db,
        "SELECT coalesce(sum(events), 0)::bigint FROM gold.web_usage_daily",
    )
    .await?;
    assert_eq!(gold, want, "gold.web_usage_daily counts every event once");
    ensure_running(&s, &mut [&mut ingest, &mut transform])?;
    ingest.stop()?;
    transform.stop()?;
    c.delete().await.ok();
    s.cleanup().await;
    Ok(())
}

const KILL_ROWS: usize = 30_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_ingest_and_transform_together_keeps_gold_exact() -> Result<()> {
    let _serial = SERIAL.lock().await;
    need_kafka()?;
    let s = Scratch::new("killboth", None).await?;
    let seed = test_seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let writer = AppendPlan {
        rows: KILL_ROWS,
        files: 5,
        appends: 20,
        prefix: "J",
        customers: 400,
        split_chance: 0.3,
        pause: Duration::from_millis(200),
    }
    .spawn(&s.watch_dir, seed ^ 0xb07);
    let mut ingest = s.start("ingest")?;
    let mut transform = s.start("transform")?;
    let db = s.db().await?;
    for round in 1..=3 {
        // Mid-load, while the files are still being appended to: the first kill once silver
        // holds 1,000 rows (both at work), the next ones 1-5 s after the restart (in the
        // startup, the consumer group's rebalance or a batch of the backlog).
        if round == 1 {
            wait_for(Duration::from_secs(60), "1000 rows in silver", || async {
                let n = count(&db, "SELECT count(*) FROM silver.sales").await?;
                Ok((n >= 1000).then_some(()))
            })
            .await
            .with_context(|| {
                format!(
                    "ingest log (tail):\n{}\ntransform log (tail):\n{}",
                    tail(&s.log("ingest"), 20),
                    tail(&s.log("transform"), 30)
                )
            })?;
        } else {
            tokio::time::sleep(Duration::from_millis(rng.random_range(1000..5000))).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..400))).await;
        ingest.kill9();
        transform.kill9();
        println!(
            "round {round}: killed ingest and transform with {} rows in silver (writer done: {})",
            silver_sales_now(&s).await,
            writer.is_finished()
        );
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..500))).await;
        ingest = s.start("ingest")?;
        transform = s.start("transform")?;
    }
    writer.join().expect("writer thread")?;
    wait_sales_in_silver(&s, KILL_ROWS as i64, Duration::from_secs(150)).await?;
    ensure_running(&s, &mut [&mut ingest, &mut transform])?;
    let truth = sales_truth(&s.watch_dir)?;
    ensure!(
        truth.lines == KILL_ROWS as i64,
        "the files hold {} lines",
        truth.lines
    );
    assert_sales_exact(&s, &truth).await?;
    ingest.stop()?;
    transform.stop()?;
    s.cleanup().await;
    Ok(())
}
