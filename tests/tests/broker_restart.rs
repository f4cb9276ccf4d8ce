//! The durable local broker (nisshi with PostgreSQL storage, as `./dev stack` runs it):
//! `kill -9` of the broker twice during a 20k-row load, then a restart on the same
//! storage. Rows appended before, during and after reach bronze, silver and gold exactly
//! once with no manual step, the topic keeps its partition count, and `transform verify`
//! finds no drift.
//!
//! The broker is this test's own (its own port and storage database), so the other tests'
//! broker is never touched. `ETL_TEST_NISSHI` names the binary (set by `./dev test`).

use anyhow::{bail, Context, Result};
use e2e_tests::{
    append_sales, bin_dir, connect, count, pg_admin_url, test_seed, wait_for, AppendPlan, Scratch,
    SALES_HEADER,
};
use rand::{rngs::StdRng, Rng, SeedableRng};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const ROWS: usize = 20_000;
const FILES: usize = 4;
const APPENDS_PER_FILE: usize = 25;

/// A nisshi broker on its own port and PostgreSQL database.
struct Broker {
    bin: PathBuf,
    port: u16,
    storage: String,
    log: PathBuf,
    child: Option<Child>,
}

impl Broker {
    fn start(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new(&self.bin)
            .env_remove("LISTENER_URL")
            .env_remove("ADVERTISED_LISTENER_URL")
            .env_remove("STORAGE_ENGINE")
            .env_remove("CLUSTER_ID")
            .args(["broker", "--cluster-id", "etl-test"])
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--group-initial-rebalance-delay", "0s"])
            .args(["--storage-engine", &self.storage])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "nisshi did not listen on {} within 10 s:\n{}",
            self.port,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        )
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn nisshi_bin() -> Result<PathBuf> {
    let bin = std::env::var("ETL_TEST_NISSHI")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/etl-platform/tools/bin/nisshi")
        });
    if !bin.exists() {
        bail!(
            "{} is missing: `./dev stack` installs it (or set ETL_TEST_NISSHI)",
            bin.display()
        );
    }
    Ok(bin)
}

fn partitions(brokers: &str, topic: &str) -> Result<usize> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    Ok(md.topics().first().map_or(0, |t| t.partitions().len()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_9_of_the_broker_loses_and_duplicates_nothing() -> Result<()> {
    let bin = nisshi_bin()?;
    let mut s = Scratch::new("broker", None).await?;
    let storage_db = format!("nb_{}", s.id);
    let admin = connect(&pg_admin_url()).await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {storage_db}"))
        .await
        .context("creating the broker's storage database")?;
    let mut cfg: tokio_postgres::Config = pg_admin_url().parse()?;
    cfg.dbname(&storage_db);
    let host = match cfg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".into(),
    };
    let storage = format!(
        "postgres://{}@{host}:{}/{storage_db}?sslmode=disable",
        cfg.get_user().unwrap_or("postgres"),
        cfg.get_ports().first().copied().unwrap_or(5432)
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let brokers = format!("127.0.0.1:{port}");
    let mut broker = Broker {
        bin,
        port,
        storage,
        log: s.dir.join("nisshi.log"),
        child: None,
    };
    broker.start()?;
    s.extra_env
        .push(("ETL_KAFKA__BROKERS".into(), brokers.clone()));

    let seed = test_seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = s.watch_dir.clone();
    let writer = std::thread::spawn(move || {
        let plan = AppendPlan {
            rows: ROWS,
            files: FILES,
            appends: APPENDS_PER_FILE,
            prefix: "B",
            customers: 300,
            split_chance: 0.0,
            pause: Duration::from_millis(100),
        };
        append_sales(&dir, seed ^ 0xb40e, &plan)
    });

    let mut ingest = s.start("ingest")?;
    let mut transform = s.start("transform")?;
    let db = s.db().await?;
    let topic = s.topic("sales");
    for round in 1..=2 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(2000..4000))).await;
        let before = count(&db, "SELECT count(*) FROM silver.sales").await?;
        broker.kill9();
        println!("round {round}: broker killed with {before} rows in silver");
        tokio::time::sleep(Duration::from_millis(rng.random_range(500..2000))).await;
        broker.start()?;
    }
    let total_cents = writer.join().expect("writer thread")?;

    wait_for(Duration::from_secs(240), "all rows in silver", || async {
        Ok((count(&db, "SELECT count(*) FROM silver.sales").await? >= ROWS as i64).then_some(()))
    })
    .await
    .map_err(|e| {
        anyhow::anyhow!(
            "{e}\ningest log:\n{}\ntransform log:\n{}\nbroker log:\n{}",
            s.log("ingest"),
            s.log("transform"),
            std::fs::read_to_string(&broker.log).unwrap_or_default()
        )
    })?;
    // Let anything still in flight land, so that a duplicate would show.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let bronze = count(
        &db,
        &format!("SELECT count(*) FROM bronze.events WHERE topic = '{topic}'"),
    )
    .await?;
    let silver = count(&db, "SELECT count(*) FROM silver.sales").await?;
    let orders = count(
        &db,
        "SELECT coalesce(sum(orders), 0)::bigint FROM gold.sales_by_period WHERE grain = 'all'",
    )
    .await?;
    let revenue: String = db
        .query_one("SELECT coalesce(sum(revenue), 0)::numeric(16,2)::text FROM gold.sales_by_period WHERE grain = 'all'", &[])
        .await?
        .get(0);
    let dead = count(&db, "SELECT count(*) FROM bronze.dead_letters").await?;
    assert_eq!(bronze, ROWS as i64, "bronze holds each source row once");
    assert_eq!(silver, ROWS as i64, "silver holds every row once");
    assert_eq!(orders, ROWS as i64, "gold counts every order once");
    assert_eq!(
        revenue,
        format!("{}.{:02}", total_cents / 100, total_cents % 100),
        "gold revenue"
    );
    assert_eq!(dead, 0, "nothing was dead-lettered");
    // config/etl.toml creates topics with 3 partitions; a broker that lost the topic would
    // auto-create it again with its own default.
    assert_eq!(
        partitions(&brokers, &topic)?,
        3,
        "the topic keeps its partitions across broker restarts"
    );

    let verify = Command::new(bin_dir().join("transform"))
        .arg("--config")
        .arg(&s.config)
        .arg("verify")
        .env("ETL_WAREHOUSE__URL", &s.db_url)
        .output()?;
    assert!(
        verify.status.success(),
        "transform verify finds no drift:\n{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );

    ingest.stop()?;
    transform.stop()?;
    broker.kill9();
    s.cleanup().await;
    let _ = admin
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {storage_db} WITH (FORCE)"
        ))
        .await;
    Ok(())
}

