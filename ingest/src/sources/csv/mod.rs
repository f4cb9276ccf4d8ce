//! CSV source: watches a folder for files matching each entity's glob, reads complete
//! records as they are appended, and publishes each row as a change event keyed by the
//! entity's primary key. Malformed rows go to the dead-letter topic with file, line, raw
//! bytes and reason.
//!
//! Files are identified by device and inode, checked against a hash of their first bytes:
//! a renamed file keeps its position, two files with identical header lines are never
//! confused, and a truncated or replaced file is detected and read anew under a new
//! `file_id`. Per-file positions are saved (crash-safe) only after the broker acknowledged
//! every record before them.

pub(crate) mod records;

use super::{Source, SourceContext, SourceError};
use crate::checkpoint::CheckpointFile;
use crate::config::{CsvEntity, CsvSettings};
use crate::publisher::{Batch, Enqueued};
use encoding_rs::Encoding;
use etl_contract::{
    csv_source_key, data_topic, dead_letter_topic, CsvSource as CsvPosition, DeadLetter,
    DeadLetterOrigin, Envelope, Op, CONTRACT_VERSION,
};
use futures::future::BoxFuture;
use records::{Item, Splitter};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, info, warn};

/// Bytes of a file's head hashed to recognise it.
const HEAD_BYTES: u64 = 4096;

/// Persisted state of one file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileState {
    pub path: PathBuf,
    pub entity: String,
    pub file_id: String,
    pub head_len: u64,
    pub head_hash: String,
    /// Byte offset of the first record not yet acknowledged.
    pub offset: u64,
    /// Line number at `offset` (1-based).
    pub line: u64,
}

/// The CSV source's checkpoint: files by `<device>:<inode>`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CsvCheckpoint {
    pub files: BTreeMap<String, FileState>,
}

pub struct CsvSource {
    settings: CsvSettings,
    patterns: Vec<(glob::Pattern, CsvEntity)>,
    prefix: String,
}

/// In-memory knowledge about a file that is not worth persisting (re-read from the file).
struct Header {
    names: Vec<String>,
    /// Index of each key column, or why the file's rows cannot be read (a key column is
    /// missing, or two columns have the same name).
    key_idx: Result<Vec<usize>, String>,
    /// Where the data starts (after the header line) and the line number there.
    data_offset: u64,
    data_line: u64,
}

fn fnv1a(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

fn io_err(context: String) -> impl FnOnce(std::io::Error) -> SourceError {
    move |source| SourceError::Io { context, source }
}

fn read_head(path: &Path, len: u64) -> std::io::Result<Vec<u8>> {
    let mut f = File::open(path)?;
    let mut buf = vec![0u8; len as usize];
    f.read_exact(&mut buf)?;
    Ok(buf)
}

/// Opens `path` only if it is still the file known as `id` (`<device>:<inode>`): a file
/// replaced or rotated between two chunks must not be read at the old one's position.
fn open_same(path: &Path, id: &str) -> std::io::Result<Option<File>> {
    let f = File::open(path)?;
    let md = f.metadata()?;
    Ok((format!("{}:{}", md.dev(), md.ino()) == id).then_some(f))
}

/// A row image: header names to field values, serialized as a JSON object.
struct Row<'a> {
    names: &'a [String],
    values: &'a [Cow<'a, str>],
}

impl Serialize for Row<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.names.len()))?;
        for (n, v) in self.names.iter().zip(self.values) {
            m.serialize_entry(n, v)?;
        }
        m.end()
    }
}

/// The record key: the primary-key columns as a JSON object, values trimmed.
struct Key<'a> {
    names: &'a [String],
    idx: &'a [usize],
    values: &'a [Cow<'a, str>],
}

impl Serialize for Key<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.idx.len()))?;
        for &i in self.idx {
            // Trimmed, so that " S1 " and "S1" land on the same partition, in order.
            m.serialize_entry(&self.names[i], self.values[i].trim())?;
        }
        m.end()
    }
}

impl CsvSource {
    pub fn new(settings: CsvSettings, prefix: &str) -> Result<Self, SourceError> {
        let mut patterns = Vec::new();
        for e in &settings.entities {
            let p = glob::Pattern::new(&e.pattern).map_err(|err| {
                SourceError::Config(format!(
                    "entity {}: bad pattern {:?}: {err}",
                    e.name, e.pattern
                ))
            })?;
            patterns.push((p, e.clone()));
        }
        Ok(CsvSource {
            settings,
            patterns,
            prefix: prefix.to_string(),
        })
    }

