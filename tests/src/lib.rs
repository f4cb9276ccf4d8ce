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

/// A TCP port of 127.0.0.1 free at the call (the OS's pick; nothing listens on it after).
pub fn free_port() -> u16 {
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

impl AppendPlan {
    /// [`append_sales`] of this plan into `dir` with `seed`, on a thread of its own (the
    /// test goes on with its faults meanwhile); joined, it gives the revenue in cents.
    pub fn spawn(self, dir: &Path, seed: u64) -> std::thread::JoinHandle<std::io::Result<i64>> {
        let dir = dir.to_path_buf();
        std::thread::spawn(move || append_sales(&dir, seed, &self))
    }
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

// ---------------------------------------------------------------- fault injection
// Helpers of tests/tests/faults.rs: a durable broker of the test's own, restarts of the
// shared services (PostgreSQL, the MariaDB CDC instance, Azurite) and the exact
// reconciliation of sales files with bronze, silver and gold.

/// The nisshi binary: `ETL_TEST_NISSHI` (set by `./dev test`), by default where `./dev
/// stack` installs it.
pub fn nisshi_bin() -> Result<PathBuf> {
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

/// A nisshi broker (the durable local broker of `./dev stack`) with PostgreSQL storage in a
/// database of its own, on a port of its own; killed when dropped.
pub struct NisshiBroker {
    bin: PathBuf,
    pub port: u16,
    storage: String,
    storage_db: String,
    pub log: PathBuf,
    child: Option<Child>,
}

impl NisshiBroker {
    /// Creates the storage database `nb_<scratch id>`, starts the broker and points the
    /// scratch's services at it.
    pub async fn start_for(s: &mut Scratch) -> Result<NisshiBroker> {
        let bin = nisshi_bin()?;
        let storage_db = format!("nb_{}", s.id);
        connect(&pg_admin_url())
            .await?
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
        let mut broker = NisshiBroker {
            bin,
            port: free_port(),
            storage,
            storage_db,
            log: s.dir.join("nisshi.log"),
            child: None,
        };
        broker.start()?;
        s.extra_env
            .push(("ETL_KAFKA__BROKERS".into(), broker.brokers()));
        Ok(broker)
    }

    /// Starts the broker process and waits (10 s at most) until it listens.
    pub fn start(&mut self) -> Result<()> {
        let log = fs::OpenOptions::new()
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
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "nisshi did not listen on {} within 10 s:\n{}",
            self.port,
            self.log_text()
        )
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the broker and drops its storage database.
    pub async fn cleanup(mut self) {
        self.kill9();
        if let Ok(admin) = connect(&pg_admin_url()).await {
            let _ = admin
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.storage_db
                ))
                .await;
        }
    }
}

impl Drop for NisshiBroker {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Partitions of `topic` on `brokers` (0 when the topic does not exist).
pub fn topic_partitions(brokers: &str, topic: &str) -> Result<usize> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    Ok(md
        .topics()
        .first()
        .filter(|t| t.error().is_none())
        .map_or(0, |t| t.partitions().len()))
}

/// The last `n` lines of a log text.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs a command as root (directly, or through `sudo -n`); fails with its output.
fn run_as_root(args: &[&str]) -> Result<()> {
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = if root {
        Command::new(args[0])
    } else {
        let mut c = Command::new("sudo");
        c.arg("-n").arg(args[0]);
        c
    };
    let out = cmd
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The PostgreSQL cluster (version, name) of `pg_lsclusters` that serves the port of
/// `ETL_TEST_PG_URL`: the one a fault test restarts with `pg_ctlcluster`.
pub fn pg_cluster() -> Result<(String, String)> {
    let cfg: tokio_postgres::Config = pg_admin_url().parse()?;
    let port = cfg.get_ports().first().copied().unwrap_or(5432).to_string();
    let out = Command::new("pg_lsclusters").arg("-h").output().context(
        "running pg_lsclusters (Debian's postgresql-common): restarting PostgreSQL needs it",
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2] == port)
        .map(|f| (f[0].to_string(), f[1].to_string()))
        .with_context(|| {
            format!("no local PostgreSQL cluster on port {port} in `pg_lsclusters -h`:\n{text}")
        })
}

/// Stops the PostgreSQL cluster of [`pg_cluster`] (`pg_ctlcluster stop -m <mode>`: fast, or
/// immediate for a crash that needs WAL recovery), waits `downtime`, starts it again and
/// waits (60 s at most) until it answers.
pub async fn restart_postgres(mode: &str, downtime: Duration) -> Result<()> {
    let (version, name) = pg_cluster()?;
    let ctl = |action: &str| -> Result<()> {
        let mut args = vec!["pg_ctlcluster", "--skip-systemctl-redirect"];
        if action == "stop" {
            args.extend(["-m", mode]);
        }
        args.extend([version.as_str(), name.as_str(), action]);
        run_as_root(&args)
    };
    ctl("stop")?;
    tokio::time::sleep(downtime).await;
    ctl("start")?;
    wait_for(
        Duration::from_secs(60),
        "PostgreSQL to answer after its restart",
        || async {
            Ok(match connect(&pg_admin_url()).await {
                Ok(c) => c.simple_query("SELECT 1").await.ok().map(|_| ()),
                Err(_) => None,
            })
        },
    )
    .await
}

/// Inode of the socket listening on TCP `port` (IPv4 or IPv6), from /proc/net.
fn listening_inode(port: u16) -> Option<String> {
    let hex = format!(":{port:04X}");
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address, state 0A = LISTEN, inode
            if f.len() > 9 && f[1].ends_with(&hex) && f[3] == "0A" {
                return Some(f[9].to_string());
            }
        }
    }
    None
}

