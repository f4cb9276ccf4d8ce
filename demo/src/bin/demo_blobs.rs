//! demo-blobs: writes daily exports of web and app usage events to Azure Blob Storage
//! (Azurite by default), as the Azure Blob source expects them: container `web-usage`,
//! `yyyy/mm/dd/events-web-<n>.jsonl.gz` and `yyyy/mm/dd/events-app-<n>.jsonl.gz` for each
//! day, plus now and then a plain `.json` array export. A little dirt, as in real exports:
//! one gzip file cut short (truncated upload) and one JSON line that is not JSON.
//!
//! Sessions belong to the demo customers (`C00001`..`C01500`, as written by `demo-data`)
//! or to anonymous visitors; each session has page views (web) or screen views (app).
//! The history is deterministic for a `--seed` and day; blobs already in the container are
//! left as they are. With `--follow`, a new export for today lands every `--interval-ms`.
//!
//! Logs go to stderr; stdout carries only a one-line JSON summary.

use anyhow::{Context, Result};
use azure_storage::{CloudLocation, StorageCredentials};
use azure_storage_blobs::prelude::{ClientBuilder, ContainerClient, PublicAccess};
use chrono::{Datelike, Duration as Days, NaiveDate, Timelike, Utc};
use clap::Parser;
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashSet;
use std::io::Write;
use std::time::Duration;
use tracing::info;

#[derive(Parser, Debug)]
#[command(name = "demo-blobs", version)]
struct Cli {
    /// Blob endpoint (Azurite's development account by default).
    #[arg(
        long,
        default_value = "http://127.0.0.1:10000/devstoreaccount1",
        env = "ETL_DEMO_BLOB_ENDPOINT"
    )]
    endpoint: String,
    /// Storage account name; with no `--account-key` the emulator's published development
    /// key is used (Azurite only).
    #[arg(long, default_value = "devstoreaccount1")]
    account: String,
    #[arg(long, env = "ETL_DEMO_BLOB_ACCOUNT_KEY", hide_env_values = true)]
    account_key: Option<String>,
    #[arg(long, default_value = "web-usage")]
    container: String,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Days of history, ending today.
    #[arg(long, default_value_t = 30)]
    days: u32,
    /// Sessions per day and channel (on average).
    #[arg(long, default_value_t = 60)]
    sessions: u32,
    /// Number of demo customers (ids C00001.. as written by demo-data).
    #[arg(long, default_value_t = 1500)]
    customers: u32,
    /// After the history, upload a new export for today every `--interval-ms`.
    #[arg(long)]
    follow: bool,
    #[arg(long, default_value_t = 20000)]
    interval_ms: u64,
    /// Accepted (and ignored) so the binary can be started like the other services.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
}

const WEB_PAGES: &[&str] = &[
    "/",
    "/products",
    "/products/p01",
    "/products/p02",
    "/products/p03",
    "/products/p05",
    "/products/p08",
    "/cart",
    "/checkout",
    "/account",
    "/help",
    "/blog/spring-sale",
];
const APP_SCREENS: &[&str] = &[
    "home",
    "catalog",
    "product_detail",
    "cart",
    "checkout",
    "orders",
    "profile",
    "search",
];
const WEB_DEVICES: &[&str] = &["desktop", "desktop", "mobile", "mobile", "tablet"];
const APP_DEVICES: &[&str] = &["ios", "android", "android"];
const APP_VERSIONS: &[&str] = &["3.1.0", "3.2.0", "3.2.1"];

struct Gen {
    rng: StdRng,
    customers: u32,
}

impl Gen {
    /// The events of `sessions` sessions of one channel on `day`, as JSON objects.
    fn events(
        &mut self,
        day: NaiveDate,
        channel: &str,
        sessions: u32,
        tag: &str,
    ) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for s in 0..sessions {
            let rng = &mut self.rng;
            let session_id = format!(
                "{}-{}-{tag}-{s:04}",
                &channel[..1].to_uppercase(),
                day.format("%Y%m%d")
            );
            let customer = if rng.random_bool(0.7) {
                serde_json::Value::String(format!("C{:05}", rng.random_range(1..=self.customers)))
            } else {
                serde_json::Value::Null
            };
            let start = day.and_hms_opt(0, 0, 0).expect("midnight")
                + Days::seconds(rng.random_range(6 * 3600..23 * 3600));
            let (device, version) = if channel == "web" {
                (WEB_DEVICES[rng.random_range(0..WEB_DEVICES.len())], None)
            } else {
                (
                    APP_DEVICES[rng.random_range(0..APP_DEVICES.len())],
                    Some(APP_VERSIONS[rng.random_range(0..APP_VERSIONS.len())]),
                )
            };
            let views = rng.random_range(1..12);
            let mut t = start;
            let mut push =
                |n: u32, event_type: &str, page: Option<&str>, t: chrono::NaiveDateTime| {
                    out.push(serde_json::json!({
                        "event_id": format!("{session_id}-{n:03}"),
                        "ts": t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                        "channel": channel,
                        "event_type": event_type,
                        "session_id": session_id,
                        "customer_id": customer,
                        "page": page,
                        "device": device,
                        "app_version": version,
                    }));
                };
            push(0, "session_start", None, t);
            for v in 0..views {
                t += Days::seconds(self.rng.random_range(5..240));
                let (kind, page) = if channel == "web" {
                    (
                        "page_view",
                        WEB_PAGES[self.rng.random_range(0..WEB_PAGES.len())],
                    )
                } else {
                    (
                        "screen_view",
                        APP_SCREENS[self.rng.random_range(0..APP_SCREENS.len())],
                    )
                };
                push(v + 1, kind, Some(page), t);
            }
            push(views + 1, "session_end", None, t + Days::seconds(30));
        }
        out
    }
}

