//! `bench-util`: the helpers `bench/run.sh` needs besides the two measuring binaries.
//!
//! - `gen-sales`: writes N synthetic sales rows to a CSV file;
//! - `wait-metric`: optionally renames a file into place (starting the clock), then polls
//!   Prometheus endpoints until every watched counter reaches a target; prints the times;
//! - `dump-bronze`: reads a topic of change events and writes the rows bronze.events would
//!   hold as a CSV for `psql \copy` (the kafka → bronze baseline);
//! - `report`: reads the JSON results, prints one line per benchmark and writes them all
//!   as one JSON document.

use anyhow::{bail, Context as _};
use bench::{http_get, metric_sum, now_micros, push_sales_row, Selector, SALES_HEADER};
use clap::{Parser, Subcommand};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};
use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Helpers of bench/run.sh")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write a CSV of synthetic sales rows (sale_id S0000001, ...).
    GenSales {
        #[arg(long)]
        rows: u64,
        #[arg(long)]
        out: PathBuf,
        /// Prefix of the sale ids.
        #[arg(long, default_value = "S")]
        id_prefix: String,
    },
    /// Poll Prometheus endpoints until every --watch counter reaches --target.
    WaitMetric {
        /// URL and selector: `http://127.0.0.1:9101/metrics|name{label="v"}`; repeatable.
        #[arg(long, required = true)]
        watch: Vec<String>,
        #[arg(long)]
        target: f64,
        /// Rename SRC to DST right after the clock starts.
        #[arg(long, num_args = 2, value_names = ["SRC", "DST"])]
        rename: Option<Vec<PathBuf>>,
        /// Clock start, in microseconds since the epoch (default: now).
        #[arg(long)]
        t0_micros: Option<i64>,
        #[arg(long, default_value_t = 50)]
        poll_ms: u64,
        #[arg(long, default_value_t = 900)]
        timeout_s: u64,
    },
    /// Consume a topic from the beginning and write bronze.events-shaped CSV rows.
    DumpBronze {
        #[arg(long, default_value = "127.0.0.1:9092", env = "ETL_KAFKA__BROKERS")]
        brokers: String,
        #[arg(long)]
        topic: String,
        /// Stop after this many records.
        #[arg(long)]
        rows: u64,
        #[arg(long)]
        out: PathBuf,
        /// Also write the raw record values, one a line (for a same-bytes producer run).
        #[arg(long)]
        payloads_out: Option<PathBuf>,
    },
    /// Delete the topics whose names start with one of the prefixes (best effort).
    DeleteTopics {
        #[arg(long, default_value = "127.0.0.1:9092", env = "ETL_KAFKA__BROKERS")]
        brokers: String,
        #[arg(required = true)]
        prefixes: Vec<String>,
    },
    /// Print the summary lines and write the combined JSON.
    Report {
        /// Directory holding the JSON results of run.sh.
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::GenSales {
            rows,
            out,
            id_prefix,
        } => gen_sales(rows, &out, &id_prefix),
        Cmd::WaitMetric {
            watch,
            target,
            rename,
            t0_micros,
            poll_ms,
            timeout_s,
        } => wait_metric(&watch, target, rename, t0_micros, poll_ms, timeout_s),
        Cmd::DumpBronze {
            brokers,
            topic,
            rows,
            out,
            payloads_out,
        } => dump_bronze(&brokers, &topic, rows, &out, payloads_out.as_ref()),
        Cmd::DeleteTopics { brokers, prefixes } => delete_topics(&brokers, &prefixes),
        Cmd::Report { dir, out } => report(&dir, &out),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn delete_topics(brokers: &str, prefixes: &[String]) -> anyhow::Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let md = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .context("listing topics")?;
    let names: Vec<String> = md
        .topics()
        .iter()
        .map(|t| t.name().to_string())
        .filter(|n| prefixes.iter().any(|p| n.starts_with(p.as_str())))
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in admin.delete_topics(&refs, &opts).await? {
        if let Err((t, code)) = r {
            eprintln!("bench-util: cannot delete topic {t}: {code}");
        }
    }
    eprintln!("bench-util: deleted {} topic(s)", names.len());
    Ok(())
}

