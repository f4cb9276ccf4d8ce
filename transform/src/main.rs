//! `transform`: Kafka → bronze → silver → gold (stored marts) in the PostgreSQL warehouse, and the tools that keep gold exact: verify, rebuild, replay, scheduled jobs.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{error, info, warn};
use transform::config::{ConfigError, Settings};
use transform::ops::Health;
use transform::pipeline::{self, BatchStats, Router};
use transform::silver::Mapping;
use transform::{bronze, consumer, gold, migrate, silver, sql};

/// mimalloc: the agent allocates small buffers at a high rate; glibc malloc showed as a
/// quarter of the CPU profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    version,
    about = "Consumes change events from Kafka and builds the warehouse's bronze, silver and gold layers in PostgreSQL"
)]
struct Cli {
    /// Configuration file (TOML); every key can be overridden with ETL_<SECTION>__<KEY>.
    #[arg(long, short, default_value = "config/etl.toml", env = "ETL_CONFIG")]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending migrations, then consume until SIGINT or SIGTERM.
    Run,
    /// Load and validate the configuration, print each silver model's topic, and exit
    /// (without connecting to the warehouse or the broker).
    Check,
    /// Apply pending migrations and exit.
    Migrate,
    /// Recompute every gold mart from silver in polars and compare it with the stored
    /// marts, cell by cell (to the cent); prints the differences, exits 1 on drift.
    Verify,
    /// Rebuild marts from silver in bulk (after a model or mapping change), in one
    /// transaction that batches wait for.
    Rebuild {
        /// Mart to rebuild, with the marts that share its helper tables (default: all).
        #[arg(long, default_value = "all")]
        mart: String,
    },
    /// Run one scheduled job now (rfm, cohorts, forecast, anomalies, live_anomalies,
    /// verify), recorded in pipeline.job_runs like a scheduled run.
    Job {
        /// Job name.
        name: String,
    },
    /// Re-validate a model's quarantined rows with the current configuration; rows that
    /// pass move to silver and gold exactly once, the others keep their (new) reason.
    Replay {
        /// Silver model (sales, customers, ...).
        #[arg(long)]
        model: String,
        /// Only rows whose reason contains this text.
        #[arg(long)]
        reason: Option<String>,
    },
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,rdkafka=warn".into());
    let b = tracing_subscriber::fmt().with_env_filter(filter);
    if std::env::var("ETL_LOG_FORMAT").as_deref() == Ok("json") {
        b.json().init();
    } else {
        b.init();
    }
}

/// Exit status: 0, or [`etl_contract::CONFIG_ERROR_EXIT_CODE`] (2) for a configuration
/// mistake (one `error: <file or variable>: <what>` line per problem on stderr), or 1 for
/// any other failure (`error: <what>: <cause>` on one line) and for `verify` finding drift.
#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    init_tracing();
    let settings = Settings::load(&cli.config).unwrap_or_else(|e| e.exit());
    let topics = model_topics(&settings).unwrap_or_else(|reason| {
        ConfigError::Invalid {
            path: cli.config.clone(),
            reason,
        }
        .exit()
    });
    if let Command::Check = cli.command {
        let mut lines: Vec<String> = topics
            .iter()
            .map(|(topic, mapping)| format!("{}\t{topic}", mapping.model.name))
            .collect();
        lines.sort();
        for line in lines {
            println!("{line}");
        }
        return;
    }
    if let Err(e) = execute(cli.command, settings, topics).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// The silver models by the topic that feeds them.
fn model_topics(settings: &Settings) -> Result<HashMap<String, Mapping>, String> {
    let mut models = HashMap::new();
    for (name, m) in &settings.transform.silver {
        let mapping = Mapping::new(name, m)
            .ok_or_else(|| format!("transform.silver.{name}: no such silver model"))?;
        let topic = etl_contract::data_topic(
            &settings.kafka.topic_prefix,
            &m.source,
            m.entity.as_deref().unwrap_or(name),
        )
        .map_err(|e| format!("transform.silver.{name}: {e}"))?;
        models.insert(topic, mapping);
    }
    etl_contract::dead_letter_topic(&settings.kafka.topic_prefix)
        .map_err(|e| format!("kafka.topic_prefix: {e}"))?;
    Ok(models)
}