fn proc_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses; Z = exited, not yet reaped.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

fn split_nul(bytes: &[u8]) -> Vec<std::ffi::OsString> {
    use std::os::unix::ffi::OsStrExt;
    if bytes.is_empty() {
        return Vec::new();
    }
    // Each string ends with a NUL; an empty argument is kept.
    bytes
        .strip_suffix(&[0])
        .unwrap_or(bytes)
        .split(|b| *b == 0)
        .map(|s| std::ffi::OsStr::from_bytes(s).to_os_string())
        .collect()
}

/// A service process found by the TCP port it listens on (a service `./dev stack` started,
/// or any other), with what it takes to start it again as it was.
pub struct Daemon {
    pub pid: i32,
    pub port: u16,
    exe: PathBuf,
    argv: Vec<std::ffi::OsString>,
    cwd: PathBuf,
    env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    log: Option<PathBuf>,
}

impl Daemon {
    pub fn listening_on(port: u16) -> Result<Daemon> {
        let inode = listening_inode(port).with_context(|| {
            format!("nothing listens on TCP port {port}: is the service running? (./dev stack)")
        })?;
        let socket = PathBuf::from(format!("socket:[{inode}]"));
        let pid = fs::read_dir("/proc")?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .find(|pid| {
                fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
                    fds.filter_map(|fd| fs::read_link(fd.ok()?.path()).ok())
                        .any(|target| target == socket)
                })
            })
            .with_context(|| format!("no process of ours holds the socket listening on port {port} (another user's? run the test as that user or root)"))?;
        let proc_path = |p: &str| PathBuf::from(format!("/proc/{pid}/{p}"));
        let exe = fs::read_link(proc_path("exe"))?;
        let argv = split_nul(&fs::read(proc_path("cmdline"))?);
        let env = split_nul(&fs::read(proc_path("environ"))?)
            .into_iter()
            .filter_map(|kv| {
                use std::os::unix::ffi::OsStrExt;
                let b = kv.as_bytes();
                let eq = b.iter().position(|c| *c == b'=')?;
                Some((
                    std::ffi::OsStr::from_bytes(&b[..eq]).to_os_string(),
                    std::ffi::OsStr::from_bytes(&b[eq + 1..]).to_os_string(),
                ))
            })
            .collect();
        // Its stdout, when that is a log file: the new process appends to it.
        let log = fs::read_link(proc_path("fd/1"))
            .ok()
            .filter(|p| p.is_absolute() && p.is_file());
        Ok(Daemon {
            pid,
            port,
            exe,
            argv,
            cwd: fs::read_link(proc_path("cwd"))?,
            env,
            log,
        })
    }

    /// Sends `signal`; after `grace` (or at once for SIGKILL) kills what is left. Returns
    /// once the process is gone and its port closed.
    pub async fn stop(&self, signal: i32, grace: Duration) -> Result<()> {
        unsafe {
            libc::kill(self.pid, signal);
        }
        let start = Instant::now();
        while proc_alive(self.pid) && start.elapsed() < grace {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if proc_alive(self.pid) {
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
            }
        }
        wait_for(
            Duration::from_secs(10),
            &format!("pid {} and its port {} to be gone", self.pid, self.port),
            || async {
                Ok((!proc_alive(self.pid) && listening_inode(self.port).is_none()).then_some(()))
            },
        )
        .await
    }

    /// Starts the same program again (executable, arguments, directory, environment, log
    /// file), in a session of its own so that it outlives the test; waits (60 s at
    /// most) until it listens, and moves a `./dev` pid file that named the old process to
    /// the new one (so that `./dev status` and `./dev down` keep working).
    pub async fn start_again(&self) -> Result<Daemon> {
        use std::os::unix::process::CommandExt;
        let out = match &self.log {
            Some(p) => Stdio::from(fs::OpenOptions::new().append(true).open(p)?),
            None => Stdio::null(),
        };
        let err = match &self.log {
            Some(p) => Stdio::from(fs::OpenOptions::new().append(true).open(p)?),
            None => Stdio::null(),
        };
        cloexec_inherited_fds();
        let mut cmd = Command::new(&self.exe);
        if let Some(arg0) = self.argv.first() {
            cmd.arg0(arg0);
        }
        // A session of its own (as `./dev` starts it): it outlives the test and whatever
        // session ran it.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let child = cmd
            .args(self.argv.iter().skip(1))
            .current_dir(&self.cwd)
            .env_clear()
            .envs(self.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {} again", self.exe.display()))?;
        let pid = child.id() as i32;
        drop(child);
        let port = self.port;
        wait_for(
            Duration::from_secs(60),
            &format!("{} to listen on port {port} again", self.exe.display()),
            || async {
                if !proc_alive(pid) {
                    bail!("{} exited right after its restart", self.exe.display());
                }
                Ok(listening_inode(port).map(|_| ()))
            },
        )
        .await?;
        move_dev_pid_file(self.pid, pid);
        Daemon::listening_on(port)
    }

    /// [`Daemon::stop`] with `signal` and `grace`, `downtime`, then [`Daemon::start_again`].
    pub async fn restart(
        &self,
        signal: i32,
        grace: Duration,
        downtime: Duration,
    ) -> Result<Daemon> {
        self.stop(signal, grace).await?;
        tokio::time::sleep(downtime).await;
        self.start_again().await
    }
}