    fn entity_for(&self, file_name: &str) -> Option<&CsvEntity> {
        self.patterns
            .iter()
            .find(|(p, _)| p.matches(file_name))
            .map(|(_, e)| e)
    }

    fn delimiter(&self, e: &CsvEntity) -> u8 {
        e.delimiter.unwrap_or(self.settings.delimiter) as u8
    }

    async fn run_loop(&self, ctx: SourceContext) -> Result<(), SourceError> {
        let cp = CheckpointFile::new(ctx.checkpoint_dir.join("csv.json"));
        let mut state: CsvCheckpoint = cp.load()?;
        std::fs::create_dir_all(&self.settings.watch_dir).map_err(io_err(format!(
            "cannot create the watched folder {}",
            self.settings.watch_dir.display()
        )))?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if res.is_ok() {
                let _ = tx.send(());
            }
        })
        .map_err(|e| SourceError::Config(format!("cannot watch files: {e}")))?;
        notify::Watcher::watch(
            &mut watcher,
            &self.settings.watch_dir,
            notify::RecursiveMode::NonRecursive,
        )
        .map_err(|e| {
            SourceError::Config(format!(
                "cannot watch {}: {e}",
                self.settings.watch_dir.display()
            ))
        })?;
        info!(dir = %self.settings.watch_dir.display(), files = state.files.len(), "csv source started");
        let mut rs = ReadState::default();
        let mut shutdown = ctx.shutdown.clone();
        loop {
            ctx.liveness.beat();
            self.scan(&ctx, &cp, &mut state, &mut rs).await?;
            if *shutdown.borrow() {
                info!("csv source stopped");
                return Ok(());
            }
            tokio::select! {
                _ = rx.recv() => {
                    // Coalesce bursts of notifications into one scan.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    while rx.try_recv().is_ok() {}
                }
                _ = tokio::time::sleep(Duration::from_millis(self.settings.poll_interval_ms)) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// One pass over the folder: registers new files, detects truncated or replaced ones,
    /// reads what was appended, forgets files that disappeared.
    async fn scan(
        &self,
        ctx: &SourceContext,
        cp: &CheckpointFile,
        state: &mut CsvCheckpoint,
        rs: &mut ReadState,
    ) -> Result<(), SourceError> {
        let dir = &self.settings.watch_dir;
        let entries =
            std::fs::read_dir(dir).map_err(io_err(format!("cannot list {}", dir.display())))?;
        let mut found: Vec<(String, PathBuf, u64, &CsvEntity)> = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(entity) = self.entity_for(name) else {
                continue;
            };
            let path = entry.path();
            let Ok(md) = std::fs::metadata(&path) else {
                continue;
            };
            if !md.is_file() {
                continue;
            }
            found.push((format!("{}:{}", md.dev(), md.ino()), path, md.len(), entity));
        }
        // Oldest first: files of a day are usually named so.
        found.sort_by(|a, b| a.1.cmp(&b.1));
        let mut dirty = false;
        for (id, path, len, entity) in &found {
            if len == &0 {
                continue;
            }
            let known = state.files.get(id).cloned();
            let fresh = match known {
                Some(fs) if fs.entity == entity.name => {
                    let same = fs.offset <= *len
                        && read_head(path, fs.head_len)
                            .map(|h| fnv1a(&h) == fs.head_hash)
                            .unwrap_or(false);
                    if same {
                        if &fs.path != path {
                            info!(from = %fs.path.display(), to = %path.display(), "file renamed; keeping its position");
                            state.files.get_mut(id).expect("known").path = path.clone();
                            dirty = true;
                        }
                        false
                    } else {
                        warn!(file = %path.display(), old_file_id = %fs.file_id, "file truncated or replaced; reading it anew");
                        true
                    }
                }
                _ => true,
            };
            if fresh {
                let head_len = (*len).min(HEAD_BYTES);
                let head = read_head(path, head_len)
                    .map_err(io_err(format!("cannot read {}", path.display())))?;
                let fs = FileState {
                    path: path.clone(),
                    entity: entity.name.clone(),
                    file_id: format!("{:016x}", rand::random::<u64>()),
                    head_len,
                    head_hash: fnv1a(&head),
                    offset: 0,
                    line: 1,
                };
                info!(file = %path.display(), file_id = %fs.file_id, entity = %entity.name, "new file");
                state.files.insert(id.clone(), fs);
                rs.headers.remove(id);
                // The file id must be durable before any record carrying it is published,
                // or a crash would re-publish the rows under another id.
                cp.save(state)?;
                dirty = false;
            }
        }
        let before = state.files.len();
        state.files.retain(|id, _| found.iter().any(|f| &f.0 == id));
        rs.headers.retain(|id, _| state.files.contains_key(id));
        if state.files.len() != before {
            dirty = true;
        }
        if dirty {
            cp.save(state)?;
        }
        metrics::gauge!("ingest_csv_files_tracked").set(state.files.len() as f64);
        for (id, _path, len, entity) in &found {
            let Some(fs) = state.files.get(id) else {
                continue;
            };
            // The next chunk is read and enqueued while the broker acknowledges the previous
            // one; the checkpoint only ever moves past acknowledged chunks.
            let mut pos = (fs.offset, fs.line);
            let mut in_flight: Option<Pending> = None;
            while pos.0 < *len && !*ctx.shutdown.borrow() {
                let Some(p) = self.produce_chunk(ctx, state, id, entity, pos, rs).await? else {
                    break;
                };
                pos = (p.offset, p.line);
                if let Some(prev) = in_flight.replace(p) {
                    self.commit(cp, state, id, entity, prev).await?;
                }
                ctx.liveness.beat();
            }
            if let Some(prev) = in_flight {
                self.commit(cp, state, id, entity, prev).await?;
            }
        }
        Ok(())
    }

    fn load_header(
        &self,
        fs: &FileState,
        entity: &CsvEntity,
    ) -> Result<Option<Header>, SourceError> {
        let mut f =
            File::open(&fs.path).map_err(io_err(format!("cannot open {}", fs.path.display())))?;
        let mut buf = Vec::new();
        (&mut f)
            .take(self.settings.max_record_bytes as u64 + 3)
            .read_to_end(&mut buf)
            .map_err(io_err(format!("cannot read {}", fs.path.display())))?;
        // Checked when the configuration was loaded.
        let enc = entity.encoding().ok().flatten();
        let bom = if enc.is_none() && buf.starts_with(b"\xEF\xBB\xBF") {
            3
        } else {
            0
        };
        let mut splitter = Splitter::new(self.delimiter(entity), self.settings.max_record_bytes);
        let mut header = None;
        let mut first = true;
        splitter.split(&buf[bom..], |item| {
            if !first {
                return;
            }
            first = false;
            if let Item::Record(r) = item {
                let names: Vec<String> = r
                    .fields
                    .iter()
                    .map(|f| decode_lossy(enc, f).trim().to_string())
                    .collect();
                let key_idx = header_keys(&names, &entity.key);
                header = Some(Header {
                    names,
                    key_idx,
                    data_offset: (bom + r.start + r.len) as u64,
                    data_line: 1 + r.newlines_before + r.newlines,
                });
            }
        });
        Ok(header)
    }

    /// Reads one chunk of a file from `pos` (byte offset, line) and enqueues its records.
    /// Returns what to checkpoint once the broker acknowledged them, or `None` when nothing
    /// complete was there to read.
    async fn produce_chunk(
        &self,
        ctx: &SourceContext,
        state: &CsvCheckpoint,
        id: &str,
        entity: &CsvEntity,
        pos: (u64, u64),
        rs: &mut ReadState,
    ) -> Result<Option<Pending>, SourceError> {
        let ReadState {
            headers,
            file: buf,
            arena,
            items: out,
            splitters,
        } = rs;
        let fs = state.files.get(id).expect("tracked file");
        if !headers.contains_key(id) {
            match self.load_header(fs, entity)? {
                Some(h) => {
                    if let Err(reason) = &h.key_idx {
                        warn!(file = %fs.path.display(), %reason, entity = %entity.name, "unusable header; the file's rows will be dead-lettered");
                    }
                    headers.insert(id.to_string(), h);
                }
                None => return Ok(None),
            }
        }
        let header = &headers[id];
        let (start_offset, start_line) = if pos.0 < header.data_offset {
            (header.data_offset, header.data_line)
        } else {
            pos
        };
        if !self.read_chunk(fs, id, start_offset, buf)? {
            // Replaced or rotated since the scan started: the next scan sorts it out.
            return Ok(None);
        }
        arena.clear();
        out.clear();

        let topic: Arc<str> = data_topic(&self.prefix, "csv", &entity.name)
            .map_err(|e| SourceError::Config(e.to_string()))?
            .into();
        let dlq: Arc<str> = dead_letter_topic(&self.prefix)
            .map_err(|e| SourceError::Config(e.to_string()))?
            .into();
        let splitter = splitters.entry(self.delimiter(entity)).or_insert_with(|| {
            Splitter::new(self.delimiter(entity), self.settings.max_record_bytes)
        });
        let path_str = fs.path.to_string_lossy().into_owned();
        let chunk = ChunkRecords {
            prefix: &self.prefix,
            entity,
            header,
            fs,
            path_str: &path_str,
            ts_ms: chrono::Utc::now().timestamp_millis(),
            max_bytes: ctx.publisher.max_record_bytes(),
            max_record_bytes: self.settings.max_record_bytes,
            enc: entity.encoding().ok().flatten(), // checked when the configuration was loaded
        };
        let mut line = start_line;
        // Keys and values of the whole chunk, back to back in one buffer: no allocation per
        // row.
        let consumed = splitter.split(buf, |item| {
            let (rec_start, raw, nl_before, nl, fields) = match item {
                Item::Record(r) => (
                    r.start,
                    r.raw,
                    r.newlines_before,
                    r.newlines,
                    Some(r.fields),
                ),
                Item::Oversized(o) => (o.start, o.raw, o.newlines_before, o.newlines, None),
            };
            line += nl_before;
            let rec_line = line;
            line += nl;
            let offset = start_offset + rec_start as u64;
            chunk.push_record(arena, out, offset, rec_line, raw, fields);
        });
        if consumed == 0 {
            return Ok(None);
        }
        let records = out.drain(..).map(|(d, k, v)| (d, &arena[k], &arena[v]));
        let Enqueued { batch, rows, dead } = ctx.publisher.enqueue(&topic, &dlq, records).await?;
        Ok(Some(Pending {
            batch,
            offset: start_offset + consumed as u64,
            line,
            rows,
            dead,
            bytes: consumed as u64,
        }))
    }

    /// Reads up to one chunk of the file known as `id` from `offset` into `buf`; `false`
    /// when the path is no longer that file.
    fn read_chunk(
        &self,
        fs: &FileState,
        id: &str,
        offset: u64,
        buf: &mut Vec<u8>,
    ) -> Result<bool, SourceError> {
        let chunk = self
            .settings
            .chunk_bytes
            .max(2 * self.settings.max_record_bytes + 1);
        let Some(mut f) = open_same(&fs.path, id)
            .map_err(io_err(format!("cannot open {}", fs.path.display())))?
        else {
            return Ok(false);
        };
        f.seek(SeekFrom::Start(offset))
            .map_err(io_err(format!("cannot seek {}", fs.path.display())))?;
        buf.clear();
        f.take(chunk as u64)
            .read_to_end(buf)
            .map_err(io_err(format!("cannot read {}", fs.path.display())))?;
        Ok(true)
    }

    /// Waits for the broker to acknowledge a chunk, then checkpoints the file past it.
    async fn commit(
        &self,
        cp: &CheckpointFile,
        state: &mut CsvCheckpoint,
        id: &str,
        entity: &CsvEntity,
        p: Pending,
    ) -> Result<(), SourceError> {
        p.batch.acknowledged().await?;
        let Some(fs) = state.files.get_mut(id) else {
            return Ok(());
        };
        fs.offset = p.offset;
        fs.line = p.line;
        // The head first hashed may have been short (a file seen while being written): widen
        // it as the file grows, so that a rewrite with the same first bytes is still caught.
        if fs.head_len < HEAD_BYTES && fs.offset > fs.head_len {
            let len = fs.offset.min(HEAD_BYTES);
            if let Ok(Some(mut f)) = open_same(&fs.path, id) {
                let mut head = vec![0u8; len as usize];
                if f.read_exact(&mut head).is_ok() {
                    fs.head_len = len;
                    fs.head_hash = fnv1a(&head);
                }
            }
        }
        cp.save(state)?;
        metrics::counter!("ingest_rows_published_total", "source" => "csv", "entity" => entity.name.clone()).increment(p.rows);
        metrics::counter!("ingest_dead_letters_total", "source" => "csv", "entity" => entity.name.clone()).increment(p.dead);
        metrics::counter!("ingest_bytes_read_total", "source" => "csv").increment(p.bytes);
        debug!(file = %id, rows = p.rows, dead = p.dead, offset = p.offset, "chunk acknowledged and checkpointed");
        Ok(())
    }
}