fn jsonl(events: &[serde_json::Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in events {
        serde_json::to_writer(&mut out, e).expect("json");
        out.push(b'\n');
    }
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("in memory");
    e.finish().expect("in memory")
}

async fn existing(container: &ContainerClient) -> Result<HashSet<String>> {
    let mut names = HashSet::new();
    let mut stream = container.list_blobs().into_stream();
    while let Some(page) = stream.next().await {
        let page = page.context("listing the container")?;
        names.extend(page.blobs.blobs().map(|b| b.name.clone()));
    }
    Ok(names)
}

async fn put(
    container: &ContainerClient,
    name: &str,
    body: Vec<u8>,
    have: &mut HashSet<String>,
) -> Result<bool> {
    if have.contains(name) {
        return Ok(false);
    }
    let len = body.len();
    container
        .blob_client(name)
        .put_block_blob(body)
        .await
        .with_context(|| format!("uploading {name}"))?;
    info!(blob = name, bytes = len, "uploaded");
    have.insert(name.to_string());
    Ok(true)
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let creds = match &cli.account_key {
        Some(k) => StorageCredentials::access_key(cli.account.clone(), k.clone()),
        None => StorageCredentials::emulator(),
    };
    let client = ClientBuilder::with_location(
        CloudLocation::Custom {
            account: cli.account.clone(),
            uri: cli.endpoint.trim_end_matches('/').to_string(),
        },
        creds,
    );
    let container = client.container_client(&cli.container);
    // Azurite may still be starting.
    let mut tries = 0;
    loop {
        match container.create().public_access(PublicAccess::None).await {
            Ok(_) => break,
            Err(e)
                if e.to_string().contains("ContainerAlreadyExists")
                    || e.to_string().contains("409") =>
            {
                break
            }
            Err(e) if tries < 30 => {
                tries += 1;
                tracing::warn!(error = %e, "cannot create the container yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e).context("creating the container"),
        }
    }
    let mut have = existing(&container).await?;
    let today = Utc::now().date_naive();
    let mut uploaded = 0u32;
    let mut events_total = 0usize;
    for back in (0..cli.days).rev() {
        let day = today - Days::days(back as i64);
        // One generator per day: a day's files do not depend on how many days came before.
        let mut g = Gen {
            rng: StdRng::seed_from_u64(
                cli.seed ^ (day.num_days_from_ce() as u64).wrapping_mul(0x9e37_79b9),
            ),
            customers: cli.customers,
        };
        let dir = day.format("%Y/%m/%d").to_string();
        let weekend = matches!(day.format("%a").to_string().as_str(), "Sat" | "Sun");
        let base = if weekend {
            cli.sessions * 3 / 4
        } else {
            cli.sessions
        };
        for (channel, n) in [("web", base), ("app", base * 2 / 3)] {
            let ev = g.events(day, channel, n.max(1), "d");
            events_total += ev.len();
            let mut body = jsonl(&ev);
            if back == 3 && channel == "web" {
                // Dirt: one line of the export is not JSON (a log line slipped in).
                let cut = body.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
                body.splice(
                    cut..cut,
                    b"2026-01-01 12:00:00 WARN exporter: retrying batch 7\n"
                        .iter()
                        .copied(),
                );
            }
            let name = format!("{dir}/events-{channel}-0001.jsonl.gz");
            uploaded += put(&container, &name, gzip(&body), &mut have).await? as u32;
        }
        if back % 7 == 2 {
            // A partner export: a plain JSON array.
            let ev = g.events(day, "app", 5, "partner");
            events_total += ev.len();
            let name = format!("{dir}/partner-app-export.json");
            let body = serde_json::to_vec_pretty(&ev).expect("json");
            uploaded += put(&container, &name, body, &mut have).await? as u32;
        }
        if back == 5 {
            // Dirt: an upload cut short, the gzip ends mid-stream.
            let ev = g.events(day, "web", 20, "late");
            let z = gzip(&jsonl(&ev));
            let name = format!("{dir}/events-web-0002.jsonl.gz");
            uploaded +=
                put(&container, &name, z[..z.len() * 2 / 3].to_vec(), &mut have).await? as u32;
        }
    }
    info!(uploaded, events = events_total, container = %cli.container, "history written");
    if cli.follow {
        let mut rng = StdRng::seed_from_u64(cli.seed ^ Utc::now().timestamp() as u64);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(cli.interval_ms)) => {}
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
            }
            let now = Utc::now();
            let day = now.date_naive();
            let tag = format!("live{:05}", now.num_seconds_from_midnight());
            let mut g = Gen {
                rng: StdRng::seed_from_u64(rng.random()),
                customers: cli.customers,
            };
            let channel = if rng.random_bool(0.5) { "web" } else { "app" };
            let ev = g.events(day, channel, rng.random_range(2..8), &tag);
            let name = format!("{}/events-{channel}-{tag}.jsonl.gz", day.format("%Y/%m/%d"));
            put(&container, &name, gzip(&jsonl(&ev)), &mut have).await?;
            uploaded += 1;
        }
    }
    println!(
        "{}",
        serde_json::json!({"container": cli.container, "uploaded": uploaded, "events": events_total})
    );
    Ok(())
}