/// Sets close-on-exec on every descriptor above stderr, so that a daemon started again does
/// not hold a pipe of whatever ran the tests (a CI runner would wait for it to close).
fn cloexec_inherited_fds() {
    let Ok(fds) = fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = fds
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        unsafe {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
}

/// `./dev` keeps `<state>/run/<name>.pid` for the services it started: one naming `old`
/// now names `new`.
fn move_dev_pid_file(old: i32, new: i32) {
    let state = std::env::var("ETL_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".local/state/etl-platform")
        });
    let Ok(files) = fs::read_dir(state.join("run")) else {
        return;
    };
    for f in files.filter_map(|e| e.ok()).map(|e| e.path()) {
        let names_old = f.extension().is_some_and(|e| e == "pid")
            && fs::read_to_string(&f).is_ok_and(|t| t.trim() == old.to_string());
        if names_old {
            let _ = fs::write(&f, format!("{new}\n"));
        }
    }
}

/// What the `sales*.csv` files of a folder hold, computed from the files alone.
#[derive(Debug, Default, PartialEq)]
pub struct SalesTruth {
    pub lines: i64,
    pub revenue_cents: i64,
    pub units: i64,
    /// First day of the month (YYYY-MM-01) -> (lines, revenue in cents).
    pub months: std::collections::BTreeMap<String, (i64, i64)>,
    /// Sale ids that appear on more than one line.
    pub duplicate_ids: Vec<String>,
}

