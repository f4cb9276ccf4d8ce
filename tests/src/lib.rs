//! Harness for the end-to-end tests: scratch databases, temp folders, real service processes
//! (started from the release binaries, killed with SIGKILL on demand) and a Kafka reader.
//!
//! Environment (set by `./dev test`): `ETL_TEST_PG_URL` (an admin URL; each test creates its
//! own database), `ETL_TEST_KAFKA` (bootstrap servers), `ETL_BIN_DIR` (the binaries).

use anyhow::{bail, Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn pg_admin_url() -> String {
    std::env::var("ETL_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn kafka_brokers() -> String {
    std::env::var("ETL_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

pub fn bin_dir() -> PathBuf {
    if let Ok(d) = std::env::var("ETL_BIN_DIR") {
        return d.into();
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/etl-platform/target")
        });
    target.join("release")
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// An isolated pipeline: its own database, topic prefix, consumer group, folders and ports.
pub struct Scratch {
    pub id: String,
    pub dir: PathBuf,
    pub watch_dir: PathBuf,
    pub db: String,
    pub db_url: String,
    pub prefix: String,
    pub config: PathBuf,
    pub ingest_port: u16,
    pub transform_port: u16,
    pub extra_env: Vec<(String, String)>,
}

impl Scratch {
    /// Creates the database and folders. `config` is the configuration file the services
    /// read (the repository's by default); the isolation comes from environment overrides.
    pub async fn new(name: &str, config: Option<PathBuf>) -> Result<Scratch> {
        let id = format!("{name}{}{:04x}", std::process::id(), rand::random::<u16>());
        let dir = std::env::temp_dir().join(format!("etl-test-{id}"));
        let watch_dir = dir.join("in");
        fs::create_dir_all(&watch_dir)?;
        let db = format!("t_{id}");
        let admin = connect(&pg_admin_url()).await?;
        admin
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .await
            .context("creating the scratch database")?;
        let mut cfg: tokio_postgres::Config = pg_admin_url().parse()?;
        cfg.dbname(&db);
        let db_url = format!(
            "postgres://{}@{}:{}/{}",
            cfg.get_user().unwrap_or("postgres"),
            match cfg.get_hosts().first() {
                Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
                _ => "127.0.0.1".into(),
            },
            cfg.get_ports().first().copied().unwrap_or(5432),
            db
        );
        Ok(Scratch {
            prefix: format!("t{id}"),
            config: config.unwrap_or_else(|| repo_root().join("config/etl.toml")),
            id,
            dir,
            watch_dir,
            db,
            db_url,
            ingest_port: free_port(),
            transform_port: free_port(),
            extra_env: Vec::new(),
        })
    }

    fn env(&self) -> Vec<(String, String)> {
        let mut v = vec![
            ("ETL_WAREHOUSE__URL".to_string(), self.db_url.clone()),
            ("ETL_KAFKA__BROKERS".into(), kafka_brokers()),
            ("ETL_KAFKA__TOPIC_PREFIX".into(), self.prefix.clone()),
            (
                "ETL_INGEST__CSV__WATCH_DIR".into(),
                self.watch_dir.display().to_string(),
            ),
            (
                "ETL_INGEST__CHECKPOINT_DIR".into(),
                self.dir.join("checkpoints").display().to_string(),
            ),
            (
                "ETL_INGEST__METRICS_ADDR".into(),
                format!("127.0.0.1:{}", self.ingest_port),
            ),
            (
                "ETL_TRANSFORM__METRICS_ADDR".into(),
                format!("127.0.0.1:{}", self.transform_port),
            ),
            ("ETL_TRANSFORM__GROUP_ID".into(), format!("g{}", self.id)),
            ("NO_COLOR".into(), "1".into()),
            // The Azure Blob source reads the demo container; a test of it enables it.
            ("ETL_INGEST__BLOB__ENABLED".into(), "false".into()),
        ];
        v.extend(self.extra_env.iter().cloned());
        v
    }

    /// Starts `ingest run` or `transform run`; output goes to `<dir>/<name>.log`.
    pub fn start(&self, service: &str) -> Result<Service> {
        let bin = bin_dir().join(service);
        if !bin.exists() {
            bail!("{} is missing: build with `cargo build --release --workspace` (or set ETL_BIN_DIR)", bin.display());
        }
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{service}.log")))?;
        let child = Command::new(&bin)
            .arg("--config")
            .arg(&self.config)
            .arg("run")
            .envs(self.env())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Service {
            child: Some(child),
            name: service.to_string(),
        })
    }

    pub async fn db(&self) -> Result<tokio_postgres::Client> {
        connect(&self.db_url).await
    }

    pub fn topic(&self, entity: &str) -> String {
        format!("{}.csv.{entity}", self.prefix)
    }

    pub fn log(&self, service: &str) -> String {
        fs::read_to_string(self.dir.join(format!("{service}.log"))).unwrap_or_default()
    }

    /// Writes a file into the watched folder atomically (temporary name, then rename).
    pub fn drop_file(&self, name: &str, content: &[u8]) -> Result<PathBuf> {
        let tmp = self.dir.join(format!(".{name}.tmp"));
        fs::write(&tmp, content)?;
        let path = self.watch_dir.join(name);
        fs::rename(&tmp, &path)?;
        Ok(path)
    }

    pub async fn cleanup(self) {
        if let Ok(admin) = connect(&pg_admin_url()).await {
            let _ = admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db))
                .await;
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A running service process; killed when dropped.
pub struct Service {
    child: Option<Child>,
    pub name: String,
}

impl Service {
    /// SIGKILL: no chance to flush or checkpoint.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let status = c.wait()?;
            if !status.success() {
                bail!("{} exited with {status} after SIGTERM", self.name);
            }
        }
        Ok(())
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    tokio::spawn(conn);
    Ok(client)
}

/// Polls `f` until it returns `Some`, or fails after `timeout` with `what`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await? {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Count of rows of a query returning one bigint, 0 when the relation does not exist yet.
pub async fn count(db: &tokio_postgres::Client, sql: &str) -> Result<i64> {
    match db.query_one(sql, &[]).await {
        Ok(r) => Ok(r.get(0)),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// Records of a topic from the beginning: (key, value). Reads until at least `expected`
/// records arrived and then one more quiet second (to catch extra copies), or 60 s.
/// A Kafka record: key and value.
pub type Record = (Option<Vec<u8>>, Vec<u8>);

pub fn read_topic(topic: &str, expected: usize) -> Result<Vec<Record>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("group.id", format!("reader-{}", rand::random::<u32>()))
        .set("enable.auto.commit", "false")
        .create()?;
    // The topic may not exist yet (the agent creates it at start): wait for its partitions.
    let mut tpl = TopicPartitionList::new();
    let start = Instant::now();
    while tpl.count() == 0 {
        let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        for t in md.topics().iter().filter(|t| t.error().is_none()) {
            for p in t.partitions() {
                tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
            }
        }
        if tpl.count() == 0 {
            if start.elapsed() > Duration::from_secs(30) {
                bail!("topic {topic} has no partitions after 30 s");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    consumer.assign(&tpl)?;
    let mut out = Vec::new();
    let start = Instant::now();
    let mut last = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if out.len() >= expected && last.elapsed() > Duration::from_secs(1) {
            break;
        }
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m?;
            out.push((
                m.key().map(<[u8]>::to_vec),
                m.payload().unwrap_or_default().to_vec(),
            ));
            last = Instant::now();
        }
    }
    Ok(out)
}

/// Admin URL of the MySQL/MariaDB server with its binlog on (`ETL_TEST_MYSQL_URL`).
pub fn mysql_admin_url() -> String {
    std::env::var("ETL_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3307".into())
}

/// URL of the CDC user (`ETL_TEST_MYSQL_CDC_URL`; by default `etl_cdc:etl_cdc` on the admin
/// URL's host and port, as `./dev stack` provisions it).
pub fn mysql_cdc_url() -> String {
    if let Ok(u) = std::env::var("ETL_TEST_MYSQL_CDC_URL") {
        return u;
    }
    let opts = mysql_async::Opts::from_url(&mysql_admin_url()).expect("a valid ETL_TEST_MYSQL_URL");
    format!(
        "mysql://etl_cdc:etl_cdc@{}:{}",
        opts.ip_or_hostname(),
        opts.tcp_port()
    )
}

/// A scratch MySQL database, dropped by `cleanup`.
pub struct MysqlScratch {
    pub db: String,
    pub pool: mysql_async::Pool,
}

impl MysqlScratch {
    pub async fn new(name: &str) -> Result<MysqlScratch> {
        use mysql_async::prelude::Queryable;
        let db = format!(
            "cdc_{name}{}{:04x}",
            std::process::id(),
            rand::random::<u16>()
        );
        let opts = mysql_async::Opts::from_url(&mysql_admin_url())?;
        let mut conn = mysql_async::Conn::new(opts.clone())
            .await
            .with_context(|| {
                format!(
                    "connecting to MySQL at {} (set ETL_TEST_MYSQL_URL)",
                    mysql_admin_url()
                )
            })?;
        conn.query_drop(format!("CREATE DATABASE `{db}` CHARACTER SET utf8mb4"))
            .await?;
        conn.disconnect().await?;
        let opts = mysql_async::OptsBuilder::from_opts(opts).db_name(Some(db.clone()));
        Ok(MysqlScratch {
            db,
            pool: mysql_async::Pool::new(opts),
        })
    }

    pub async fn conn(&self) -> Result<mysql_async::Conn> {
        Ok(self.pool.get_conn().await?)
    }

    pub async fn cleanup(self) {
        use mysql_async::prelude::Queryable;
        if let Ok(mut c) = self.pool.get_conn().await {
            let _ = c
                .query_drop(format!("DROP DATABASE IF EXISTS `{}`", self.db))
                .await;
        }
        let _ = self.pool.disconnect().await;
    }
}

/// Writes `<scratch>/<file>` with the MySQL source on `[ingest.mysql]` (the CDC user's URL, a
/// random server id, `mysql_lines` added) and only the sections the services need otherwise
/// (the harness's environment isolates the rest); returns its path.
pub fn mysql_config(
    s: &Scratch,
    file: &str,
    partitions: u32,
    server_id: u32,
    mysql_lines: &str,
) -> Result<PathBuf> {
    let path = s.dir.join(file);
    fs::write(
        &path,
        format!(
            r#"
[kafka]
brokers = "127.0.0.1:9092"
topic_prefix = "etl"
partitions = {partitions}

[warehouse]
url = "postgres://postgres@127.0.0.1:5432/warehouse"

[ingest]
metrics_addr = "127.0.0.1:9101"
checkpoint_dir = "var/ingest"

[ingest.csv]
watch_dir = "unused"
entities = []

[ingest.mysql]
url = "{url}"
server_id = {server_id}
heartbeat_interval_ms = 500
{mysql_lines}

[transform]
metrics_addr = "127.0.0.1:9102"
group_id = "unused"
"#,
            url = mysql_cdc_url(),
        ),
    )?;
    Ok(path)
}

/// A server id for a test's binlog agent (unique among concurrent tests in practice).
pub fn random_server_id() -> u32 {
    rand::random_range(10_000u32..4_000_000)
}

/// Waits until the MySQL agent's checkpoint shows a snapshot under way (some table started,
/// not complete): the moment to kill it mid-snapshot.
pub async fn wait_snapshot_under_way(s: &Scratch) -> Result<()> {
    let cp = s.dir.join("checkpoints/mysql.json");
    wait_for(
        Duration::from_secs(60),
        "the snapshot to be under way",
        || async {
            let Ok(text) = fs::read_to_string(&cp) else {
                return Ok(None);
            };
            let v: serde_json::Value = serde_json::from_str(&text)?;
            let snap = &v["state"]["snapshot"];
            let under_way = snap["tables"].as_object().is_some_and(|t| !t.is_empty())
                && snap["complete"] == false;
            Ok(under_way.then_some(()))
        },
    )
    .await
}

/// The seed of a randomised test: `ETL_TEST_SEED` when set, else a random one; printed so
/// that a failure can be replayed.
pub fn test_seed() -> u64 {
    let seed = std::env::var("ETL_TEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    println!("seed {seed} (set ETL_TEST_SEED to replay)");
    seed
}

/// How [`append_sales`] writes: `rows` lines over `files` files, `appends` appends per
/// file, a pause after each append, and the chance that an append is cut in two writes
/// (a line split across them).
pub struct AppendPlan {
    pub rows: usize,
    pub files: usize,
    pub appends: usize,
    pub prefix: &'static str,
    pub customers: usize,
    pub split_chance: f64,
    pub pause: Duration,
}

/// Appends random sales lines to `sales_NN.csv` files in `dir` as `plan` says; returns the
/// revenue in cents.
pub fn append_sales(dir: &Path, seed: u64, plan: &AppendPlan) -> std::io::Result<i64> {
    use rand::{Rng, SeedableRng};
    use std::io::Write;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut total_cents = 0i64;
    let per_append = plan.rows / plan.files / plan.appends;
    let mut files: Vec<fs::File> = (0..plan.files)
        .map(|i| {
            let mut f = fs::File::create(dir.join(format!("sales_{i:02}.csv")))?;
            f.write_all(SALES_HEADER)?;
            Ok(f)
        })
        .collect::<std::io::Result<_>>()?;
    let mut id = 0usize;
    for _ in 0..plan.appends {
        for f in files.iter_mut() {
            let mut chunk = String::with_capacity(per_append * 60);
            for _ in 0..per_append {
                id += 1;
                let (line, cents) = random_sale_line(&mut rng, plan.prefix, id, plan.customers);
                total_cents += cents;
                chunk.push_str(&line);
            }
            let cut = if rng.random_bool(plan.split_chance) {
                rng.random_range(1..chunk.len())
            } else {
                chunk.len()
            };
            f.write_all(&chunk.as_bytes()[..cut])?;
            f.flush()?;
            if cut < chunk.len() {
                std::thread::sleep(Duration::from_millis(40));
                f.write_all(&chunk.as_bytes()[cut..])?;
            }
            std::thread::sleep(plan.pause);
        }
    }
    Ok(total_cents)
}

/// Header of the sales files the crash tests append to.
pub const SALES_HEADER: &[u8] =
    b"sale_id,sale_date,customer_id,product_id,employee_id,quantity,unit_price,amount\n";

/// One random sales line with id `<prefix><id>` (a date in 2024, one of `customers`
/// customers, ten products, 1-4 units at 1.00-49.99) and its amount in cents.
pub fn random_sale_line(
    rng: &mut impl rand::Rng,
    prefix: &str,
    id: usize,
    customers: usize,
) -> (String, i64) {
    let qty = rng.random_range(1..=4i64);
    let price = rng.random_range(100..5000i64);
    let cents = qty * price;
    let line = format!(
        "{prefix}{id:06},2024-{:02}-{:02},C{:03},P{},E1,{qty},{}.{:02},{}.{:02}\n",
        1 + id % 12,
        1 + id % 28,
        id % customers,
        id % 10,
        price / 100,
        price % 100,
        cents / 100,
        cents % 100
    );
    (line, cents)
}
