//! `bench-produce`: the CSV → Kafka baseline. Reads a file's lines and produces each line
//! as-is (no parsing, no key) to a topic, with ingest's producer settings (idempotent,
//! acks=all, linger.ms=5, batch.num.messages=10000), then waits for every delivery.
//! Prints one JSON object: records, bytes, seconds, rows_per_s.

use anyhow::{bail, Context as _};
use bench::{ensure_topic, producer_config};
use clap::Parser;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;
use std::io::BufRead as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Baseline producer: one record per line of a file, same settings as ingest")]
struct Cli {
    #[arg(long, default_value = "127.0.0.1:9092", env = "ETL_KAFKA__BROKERS")]
    brokers: String,
    #[arg(long)]
    topic: String,
    /// Partitions of the topic if it has to be created (ingest's default is 3).
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// Skip the first line (the CSV header), as ingest does.
    #[arg(long)]
    skip_header: bool,
    /// Produce the file this many times (one producer, warmed up); the median run counts.
    #[arg(long, default_value_t = 3)]
    repeat: u32,
    file: PathBuf,
}

#[derive(Default)]
struct Counts {
    delivered: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for Counts {}

impl ProducerContext for Counts {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(_) => self.delivered.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    ensure_topic(&cli.brokers, &cli.topic, cli.partitions).await?;
    let producer: BaseProducer<Counts> = producer_config(&cli.brokers)
        .create_with_context(Counts::default())
        .context("creating the producer")?;
    // Connect and fetch the topic's metadata before the clock starts (ingest is running,
    // hence connected, before its file arrives).
    producer
        .client()
        .fetch_metadata(Some(&cli.topic), Duration::from_secs(10))
        .context("fetching topic metadata")?;

    // Warm up: the idempotent producer's id and the partition leaders, before the clock
    // starts (ingest is running, hence warm, before its file arrives).
    producer
        .send(BaseRecord::<(), [u8], ()>::to(&cli.topic).payload(&b"warm-up"[..]))
        .map_err(|(e, _)| e)
        .context("producing the warm-up record")?;
    producer
        .flush(Duration::from_secs(30))
        .context("flushing the warm-up record")?;
    let mut runs = Vec::new();
    for _ in 0..cli.repeat.max(1) {
        runs.push(produce_file(&cli, &producer)?);
    }
    let mut sorted: Vec<f64> = runs.iter().map(|r| r.2).collect();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let (sent, bytes, secs) = *runs.iter().find(|r| r.2 == median).expect("a run");
    println!(
        "{}",
        serde_json::json!({
            "records": sent,
            "bytes": bytes,
            "seconds": secs,
            "rows_per_s": sent as f64 / secs,
            "runs_seconds": runs.iter().map(|r| r.2).collect::<Vec<_>>(),
        })
    );
    Ok(())
}

/// Produces every line of the file once and waits for the deliveries: (records, bytes, s).
fn produce_file(cli: &Cli, producer: &BaseProducer<Counts>) -> anyhow::Result<(u64, u64, f64)> {
    let started = Instant::now();
    let before = producer.context().delivered.load(Ordering::Relaxed);
    let file = std::fs::File::open(&cli.file)
        .with_context(|| format!("opening {}", cli.file.display()))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut line = Vec::with_capacity(256);
    let (mut sent, mut bytes) = (0u64, 0u64);
    let mut first = true;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        if std::mem::take(&mut first) && cli.skip_header {
            continue;
        }
        let payload = line.strip_suffix(b"\n").unwrap_or(&line);
        let payload = payload.strip_suffix(b"\r").unwrap_or(payload);
        let mut record = BaseRecord::<(), [u8], ()>::to(&cli.topic).payload(payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(1));
                }
                Err((e, _)) => bail!("produce failed: {e}"),
            }
        }
        sent += 1;
        bytes += payload.len() as u64;
        if sent % 1024 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .context("waiting for the deliveries")?;
    let secs = started.elapsed().as_secs_f64();
    let ctx = producer.context();
    let (delivered, failed) = (
        ctx.delivered.load(Ordering::Relaxed) - before,
        ctx.failed.load(Ordering::Relaxed),
    );
    if delivered != sent || failed != 0 {
        bail!("sent {sent} records but {delivered} were delivered and {failed} failed");
    }
    Ok((sent, bytes, secs))
}
