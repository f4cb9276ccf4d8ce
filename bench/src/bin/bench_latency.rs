//! `bench-latency`: end-to-end latency, CSV append → row visible in the warehouse.
//!
//! Appends sales rows to a live CSV file at a fixed rate (a batch every `--tick-ms`), each
//! row's `sale_id` being `<prefix><append time in µs, 16 digits>-<sequence, 7 digits>`, and
//! concurrently polls `--visible-table` for the ids not seen yet (an index range scan from
//! the oldest outstanding id to the newest). A row's latency is the start of the first poll
//! that returned it minus its append time, so the resolution is `--poll-ms`.
//!
//! With `--baseline`, the program also runs the minimal pipeline the figures are compared
//! with: a thread tails the file every 10 ms and produces each new line as-is (ingest's
//! producer settings), a consumer thread reads the topic and INSERTs each poll's records
//! (their first field) into `--visible-table` in one statement — no envelope, no bronze, no
//! silver, no checkpoints.
//!
//! Prints one JSON object: appended, seen, missing, append_rows_per_s, p50/p95/p99/max_ms.

use anyhow::{bail, Context as _};
use bench::{ensure_topic, now_micros, percentile, producer_config, push_sales_row, SALES_HEADER};
use clap::Parser;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeSet;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

#[derive(Parser, Clone)]
#[command(about = "Append-to-visible latency of the pipeline (or of a minimal baseline pipeline)")]
struct Cli {
    /// The live CSV file (created, with its header, by this program).
    #[arg(long)]
    file: PathBuf,
    /// Rows appended per second.
    #[arg(long, default_value_t = 5000)]
    rate: u64,
    /// How long to append, in seconds.
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    #[arg(long, default_value_t = 10)]
    tick_ms: u64,
    #[arg(long, default_value_t = 20)]
    poll_ms: u64,
    /// How long to wait for the last rows after the appends stop.
    #[arg(long, default_value_t = 30)]
    drain_s: u64,
    /// Pause between creating the file and the first append (time for the watcher to see it).
    #[arg(long, default_value_t = 2000)]
    settle_ms: u64,
    #[arg(long, env = "ETL_WAREHOUSE__URL")]
    pg_url: String,
    /// Table or view polled for the rows (must have a sale_id column).
    #[arg(long, default_value = "gold.fact_sales")]
    visible_table: String,
    /// First character(s) of the sale ids: must be upper case (silver upper-cases ids).
    #[arg(long, default_value = "L")]
    id_prefix: String,
    /// Run the minimal baseline pipeline (file tail → Kafka → INSERT) in this process.
    #[arg(long)]
    baseline: bool,
    #[arg(long, default_value = "127.0.0.1:9092", env = "ETL_KAFKA__BROKERS")]
    brokers: String,
    /// Topic of the baseline pipeline (must not match the pipeline's topic prefix).
    #[arg(long)]
    topic: Option<String>,
}

async fn pg(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            eprintln!("bench-latency: postgres connection: {e}");
        }
    });
    Ok(client)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.id_prefix != cli.id_prefix.to_uppercase() {
        bail!("--id-prefix must be upper case: silver upper-cases sale ids");
    }
    let header = format!("{SALES_HEADER}\n");
    std::fs::write(&cli.file, &header)
        .with_context(|| format!("creating {}", cli.file.display()))?;

    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    if cli.baseline {
        let topic = cli.topic.clone().context("--baseline needs --topic")?;
        ensure_topic(&cli.brokers, &topic, 3).await?;
        let insert_client = pg(&cli.pg_url).await?;
        threads.push(spawn_tail(&cli, &topic, header.len() as u64, stop.clone())?);
        threads.push(spawn_consume(
            &cli,
            &topic,
            insert_client,
            tokio::runtime::Handle::current(),
            stop.clone(),
        )?);
    }
    let poller = pg(&cli.pg_url).await?;
    let query = format!(
        "SELECT sale_id FROM {} WHERE sale_id >= $1 AND sale_id <= $2",
        cli.visible_table
    );
    let stmt = poller
        .prepare(&query)
        .await
        .with_context(|| format!("preparing {query}"))?;
    tokio::time::sleep(Duration::from_millis(cli.settle_ms)).await;

    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<String>>();
    let appender = {
        let cli = cli.clone();
        std::thread::spawn(move || append(&cli, tx))
    };

    let prefix_len = cli.id_prefix.len();
    let mut outstanding: BTreeSet<String> = BTreeSet::new();
    let mut latencies: Vec<f64> = Vec::new();
    let mut appended = 0u64;
    let mut appending = true;
    let mut drain_deadline = None;
    let mut polls = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(cli.poll_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        loop {
            match rx.try_recv() {
                Ok(ids) => {
                    appended += ids.len() as u64;
                    outstanding.extend(ids);
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    if appending {
                        appending = false;
                        drain_deadline = Some(Instant::now() + Duration::from_secs(cli.drain_s));
                    }
                    break;
                }
            }
        }
        if !appending && (outstanding.is_empty() || Instant::now() > drain_deadline.expect("set")) {
            break;
        }
        let (Some(lo), Some(hi)) = (outstanding.first(), outstanding.last()) else {
            continue;
        };
        let t = now_micros();
        let rows = poller.query(&stmt, &[lo, hi]).await.context("polling")?;
        polls += 1;
        for r in rows {
            let id: String = r.get(0);
            if outstanding.remove(&id) {
                let appended_at: i64 = id
                    .get(prefix_len..prefix_len + 16)
                    .and_then(|s| s.parse().ok())
                    .with_context(|| format!("sale id {id:?} does not carry its append time"))?;
                latencies.push((t - appended_at).max(0) as f64 / 1000.0);
            }
        }
    }
    let (rows_appended, append_secs) = appender
        .join()
        .map_err(|_| anyhow::anyhow!("appender panicked"))??;
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("baseline thread panicked"))??;
    }
    debug_assert_eq!(rows_appended, appended);
    latencies.sort_by(f64::total_cmp);
    println!(
        "{}",
        serde_json::json!({
            "appended": appended,
            "seen": latencies.len(),
            "missing": outstanding.len(),
            "append_seconds": append_secs,
            "append_rows_per_s": appended as f64 / append_secs,
            "polls": polls,
            "poll_ms": cli.poll_ms,
            "p50_ms": percentile(&latencies, 50.0),
            "p95_ms": percentile(&latencies, 95.0),
            "p99_ms": percentile(&latencies, 99.0),
            "max_ms": latencies.last().copied().unwrap_or(f64::NAN),
            "visible_table": cli.visible_table,
            "baseline": cli.baseline,
        })
    );
    Ok(())
}