/// What every record of one chunk of a file needs to become a change event or a dead
/// letter.
struct ChunkRecords<'a> {
    prefix: &'a str,
    entity: &'a CsvEntity,
    header: &'a Header,
    fs: &'a FileState,
    path_str: &'a str,
    ts_ms: i64,
    /// The producer's record limit.
    max_bytes: usize,
    /// `max_record_bytes` of the settings: the longest record the splitter returns whole.
    max_record_bytes: usize,
    enc: Option<&'static Encoding>,
}

/// Keys and values of a chunk's records: whether it is a dead letter, and the ranges of its
/// key and value in the arena.
type Items = Vec<(bool, Range<usize>, Range<usize>)>;

impl ChunkRecords<'_> {
    /// Appends one record's key and change event to `arena` (their ranges to `out`), or its
    /// dead letter when it cannot be one: an oversized record (`fields` is `None`), a row
    /// that does not fit the header, an event over the producer's limit.
    fn push_record(
        &self,
        arena: &mut Vec<u8>,
        out: &mut Items,
        offset: u64,
        rec_line: u64,
        raw: &[u8],
        fields: Option<Vec<&[u8]>>,
    ) {
        let header = self.header;
        let pos = CsvPosition {
            version: CONTRACT_VERSION,
            connector: "csv",
            name: self.prefix,
            entity: &self.entity.name,
            ts_ms: self.ts_ms,
            file: self.path_str,
            file_id: &self.fs.file_id,
            line: rec_line,
            offset,
            snapshot: false,
        };
        let verdict = match fields {
            None => Err(format!(
                "record longer than {} bytes without an end (unbalanced quote?)",
                self.max_record_bytes
            )),
            Some(fields) => build_row(header, self.enc, &fields),
        };
        let verdict: Result<(), String> = match verdict {
            Ok(values) => {
                let idx = header.key_idx.as_ref().expect("checked in build_row");
                let k0 = arena.len();
                serde_json::to_writer(
                    &mut *arena,
                    &Key {
                        names: &header.names,
                        idx,
                        values: &values,
                    },
                )
                .expect("key serializes");
                let k1 = arena.len();
                let row = Row {
                    names: &header.names,
                    values: &values,
                };
                serde_json::to_writer(
                    &mut *arena,
                    &Envelope {
                        before: None,
                        after: Some(row),
                        op: Op::Create,
                        source: &pos,
                        ts_ms: self.ts_ms,
                    },
                )
                .expect("envelope serializes");
                let max_bytes = self.max_bytes;
                if arena.len() - k0 <= max_bytes {
                    out.push((false, k0..k1, k1..arena.len()));
                    return;
                }
                // Too large for a Kafka message: dead-letter it (truncated) instead.
                let size = arena.len() - k0;
                arena.truncate(k0);
                Err(format!(
                    "the change event would be {size} bytes, over the producer's limit of {max_bytes} (raise kafka.client.\"message.max.bytes\" on the producer and the broker)"
                ))
            }
            Err(reason) => Err(reason),
        };
        if let Err(reason) = verdict {
            self.push_dead_letter(arena, out, offset, rec_line, raw, reason);
        }
    }

    fn push_dead_letter(
        &self,
        arena: &mut Vec<u8>,
        out: &mut Items,
        offset: u64,
        rec_line: u64,
        raw: &[u8],
        reason: String,
    ) {
        let fs = self.fs;
        let source_key = csv_source_key(&fs.file_id, offset);
        let origin = serde_json::json!({
            "file": self.path_str, "file_id": fs.file_id, "line": rec_line, "offset": offset,
        });
        let dl = DeadLetter::new(
            reason,
            DeadLetterOrigin {
                connector: "csv",
                name: self.prefix,
                entity: Some(&self.entity.name),
                position: origin,
                source_key: source_key.clone(),
            },
            raw,
            self.ts_ms,
        );
        let k0 = arena.len();
        arena.extend_from_slice(source_key.as_bytes());
        let k1 = arena.len();
        serde_json::to_writer(&mut *arena, &dl).expect("dead letter serializes");
        out.push((true, k0..k1, k1..arena.len()));
    }
}