/// A broker that lost its state (the warehouse's offsets point past the end of the new
/// log) is detected: the transform says so, forgets the stale offsets and reads the new
/// log from its beginning instead of waiting forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_past_the_end_of_a_new_log_do_not_stall_the_transform() -> Result<()> {
    let s = Scratch::new("lostbroker", None).await?;
    let db = s.db().await?;
    // `transform migrate` creates pipeline.consumer_offsets.
    let migrate = Command::new(bin_dir().join("transform"))
        .arg("--config")
        .arg(&s.config)
        .arg("migrate")
        .env("ETL_WAREHOUSE__URL", &s.db_url)
        .output()?;
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    let topic = s.topic("sales");
    let group = format!("g{}", s.id);
    for p in 0..3i32 {
        db.execute(
            "INSERT INTO pipeline.consumer_offsets (group_id, topic, partition, next_offset) VALUES ($1, $2, $3, 1000000)",
            &[&group, &topic, &p],
        )
        .await?;
    }
    let mut csv = String::from_utf8_lossy(SALES_HEADER).into_owned();
    for i in 0..300 {
        csv.push_str(&format!(
            "L{i:04},2024-03-{:02},C1,P1,E1,1,2.50,2.50\n",
            1 + i % 28
        ));
    }
    s.drop_file("sales_lost.csv", csv.as_bytes())?;
    let mut ingest = s.start("ingest")?;
    let mut transform = s.start("transform")?;
    wait_for(Duration::from_secs(90), "300 rows in silver", || async {
        Ok((count(&db, "SELECT count(*) FROM silver.sales").await? >= 300).then_some(()))
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\ntransform log:\n{}", s.log("transform")))?;
    let stale = count(
        &db,
        &format!("SELECT count(*) FROM pipeline.consumer_offsets WHERE topic = '{topic}' AND next_offset >= 1000000"),
    )
    .await?;
    assert_eq!(stale, 0, "the stale offsets were forgotten");
    let revenue: String = db
        .query_one(
            "SELECT revenue::numeric(16,2)::text FROM gold.sales_by_period WHERE grain = 'all'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(revenue, "750.00", "gold holds the 300 lines once");
    ingest.stop()?;
    transform.stop()?;
    s.cleanup().await;
    Ok(())
}
