//! Baseline of the binlog benchmark: streams the binlog from a start position to an end
//! position with its own replica server id and decodes every row of every rows event into
//! values (no JSON, no Kafka). Prints one JSON line: events, rows, seconds, events/s, rows/s.

use anyhow::{bail, Context};
use clap::Parser;
use futures::StreamExt;
use mysql_async::binlog::events::EventData;
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStreamRequest, Conn, Opts};
use serde_json::json;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Cli {
    /// `mysql://user@host:port` (a user with REPLICATION SLAVE).
    #[arg(long)]
    url: String,
    /// Replica server id, unique among the server's replicas and tailers.
    #[arg(long)]
    server_id: u32,
    #[arg(long)]
    start_file: String,
    #[arg(long)]
    start_pos: u64,
    #[arg(long)]
    end_file: String,
    #[arg(long)]
    end_pos: u64,
    #[arg(long, default_value_t = 600)]
    timeout_s: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let opts = Opts::from_url(&cli.url).context("--url")?;
    let t0 = Instant::now();
    let mut conn = Conn::new(opts).await.context("connecting")?;
    let _ = conn.query_drop("SET @mariadb_slave_capability=4").await;
    let mut stream = conn
        .get_binlog_stream(
            BinlogStreamRequest::new(cli.server_id)
                .with_filename(cli.start_file.as_bytes())
                .with_pos(cli.start_pos),
        )
        .await
        .context("opening the binlog stream")?;
    let opened_s = t0.elapsed().as_secs_f64();
    let deadline = t0 + Duration::from_secs(cli.timeout_s);
    let mut file = cli.start_file.clone();
    let (mut events, mut rows_events, mut rows, mut values) = (0u64, 0u64, 0u64, 0u64);
    let mut first_row_s: Option<f64> = None;
    let mut last_row_s = 0.0;
    loop {
        if Instant::now() > deadline {
            bail!("timed out at {file}:? after {events} events, {rows} rows");
        }
        let Some(ev) = stream.next().await else {
            bail!(
                "the binlog stream ended before {}:{}",
                cli.end_file,
                cli.end_pos
            );
        };
        let ev = ev.context("reading the binlog")?;
        events += 1;
        let hdr = ev.header();
        let log_pos = hdr.log_pos() as u64;
        // MariaDB GTID / GTID_LIST / checkpoint events: no parser in mysql_common.
        if !matches!(hdr.event_type_raw(), 161..=163) {
            match ev.read_data().context("decoding an event")? {
                // The first (fake) rotate's name carries 4 checksum bytes: the start file is known.
                Some(EventData::RotateEvent(r)) if hdr.timestamp() != 0 => {
                    file = String::from_utf8_lossy(r.name_raw()).into_owned();
                }
                Some(EventData::RowsEvent(r)) => {
                    rows_events += 1;
                    let tme = stream
                        .get_tme(r.table_id())
                        .context("rows event for an unknown table id")?;
                    for row in r.rows(tme) {
                        let (before, after) = row.context("decoding a row")?;
                        for img in [before, after].into_iter().flatten() {
                            let vals = img.unwrap();
                            values += vals.len() as u64;
                            std::hint::black_box(&vals);
                        }
                        rows += 1;
                    }
                    let now = t0.elapsed().as_secs_f64();
                    first_row_s.get_or_insert(now);
                    last_row_s = now;
                }
                _ => {}
            }
        }
        if file == cli.end_file && log_pos >= cli.end_pos {
            break;
        }
    }
    let total_s = t0.elapsed().as_secs_f64();
    // Rates over the stream (from the request to the end position), like ingest's clock
    // from its first to its last published row plus the start-up of the stream.
    let stream_s = total_s - opened_s.min(total_s);
    let span = (last_row_s - first_row_s.unwrap_or(0.0)).max(1e-9);
    println!(
        "{}",
        json!({
            "events": events, "rows_events": rows_events, "rows": rows, "values": values,
            "open_s": opened_s, "seconds": total_s, "first_row_s": first_row_s,
            "last_row_s": last_row_s,
            "events_per_s": events as f64 / total_s,
            "rows_per_s": rows as f64 / total_s,
            "rows_per_s_first_to_last": rows as f64 / span,
            "stream_seconds": stream_s,
        })
    );
    Ok(())
}