/// What the reader keeps in memory and does not persist: each file's header (re-read from
/// the file after a restart) and buffers reused from chunk to chunk (fresh multi-megabyte
/// buffers per chunk cost more in page faults than the parsing itself).
#[derive(Default)]
struct ReadState {
    headers: HashMap<String, Header>,
    file: Vec<u8>,
    arena: Vec<u8>,
    items: Items,
    splitters: HashMap<u8, Splitter>,
}

/// A chunk whose records are enqueued but not yet acknowledged.
struct Pending {
    batch: Batch,
    offset: u64,
    line: u64,
    rows: u64,
    dead: u64,
    bytes: u64,
}

/// The key columns' indexes in a header, or why its rows cannot be read: two columns with
/// the same name (which one would a value belong to?) or a missing key column.
fn header_keys(names: &[String], key: &[String]) -> Result<Vec<usize>, String> {
    for (j, n) in names.iter().enumerate() {
        if let Some(i) = names[..j].iter().position(|m| m == n) {
            return Err(format!(
                "the file's header names column {n:?} twice (columns {} and {}); rename one",
                i + 1,
                j + 1
            ));
        }
    }
    key.iter()
        .map(|k| {
            names
                .iter()
                .position(|n| n == k)
                .ok_or_else(|| format!("the file's header has no key column {k:?}"))
        })
        .collect()
}

