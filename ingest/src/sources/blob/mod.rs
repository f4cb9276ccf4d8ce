//! Azure Blob source (`[ingest.blob]`): lists a container under one or more name prefixes,
//! reads new and changed blobs (CSV, JSON lines or JSON arrays, optionally gzip) as streams,
//! and publishes each record as a change event on `<prefix>.blob.<entity>`, keyed by
//! the configured primary-key fields. Works against Azure (connection string, account key
//! or SAS token) and Azurite.
//!
//! **Change detection.** A blob is identified by its name and etag. A blob never seen is
//! read and its records are `c` events; a blob whose etag changed is read again from the
//! start and its records are `u` events (upserts by key downstream: a key present in both
//! versions takes the new version's values, a key only in the new version is created). With
//! `emit_deletes`, the keys of the old version that the new one lacks get `d` events, and so
//! do all keys of a removed blob.
//!
//! **Source keys.** `<container>/<name>@<etag>:<record index>`: a record re-published after
//! a crash gets the same key (bronze keeps it once), a changed blob (new etag) gives new
//! keys. Dead letters use the record index too, or `:blob` when the blob itself is
//! unreadable (corrupt gzip, broken JSON array).
//!
//! **Resume mid-blob.** The checkpoint (one file per entity, saved only after the broker
//! acknowledged every record before it) holds, for each blob being read, its etag and the
//! position after the last acknowledged record: byte offset, line and record index. An
//! uncompressed blob resumes with a ranged GET from that byte offset; a gzip blob is read
//! again from its start (a deflate stream cannot be entered mid-way) and the records before
//! the checkpointed index are skipped. A blob is read with one GET (from the resume offset
//! to the end) whose body is consumed as a stream, a piece of `chunk_bytes` at a time
//! (published, acknowledged, checkpointed): memory holds a few pieces, never the blob.
//! Every GET carries `If-Match: <etag>`, so a blob
//! rewritten while being read is never mixed with its new version: the next listing sees the
//! new etag and reads it from the start.
//!
//! **Listing a large container.** List Blobs pages through names in order with continuation
//! markers (`list_page_size` per page). With `partitioning = "none"` every blob under the
//! prefixes is listed at each poll and its etag stays in the checkpoint (rewritten at each
//! acknowledged chunk): meant for containers of up to some tens of thousands of blobs, or
//! for several narrow prefixes.
//! For date-partitioned names (`<prefix>yyyy/mm/dd/...`, the usual layout of daily exports;
//! `partitioning = "date"`) the source walks the hierarchy with a `/` delimiter (years,
//! then months, then days: a few dozen requests), lists only the day partitions from its
//! *settled mark* on, and keeps etags only for those. Once every blob of a day older than
//! the newest day minus `lookback_days` is read, that day is settled: its blobs leave the
//! checkpoint and only a digest of its listing (names and etags) remains. Every
//! `full_rescan_interval_s` every day is listed once; a settled day whose digest changed is
//! read again (unchanged blobs give the same source keys, so bronze absorbs them); a
//! file landing in a day older than the listed window is found by that rescan too. A
//! million blobs over three years is then ~1,100 settled digests and a poll lists
//! `lookback_days + 1` days (plus names outside the `yyyy/mm/dd/` layout, listed in full).

pub mod decode;
pub mod settings;

pub use settings::{BlobSettings, BlobSourceSettings, Partitioning};

use super::{Source, SourceContext, SourceError};
use crate::checkpoint::CheckpointFile;
use crate::publisher::{Batch, Enqueued};
use azure_core::error::ErrorKind;
use azure_core::prelude::IfMatchCondition;
use azure_storage_blobs::prelude::{ClientBuilder, ContainerClient};
use decode::{Decoder, Fatal, Kind, Obj, Record, Resume};
use etl_contract::{
    data_topic, dead_letter_topic, DeadLetter, DeadLetterOrigin, Envelope, Op, CONTRACT_VERSION,
};
use futures::future::BoxFuture;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, Write};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// What the source knows about one blob.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BlobState {
    pub etag: String,
    pub size: u64,
    /// 0 for the first version seen (records are `c`), +1 at each change (records are `u`).
    pub generation: u32,
    pub done: bool,
    /// Position after the last acknowledged record (byte offset in the decoded stream, line,
    /// record index).
    pub offset: u64,
    pub line: u64,
    pub index: u64,
    /// CSV header, once read (needed to resume an uncompressed CSV blob mid-way).
    #[serde(default)]
    pub csv_header: Option<Vec<String>>,
    /// With `emit_deletes`: bytes of the keys file that belong to acknowledged records.
    #[serde(default)]
    pub keys_len: u64,
    /// With `emit_deletes`: keys file of the previous version, diffed when this one is read.
    #[serde(default)]
    pub prev_keys: Option<String>,
}

/// Checkpoint of one blob source (entity).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BlobCheckpoint {
    /// Blobs of the listed window, by name.
    pub blobs: BTreeMap<String, BlobState>,
    /// Date partitioning: per prefix, the oldest day (`yyyy/mm/dd`) still listed.
    #[serde(default)]
    pub settled: BTreeMap<String, String>,
    /// Date partitioning: digest of each settled day's listing, by `<prefix>yyyy/mm/dd`.
    #[serde(default)]
    pub digests: BTreeMap<String, String>,
    #[serde(default)]
    pub last_full_scan_ms: i64,
}

/// One blob of a listing.
#[derive(Debug, Clone)]
struct Listed {
    name: String,
    etag: String,
    size: u64,
    /// `<prefix>yyyy/mm/dd` of a date partition.
    day: Option<String>,
}