/// Appends rows at `rate` for `seconds`, one write per tick; sends each batch's ids.
fn append(cli: &Cli, tx: mpsc::UnboundedSender<Vec<String>>) -> anyhow::Result<(u64, f64)> {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&cli.file)
        .with_context(|| format!("opening {}", cli.file.display()))?;
    let started = Instant::now();
    let total = (cli.rate as f64 * cli.seconds).round() as u64;
    let tick = Duration::from_millis(cli.tick_ms);
    let mut next = started;
    let mut n = 0u64;
    let mut buf = String::with_capacity(64 * 1024);
    while n < total {
        next += tick;
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        let due = ((started.elapsed().as_secs_f64() * cli.rate as f64) as u64).min(total);
        if due <= n {
            continue;
        }
        let t = now_micros();
        buf.clear();
        let mut ids = Vec::with_capacity((due - n) as usize);
        while n < due {
            n += 1;
            let id = format!("{}{t:016}-{n:07}", cli.id_prefix);
            push_sales_row(&mut buf, &id, n);
            buf.push('\n');
            ids.push(id);
        }
        f.write_all(buf.as_bytes())?;
        let _ = tx.send(ids);
    }
    Ok((n, started.elapsed().as_secs_f64()))
}

type Worker = std::thread::JoinHandle<anyhow::Result<()>>;

/// Baseline: tails the file every 10 ms and produces each complete new line as-is.
fn spawn_tail(cli: &Cli, topic: &str, start: u64, stop: Arc<AtomicBool>) -> anyhow::Result<Worker> {
    let producer: BaseProducer = producer_config(&cli.brokers)
        .create()
        .context("creating the baseline producer")?;
    let path = cli.file.clone();
    let topic = topic.to_string();
    Ok(std::thread::spawn(move || {
        let mut f = std::fs::File::open(&path)?;
        let mut offset = start;
        let mut buf = Vec::new();
        loop {
            let stopping = stop.load(Ordering::Relaxed);
            buf.clear();
            f.seek(SeekFrom::Start(offset))?;
            f.read_to_end(&mut buf)?;
            let complete = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            for line in buf[..complete]
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
            {
                let mut rec = BaseRecord::<(), [u8], ()>::to(&topic).payload(line);
                loop {
                    match producer.send(rec) {
                        Ok(()) => break,
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                            rec = r;
                            producer.poll(Duration::from_millis(1));
                        }
                        Err((e, _)) => bail!("baseline produce failed: {e}"),
                    }
                }
            }
            offset += complete as u64;
            producer.poll(Duration::ZERO);
            if stopping {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        producer.flush(Duration::from_secs(30))?;
        Ok(())
    }))
}

/// Baseline: consumes the topic and INSERTs every poll's ids in one statement.
fn spawn_consume(
    cli: &Cli,
    topic: &str,
    client: tokio_postgres::Client,
    rt: tokio::runtime::Handle,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Worker> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &cli.brokers)
        .set("group.id", format!("bench-latency-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "50")
        .create()
        .context("creating the baseline consumer")?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let parts = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map_or(0, |t| t.partitions().len());
    let mut tpl = TopicPartitionList::new();
    for p in 0..parts as i32 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let insert = format!(
        "INSERT INTO {} (sale_id) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING",
        cli.visible_table
    );
    Ok(std::thread::spawn(move || {
        let mut ids: Vec<String> = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let mut wait = Duration::from_millis(100);
            // Everything available now, without waiting once the first record is in.
            while let Some(m) = consumer.poll(wait) {
                let m = m?;
                wait = Duration::ZERO;
                if let Some(p) = m.payload() {
                    let id = p.split(|&b| b == b',').next().unwrap_or_default();
                    ids.push(String::from_utf8_lossy(id).into_owned());
                }
                if ids.len() >= 10_000 {
                    break;
                }
            }
            if !ids.is_empty() {
                rt.block_on(client.execute(insert.as_str(), &[&ids]))
                    .context("baseline insert")?;
                ids.clear();
            }
        }
        Ok(())
    }))
}