/// Header names in the entity's encoding (invalid bytes replaced).
fn decode_lossy(enc: Option<&'static Encoding>, f: &[u8]) -> String {
    match enc {
        None => String::from_utf8_lossy(f).into_owned(),
        Some(enc) => enc.decode_without_bom_handling(f).0.into_owned(),
    }
}

/// Checks a record against its file's header; returns the field values or the reason to
/// dead-letter it.
fn build_row<'a>(
    header: &Header,
    enc: Option<&'static Encoding>,
    fields: &[&'a [u8]],
) -> Result<Vec<Cow<'a, str>>, String> {
    if fields.len() != header.names.len() {
        return Err(format!(
            "expected {} fields as in the header, found {}",
            header.names.len(),
            fields.len()
        ));
    }
    let mut values = Vec::with_capacity(fields.len());
    for (i, f) in fields.iter().enumerate() {
        let value = match enc {
            None => std::str::from_utf8(f).map(Cow::Borrowed).map_err(|e| {
                format!(
                    "field {} ({}) is not valid UTF-8 (invalid byte at {}); if the file is in another encoding, set `encoding` on the entity (e.g. \"windows-1252\")",
                    i + 1,
                    header.names[i],
                    e.valid_up_to()
                )
            })?,
            Some(enc) => enc
                .decode_without_bom_handling_and_without_replacement(f)
                .ok_or_else(|| {
                    format!(
                        "field {} ({}) is not valid {}",
                        i + 1,
                        header.names[i],
                        enc.name()
                    )
                })?,
        };
        values.push(value);
    }
    let idx = header.key_idx.as_ref().map_err(Clone::clone)?;
    for &i in idx {
        if values[i].trim().is_empty() {
            return Err(format!("primary key column {:?} is empty", header.names[i]));
        }
    }
    Ok(values)
}

impl Source for CsvSource {
    fn name(&self) -> &'static str {
        "csv"
    }

    fn topics(&self) -> Vec<String> {
        let mut t: Vec<String> = self
            .settings
            .entities
            .iter()
            .filter_map(|e| data_topic(&self.prefix, "csv", &e.name).ok())
            .collect();
        t.extend(dead_letter_topic(&self.prefix).ok());
        t
    }

    fn run(&self, ctx: SourceContext) -> BoxFuture<'_, Result<(), SourceError>> {
        Box::pin(self.run_loop(ctx))
    }
}

#[cfg(test)]
mod header_tests {
    use super::header_keys;

    fn v(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn keys_duplicates_and_missing_columns() {
        assert_eq!(header_keys(&v(&["a", "id", "b"]), &v(&["id"])), Ok(vec![1]));
        assert_eq!(
            header_keys(&v(&["id", "name", "name"]), &v(&["id"])),
            Err(
                "the file's header names column \"name\" twice (columns 2 and 3); rename one"
                    .into()
            )
        );
        assert_eq!(
            header_keys(&v(&["a", "b"]), &v(&["id"])),
            Err("the file's header has no key column \"id\"".into())
        );
    }
}