fn gen_sales(rows: u64, out: &PathBuf, prefix: &str) -> anyhow::Result<()> {
    let f = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
    writeln!(w, "{SALES_HEADER}")?;
    let mut line = String::with_capacity(128);
    for i in 1..=rows {
        line.clear();
        push_sales_row(&mut line, &format!("{prefix}{i:07}"), i);
        line.push('\n');
        w.write_all(line.as_bytes())?;
    }
    w.flush()?;
    Ok(())
}

struct Watch {
    url: String,
    sel: Selector,
    first_s: Option<f64>,
    done_s: Option<f64>,
    value: f64,
}

fn wait_metric(
    watch: &[String],
    target: f64,
    rename: Option<Vec<PathBuf>>,
    t0_micros: Option<i64>,
    poll_ms: u64,
    timeout_s: u64,
) -> anyhow::Result<()> {
    let mut watches = Vec::new();
    for w in watch {
        let (url, sel) = w
            .split_once('|')
            .with_context(|| format!("--watch {w:?}: expected URL|selector"))?;
        watches.push(Watch {
            url: url.to_string(),
            sel: sel.parse()?,
            first_s: None,
            done_s: None,
            value: 0.0,
        });
    }
    let t0 = t0_micros.unwrap_or_else(now_micros);
    if let Some(r) = rename {
        std::fs::rename(&r[0], &r[1])
            .with_context(|| format!("renaming {} to {}", r[0].display(), r[1].display()))?;
    }
    let since = |t: i64| (t - t0) as f64 / 1e6;
    let deadline = Instant::now() + Duration::from_secs(timeout_s);
    loop {
        let mut scraped: Vec<(String, Option<String>)> = Vec::new();
        for w in watches.iter_mut().filter(|w| w.done_s.is_none()) {
            let body = match scraped.iter().find(|(u, _)| *u == w.url) {
                Some((_, b)) => b.clone(),
                None => {
                    // Not up yet (the service is starting) counts as zero.
                    let b = http_get(&w.url).ok();
                    scraped.push((w.url.clone(), b.clone()));
                    b
                }
            };
            let Some(body) = body else { continue };
            // Stamped after the answer: a busy service may answer late.
            let now = now_micros();
            w.value = metric_sum(&body, &w.sel);
            if w.value > 0.0 && w.first_s.is_none() {
                w.first_s = Some(since(now));
            }
            if w.value >= target {
                w.done_s = Some(since(now));
            }
        }
        if watches.iter().all(|w| w.done_s.is_some()) {
            break;
        }
        if Instant::now() > deadline {
            let state: Vec<String> = watches
                .iter()
                .map(|w| format!("{} = {}", w.sel.text, w.value))
                .collect();
            bail!(
                "timed out after {timeout_s} s waiting for {target}: {}",
                state.join(", ")
            );
        }
        std::thread::sleep(Duration::from_millis(poll_ms));
    }
    let out: Vec<Value> = watches
        .iter()
        .map(|w| {
            json!({
                "selector": w.sel.text, "url": w.url, "value": w.value,
                "first_s": w.first_s, "seconds": w.done_s,
            })
        })
        .collect();
    println!(
        "{}",
        json!({ "t0_micros": t0, "target": target, "watches": out })
    );
    Ok(())
}

