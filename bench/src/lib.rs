//! Benchmarks of the pipeline against baselines measured in the same run.
//!
//! Shared pieces of the bench binaries (`bench-produce`, `bench-latency`, `bench-util`):
//! the synthetic sales rows, the producer settings ingest uses, a tiny Prometheus scraper
//! and percentiles. `bench/run.sh` drives them; see `bench/README.md`.

use anyhow::{bail, Context as _};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::types::RDKafkaErrorCode;
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Header of the generated sales files (the columns silver.sales reads).
pub const SALES_HEADER: &str =
    "sale_id,sale_date,customer_id,product_id,employee_id,quantity,unit_price,amount";

/// Appends one valid sales row (no newline) whose `sale_id` is `sale_id`; the other fields
/// are derived from `i` so that the data is deterministic and passes silver validation.
pub fn push_sales_row(out: &mut String, sale_id: &str, i: u64) {
    // A cheap deterministic mix of i (splitmix64 finaliser).
    let mut x = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    let day = 1 + (x % 28);
    let month = 1 + ((x >> 8) % 12);
    let customer = 1 + ((x >> 16) % 5000);
    let product = 1 + ((x >> 32) % 500);
    let employee = 1 + ((x >> 40) % 50);
    let quantity = 1 + ((x >> 48) % 9);
    let cents = 100 + ((x >> 12) % 99_900);
    let amount = quantity * cents;
    let _ = write!(
        out,
        "{sale_id},2024-{month:02}-{day:02},C{customer:05},P{product:04},E{employee:03},{quantity},{}.{:02},{}.{:02}",
        cents / 100,
        cents % 100,
        amount / 100,
        amount % 100
    );
}

/// Microseconds since the Unix epoch (wall clock, comparable across processes).
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// The producer settings of ingest's publisher (ingest/src/publisher.rs), so that the
/// baseline differs from ingest only by what ingest does on top of producing.
pub fn producer_config(brokers: &str) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "200000")
        .set("queue.buffering.max.kbytes", "262144")
        .set("message.timeout.ms", "120000");
    cfg
}

/// Creates `topic` with `partitions` partitions unless it exists.
pub async fn ensure_topic(brokers: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("creating the Kafka admin client")?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for r in admin
        .create_topics([&new], &opts)
        .await
        .with_context(|| format!("creating topic {topic}"))?
    {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => bail!("cannot create topic {t}: {code}"),
        }
    }
    Ok(())
}

/// GETs `url` (plain `http://host:port/path`) and returns the body. Blocking, with a short
/// timeout: good enough for a Prometheus endpoint on loopback.
pub fn http_get(url: &str) -> anyhow::Result<String> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("not an http:// URL: {url}"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = hostport
        .to_socket_addrs()?
        .next()
        .with_context(|| format!("cannot resolve {hostport}"))?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!("GET {url}: {}", head.lines().next().unwrap_or_default());
    }
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Ok(dechunk(body));
    }
    Ok(body.to_string())
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A metric selector: `name` or `name{label="value",...}` (labels must all match).
#[derive(Debug, Clone)]
pub struct Selector {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub text: String,
}

impl std::str::FromStr for Selector {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        let (name, labels) = match s.split_once('{') {
            None => (s, Vec::new()),
            Some((n, rest)) => {
                let inner = rest.strip_suffix('}').context("selector: missing }")?;
                let mut labels = Vec::new();
                for kv in inner.split(',').filter(|p| !p.is_empty()) {
                    let (k, v) = kv.split_once('=').context("selector: label without =")?;
                    labels.push((k.trim().to_string(), v.trim().trim_matches('"').to_string()));
                }
                (n, labels)
            }
        };
        Ok(Selector {
            name: name.trim().to_string(),
            labels,
            text: s.to_string(),
        })
    }
}

/// Sum of the samples of `sel` in a Prometheus text exposition (0 when absent).
pub fn metric_sum(exposition: &str, sel: &Selector) -> f64 {
    let mut sum = 0.0;
    for line in exposition.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(sel.name.as_str()) else {
            continue;
        };
        let (labels, value) = if let Some(r) = rest.strip_prefix('{') {
            match r.split_once('}') {
                Some((l, v)) => (l, v),
                None => continue,
            }
        } else if rest.starts_with(' ') {
            ("", rest)
        } else {
            continue; // another metric whose name starts with ours
        };
        let ok = sel
            .labels
            .iter()
            .all(|(k, v)| labels.contains(&format!("{k}=\"{v}\"")));
        if !ok {
            continue;
        }
        if let Some(v) = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            sum += v;
        }
    }
    sum
}

/// The `p`-th percentile (0..=100, nearest rank) of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_selection() {
        let text = "# TYPE x counter\n\
            ingest_rows_published_total{source=\"csv\",entity=\"sales\"} 120\n\
            ingest_rows_published_total{source=\"csv\",entity=\"customers\"} 7\n\
            ingest_rows_published_total_other 5\n";
        let all: Selector = "ingest_rows_published_total".parse().unwrap();
        let sales: Selector = "ingest_rows_published_total{entity=\"sales\"}"
            .parse()
            .unwrap();
        assert_eq!(metric_sum(text, &all), 127.0);
        assert_eq!(metric_sum(text, &sales), 120.0);
    }

    #[test]
    fn percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
    }

    #[test]
    fn rows_are_valid_csv() {
        let mut s = String::new();
        push_sales_row(&mut s, "S1", 42);
        assert_eq!(s.split(',').count(), SALES_HEADER.split(',').count());
    }

    #[test]
    fn chunked() {
        assert_eq!(
            dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            "hello world"
        );
    }
}