fn cents(amount: &str) -> Result<i64> {
    let (units, frac) = amount.split_once('.').unwrap_or((amount, "0"));
    Ok(units.parse::<i64>()? * 100 + format!("{frac:0<2}")[..2].parse::<i64>()?)
}

/// Reads the sales files of `dir` (as written by [`append_sales`]: header, then
/// `sale_id,sale_date,customer_id,product_id,employee_id,quantity,unit_price,amount`).
pub fn sales_truth(dir: &Path) -> Result<SalesTruth> {
    let mut t = SalesTruth::default();
    let mut seen = std::collections::BTreeSet::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !(name.starts_with("sales") && name.ends_with(".csv")) {
            continue;
        }
        for (n, line) in fs::read_to_string(&path)?.lines().enumerate().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            anyhow::ensure!(
                f.len() == 8,
                "{}:{}: not a sales line: {line:?}",
                path.display(),
                n + 1
            );
            let c = cents(f[7])
                .with_context(|| format!("{}:{}: amount {:?}", path.display(), n + 1, f[7]))?;
            t.lines += 1;
            t.revenue_cents += c;
            t.units += f[5].parse::<i64>()?;
            let m = t.months.entry(format!("{}-01", &f[1][..7])).or_default();
            m.0 += 1;
            m.1 += c;
            if !seen.insert(f[0].to_string()) {
                t.duplicate_ids.push(f[0].to_string());
            }
        }
    }
    Ok(t)
}

fn cents_text(c: i64) -> String {
    format!("{}.{:02}", c / 100, c % 100)
}

/// Whether silver holds at least `rows` sales and gold has caught up with it: gold's queue
/// of deferred batches is empty and `sales_by_period` counts every silver line (while
/// transform catches up with a backlog, gold follows silver by up to
/// `transform.gold_catch_up_secs`).
pub async fn sales_caught_up(db: &tokio_postgres::Client, rows: i64) -> Result<bool> {
    let row = db
        .query_one(
            "SELECT (SELECT count(*) FROM silver.sales),
                    (SELECT since IS NULL FROM pipeline.gold_queue_state),
                    (SELECT coalesce(sum(lines), 0)::bigint FROM gold.sales_by_period WHERE grain = 'all')",
            &[],
        )
        .await?;
    let (silver, current, gold): (i64, bool, i64) = (row.get(0), row.get(1), row.get(2));
    Ok(silver >= rows && current && gold == silver)
}

/// Waits (at most `timeout`) until silver holds `rows` sales and gold has caught up with it,
/// then 3 s more for anything in flight to land (a duplicate would show); the error carries
/// the services' log tails.
pub async fn wait_sales_in_silver(s: &Scratch, rows: i64, timeout: Duration) -> Result<()> {
    let db = s.db().await?;
    wait_for(
        timeout,
        &format!("{rows} rows in silver.sales and gold caught up"),
        || async {
            // Until the transform has migrated the warehouse, the query fails: not there yet.
            Ok(sales_caught_up(&db, rows)
                .await
                .unwrap_or(false)
                .then_some(()))
        },
    )
    .await
    .map_err(|e| {
        anyhow::anyhow!(
            "{e}\ningest log (tail):\n{}\ntransform log (tail):\n{}",
            tail(&s.log("ingest"), 40),
            tail(&s.log("transform"), 40)
        )
    })?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    Ok(())
}