fn csv_field(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for b in s.bytes() {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// What bronze.events stores besides the payload, read from a CSV change event the way
/// transform does (etl_contract::EnvelopeIn and source_key; the contract crate is not a
/// dependency so that `clippy -p bench -D warnings` does not lint it).
struct BronzeFields {
    op: String,
    source: String,
    source_key: String,
    ts_ms: Option<i64>,
}

impl BronzeFields {
    fn parse(payload: &[u8]) -> anyhow::Result<Self> {
        let v: Value = serde_json::from_slice(payload)?;
        let op = v["op"].as_str().context("no op")?.to_string();
        let src = &v["source"];
        if src["connector"] != "csv" {
            bail!("not a csv change event");
        }
        let file_id = src["file_id"].as_str().context("no source.file_id")?;
        let offset = src["offset"].as_u64().context("no source.offset")?;
        Ok(BronzeFields {
            op,
            source: src.to_string(),
            source_key: format!("csv:{file_id}:{offset}"),
            ts_ms: v["ts_ms"].as_i64(),
        })
    }
}

fn dump_bronze(
    brokers: &str,
    topic: &str,
    rows: u64,
    out: &PathBuf,
    payloads_out: Option<&PathBuf>,
) -> anyhow::Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("bench-dump-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .context("creating the consumer")?;
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .context("fetching topic metadata")?;
    let parts = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().len())
        .unwrap_or(0);
    if parts == 0 {
        bail!("topic {topic} has no partitions (does it exist?)");
    }
    let mut tpl = TopicPartitionList::new();
    for p in 0..parts as i32 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let f = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
    let mut payloads = match payloads_out {
        Some(p) => Some(std::io::BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => None,
    };
    let started = Instant::now();
    let mut idle_since = Instant::now();
    let (mut n, mut bytes) = (0u64, 0u64);
    let mut line = Vec::with_capacity(1024);
    while n < rows {
        let m = match consumer.poll(Duration::from_millis(200)) {
            Some(m) => m?,
            None => {
                if idle_since.elapsed() > Duration::from_secs(15) {
                    bail!("topic {topic}: only {n} of {rows} records after 15 s without news");
                }
                continue;
            }
        };
        idle_since = Instant::now();
        let Some(payload) = m.payload() else { continue };
        let ev = BronzeFields::parse(payload).with_context(|| {
            format!(
                "record {}:{} is not a change event",
                m.partition(),
                m.offset()
            )
        })?;
        line.clear();
        csv_field(&mut line, topic);
        write!(line, ",{},{},", m.partition(), m.offset())?;
        if let Some(k) = m.key() {
            csv_field(&mut line, &String::from_utf8_lossy(k));
        }
        line.push(b',');
        csv_field(&mut line, &ev.op);
        line.push(b',');
        csv_field(&mut line, &ev.source_key);
        line.push(b',');
        csv_field(&mut line, &ev.source);
        line.push(b',');
        csv_field(&mut line, std::str::from_utf8(payload)?);
        line.push(b',');
        if let Some(ts) = ev.ts_ms.and_then(chrono::DateTime::from_timestamp_millis) {
            write!(line, "{}", ts.to_rfc3339())?;
        }
        line.push(b'\n');
        w.write_all(&line)?;
        if let Some(pw) = payloads.as_mut() {
            pw.write_all(payload)?;
            pw.write_all(b"\n")?;
        }
        n += 1;
        bytes += payload.len() as u64;
    }
    w.flush()?;
    if let Some(mut pw) = payloads {
        pw.flush()?;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"records": n, "payload_bytes": bytes, "seconds": secs, "rows_per_s": n as f64 / secs})
    );
    Ok(())
}

fn read_json(dir: &std::path::Path, name: &str) -> Option<Value> {
    let text = std::fs::read_to_string(dir.join(name)).ok()?;
    serde_json::from_str(&text)
        .ok()
        .or_else(|| serde_json::from_str(text.lines().rev().find(|l| l.starts_with('{'))?).ok())
}

fn num(v: &Value, ptr: &str) -> Option<f64> {
    v.pointer(ptr).and_then(Value::as_f64)
}

fn fmt_rate(r: Option<f64>) -> String {
    r.map(|r| format!("{r:.0}")).unwrap_or_else(|| "n/a".into())
}

fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "MET",
        Some(false) => "MISSED",
        None => "n/a",
    }
}