async fn execute(
    command: Command,
    settings: Settings,
    models: HashMap<String, Mapping>,
) -> anyhow::Result<()> {
    let mut client = connect_retry(&settings.warehouse.url).await;
    let n = migrate::migrate(&mut client).await?;
    let created = match gold::ensure(&mut client).await {
        // `rebuild` is the cure for a mart that differs from its declaration.
        Err(e @ gold::GoldError::Drift { .. }) if matches!(command, Command::Rebuild { .. }) => {
            warn!(error = %e, "rebuilding over a drifted gold table");
            Vec::new()
        }
        other => other?,
    };
    info!(applied = n, gold_created = ?created, "warehouse schema up to date");
    match command {
        Command::Check | Command::Migrate => Ok(()),
        Command::Run => run(settings, models, client).await,
        Command::Verify => verify(&mut client).await,
        Command::Job { name } => {
            let t0 = Instant::now();
            let rows = transform::jobs::run_once(
                &name,
                &settings.transform.analytics,
                &settings.warehouse.url,
            )
            .await?;
            println!(
                "job {name}: {rows} rows in {:.1} s",
                t0.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Rebuild { mart } => {
            let t0 = Instant::now();
            let (marts, lines) = gold::rebuild::rebuild(&mut client, &mart).await?;
            println!(
                "rebuilt {} from {lines} fact lines in {:.1} s",
                marts.join(", "),
                t0.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Replay { model, reason } => {
            let m = settings.transform.silver.get(&model).with_context(|| {
                format!("no silver model {model:?} in [transform.silver] of the configuration")
            })?;
            let mapping = Mapping::new(&model, m).context("validated silver model")?;
            let s = silver::replay::replay(&mut client, &mapping, reason.as_deref()).await?;
            println!(
                "replayed {} quarantined {model} rows: {} now valid (in silver and gold), {} still quarantined",
                s.examined, s.released, s.still_quarantined
            );
            Ok(())
        }
    }
}

async fn verify(client: &mut tokio_postgres::Client) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let checks = gold::verify::verify(client).await?;
    let mut drift = 0;
    for c in &checks {
        let status = if c.ok() { "ok   " } else { "DRIFT" };
        println!(
            "{status}  {:<24} {:>10} rows, {} extra (stored only), {} missing (recomputed only), {} differing cells",
            c.mart, c.stored_rows, c.extra, c.missing, c.differing_cells
        );
        if !c.ok() {
            drift += 1;
            if !c.differing_columns.is_empty() {
                println!(
                    "         differing columns: {}",
                    c.differing_columns.join(", ")
                );
            }
            for s in &c.samples {
                println!("         {s}");
            }
        }
    }
    if drift > 0 {
        eprintln!(
            "error: {drift} gold marts drifted from silver; `transform rebuild` recomputes them"
        );
        std::process::exit(1);
    }
    println!(
        "gold matches silver: {} marts verified in {:.1} s",
        checks.len(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn connect_retry(url: &str) -> tokio_postgres::Client {
    let mut delay = Duration::from_millis(500);
    loop {
        match sql::connect(url).await {
            Ok(c) => return c,
            Err(e) => {
                warn!(error = %e, "warehouse not reachable yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

async fn prepare(client: &tokio_postgres::Client) -> anyhow::Result<()> {
    bronze::prepare_session(client).await?;
    silver::prepare_session(client).await?;
    gold::prepare_session(client).await?;
    Ok(())
}

async fn run(
    settings: Settings,
    models: HashMap<String, Mapping>,
    mut client: tokio_postgres::Client,
) -> anyhow::Result<()> {
    let metrics = etl_contract::install_metrics()?;
    let health = Health::default();
    health.ok();
    let addr = settings.transform.metrics_addr;
    let h = health.clone();
    tokio::spawn(async move {
        if let Err(e) =
            etl_contract::serve_ops(addr, "transform.metrics_addr", metrics, move || h.report())
                .await
        {
            error!(error = %e, "ops endpoint failed");
            std::process::exit(2);
        }
    });
    prepare(&client).await?;
    let router = Router {
        group: settings.transform.group_id.clone(),
        dlq_topic: etl_contract::dead_letter_topic(&settings.kafka.topic_prefix)?,
        models,
        mirror_prefix: format!("{}.mysql.", settings.kafka.topic_prefix),
    };
    let run_id: i64 = client
        .query_one(
            "INSERT INTO pipeline.runs (service, host, pid, version) VALUES ('transform', $1, $2, $3) RETURNING run_id",
            &[
                &std::fs::read_to_string("/etc/hostname").unwrap_or_default().trim(),
                &(std::process::id() as i32),
                &env!("CARGO_PKG_VERSION"),
            ],
        )
        .await?
        .get(0);
    let stop = Arc::new(AtomicBool::new(false));
    let (mut rx, thread) = consumer::start(
        &settings.kafka,
        &settings.transform.group_id,
        &settings.warehouse.url,
        settings.transform.batch_max_records,
        Duration::from_millis(settings.transform.batch_max_ms),
        stop.clone(),
        health.consumer.clone(),
    )?;
    let jobs = transform::jobs::spawn(
        settings.transform.analytics.clone(),
        settings.warehouse.url.clone(),
    );
    info!(group = %settings.transform.group_id, run_id, "transform running");
    let mut totals = BatchStats::default();
    let mut last_beat = Instant::now();
    let mut prepared = true;
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let mut catch_up = CatchUp::new(
        &client,
        settings.transform.gold_catch_up_secs,
        settings.transform.batch_max_records,
    )
    .await;
    loop {
        let batch = tokio::select! {
            b = rx.recv() => match b { Some(b) => b, None => break },
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                catch_up.idle(&mut client).await;
                health.gold_behind(catch_up.behind_since_ms());
                health.ok();
                continue;
            }
            _ = &mut shutdown => break,
        };
        let mode = catch_up.mode(batch.len(), !rx.is_empty());
        let started = Instant::now();
        let mut delay = Duration::from_millis(200);
        let mut stopping = false;
        let stats = loop {
            if client.is_closed() {
                client = connect_retry(&settings.warehouse.url).await;
                prepared = false;
            }
            if !prepared {
                match prepare(&client).await {
                    Ok(()) => prepared = true,
                    Err(e) => warn!(error = %e, "cannot prepare the warehouse session"),
                }
            }
            let result = match pipeline::process_batch(&mut client, &router, &batch, mode).await {
                Err(e) if e.is_data_error() => {
                    // A record the warehouse refuses (a value out of range, a NUL character...):
                    // replay the batch record by record and dead-letter the culprit, instead of
                    // retrying the whole batch for ever.
                    warn!(error = %e, records = batch.len(), "the warehouse rejected a record of the batch; isolating it");
                    pipeline::process_one_by_one(&mut client, &router, &batch, mode).await
                }
                other => other,
            };
            match result {
                Ok(s) => break s,
                Err(e) => {
                    health.failing(e.to_string());
                    error!(error = %e, records = batch.len(), retry_in_ms = delay.as_millis() as u64, "batch failed and was rolled back; retrying it");
                    metrics::counter!("transform_batch_failures_total").increment(1);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = &mut shutdown => { stopping = true; break BatchStats::default(); }
                    }
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        };
        if stopping {
            break;
        }
        health.ok();
        catch_up.committed(&stats);
        health.gold_behind(catch_up.behind_since_ms());
        record_batch(&mut totals, &stats, started);
        if last_beat.elapsed() > Duration::from_secs(5) {
            last_beat = Instant::now();
            heartbeat(&client, run_id, &totals, false).await;
        }
    }
    info!("stopping");
    jobs.abort();
    stop.store(true, Ordering::Relaxed);
    drop(rx);
    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    heartbeat(&client, run_id, &totals, true).await;
    Ok(())
}

/// When a batch defers gold ([`transform::gold::queue`]): while transform is behind, and
/// gold has been behind for less than `gold_catch_up_secs`.
struct CatchUp {
    every: Duration,
    full: usize,
    /// Since when the queue holds deferred batches: this run's clock, and ms since the
    /// epoch for `/health`.
    since: Option<(Instant, i64)>,
}

impl CatchUp {
    async fn new(client: &tokio_postgres::Client, secs: u64, full: usize) -> Self {
        let since = match transform::gold::queue::state(client).await {
            Ok(Some((at, records))) => {
                info!(since = %at, records, "gold is behind silver: the queue of the previous run will be drained");
                Some((Instant::now(), at.timestamp_millis()))
            }
            Ok(None) => None,
            Err(e) => {
                warn!(error = %e, "cannot read gold's queue state; it will be drained by the next batch");
                None
            }
        };
        CatchUp {
            every: Duration::from_secs(secs),
            full,
            since,
        }
    }

    fn behind_since_ms(&self) -> Option<i64> {
        self.since.map(|s| s.1)
    }

    fn mode(&self, records: usize, more_waiting: bool) -> pipeline::GoldMode {
        let behind = records >= self.full || more_waiting;
        let overdue = self.since.is_some_and(|s| s.0.elapsed() >= self.every);
        if !self.every.is_zero() && behind && !overdue {
            pipeline::GoldMode::Defer
        } else {
            pipeline::GoldMode::Refresh
        }
    }

    fn committed(&mut self, stats: &BatchStats) {
        if stats.gold_deferred {
            self.since
                .get_or_insert_with(|| (Instant::now(), chrono::Utc::now().timestamp_millis()));
            metrics::counter!("transform_gold_deferred_batches_total").increment(1);
            metrics::gauge!("transform_gold_behind").set(1.0);
        } else {
            self.caught_up(stats.gold_drained);
        }
    }

    /// Gold is up to date again (`drained`: what the refresh took from the queue).
    fn caught_up(&mut self, drained: Option<transform::gold::queue::Queued>) {
        if let Some(q) = drained {
            info!(
                batches = q.batches,
                records = q.records,
                keys = q.keys,
                "gold caught up with the queued batches"
            );
            metrics::counter!("transform_gold_catch_ups_total").increment(1);
        }
        self.since = None;
        metrics::gauge!("transform_gold_behind").set(0.0);
    }

    /// No batch for a while: drain what is queued.
    async fn idle(&mut self, client: &mut tokio_postgres::Client) {
        if self.since.is_none() || client.is_closed() {
            return;
        }
        match transform::gold::queue::drain(client).await {
            Ok(q) => self.caught_up(q),
            Err(e) => warn!(error = %e, "gold's catch-up failed; it will be retried"),
        }
    }
}

/// The committed batch's metrics and debug line; adds it to the run's totals.
fn record_batch(totals: &mut BatchStats, stats: &BatchStats, started: Instant) {
    metrics::histogram!("transform_batch_seconds").record(started.elapsed().as_secs_f64());
    metrics::counter!("transform_records_total").increment(stats.records);
    metrics::counter!("transform_bronze_inserted_total").increment(stats.bronze_inserted);
    metrics::counter!("transform_bronze_duplicates_total").increment(stats.bronze_duplicates);
    metrics::counter!("transform_dead_letters_total").increment(stats.dead_letters);
    totals.add(stats);
    tracing::debug!(
        records = stats.records,
        bronze = stats.bronze_inserted,
        duplicates = stats.bronze_duplicates,
        ms = started.elapsed().as_millis() as u64,
        gold_deferred = stats.gold_deferred,
        gold_drained_records = stats.gold_drained.map(|q| q.records),
        "batch committed"
    );
}

async fn heartbeat(client: &tokio_postgres::Client, run_id: i64, t: &BatchStats, stopped: bool) {
    let stats = serde_json::json!({
        "records": t.records, "bronze_inserted": t.bronze_inserted, "bronze_duplicates": t.bronze_duplicates,
        "dead_letters": t.dead_letters, "silver_upserts": t.silver.upserts, "silver_deletes": t.silver.deletes,
        "silver_quarantined": t.silver.quarantined,
    });
    let sql = if stopped {
        "UPDATE pipeline.runs SET heartbeat_at = now(), stopped_at = now(), stats = $2 WHERE run_id = $1"
    } else {
        "UPDATE pipeline.runs SET heartbeat_at = now(), stats = $2 WHERE run_id = $1"
    };
    if let Err(e) = client.execute(sql, &[&run_id, &stats]).await {
        warn!(error = %e, "cannot record the heartbeat");
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
