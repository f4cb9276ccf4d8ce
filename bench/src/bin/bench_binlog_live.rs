//! Lag of the binlog source under a live load: inserts `rate` rows per second into a MySQL
//! table (one multi-row INSERT, autocommit, every 10 ms) for `seconds`, while consuming the
//! table's topic from its current end. Each row carries its batch number, its sequence in
//! the batch and the writer's clock in µs just before the INSERT was sent (`ts_us`). A row's
//! lag = the time its change event was consumed − the time its INSERT's commit was
//! acknowledged to the writer (also reported against `ts_us`). Prints one JSON line.

use anyhow::{bail, Context};
use clap::Parser;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Cli {
    /// `mysql://user@host:port/db`.
    #[arg(long)]
    url: String,
    /// Table with columns (batch INT, seq INT, ts_us BIGINT, payload VARCHAR).
    #[arg(long)]
    table: String,
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    #[arg(long)]
    topic: String,
    #[arg(long, default_value_t = 5000)]
    rate: u64,
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// How long to wait for the last rows after the last INSERT.
    #[arg(long, default_value_t = 30)]
    drain_s: u64,
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// (batch, seq, ts_us, consumed at µs) of every live row seen on the topic.
type Seen = Vec<(i64, i64, i64, i64)>;

fn int(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

fn consume(
    consumer: BaseConsumer,
    expected: usize,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<(Seen, u64)> {
    let mut seen = Seen::with_capacity(expected);
    let mut other = 0u64;
    while seen.len() < expected && !stop.load(Ordering::Relaxed) {
        let Some(m) = consumer.poll(Duration::from_millis(20)) else {
            continue;
        };
        let m = m.context("consuming")?;
        let at = now_us();
        let Some(payload) = m.payload() else { continue };
        let ev: Value = serde_json::from_slice(payload)?;
        let after = &ev["after"];
        match (
            int(&after["batch"]),
            int(&after["seq"]),
            int(&after["ts_us"]),
        ) {
            (Some(b), Some(s), Some(t)) if b > 0 => seen.push((b, s, t, at)),
            _ => other += 1,
        }
    }
    Ok((seen, other))
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn stats(mut v: Vec<f64>) -> Value {
    v.sort_by(|a, b| a.total_cmp(b));
    json!({
        "p50_ms": pct(&v, 50.0), "p95_ms": pct(&v, 95.0), "p99_ms": pct(&v, 99.0),
        "max_ms": v.last().copied().unwrap_or(f64::NAN),
        "mean_ms": v.iter().sum::<f64>() / v.len().max(1) as f64,
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let per_batch = (cli.rate / 100).max(1);
    let batches = cli.seconds * 100;
    let expected = (per_batch * batches) as usize;

    // Consumer: every partition of the topic, from its current end (no group join).
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &cli.brokers)
        .set("group.id", format!("{}-lag", cli.topic))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .set("fetch.min.bytes", "1")
        .create()?;
    let md = consumer
        .fetch_metadata(Some(&cli.topic), Duration::from_secs(10))
        .context("topic metadata")?;
    let parts = md
        .topics()
        .first()
        .map(|t| t.partitions().len())
        .unwrap_or(0);
    if parts == 0 {
        bail!("topic {} has no partitions (not created yet?)", cli.topic);
    }
    let mut tpl = TopicPartitionList::new();
    for p in 0..parts as i32 {
        let (_, high) = consumer.fetch_watermarks(&cli.topic, p, Duration::from_secs(10))?;
        tpl.add_partition_offset(&cli.topic, p, Offset::Offset(high))?;
    }
    consumer.assign(&tpl)?;
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let reader = std::thread::spawn(move || consume(consumer, expected, stop2));

    let mut conn = Conn::new(Opts::from_url(&cli.url).context("--url")?).await?;
    let payload = "x".repeat(40);
    let mut acked: Vec<(i64, i64)> = Vec::with_capacity(batches as usize); // (stamp, ack)
    let mut sql = String::with_capacity(per_batch as usize * 80);
    let start = Instant::now();
    let mut behind = 0u64;
    for b in 0..batches {
        let due = start + Duration::from_millis(10 * b);
        let now = Instant::now();
        if due > now {
            tokio::time::sleep(due - now).await;
        } else if now - due > Duration::from_millis(10) {
            behind += 1;
        }
        let stamp = now_us();
        sql.clear();
        sql.push_str(&format!(
            "INSERT INTO {} (batch, seq, ts_us, payload) VALUES ",
            cli.table
        ));
        for s in 0..per_batch {
            if s > 0 {
                sql.push(',');
            }
            sql.push_str(&format!("({},{s},{stamp},'{payload}')", b + 1));
        }
        conn.query_drop(&sql).await.context("INSERT")?;
        acked.push((stamp, now_us()));
    }
    let write_s = start.elapsed().as_secs_f64();
    let waited = Instant::now();
    while !reader.is_finished() && waited.elapsed() < Duration::from_secs(cli.drain_s) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let (seen, other) = reader.join().expect("consumer thread")?;

    let mut from_commit = Vec::with_capacity(seen.len());
    let mut from_stamp = Vec::with_capacity(seen.len());
    let mut ids = std::collections::HashSet::with_capacity(seen.len());
    for &(b, s, t, at) in &seen {
        if !ids.insert((b, s)) {
            continue;
        }
        let Some(&(_, ack)) = acked.get((b - 1) as usize) else {
            continue;
        };
        from_commit.push((at - ack) as f64 / 1000.0);
        from_stamp.push((at - t) as f64 / 1000.0);
    }
    let received = ids.len();
    println!(
        "{}",
        json!({
            "rate": cli.rate, "seconds": cli.seconds, "rows_written": expected,
            "write_seconds": write_s, "achieved_rows_per_s": expected as f64 / write_s,
            "batches_late": behind, "rows_received": received,
            "missing": expected - received.min(expected), "other_records": other,
            "lag_from_commit": stats(from_commit), "lag_from_insert_sent": stats(from_stamp),
        })
    );
    Ok(())
}