/// `transform verify` on the scratch warehouse: gold recomputed from silver must not drift.
pub fn transform_verify(s: &Scratch) -> Result<String> {
    let out = Command::new(bin_dir().join("transform"))
        .arg("--config")
        .arg(&s.config)
        .arg("verify")
        .env("ETL_WAREHOUSE__URL", &s.db_url)
        .env("NO_COLOR", "1")
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    anyhow::ensure!(
        out.status.success(),
        "transform verify found drift:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(text)
}

/// Bronze, silver and gold hold exactly the sales `truth` describes: each line once in
/// bronze (by sale_id) and silver, with silver's sum; gold's `sales_by_period` equal to it
/// overall and month by month; nothing quarantined or dead-lettered; no drift by `transform
/// verify`.
pub async fn assert_sales_exact(s: &Scratch, truth: &SalesTruth) -> Result<()> {
    anyhow::ensure!(
        truth.duplicate_ids.is_empty(),
        "the source files repeat sale ids: {:?}",
        truth.duplicate_ids
    );
    let db = s.db().await?;
    let topic = s.topic("sales");
    let one = |sql: String| {
        let db = &db;
        async move { Ok::<String, anyhow::Error>(db.query_one(&sql, &[]).await?.get(0)) }
    };
    let bronze = one(format!("SELECT count(*)::text || ' ' || count(DISTINCT payload->'after'->>'sale_id')::text FROM bronze.events WHERE topic = '{topic}'")).await?;
    anyhow::ensure!(
        bronze == format!("{0} {0}", truth.lines),
        "bronze (rows, distinct sale ids) {bronze}, the files hold {} lines",
        truth.lines
    );
    let silver = one("SELECT count(*)::text || ' ' || coalesce(sum(amount), 0)::numeric(16,2)::text FROM silver.sales".into()).await?;
    anyhow::ensure!(
        silver == format!("{} {}", truth.lines, cents_text(truth.revenue_cents)),
        "silver (rows, amount) {silver}, the files hold {} lines of {}",
        truth.lines,
        cents_text(truth.revenue_cents)
    );
    let all = one("SELECT concat_ws(' ', lines, orders, units::bigint, revenue::numeric(16,2)) FROM gold.sales_by_period WHERE grain = 'all'".into()).await?;
    let want = format!(
        "{0} {0} {1} {2}",
        truth.lines,
        truth.units,
        cents_text(truth.revenue_cents)
    );
    anyhow::ensure!(
        all == want,
        "gold.sales_by_period 'all' (lines orders units revenue) {all}, the files: {want}"
    );
    let months: std::collections::BTreeMap<String, (i64, i64, String)> = db
        .query("SELECT period_start::text, lines, orders, revenue::numeric(16,2)::text FROM gold.sales_by_period WHERE grain = 'month'", &[])
        .await?
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
        .collect();
    let want: std::collections::BTreeMap<String, (i64, i64, String)> = truth
        .months
        .iter()
        .map(|(m, (n, c))| (m.clone(), (*n, *n, cents_text(*c))))
        .collect();
    anyhow::ensure!(
        months == want,
        "gold.sales_by_period by month (lines, orders, revenue):\n{months:?}\nthe files:\n{want:?}"
    );
    let bad = one("SELECT (SELECT count(*) FROM silver.quarantine)::text || ' ' || (SELECT count(*) FROM bronze.dead_letters)::text".into()).await?;
    anyhow::ensure!(bad == "0 0", "quarantined and dead-lettered rows: {bad}");
    transform_verify(s)?;
    Ok(())
}

/// Azurite's blob endpoint: `ETL_TEST_AZURITE` (set by `./dev test`).
pub fn azurite_url() -> String {
    std::env::var("ETL_TEST_AZURITE")
        .unwrap_or_else(|_| "http://127.0.0.1:10000/devstoreaccount1".into())
}

/// Creates container `name` in Azurite.
pub async fn azurite_container(
    name: &str,
) -> Result<azure_storage_blobs::prelude::ContainerClient> {
    use azure_storage::{CloudLocation, StorageCredentials};
    use azure_storage_blobs::prelude::{ClientBuilder, PublicAccess};
    let client = ClientBuilder::with_location(
        CloudLocation::Custom {
            account: "devstoreaccount1".into(),
            uri: azurite_url(),
        },
        StorageCredentials::emulator(),
    );
    let c = client.container_client(name);
    c.create()
        .public_access(PublicAccess::None)
        .await
        .with_context(|| {
            format!(
                "creating container {name} in Azurite at {} (is it running? ./dev stack)",
                azurite_url()
            )
        })?;
    Ok(c)
}

/// A pipeline whose blob source reads a container of its own (`t<scratch id>`; the
/// repository's configuration otherwise, with each `(from, to)` of `edits` replaced),
/// polling every 300 ms, reading `chunk_bytes` per ranged GET. Returns the scratch and the
/// container's name.
pub async fn blob_scratch(
    name: &str,
    chunk_bytes: u64,
    edits: &[(&str, &str)],
) -> Result<(Scratch, String)> {
    let mut s = Scratch::new(name, None).await?;
    let container = format!("t{}", s.id.to_lowercase());
    let mut cfg = fs::read_to_string(repo_root().join("config/etl.toml"))?;
    let container_line = "container = \"web-usage\"";
    let own_container = format!("container = \"{container}\"");
    for (from, to) in
        std::iter::once((container_line, own_container.as_str())).chain(edits.iter().copied())
    {
        anyhow::ensure!(cfg.contains(from), "config/etl.toml has no {from:?}");
        cfg = cfg.replace(from, to);
    }
    let path = s.dir.join("etl.toml");
    fs::write(&path, cfg)?;
    s.config = path;
    s.extra_env.extend([
        ("ETL_INGEST__BLOB__ENABLED".to_string(), "true".to_string()),
        ("ETL_INGEST__BLOB__ENDPOINT".into(), azurite_url()),
        ("ETL_INGEST__BLOB__POLL_INTERVAL_MS".into(), "300".into()),
        (
            "ETL_INGEST__BLOB__CHUNK_BYTES".into(),
            chunk_bytes.to_string(),
        ),
    ]);
    Ok((s, container))
}

/// `n` web/app usage events `<prefix>-<i>` of `day` as JSON lines (the fields of silver
/// `web_events`), with their ids.
pub fn web_events_jsonl(
    prefix: &str,
    day: &str,
    channel: &str,
    n: usize,
) -> (Vec<u8>, Vec<String>) {
    let mut out = Vec::new();
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("{prefix}-{i:06}");
        let ev = serde_json::json!({
            "event_id": id,
            "ts": format!("{day}T{:02}:{:02}:00Z", 8 + i % 12, i % 60),
            "channel": channel,
            "event_type": if i.is_multiple_of(5) { "session_start" } else { "page_view" },
            "session_id": format!("S-{day}-{}", i / 5),
            "customer_id": format!("C{:05}", 1 + i % 1500),
            "page": format!("/p/{}", i % 17),
            "device": "desktop",
            "app_version": serde_json::Value::Null,
        });
        serde_json::to_writer(&mut out, &ev).expect("JSON to memory");
        out.push(b'\n');
        ids.push(id);
    }
    (out, ids)
}