/// The `source` block of the blob connector.
#[derive(Serialize)]
struct BlobPos<'a> {
    version: &'a str,
    connector: &'a str,
    name: &'a str,
    entity: &'a str,
    ts_ms: i64,
    container: &'a str,
    blob: &'a str,
    etag: &'a str,
    record: u64,
    line: u64,
    offset: u64,
    gzip: bool,
    snapshot: bool,
    source_key: String,
}

pub struct BlobSource {
    settings: BlobSettings,
    client: ClientBuilder,
    endpoint: String,
    prefix: String,
}

fn upstream(context: impl Into<String>) -> impl FnOnce(azure_core::Error) -> SourceError {
    let context = context.into();
    move |e| SourceError::Io {
        context,
        source: std::io::Error::other(e),
    }
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> SourceError {
    let context = context.into();
    move |source| SourceError::Io { context, source }
}

/// 404 (gone) or 412 (etag changed): the blob is not the version being read any more.
fn is_gone_or_changed(e: &azure_core::Error) -> bool {
    matches!(e.kind(), ErrorKind::HttpResponse { status, .. } if matches!(u16::from(*status), 404 | 412))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

fn strip_etag(e: &str) -> String {
    e.trim_matches('"').to_string()
}

/// `yyyy/mm/dd` of a day partition name like `2026/03/05`.
fn is_digits(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_digit())
}

/// The day `days` before `day` (`yyyy/mm/dd`).
fn day_minus(day: &str, days: u32) -> Option<String> {
    let d = chrono::NaiveDate::parse_from_str(day, "%Y/%m/%d").ok()?;
    Some(
        (d - chrono::Duration::days(days as i64))
            .format("%Y/%m/%d")
            .to_string(),
    )
}

/// A chunk's records, enqueued but not yet acknowledged.
struct Pending {
    batch: Batch,
    at: Resume,
    csv_header: Option<Vec<String>>,
    keys: Vec<u8>,
    rows: u64,
    dead: u64,
    bytes: u64,
}

/// Reads a blob from an offset to its end with one ranged GET whose body is consumed as a
/// stream, in a task of its own (aborted when dropped), and hands it over in pieces of about
/// `chunk` bytes: at most two pieces wait in the channel, so memory stays a few chunks
/// whatever the blob's size, and the next piece downloads while one is decoded. (One GET
/// per blob rather than one per chunk: Azurite answers a 4 MiB ranged GET in ~100 ms.)
/// Pieces come in order; a failure ends the sequence with its error.
struct Prefetch {
    rx: tokio::sync::mpsc::Receiver<azure_core::Result<bytes::Bytes>>,
    task: tokio::task::JoinHandle<()>,
}

impl Prefetch {
    fn start(
        blob: azure_storage_blobs::prelude::BlobClient,
        etag_header: String,
        from: u64,
        size: u64,
        chunk: u64,
    ) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let task = tokio::spawn(async move {
            let mut pos = from;
            let mut buf = bytes::BytesMut::new();
            while pos < size {
                let mut stream = blob
                    .get()
                    .range(pos..size)
                    .chunk_size(size - pos)
                    .if_match(IfMatchCondition::Match(etag_header.clone()))
                    .into_stream();
                let mut body = match stream.next().await {
                    Some(Ok(r)) => r.data,
                    Some(Err(e)) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                    None => {
                        let _ = tx
                            .send(Err(azure_core::Error::message(
                                ErrorKind::Io,
                                "no response to a ranged GET",
                            )))
                            .await;
                        return;
                    }
                };
                let before = pos;
                while let Some(piece) = body.next().await {
                    match piece {
                        Ok(b) => {
                            pos += b.len() as u64;
                            buf.extend_from_slice(&b);
                            if buf.len() as u64 >= chunk
                                && tx.send(Ok(buf.split().freeze())).await.is_err()
                            {
                                return;
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    }
                }
                if pos == before {
                    break; // an empty body: the blob is shorter than listed
                }
            }
            if !buf.is_empty() {
                let _ = tx.send(Ok(buf.freeze())).await;
            }
        });
        Prefetch { rx, task }
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Keys and values of a chunk's records: whether it is a dead letter, and the ranges of its
/// key and value in the arena.
type Items = Vec<(bool, Range<usize>, Range<usize>)>;

/// What every record of one blob version needs to become a change event or a dead letter.
struct BlobRecords<'a> {
    prefix: &'a str,
    src: &'a BlobSourceSettings,
    name: &'a str,
    etag: &'a str,
    gzip: bool,
    /// `c` for the first version of the blob, `u` for a later one.
    op: Op,
    ts_ms: i64,
    /// The producer's record limit.
    max_bytes: usize,
}

impl BlobRecords<'_> {
    /// Appends a record's key and change event to `arena` (their ranges to `items`), or its
    /// dead letter when it is not an object with the key fields or its event is over the
    /// producer's limit.
    fn push_record(&self, arena: &mut Vec<u8>, items: &mut Items, r: Record<'_>) {
        let (container, name, etag) = (self.src.container.as_str(), self.name, self.etag);
        let (ts_ms, max_bytes) = (self.ts_ms, self.max_bytes);
        let source_key = format!("{container}/{name}@{etag}:{}", r.index);
        let verdict: Result<(), String> = match r.value {
            Ok(obj) => match record_key(&obj, &self.src.key) {
                Ok(key) => {
                    let k0 = arena.len();
                    serde_json::to_writer(&mut *arena, &key).expect("key serializes");
                    let k1 = arena.len();
                    let pos = BlobPos {
                        version: CONTRACT_VERSION,
                        connector: "blob",
                        name: self.prefix,
                        entity: &self.src.entity,
                        ts_ms,
                        container,
                        blob: name,
                        etag,
                        record: r.index,
                        line: r.line,
                        offset: r.offset,
                        gzip: self.gzip,
                        snapshot: false,
                        source_key: source_key.clone(),
                    };
                    serde_json::to_writer(
                        &mut *arena,
                        &Envelope {
                            before: None,
                            after: Some(&obj),
                            op: self.op,
                            source: &pos,
                            ts_ms,
                        },
                    )
                    .expect("envelope serializes");
                    if arena.len() - k0 <= max_bytes {
                        items.push((false, k0..k1, k1..arena.len()));
                        Ok(())
                    } else {
                        let size = arena.len() - k0;
                        arena.truncate(k0);
                        Err(format!("the change event would be {size} bytes, over the producer's limit of {max_bytes}"))
                    }
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        if let Err(reason) = verdict {
            let dl = DeadLetter::new(
                reason,
                DeadLetterOrigin {
                    connector: "blob",
                    name: self.prefix,
                    entity: Some(&self.src.entity),
                    position: serde_json::json!({
                        "container": container, "blob": name, "etag": etag,
                        "record": r.index, "line": r.line, "offset": r.offset,
                        "gzip": self.gzip,
                    }),
                    source_key: format!("blob:{source_key}"),
                },
                r.raw,
                ts_ms,
            );
            let k0 = arena.len();
            arena.extend_from_slice(dl.source_key.as_bytes());
            let k1 = arena.len();
            serde_json::to_writer(&mut *arena, &dl).expect("dead letter serializes");
            items.push((true, k0..k1, k1..arena.len()));
        }
    }

    /// Appends the dead letter of the unreadable rest of the blob (`record`: the index the
    /// decoder reached).
    fn push_unreadable(&self, arena: &mut Vec<u8>, items: &mut Items, f: &Fatal, record: u64) {
        let (container, name, etag) = (self.src.container.as_str(), self.name, self.etag);
        let source_key = format!("blob:{container}/{name}@{etag}:blob");
        let dl = DeadLetter::new(
            f.reason.clone(),
            DeadLetterOrigin {
                connector: "blob",
                name: self.prefix,
                entity: Some(&self.src.entity),
                position: serde_json::json!({
                    "container": container, "blob": name, "etag": etag,
                    "record": record, "offset": f.offset,
                    "gzip": self.gzip, "whole_blob": true,
                }),
                source_key: source_key.clone(),
            },
            &f.raw,
            self.ts_ms,
        );
        let k0 = arena.len();
        arena.extend_from_slice(source_key.as_bytes());
        let k1 = arena.len();
        serde_json::to_writer(&mut *arena, &dl).expect("dead letter serializes");
        items.push((true, k0..k1, k1..arena.len()));
    }
}

/// Outcome of reading a blob.
enum ReadOutcome {
    Done,
    /// Gone or rewritten while being read: the next listing decides.
    Changed,
    Stopped,
}

struct Ctx<'a> {
    src: &'a BlobSourceSettings,
    container: ContainerClient,
    topic: Arc<str>,
    dlq: Arc<str>,
    cp: CheckpointFile,
    keys_dir: PathBuf,
}

impl BlobSource {
    pub fn new(settings: BlobSettings, prefix: &str) -> Result<Self, SourceError> {
        let (client, endpoint) = settings.client().map_err(SourceError::Config)?;
        Ok(BlobSource {
            settings,
            client,
            endpoint,
            prefix: prefix.to_string(),
        })
    }

    async fn run_loop(&self, ctx: SourceContext) -> Result<(), SourceError> {
        let n = self.settings.sources.len();
        let mut due = vec![Instant::now(); n];
        let mut shutdown = ctx.shutdown.clone();
        info!(endpoint = %self.endpoint, sources = n, "blob source started");
        loop {
            for (i, src) in self.settings.sources.iter().enumerate() {
                if *shutdown.borrow() {
                    info!("blob source stopped");
                    return Ok(());
                }
                if Instant::now() < due[i] {
                    continue;
                }
                ctx.liveness.beat();
                let started = Instant::now();
                self.poll(&ctx, src).await?;
                metrics::histogram!("ingest_blob_poll_seconds", "entity" => src.entity.clone())
                    .record(started.elapsed().as_secs_f64());
                due[i] = Instant::now()
                    + Duration::from_millis(
                        src.poll_interval_ms
                            .unwrap_or(self.settings.poll_interval_ms),
                    );
            }
            if *shutdown.borrow() {
                info!("blob source stopped");
                return Ok(());
            }
            let next = due.iter().min().copied().unwrap_or_else(Instant::now);
            tokio::select! {
                _ = tokio::time::sleep_until(next.into()) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    fn ctx_for<'a>(
        &self,
        ctx: &SourceContext,
        src: &'a BlobSourceSettings,
    ) -> Result<Ctx<'a>, SourceError> {
        Ok(Ctx {
            src,
            container: self.client.clone().container_client(&src.container),
            topic: data_topic(&self.prefix, "blob", &src.entity)
                .map_err(|e| SourceError::Config(e.to_string()))?
                .into(),
            dlq: dead_letter_topic(&self.prefix)
                .map_err(|e| SourceError::Config(e.to_string()))?
                .into(),
            cp: CheckpointFile::new(ctx.checkpoint_dir.join(format!("blob-{}.json", src.entity))),
            keys_dir: ctx.checkpoint_dir.join(format!("blob-keys-{}", src.entity)),
        })
    }

    /// One poll of one source: list, read what is new or changed, emit deletes, settle days.
    async fn poll(&self, ctx: &SourceContext, src: &BlobSourceSettings) -> Result<(), SourceError> {
        let c = self.ctx_for(ctx, src)?;
        let mut state: BlobCheckpoint = c.cp.load()?;
        let now_ms = chrono::Utc::now().timestamp_millis();
        let date = src.partitioning == Partitioning::Date;
        let full = date
            && src.full_rescan_interval_s > 0
            && now_ms - state.last_full_scan_ms >= src.full_rescan_interval_s as i64 * 1000;
        let Some(mut listed) = self.list_source(&c, &state, date, full).await? else {
            return Ok(());
        };
        listed.sort_by(|a, b| a.name.cmp(&b.name));
        listed.dedup_by(|a, b| a.name == b.name);
        metrics::gauge!("ingest_blob_listed", "entity" => src.entity.clone())
            .set(listed.len() as f64);

        // A full rescan brings back settled days: keep only those whose listing changed.
        if full {
            reopen_changed_days(src, &mut state, &mut listed);
            state.last_full_scan_ms = now_ms;
            c.cp.save(&state)?;
        }

        self.remove_gone(ctx, &c, &mut state, &listed).await?;

        // New and changed blobs, oldest name first.
        let fmt = src.format.and_then(|f| f.format());
        for l in &listed {
            if *ctx.shutdown.borrow() {
                return Ok(());
            }
            let Some(kind) = decode::detect(&l.name, fmt) else {
                debug!(blob = %l.name, "not a csv/jsonl/json blob; ignored");
                continue;
            };
            let fresh = match state.blobs.get(&l.name) {
                Some(st) if st.etag == l.etag => {
                    if st.done {
                        continue;
                    }
                    false
                }
                Some(st) => {
                    info!(entity = %src.entity, blob = %l.name, old_etag = %st.etag, etag = %l.etag, "blob changed; reading it again");
                    true
                }
                None => true,
            };
            if fresh {
                self.track_version(&c, &mut state, l)?;
            }
            match self.read_blob(ctx, &c, &mut state, &l.name, kind).await? {
                ReadOutcome::Done => {}
                ReadOutcome::Changed => {
                    info!(entity = %src.entity, blob = %l.name, "blob changed or removed while being read; the next listing decides");
                }
                ReadOutcome::Stopped => return Ok(()),
            }
        }

        if date {
            self.settle(&c, &mut state, &listed)?;
        }
        metrics::gauge!("ingest_blob_tracked", "entity" => src.entity.clone())
            .set(state.blobs.len() as f64);
        Ok(())
    }

    /// Lists the blobs under every prefix of the source (date partitions from the settled
    /// mark on, unless `full`); `None` when the container does not exist.
    async fn list_source(
        &self,
        c: &Ctx<'_>,
        state: &BlobCheckpoint,
        date: bool,
        full: bool,
    ) -> Result<Option<Vec<Listed>>, SourceError> {
        let src = c.src;
        let mut listed: Vec<Listed> = Vec::new();
        for p in &src.prefixes {
            let res = if date {
                let from = if full {
                    None
                } else {
                    state.settled.get(p).cloned()
                };
                self.list_dated(c, p, from.as_deref(), &mut listed).await
            } else {
                self.list_flat(c, p, None, &mut listed).await
            };
            match res {
                Ok(()) => {}
                // A missing container is not an empty one: nothing is deleted, the next poll
                // looks again.
                Err(e) if matches!(e.kind(), ErrorKind::HttpResponse { status, .. } if u16::from(*status) == 404) =>
                {
                    warn!(entity = %src.entity, container = %src.container, endpoint = %self.endpoint, "container not found; waiting for it");
                    return Ok(None);
                }
                Err(e) => {
                    return Err(upstream(format!(
                        "listing container {} under {p:?} at {}",
                        src.container, self.endpoint
                    ))(e))
                }
            }
        }
        Ok(Some(listed))
    }

    /// Blobs tracked but no longer listed (everything tracked is within the listed window):
    /// their keys' `d` events (with `emit_deletes`), then they leave the checkpoint.
    async fn remove_gone(
        &self,
        ctx: &SourceContext,
        c: &Ctx<'_>,
        state: &mut BlobCheckpoint,
        listed: &[Listed],
    ) -> Result<(), SourceError> {
        let names: HashSet<&str> = listed.iter().map(|l| l.name.as_str()).collect();
        let removed: Vec<String> = state
            .blobs
            .keys()
            .filter(|n| !names.contains(n.as_str()))
            .cloned()
            .collect();
        for name in removed {
            let st = state.blobs.get(&name).cloned().expect("tracked");
            if c.src.emit_deletes {
                let file = self.keys_file(c, &name, st.generation);
                self.publish_deletes(ctx, c, &name, &st.etag, "deleted", &file, None)
                    .await?;
                let _ = std::fs::remove_file(&file);
                if let Some(prev) = &st.prev_keys {
                    let _ = std::fs::remove_file(prev);
                }
            }
            info!(entity = %c.src.entity, blob = %name, "blob removed");
            state.blobs.remove(&name);
            c.cp.save(state)?;
        }
        Ok(())
    }

    /// Checkpoints a blob version not read yet (new blob, or new etag): read from its start,
    /// its previous version's keys kept for the deletes.
    fn track_version(
        &self,
        c: &Ctx<'_>,
        state: &mut BlobCheckpoint,
        l: &Listed,
    ) -> Result<(), SourceError> {
        let old = state.blobs.get(&l.name).cloned();
        let generation = old.as_ref().map_or(0, |o| o.generation + 1);
        let prev_keys = match &old {
            Some(o) if c.src.emit_deletes => {
                if let Some(p) = &o.prev_keys {
                    let _ = std::fs::remove_file(p);
                }
                Some(
                    self.keys_file(c, &l.name, o.generation)
                        .to_string_lossy()
                        .into_owned(),
                )
            }
            _ => None,
        };
        state.blobs.insert(
            l.name.clone(),
            BlobState {
                etag: l.etag.clone(),
                size: l.size,
                generation,
                done: false,
                offset: 0,
                line: 1,
                index: 0,
                csv_header: None,
                keys_len: 0,
                prev_keys,
            },
        );
        c.cp.save(state)?;
        Ok(())
    }

    /// Moves each prefix's settled mark up to the newest day minus `lookback_days`, over days
    /// whose blobs are all read; their blobs leave the checkpoint, their digest stays.
    fn settle(
        &self,
        c: &Ctx<'_>,
        state: &mut BlobCheckpoint,
        listed: &[Listed],
    ) -> Result<(), SourceError> {
        let mut changed = false;
        for p in &c.src.prefixes {
            let days: Vec<&str> = listed
                .iter()
                .filter_map(|l| l.day.as_deref())
                .filter_map(|d| d.strip_prefix(p.as_str()))
                .filter(|d| d.len() == 10)
                .collect();
            let Some(newest) = days.iter().max() else {
                continue;
            };
            let Some(target) = day_minus(newest, c.src.lookback_days) else {
                continue;
            };
            // Not past a day with a blob still unread.
            let unread = listed
                .iter()
                .filter(|l| state.blobs.get(&l.name).is_some_and(|s| !s.done))
                .filter_map(|l| l.day.as_deref()?.strip_prefix(p.as_str()))
                .min();
            let target = match unread {
                Some(u) if u < target.as_str() => u.to_string(),
                _ => target,
            };
            let current = state.settled.get(p).cloned().unwrap_or_default();
            if target <= current {
                continue;
            }
            let mut by_day: BTreeMap<String, Vec<&Listed>> = BTreeMap::new();
            for l in listed {
                if let Some(d) = l.day.as_deref().and_then(|d| d.strip_prefix(p.as_str())) {
                    if d < target.as_str() {
                        by_day.entry(format!("{p}{d}")).or_default().push(l);
                    }
                }
            }
            for (day, items) in &by_day {
                state.digests.insert(day.clone(), digest(items));
                for l in items {
                    if let Some(st) = state.blobs.remove(&l.name) {
                        if c.src.emit_deletes {
                            let _ = std::fs::remove_file(self.keys_file(c, &l.name, st.generation));
                        }
                    }
                }
            }
            info!(entity = %c.src.entity, prefix = %p, settled = %target, days = by_day.len(), "days settled");
            state.settled.insert(p.clone(), target);
            changed = true;
        }
        if changed {
            c.cp.save(state)?;
        }
        Ok(())
    }

    /// Lists every blob under `prefix` (names only with a delimiter: returns the sub-prefixes).
    async fn list_flat(
        &self,
        c: &Ctx<'_>,
        prefix: &str,
        day: Option<&str>,
        out: &mut Vec<Listed>,
    ) -> azure_core::Result<()> {
        let mut stream = c
            .container
            .list_blobs()
            .prefix(prefix.to_string())
            .max_results(azure_core::prelude::MaxResults::new(
                std::num::NonZeroU32::new(self.settings.list_page_size.max(1)).expect("non-zero"),
            ))
            .into_stream();
        while let Some(page) = stream.next().await {
            let page = page?;
            metrics::counter!("ingest_blob_list_pages_total").increment(1);
            for b in page.blobs.blobs() {
                out.push(Listed {
                    name: b.name.clone(),
                    etag: strip_etag(b.properties.etag.as_ref()),
                    size: b.properties.content_length,
                    day: day.map(str::to_string),
                });
            }
        }
        Ok(())
    }

    /// One level of the hierarchy: blobs directly under `prefix` and the sub-prefixes.
    async fn list_level(
        &self,
        c: &Ctx<'_>,
        prefix: &str,
        blobs: &mut Vec<Listed>,
    ) -> azure_core::Result<Vec<String>> {
        let mut stream = c
            .container
            .list_blobs()
            .prefix(prefix.to_string())
            .delimiter("/")
            .into_stream();
        let mut prefixes = Vec::new();
        while let Some(page) = stream.next().await {
            let page = page?;
            metrics::counter!("ingest_blob_list_pages_total").increment(1);
            for b in page.blobs.blobs() {
                blobs.push(Listed {
                    name: b.name.clone(),
                    etag: strip_etag(b.properties.etag.as_ref()),
                    size: b.properties.content_length,
                    day: None,
                });
            }
            prefixes.extend(page.blobs.prefixes().map(|p| p.name.clone()));
        }
        Ok(prefixes)
    }

    /// Date partitioning: walks `<prefix>yyyy/`, `mm/`, `dd/` from the day `from` on (all
    /// days when `None`) and lists the blobs of those days; names under the prefix that are
    /// not in a date partition are listed too.
    async fn list_dated(
        &self,
        c: &Ctx<'_>,
        prefix: &str,
        from: Option<&str>,
        out: &mut Vec<Listed>,
    ) -> azure_core::Result<()> {
        let from = from.unwrap_or("");
        let (fy, fm) = (from.get(..4).unwrap_or(""), from.get(..7).unwrap_or(""));
        for y in self.list_level(c, prefix, out).await? {
            let ys = y[prefix.len()..].trim_end_matches('/');
            if !is_digits(ys, 4) {
                self.list_flat(c, &y, None, out).await?;
                continue;
            }
            if ys < fy {
                continue;
            }
            for m in self.list_level(c, &y, out).await? {
                let ms = m[prefix.len()..].trim_end_matches('/');
                if ms.len() != 7 || !is_digits(&ms[5..], 2) {
                    self.list_flat(c, &m, None, out).await?;
                    continue;
                }
                if ms < fm {
                    continue;
                }
                for d in self.list_level(c, &m, out).await? {
                    let ds = d[prefix.len()..].trim_end_matches('/');
                    if ds.len() != 10 || !is_digits(&ds[8..], 2) {
                        self.list_flat(c, &d, None, out).await?;
                        continue;
                    }
                    if ds < from {
                        continue;
                    }
                    let day = format!("{prefix}{ds}");
                    self.list_flat(c, &d, Some(&day), out).await?;
                }
            }
        }
        Ok(())
    }

    fn keys_file(&self, c: &Ctx<'_>, name: &str, generation: u32) -> PathBuf {
        c.keys_dir
            .join(format!("{:016x}.{generation}.keys", fnv1a(name.as_bytes())))
    }

    /// Publishes `d` events for the keys in `file` (minus those in `keep`), then waits for
    /// the broker's acknowledgement.
    #[allow(clippy::too_many_arguments)]
    async fn publish_deletes(
        &self,
        ctx: &SourceContext,
        c: &Ctx<'_>,
        name: &str,
        etag: &str,
        what: &str,
        file: &std::path::Path,
        keep: Option<&HashSet<Vec<u8>>>,
    ) -> Result<u64, SourceError> {
        let f = match std::fs::File::open(file) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_err(format!("reading {}", file.display()))(e)),
        };
        let ts_ms = chrono::Utc::now().timestamp_millis();
        let mut batch = Batch::default();
        let mut seen = HashSet::new();
        let mut n = 0u64;
        for (i, line) in std::io::BufReader::new(f).split(b'\n').enumerate() {
            let key = line.map_err(io_err(format!("reading {}", file.display())))?;
            if key.is_empty() || keep.is_some_and(|k| k.contains(&key)) || !seen.insert(key.clone())
            {
                continue;
            }
            let Ok(before) = serde_json::from_slice::<Value>(&key) else {
                continue;
            };
            let pos = BlobPos {
                version: CONTRACT_VERSION,
                connector: "blob",
                name: &self.prefix,
                entity: &c.src.entity,
                ts_ms,
                container: &c.src.container,
                blob: name,
                etag,
                record: i as u64,
                line: 0,
                offset: 0,
                gzip: false,
                snapshot: false,
                source_key: format!("{}/{name}@{etag}:{what}:{i}", c.src.container),
            };
            let value = serde_json::to_vec(&Envelope {
                before: Some(&before),
                after: None,
                op: Op::Delete,
                source: &pos,
                ts_ms,
            })
            .expect("envelope serializes");
            ctx.publisher
                .send(&mut batch, &c.topic, &key, &value)
                .await?;
            n += 1;
        }
        batch.acknowledged().await?;
        metrics::counter!("ingest_blob_deletes_total", "entity" => c.src.entity.clone())
            .increment(n);
        info!(entity = %c.src.entity, blob = %name, deletes = n, reason = what, "delete events published");
        Ok(n)
    }

    /// Reads a blob from its checkpointed position to its end, chunk by chunk; each chunk's
    /// records are enqueued while the previous chunk's acknowledgement is awaited.
    async fn read_blob(
        &self,
        ctx: &SourceContext,
        c: &Ctx<'_>,
        state: &mut BlobCheckpoint,
        name: &str,
        kind: Kind,
    ) -> Result<ReadOutcome, SourceError> {
        let st = state.blobs.get(name).cloned().expect("tracked");
        let delimiter = c.src.delimiter as u8;
        let max_record = self.settings.max_record_bytes;
        let mut dec = Decoder::new(kind, delimiter, max_record);
        // Records below this index were acknowledged before: not published again.
        let mut skip_below = 0;
        let mut fetch = 0u64;
        if kind.gzip || st.offset == 0 {
            skip_below = st.index;
        } else {
            dec.resume_at(
                Resume {
                    offset: st.offset,
                    line: st.line,
                    index: st.index,
                },
                st.csv_header.clone(),
            );
            fetch = st.offset;
        }
        let keys_path = self.keys_file(c, name, st.generation);
        if c.src.emit_deletes {
            std::fs::create_dir_all(&c.keys_dir).map_err(io_err("creating the keys folder"))?;
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&keys_path)
                .map_err(io_err(format!("opening {}", keys_path.display())))?;
            f.set_len(st.keys_len)
                .map_err(io_err(format!("truncating {}", keys_path.display())))?;
        }
        if st.index > 0 || st.offset > 0 {
            info!(entity = %c.src.entity, blob = %name, etag = %st.etag, offset = st.offset, record = st.index, gzip = kind.gzip, "resuming blob");
        } else {
            debug!(entity = %c.src.entity, blob = %name, etag = %st.etag, size = st.size, "reading blob");
        }
        let blob = c.container.blob_client(name);
        let etag_header = format!("\"{}\"", st.etag);
        let mut in_flight: Option<Pending> = None;
        let mut arena: Vec<u8> = Vec::new();
        let mut items: Items = Vec::new();
        let records = BlobRecords {
            prefix: &self.prefix,
            src: c.src,
            name,
            etag: &st.etag,
            gzip: kind.gzip,
            op: if st.generation == 0 {
                Op::Create
            } else {
                Op::Update
            },
            ts_ms: chrono::Utc::now().timestamp_millis(),
            max_bytes: ctx.publisher.max_record_bytes(),
        };
        let mut finished = st.size == 0;
        let mut prefetch =
            Prefetch::start(blob, etag_header, fetch, st.size, self.settings.chunk_bytes);
        while !finished {
            if *ctx.shutdown.borrow() {
                if let Some(p) = in_flight.take() {
                    self.commit(c, state, name, p).await?;
                }
                return Ok(ReadOutcome::Stopped);
            }
            // The next piece is already downloading while this one is decoded.
            let data = match prefetch.rx.recv().await {
                Some(Ok(b)) => b,
                Some(Err(e)) if is_gone_or_changed(&e) => {
                    if let Some(p) = in_flight.take() {
                        self.commit(c, state, name, p).await?;
                    }
                    return Ok(ReadOutcome::Changed);
                }
                Some(Err(e)) => {
                    return Err(upstream(format!(
                        "reading blob {}/{name} at {}",
                        c.src.container, self.endpoint
                    ))(e))
                }
                None => bytes::Bytes::new(),
            };
            let got = data.len() as u64;
            fetch += got;
            // A short read (the blob was truncated under the same etag cannot happen; a
            // shorter body would loop forever) ends the blob.
            finished = fetch >= st.size || got == 0;
            arena.clear();
            items.clear();
            let mut on_record = |r: Record<'_>| {
                if r.index < skip_below {
                    return;
                }
                records.push_record(&mut arena, &mut items, r);
            };
            let fatal = dec.feed(&data, finished, &mut on_record).err();
            if let Some(f) = &fatal {
                warn!(entity = %c.src.entity, blob = %name, etag = %st.etag, offset = f.offset, reason = %f.reason, "blob unreadable from here on; dead-lettered");
                records.push_unreadable(&mut arena, &mut items, f, dec.position().index);
                finished = true;
            }
            let p = Self::enqueue(ctx, c, &arena, &mut items, &dec, got).await?;
            if let Some(prev) = in_flight.replace(p) {
                self.commit(c, state, name, prev).await?;
            }
            ctx.liveness.beat();
        }
        if let Some(p) = in_flight.take() {
            self.commit(c, state, name, p).await?;
        }
        self.finish_blob(ctx, c, state, name, &st.etag, &keys_path)
            .await?;
        debug!(entity = %c.src.entity, blob = %name, records = dec.position().index, "blob read");
        Ok(ReadOutcome::Done)
    }

    /// Enqueues a chunk's records (dead letters to the dead-letter topic) and returns them
    /// as a chunk waiting for its acknowledgement.
    async fn enqueue(
        ctx: &SourceContext,
        c: &Ctx<'_>,
        arena: &[u8],
        items: &mut Items,
        dec: &Decoder,
        got: u64,
    ) -> Result<Pending, SourceError> {
        // The keys of the chunk's records (for the deletes of a later version).
        let mut keys = Vec::new();
        if c.src.emit_deletes {
            for (_, k, _) in items.iter().filter(|(is_dead, ..)| !is_dead) {
                keys.extend_from_slice(&arena[k.clone()]);
                keys.push(b'\n');
            }
        }
        let records = items.drain(..).map(|(d, k, v)| (d, &arena[k], &arena[v]));
        let Enqueued { batch, rows, dead } =
            ctx.publisher.enqueue(&c.topic, &c.dlq, records).await?;
        Ok(Pending {
            batch,
            at: dec.position(),
            csv_header: dec.csv_header().map(<[String]>::to_vec),
            keys,
            rows,
            dead,
            bytes: got,
        })
    }

    /// After a blob's last chunk is acknowledged: `d` events for the keys its previous
    /// version had and this one lacks, then the blob is checkpointed as read.
    async fn finish_blob(
        &self,
        ctx: &SourceContext,
        c: &Ctx<'_>,
        state: &mut BlobCheckpoint,
        name: &str,
        etag: &str,
        keys_path: &std::path::Path,
    ) -> Result<(), SourceError> {
        // Keys the new version no longer has.
        let prev = state.blobs.get(name).and_then(|s| s.prev_keys.clone());
        if let (true, Some(prev)) = (c.src.emit_deletes, prev) {
            let keep: HashSet<Vec<u8>> = std::fs::read(keys_path)
                .unwrap_or_default()
                .split(|&b| b == b'\n')
                .filter(|k| !k.is_empty())
                .map(<[u8]>::to_vec)
                .collect();
            self.publish_deletes(
                ctx,
                c,
                name,
                etag,
                "gone",
                std::path::Path::new(&prev),
                Some(&keep),
            )
            .await?;
            let _ = std::fs::remove_file(&prev);
        }
        if let Some(s) = state.blobs.get_mut(name) {
            s.done = true;
            s.prev_keys = None;
        }
        c.cp.save(state)?;
        metrics::counter!("ingest_blob_blobs_read_total", "entity" => c.src.entity.clone())
            .increment(1);
        Ok(())
    }

    /// Waits for the broker to acknowledge a chunk, then checkpoints the blob past it.
    async fn commit(
        &self,
        c: &Ctx<'_>,
        state: &mut BlobCheckpoint,
        name: &str,
        p: Pending,
    ) -> Result<(), SourceError> {
        p.batch.acknowledged().await?;
        let Some(st) = state.blobs.get_mut(name) else {
            return Ok(());
        };
        if c.src.emit_deletes && !p.keys.is_empty() {
            let path = self.keys_file(c, name, st.generation);
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(&path)
                .map_err(io_err(format!("opening {}", path.display())))?;
            f.write_all(&p.keys)
                .and_then(|_| f.sync_data())
                .map_err(io_err(format!("writing {}", path.display())))?;
            st.keys_len += p.keys.len() as u64;
        }
        // Records below the resume index are skipped on a re-read, so the index only grows.
        if p.at.index >= st.index {
            st.offset = p.at.offset;
            st.line = p.at.line;
            st.index = p.at.index;
        }
        if st.csv_header.is_none() {
            st.csv_header = p.csv_header;
        }
        c.cp.save(state)?;
        let entity = c.src.entity.clone();
        metrics::counter!("ingest_rows_published_total", "source" => "blob", "entity" => entity.clone()).increment(p.rows);
        metrics::counter!("ingest_dead_letters_total", "source" => "blob", "entity" => entity)
            .increment(p.dead);
        metrics::counter!("ingest_bytes_read_total", "source" => "blob").increment(p.bytes);
        Ok(())
    }
}

/// After a full rescan: drops from `listed` the settled days whose listing did not change,
/// and reopens those whose listing did (their digest goes, the settled marks move back).
fn reopen_changed_days(
    src: &BlobSourceSettings,
    state: &mut BlobCheckpoint,
    listed: &mut Vec<Listed>,
) {
    let mut by_day: BTreeMap<&str, Vec<&Listed>> = BTreeMap::new();
    for l in listed.iter() {
        if let Some(d) = &l.day {
            by_day.entry(d.as_str()).or_default().push(l);
        }
    }
    let mut reopened = HashSet::new();
    for (day, items) in &by_day {
        if let Some(old) = state.digests.get(*day) {
            if *old != digest(items) {
                info!(entity = %src.entity, day = %day, "settled day changed since it was read; reading it again");
                reopened.insert(day.to_string());
            }
        }
    }
    listed.retain(|l| match &l.day {
        Some(d) => !state.digests.contains_key(d) || reopened.contains(d),
        None => true,
    });
    for d in &reopened {
        state.digests.remove(d);
    }
    for (p, s) in state.settled.iter_mut() {
        // Reopened days are listed from now on until they settle again.
        if let Some(min) = reopened
            .iter()
            .filter_map(|d| d.strip_prefix(p.as_str()))
            .filter(|d| d.len() == 10)
            .min()
        {
            if min < s.as_str() {
                *s = min.to_string();
            }
        }
    }
}

/// Digest of a day's listing: names and etags.
fn digest(items: &[&Listed]) -> String {
    let mut v: Vec<String> = items
        .iter()
        .map(|l| format!("{}@{}", l.name, l.etag))
        .collect();
    v.sort();
    format!("{:016x}", fnv1a(v.join("\n").as_bytes()))
}

/// The record key: the key fields as a JSON object of trimmed strings.
fn record_key(obj: &Obj<'_>, fields: &[String]) -> Result<Map<String, Value>, String> {
    let mut key = Map::with_capacity(fields.len());
    for f in fields {
        let v = obj
            .key_text(f)
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        if v.is_empty() {
            return Err(format!("primary key field {f:?} is missing or empty"));
        }
        key.insert(f.clone(), Value::String(v));
    }
    Ok(key)
}

impl super::SourceBuilder for BlobSettings {
    fn build(&self, topic_prefix: &str) -> Result<Arc<dyn Source>, SourceError> {
        Ok(Arc::new(BlobSource::new(self.clone(), topic_prefix)?))
    }
}

impl Source for BlobSource {
    fn name(&self) -> &'static str {
        "blob"
    }

    fn topics(&self) -> Vec<String> {
        let mut t: Vec<String> = self
            .settings
            .sources
            .iter()
            .filter_map(|s| data_topic(&self.prefix, "blob", &s.entity).ok())
            .collect();
        t.extend(dead_letter_topic(&self.prefix).ok());
        t
    }

    fn run(&self, ctx: SourceContext) -> BoxFuture<'_, Result<(), SourceError>> {
        Box::pin(self.run_loop(ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_days() {
        let text = r#"{"id":" a ","n":5,"x":null,"o":{"id":1}}"#;
        let map: Map<String, Value> = serde_json::from_str(text).unwrap();
        let raw = Obj::Raw(
            serde_json::from_str(text).unwrap(),
            serde_json::from_str(text).unwrap(),
        );
        for obj in [Obj::Map(map), raw] {
            let k = record_key(&obj, &["id".into(), "n".into()]).unwrap();
            assert_eq!(serde_json::to_string(&k).unwrap(), r#"{"id":"a","n":"5"}"#);
            assert!(record_key(&obj, &["x".into()]).is_err());
            assert!(record_key(&obj, &["o".into()]).is_err());
            assert!(record_key(&obj, &["missing".into()]).is_err());
        }
        assert_eq!(day_minus("2026/03/01", 1).unwrap(), "2026/02/28");
        assert!(is_digits("2026", 4) && !is_digits("20x6", 4));
    }
}