fn report(dir: &std::path::Path, out: &PathBuf) -> anyhow::Result<()> {
    let params = read_json(dir, "params.json").unwrap_or(Value::Null);
    let rows = num(&params, "/rows");

    // 1. CSV -> Kafka
    let produce = read_json(dir, "produce.json");
    let ingest = read_json(dir, "ingest.json");
    let base1 = produce.as_ref().and_then(|v| num(v, "/rows_per_s"));
    let ours1_s = ingest.as_ref().and_then(|v| num(v, "/watches/0/seconds"));
    let ours1 = rows.zip(ours1_s).map(|(n, s)| n / s);
    let ratio1 = ours1.zip(base1).map(|(o, b)| o / b);
    let goal1 = 0.8;
    let produce_env = read_json(dir, "produce_envelopes.json");
    let base1_env = produce_env.as_ref().and_then(|v| num(v, "/rows_per_s"));
    println!(
        "csv->kafka: ours {} rows/s, baseline {} rows/s, ratio {} (goal >= {goal1}) {} [same baseline producing ingest's envelopes instead of the lines: {} rows/s, ratio {}]",
        fmt_rate(ours1),
        fmt_rate(base1),
        ratio1.map(|r| format!("{r:.2}")).unwrap_or_else(|| "n/a".into()),
        verdict(ratio1.map(|r| r >= goal1)),
        fmt_rate(base1_env),
        ours1
            .zip(base1_env)
            .map(|(o, b)| format!("{:.2}", o / b))
            .unwrap_or_else(|| "n/a".into()),
    );

    // 2. Kafka -> bronze (+ silver)
    let copy = read_json(dir, "copy.json");
    let transform = read_json(dir, "transform.json");
    let base2 = copy.as_ref().and_then(|v| num(v, "/rows_per_s"));
    let bronze_s = transform
        .as_ref()
        .and_then(|v| num(v, "/watches/0/seconds"));
    let silver_s = transform
        .as_ref()
        .and_then(|v| num(v, "/watches/1/seconds"));
    let first_s = transform
        .as_ref()
        .and_then(|v| num(v, "/watches/0/first_s"));
    let ours2 = rows.zip(bronze_s).map(|(n, s)| n / s);
    let silver2 = rows.zip(silver_s).map(|(n, s)| n / s);
    let steady2 = rows
        .zip(bronze_s.zip(first_s))
        .filter(|(_, (d, f))| d > f)
        .map(|(n, (d, f))| n / (d - f));
    let ratio2 = ours2.zip(base2).map(|(o, b)| o / b);
    let goal2 = 0.5;
    println!(
        "kafka->bronze: ours {} rows/s (silver.sales {} rows/s; {} rows/s after the first commit), baseline psql \\copy {} rows/s, ratio {} (goal >= {goal2}) {}",
        fmt_rate(ours2),
        fmt_rate(silver2),
        fmt_rate(steady2),
        fmt_rate(base2),
        ratio2.map(|r| format!("{r:.2}")).unwrap_or_else(|| "n/a".into()),
        verdict(ratio2.map(|r| r >= goal2)),
    );

    // 3. Latency
    let lat = read_json(dir, "latency.json");
    let lat_base = read_json(dir, "latency_baseline.json");
    let p = |v: &Option<Value>, k: &str| v.as_ref().and_then(|v| num(v, &format!("/{k}")));
    let p99 = p(&lat, "p99_ms");
    let missing = p(&lat, "missing").unwrap_or(0.0);
    let ratio3 = p99.zip(p(&lat_base, "p99_ms")).map(|(o, b)| o / b);
    let goal3_ms = 2000.0;
    let ms = |x: Option<f64>| x.map(|x| format!("{x:.0}")).unwrap_or_else(|| "n/a".into());
    println!(
        "latency: ours p50 {} / p95 {} / p99 {} / max {} ms at {} rows/s ({} missing); baseline (minimal tail->kafka->INSERT) p50 {} / p99 {} ms; ratio p99 ours/baseline {} (goal p99 < {goal3_ms:.0} ms at 5000 rows/s) {}",
        ms(p(&lat, "p50_ms")),
        ms(p(&lat, "p95_ms")),
        ms(p99),
        ms(p(&lat, "max_ms")),
        fmt_rate(p(&lat, "append_rows_per_s")),
        missing,
        ms(p(&lat_base, "p50_ms")),
        ms(p(&lat_base, "p99_ms")),
        ratio3.map(|r| format!("{r:.1}")).unwrap_or_else(|| "n/a".into()),
        verdict(p99.map(|x| x < goal3_ms && missing == 0.0)),
    );

    let doc = json!({
        "params": params,
        "csv_to_kafka": {
            "ours_rows_per_s": ours1, "baseline_rows_per_s": base1, "ratio": ratio1, "goal_ratio": goal1,
            "ingest": ingest, "baseline": produce,
            "baseline_envelopes": produce_env,
        },
        "kafka_to_bronze": {
            "ours_rows_per_s": ours2, "silver_sales_rows_per_s": silver2,
            "ours_rows_per_s_after_first_commit": steady2,
            "baseline_rows_per_s": base2, "ratio": ratio2, "goal_ratio": goal2,
            "transform": transform, "baseline": copy,
            "dump": read_json(dir, "dump.json"),
        },
        "latency": {
            "ours": lat, "baseline": lat_base, "ratio_p99": ratio3, "goal_p99_ms": goal3_ms,
        },
    });
    std::fs::write(out, serde_json::to_string_pretty(&doc)? + "\n")
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}