/// `data` gzip-compressed (fast level).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip to memory");
    e.finish().expect("gzip to memory")
}

/// The checkpoint file of the blob source `web_events` of a scratch.
pub fn blob_checkpoint(s: &Scratch) -> PathBuf {
    s.dir.join("checkpoints/blob-web_events.json")
}

/// The blob checkpoint at `path` shows a blob half-read (`"done": false`).
pub fn blob_half_read(path: &Path) -> bool {
    fs::read_to_string(path)
        .unwrap_or_default()
        .contains("\"done\": false")
}

/// Waits (at most `timeout`; no error when it passes) until the blob agent has made
/// progress on a blob: its checkpoint at `path` changed since the call and shows a blob
/// half-read. A fault right after lands between two chunks.
pub async fn wait_blob_progress(path: &Path, timeout: Duration) {
    let at_start = fs::read_to_string(path).unwrap_or_default();
    let _ = wait_for(timeout, "the agent to make progress", || {
        let at_start = &at_start;
        async move {
            let now = fs::read_to_string(path).unwrap_or_default();
            Ok((now != *at_start && now.contains("\"done\": false")).then_some(()))
        }
    })
    .await;
}

/// The one value of a query returning one row (`SELECT x ...`).
pub async fn query_value<T>(db: &tokio_postgres::Client, sql: &str) -> Result<T>
where
    T: tokio_postgres::types::FromSqlOwned,
{
    Ok(db
        .query_one(sql, &[])
        .await
        .with_context(|| format!("running {sql}"))?
        .try_get(0)?)
}

/// The rows of a query returning two columns, as pairs in its order.
pub async fn query_pairs<A, B>(db: &tokio_postgres::Client, sql: &str) -> Result<Vec<(A, B)>>
where
    A: tokio_postgres::types::FromSqlOwned,
    B: tokio_postgres::types::FromSqlOwned,
{
    db.query(sql, &[])
        .await
        .with_context(|| format!("running {sql}"))?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}
