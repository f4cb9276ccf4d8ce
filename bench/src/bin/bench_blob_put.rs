//! bench-blob-put: fills an Azurite (or Azure) container with JSON-lines blobs of web usage
//! events for bench/blob.sh, and prints one JSON line: container, blobs, bytes, records and
//! the blobs' URLs (the container is public, so that `curl` can GET them as the baseline).

use anyhow::{Context, Result};
use azure_storage::{CloudLocation, StorageCredentials};
use azure_storage_blobs::prelude::{ClientBuilder, PublicAccess};
use clap::Parser;
use serde_json::json;

#[derive(Parser)]
struct Cli {
    #[arg(long, default_value = "http://127.0.0.1:10000/devstoreaccount1")]
    endpoint: String,
    #[arg(long)]
    container: String,
    /// Total size, MiB.
    #[arg(long, default_value_t = 200)]
    mb: u64,
    /// Size of each blob, MiB.
    #[arg(long, default_value_t = 20)]
    blob_mb: u64,
    /// Delete the container instead.
    #[arg(long)]
    delete: bool,
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let client = ClientBuilder::with_location(
        CloudLocation::Custom {
            account: "devstoreaccount1".into(),
            uri: cli.endpoint.trim_end_matches('/').to_string(),
        },
        StorageCredentials::emulator(),
    );
    let container = client.container_client(&cli.container);
    if cli.delete {
        container.delete().await.context("deleting the container")?;
        return Ok(());
    }
    container
        .create()
        .public_access(PublicAccess::Blob)
        .await
        .context("creating the container (is Azurite running?)")?;
    let (mut bytes, mut records, mut urls) = (0u64, 0u64, Vec::new());
    let blobs = cli.mb.div_ceil(cli.blob_mb);
    for b in 0..blobs {
        let mut body = Vec::with_capacity((cli.blob_mb << 20) as usize + 1024);
        while (body.len() as u64) < cli.blob_mb << 20 {
            let n = records;
            serde_json::to_writer(
                &mut body,
                &json!({
                    "event_id": format!("E{n:09}"),
                    "ts": format!("2026-03-{:02}T{:02}:{:02}:{:02}Z", 1 + n % 28, n % 24, n % 60, n % 59),
                    "channel": if n % 3 == 0 { "app" } else { "web" },
                    "event_type": if n % 7 == 0 { "session_start" } else { "page_view" },
                    "session_id": format!("S{:08}", n / 7),
                    "customer_id": format!("C{:05}", 1 + n % 1500),
                    "page": format!("/products/p{:02}", n % 40),
                    "device": "desktop",
                    "app_version": null,
                }),
            )?;
            body.push(b'\n');
            records += 1;
        }
        let name = format!("bench/events-{b:04}.jsonl");
        bytes += body.len() as u64;
        let blob = container.blob_client(&name);
        urls.push(blob.url()?.to_string());
        blob.put_block_blob(body)
            .await
            .with_context(|| format!("uploading {name}"))?;
        eprintln!("uploaded {name}");
    }
    println!(
        "{}",
        json!({"container": cli.container, "blobs": blobs, "bytes": bytes, "records": records, "urls": urls})
    );
    Ok(())
}
