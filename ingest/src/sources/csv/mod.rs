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
use records::{utf16_to_utf8, Input, Item, Splitter, Utf16Offsets};
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
use std::time::{Duration, Instant};
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
    /// How the file's bytes are read (its byte-order mark, or the entity's encoding).
    input: Input,
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
                rs.idle.0.remove(id);
                // The file id must be durable before any record carrying it is published,
                // or a crash would re-publish the rows under another id.
                cp.save(state)?;
                dirty = false;
            }
        }
        let before = state.files.len();
        state.files.retain(|id, _| found.iter().any(|f| &f.0 == id));
        rs.headers.retain(|id, _| state.files.contains_key(id));
        rs.idle.0.retain(|id, _| state.files.contains_key(id));
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
        // Enough for the longest record in UTF-16 (2 bytes per UTF-8 byte at most) and a BOM.
        (&mut f)
            .take(2 * self.settings.max_record_bytes as u64 + 4)
            .read_to_end(&mut buf)
            .map_err(io_err(format!("cannot read {}", fs.path.display())))?;
        // Checked when the configuration was loaded.
        let input = Input::sniff(&buf, entity.encoding().ok().flatten());
        let bom = input.bom() as usize;
        let mut text = Vec::new();
        let data: &[u8] = match input {
            Input::Direct { .. } => &buf[bom..],
            Input::Utf16 { big_endian, .. } => {
                utf16_to_utf8(&buf[bom..], big_endian, false, &mut text, &mut Vec::new());
                &text
            }
        };
        let enc = input.field_encoding();
        let mut splitter = Splitter::new(self.delimiter(entity), self.settings.max_record_bytes);
        let mut header = None;
        let mut first = true;
        splitter.split(data, |item| {
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
                let end = match input {
                    Input::Direct { .. } => (r.start + r.len) as u64,
                    Input::Utf16 { .. } => Utf16Offsets::new(data, u64::MAX).orig(r.start + r.len),
                };
                header = Some(Header {
                    names,
                    key_idx,
                    data_offset: bom as u64 + end,
                    data_line: 1 + r.newlines_before + r.newlines,
                    input,
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
        let fs = state.files.get(id).expect("tracked file");
        if !rs.headers.contains_key(id) {
            match self.load_header(fs, entity)? {
                Some(h) => {
                    if let Err(reason) = &h.key_idx {
                        warn!(file = %fs.path.display(), %reason, entity = %entity.name, "unusable header; the file's rows will be dead-lettered");
                    }
                    rs.headers.insert(id.to_string(), h);
                }
                None => return Ok(None),
            }
        }
        let header = &rs.headers[id];
        let start = if pos.0 < header.data_offset {
            (header.data_offset, header.data_line)
        } else {
            pos
        };
        let Some(text) = self.read_text(fs, id, start.0, header.input, rs)? else {
            return Ok(None);
        };
        let ReadState {
            headers,
            file: buf,
            orig,
            bad,
            arena,
            items: out,
            splitters,
            idle,
        } = rs;
        let header = &headers[id];
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
            enc: header.input.field_encoding(),
        };
        let orig: &[u8] = match header.input {
            Input::Direct { .. } => &buf[..text.orig_len],
            Input::Utf16 { .. } => &orig[..text.orig_len],
        };
        let view = TextView {
            text: buf,
            orig,
            bad,
            utf16: matches!(header.input, Input::Utf16 { .. }),
            start,
        };
        let (consumed, line) = match view.split(&chunk, splitter, arena, out) {
            (0, _) if text.forced => {
                view.runaway(&chunk, arena, out, self.settings.runaway_idle_ms)
            }
            (0, _) => {
                if text.at_eof {
                    idle.watch(id, start.0, text.end, Instant::now());
                }
                return Ok(None);
            }
            (_, _) if text.forced => {
                // The virtual newline closed the last line: no quote is open, the line is
                // only unterminated (a writer mid-line, a file without a final newline). It
                // waits for its newline like any record: a row is never cut by a pause.
                arena.clear();
                out.clear();
                return Ok(None);
            }
            done => done,
        };
        let records = out.drain(..).map(|(d, k, v)| (d, &arena[k], &arena[v]));
        let Enqueued { batch, rows, dead } = ctx.publisher.enqueue(&topic, &dlq, records).await?;
        Ok(Some(Pending {
            batch,
            offset: start.0 + consumed,
            line,
            rows,
            dead,
            bytes: consumed,
        }))
    }

    /// Reads a chunk of the file from `offset` into `rs.file` as the splitter reads it (for
    /// UTF-16, the original bytes into `rs.orig`, transcoded into `rs.file`). When the open
    /// record at the end of the file has waited `runaway_idle_ms` unchanged, the chunk is
    /// `forced`: read to its very end and closed by a virtual newline, so that a runaway
    /// quote shows as nothing consumed (an unterminated line outside quotes as a record,
    /// which `produce_chunk` leaves waiting).
    /// `None` when the path is no longer the file known as `id`.
    fn read_text(
        &self,
        fs: &FileState,
        id: &str,
        offset: u64,
        input: Input,
        rs: &mut ReadState,
    ) -> Result<Option<ChunkText>, SourceError> {
        let want = self.chunk_len();
        let target = match input {
            Input::Direct { .. } => &mut rs.file,
            Input::Utf16 { .. } => &mut rs.orig,
        };
        if !self.read_chunk(fs, id, offset, want, target)? {
            // Replaced or rotated since the scan started: the next scan sorts it out.
            return Ok(None);
        }
        let orig_len = target.len();
        let at_eof = orig_len < want;
        let idle = Duration::from_millis(self.settings.runaway_idle_ms);
        let end = offset + orig_len as u64;
        let mut forced = self.settings.runaway_idle_ms > 0
            && at_eof
            && rs.idle.due(id, offset, end, Instant::now(), idle);
        rs.bad.clear();
        if let Input::Utf16 { big_endian, .. } = input {
            rs.file.clear();
            let n = utf16_to_utf8(&rs.orig, big_endian, forced, &mut rs.file, &mut rs.bad);
            rs.orig.truncate(n);
        }
        if forced && rs.file.iter().all(|&c| c == b'\n' || c == b'\r') {
            // Blank lines only: nothing to close.
            forced = false;
        }
        if forced {
            rs.file.push(b'\n');
        }
        Ok(Some(ChunkText {
            end,
            orig_len: if matches!(input, Input::Utf16 { .. }) {
                rs.orig.len()
            } else {
                orig_len
            },
            at_eof,
            forced,
        }))
    }

    fn chunk_len(&self) -> usize {
        self.settings
            .chunk_bytes
            .max(2 * self.settings.max_record_bytes + 1)
    }

    /// Reads up to `len` bytes of the file known as `id` from `offset` into `buf`; `false`
    /// when the path is no longer that file.
    fn read_chunk(
        &self,
        fs: &FileState,
        id: &str,
        offset: u64,
        len: usize,
        buf: &mut Vec<u8>,
    ) -> Result<bool, SourceError> {
        let Some(mut f) = open_same(&fs.path, id)
            .map_err(io_err(format!("cannot open {}", fs.path.display())))?
        else {
            return Ok(false);
        };
        f.seek(SeekFrom::Start(offset))
            .map_err(io_err(format!("cannot seek {}", fs.path.display())))?;
        buf.clear();
        f.take(len as u64)
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
    /// dead letter when it cannot be one: a record the splitter could not read (`fields` is
    /// the reason: oversized, not valid UTF-16), a row that does not fit the header, an
    /// event over the producer's limit.
    fn push_record(
        &self,
        arena: &mut Vec<u8>,
        out: &mut Items,
        offset: u64,
        rec_line: u64,
        raw: &[u8],
        fields: Result<Vec<&[u8]>, String>,
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
        let verdict = fields.and_then(|fields| build_row(header, self.enc, &fields));
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
    /// The chunk as the splitter reads it.
    file: Vec<u8>,
    /// The chunk's original bytes when they are transcoded (UTF-16).
    orig: Vec<u8>,
    /// Positions in `file` of characters that replaced unpaired surrogates.
    bad: Vec<usize>,
    arena: Vec<u8>,
    items: Items,
    splitters: HashMap<u8, Splitter>,
    idle: IdleTails,
}

/// What [`CsvSource::read_text`] read.
struct ChunkText {
    /// Offset in the file of the last byte read, plus one.
    end: u64,
    /// Bytes of the original to which the text's positions map (an odd byte or half a
    /// surrogate pair at the end of a UTF-16 chunk waits for the next one).
    orig_len: usize,
    /// The read reached the end of the file.
    at_eof: bool,
    /// Closed by a virtual newline: the open record at the end waited `runaway_idle_ms`.
    forced: bool,
}

/// Open records at the end of files, and since when each file has stayed so: the runaway
/// rule's clock. In memory only: after a restart the wait starts over, and since nothing
/// was checkpointed past the record it is decided again at the same offset, under the same
/// source key.
#[derive(Default)]
struct IdleTails(HashMap<String, (u64, u64, Instant)>);

impl IdleTails {
    /// Whether the file known as `id` has had an open record from `start` to its end `end`
    /// for `idle` already.
    fn due(&self, id: &str, start: u64, end: u64, now: Instant, idle: Duration) -> bool {
        matches!(self.0.get(id), Some(&(s, e, t)) if s == start && e == end && now.duration_since(t) >= idle)
    }

    /// Notes an open record from `start` to the end `end` of the file; the clock restarts
    /// when either moved.
    fn watch(&mut self, id: &str, start: u64, end: u64, now: Instant) {
        match self.0.get(id) {
            Some(&(s, e, _)) if s == start && e == end => {}
            _ => {
                self.0.insert(id.to_string(), (start, end, now));
            }
        }
    }
}

/// A chunk's text as the splitter reads it, and the original bytes its positions map to.
struct TextView<'a> {
    /// The file's bytes, or their UTF-8 transcoding (UTF-16); a forced chunk ends with a
    /// virtual newline.
    text: &'a [u8],
    /// The original bytes (those of `text` unless UTF-16), without a virtual newline.
    orig: &'a [u8],
    /// Positions in `text` of the U+FFFD that replaced unpaired surrogates.
    bad: &'a [usize],
    utf16: bool,
    /// Offset in the file and line number of the chunk's start.
    start: (u64, u64),
}

impl TextView<'_> {
    /// Encodes the chunk's complete records into `arena`/`out`; returns the original bytes
    /// consumed and the line number after them.
    fn split(
        &self,
        chunk: &ChunkRecords<'_>,
        splitter: &mut Splitter,
        arena: &mut Vec<u8>,
        out: &mut Items,
    ) -> (u64, u64) {
        let mut map = Utf16Offsets::new(self.text, self.orig.len() as u64);
        let utf16 = self.utf16;
        let orig_len = self.orig.len() as u64;
        let mut to_orig = move |p: usize| {
            if utf16 {
                map.orig(p)
            } else {
                (p as u64).min(orig_len)
            }
        };
        let mut bad = self.bad.iter().copied().peekable();
        let mut line = self.start.1;
        let consumed = splitter.split(self.text, |item| {
            let (rec_start, raw_len, nl_before, nl, fields) = match item {
                Item::Record(r) => (
                    r.start,
                    r.raw.len(),
                    r.newlines_before,
                    r.newlines,
                    Ok(r.fields),
                ),
                Item::Oversized(o) => (
                    o.start,
                    o.raw.len(),
                    o.newlines_before,
                    o.newlines,
                    Err(format!(
                        "record longer than {} bytes without an end (unbalanced quote?)",
                        chunk.max_record_bytes
                    )),
                ),
            };
            line += nl_before;
            let rec_line = line;
            line += nl;
            let o0 = to_orig(rec_start);
            while bad.next_if(|&b| b < rec_start).is_some() {}
            let bad_at = bad
                .peek()
                .filter(|&&b| b < rec_start + raw_len)
                .map(|&b| to_orig(b));
            let o1 = to_orig(rec_start + raw_len);
            let fields = match bad_at {
                Some(b) => Err(format!(
                    "not valid UTF-16: an unpaired surrogate at byte offset {} of the file",
                    self.start.0 + b
                )),
                None => fields,
            };
            let raw = &self.orig[o0 as usize..o1 as usize];
            chunk.push_record(arena, out, self.start.0 + o0, rec_line, raw, fields);
        });
        (to_orig(consumed), line)
    }

    /// Dead-letters the open record of a forced chunk in which the virtual newline closed
    /// nothing (a quote left open), from its first byte to the end of the file; returns the
    /// bytes consumed (all) and the line number at the end.
    fn runaway(
        &self,
        chunk: &ChunkRecords<'_>,
        arena: &mut Vec<u8>,
        out: &mut Items,
        idle_ms: u64,
    ) -> (u64, u64) {
        let (offset, rec_line) = self.tail_start();
        let raw = &self.orig[(offset - self.start.0) as usize..];
        let reason = format!(
            "record still open at the end of the file (an unbalanced quote?) after the file stayed unchanged for {idle_ms} ms (runaway_idle_ms): dead-lettered up to the end of the file ({} bytes); reading resumes at the next byte written",
            raw.len()
        );
        warn!(file = %chunk.path_str, line = rec_line, offset, "runaway record dead-lettered");
        chunk.push_dead_letter(arena, out, offset, rec_line, raw, reason);
        (self.orig.len() as u64, self.line_at_end())
    }

    /// The text without the virtual newline of a forced chunk.
    fn real_text(&self) -> &[u8] {
        self.text.strip_suffix(b"\n").unwrap_or(self.text)
    }

    /// Line number at the end of a forced chunk (its virtual newline not counted).
    fn line_at_end(&self) -> u64 {
        self.start.1 + records::count_nl(self.real_text())
    }

    /// Offset in the file and line of the first byte after the blank lines at the start.
    fn tail_start(&self) -> (u64, u64) {
        let lead = self
            .text
            .iter()
            .take_while(|&&c| c == b'\n' || c == b'\r')
            .count();
        let off = if self.utf16 {
            Utf16Offsets::new(self.text, self.orig.len() as u64).orig(lead)
        } else {
            lead as u64
        };
        (
            self.start.0 + off,
            self.start.1 + records::count_nl(&self.text[..lead]),
        )
    }
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
                "the file's header names column {:?} twice (columns {} and {}); rename one",
                ident(n),
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
                .ok_or_else(|| format!("the file's header has no key column {:?}", ident(k)))
        })
        .collect()
}

/// A name from the file (a header column) as a dead letter's reason quotes it: at most 80
/// characters, control characters escaped by `{:?}` where it is used. A reason describes
/// the problem and its position, never the record's content (that is in `raw_text`).
fn ident(name: &str) -> Cow<'_, str> {
    match name.char_indices().nth(80) {
        None => Cow::Borrowed(name),
        Some((i, _)) => Cow::Owned(format!("{}…", &name[..i])),
    }
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
                    "field {} ({:?}) is not valid UTF-8 (invalid byte at {} of the field); if the file is in another encoding, set `encoding` on the entity (e.g. \"windows-1252\")",
                    i + 1,
                    ident(&header.names[i]),
                    e.valid_up_to()
                )
            })?,
            Some(enc) => enc
                .decode_without_bom_handling_and_without_replacement(f)
                .ok_or_else(|| {
                    format!(
                        "field {} ({:?}) is not valid {}",
                        i + 1,
                        ident(&header.names[i]),
                        enc.name()
                    )
                })?,
        };
        values.push(value);
    }
    let idx = header.key_idx.as_ref().map_err(Clone::clone)?;
    for &i in idx {
        if values[i].trim().is_empty() {
            return Err(format!(
                "primary key column {:?} is empty",
                ident(&header.names[i])
            ));
        }
    }
    Ok(values)
}

impl super::SourceBuilder for CsvSettings {
    fn build(&self, topic_prefix: &str) -> Result<Arc<dyn Source>, SourceError> {
        Ok(Arc::new(CsvSource::new(self.clone(), topic_prefix)?))
    }
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

#[cfg(test)]
mod chunk_tests {
    use super::*;
    use serde_json::Value;

    struct Fixture {
        entity: CsvEntity,
        header: Header,
        fs: FileState,
    }

    fn fixture(input: Input) -> Fixture {
        Fixture {
            entity: CsvEntity {
                name: "customers".into(),
                pattern: "customers*.csv".into(),
                key: vec!["id".into()],
                delimiter: None,
                encoding: None,
            },
            header: Header {
                names: vec!["id".into(), "name".into()],
                key_idx: Ok(vec![0]),
                data_offset: 0,
                data_line: 2,
                input,
            },
            fs: FileState {
                path: "/in/customers.csv".into(),
                entity: "customers".into(),
                file_id: "f1".into(),
                head_len: 0,
                head_hash: String::new(),
                offset: 0,
                line: 2,
            },
        }
    }

    /// (dead letter?, record key, value) of each item.
    type Out = Vec<(bool, String, Value)>;

    /// Reads `orig` as a chunk starting at byte `start` and line 2, as [`CsvSource::read_text`]
    /// and `produce_chunk` do (UTF-16LE transcoded when `utf16`; closed by a virtual newline
    /// when `forced`); returns the bytes consumed, the line after them and the items.
    fn run(fx: &Fixture, orig: &[u8], utf16: bool, forced: bool, start: u64) -> (u64, u64, Out) {
        let (mut text, mut bad) = (Vec::new(), Vec::new());
        let orig_len = if utf16 {
            utf16_to_utf8(orig, false, forced, &mut text, &mut bad)
        } else {
            text.extend_from_slice(orig);
            orig.len()
        };
        if forced {
            text.push(b'\n');
        }
        let chunk = ChunkRecords {
            prefix: "t",
            entity: &fx.entity,
            header: &fx.header,
            fs: &fx.fs,
            path_str: "/in/customers.csv",
            ts_ms: 1,
            max_bytes: 1 << 20,
            max_record_bytes: 4096,
            enc: fx.header.input.field_encoding(),
        };
        let view = TextView {
            text: &text,
            orig: &orig[..orig_len],
            bad: &bad,
            utf16,
            start: (start, 2),
        };
        let mut splitter = Splitter::new(b',', 4096);
        let (mut arena, mut out) = (Vec::new(), Vec::new());
        let (n, line) = match view.split(&chunk, &mut splitter, &mut arena, &mut out) {
            (0, _) if forced => view.runaway(&chunk, &mut arena, &mut out, 3000),
            (_, _) if forced => {
                out.clear();
                (0, 2)
            }
            done => done,
        };
        let items = out
            .iter()
            .map(|(d, k, v)| {
                (
                    *d,
                    String::from_utf8_lossy(&arena[k.clone()]).into_owned(),
                    serde_json::from_slice(&arena[v.clone()]).expect("json"),
                )
            })
            .collect();
        (n, line, items)
    }

    fn le(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
    }

    const UTF16: Input = Input::Utf16 {
        big_endian: false,
        bom: 2,
    };
    const UTF8: Input = Input::Direct { enc: None, bom: 0 };

    #[test]
    fn utf16_records_carry_their_original_offsets() {
        let fx = fixture(UTF16);
        let orig = le("C1,Zoë\r\nC2,😀 x\r\nC3,");
        let (n, line, items) = run(&fx, &orig, true, false, 100);
        // "C1,Zoë\r\n" is 8 code units, "C2,😀 x\r\n" 9 (the emoji is a pair).
        assert_eq!((n, line), (16 + 18, 4));
        let offsets: Vec<u64> = items
            .iter()
            .map(|(_, _, v)| v["source"]["offset"].as_u64().unwrap())
            .collect();
        assert_eq!(offsets, [100, 116]);
        assert_eq!(items[0].1, r#"{"id":"C1"}"#);
        assert_eq!(items[0].2["after"]["name"], "Zoë");
        assert_eq!(items[1].2["after"]["name"], "😀 x");
        assert_eq!(items[1].2["source"]["line"], 3);
        // Restarting from the checkpoint (offset 134, line 4) reads the rest at the same
        // offsets as a reader that never stopped.
        let all = le("C1,Zoë\r\nC2,😀 x\r\nC3,Ann\r\n");
        let (_, _, again) = run(&fx, &all[34..], true, false, 134);
        assert_eq!(again[0].2["source"]["offset"], 134);
        assert_eq!(again[0].2["after"]["name"], "Ann");
        assert!(items.iter().all(|i| !i.0));
    }

    #[test]
    fn an_unpaired_surrogate_dead_letters_its_record_with_the_original_bytes() {
        let fx = fixture(UTF16);
        let mut orig = le("C1,ok\nC2,a");
        orig.extend(0xD800u16.to_le_bytes());
        orig.extend(le("b\nC3,ok\n"));
        let (n, _, items) = run(&fx, &orig, true, false, 2);
        assert_eq!(n, orig.len() as u64);
        assert_eq!(items.len(), 3);
        assert!(!items[0].0 && items[1].0 && !items[2].0);
        let dl = &items[1].2;
        assert_eq!(items[1].1, "csv:f1:14");
        assert_eq!(
            dl["reason"],
            "not valid UTF-16: an unpaired surrogate at byte offset 22 of the file"
        );
        let raw = dl["raw_base64"].as_str().unwrap();
        use base64::Engine;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(raw)
            .unwrap();
        assert_eq!(
            raw,
            &orig[12..24],
            "the record's UTF-16 bytes, newline excluded"
        );
        assert_eq!(dl["origin"]["offset"], 14);
        assert_eq!(items[2].2["source"]["offset"], 28);
    }

    #[test]
    fn a_runaway_quote_is_dead_lettered_to_the_end_of_the_file_once_forced() {
        let fx = fixture(UTF8);
        let orig = b"\n\nC9,\"never closed\nC10,lost\n";
        // Not forced: an open record waits.
        assert_eq!(run(&fx, orig, false, false, 50), (0, 2, vec![]));
        let (n, line, items) = run(&fx, orig, false, true, 50);
        assert_eq!((n, line), (orig.len() as u64, 6));
        assert_eq!(items.len(), 1);
        let (dead, key, dl) = &items[0];
        assert!(dead);
        assert_eq!(key, "csv:f1:52");
        assert_eq!(
            dl["origin"],
            serde_json::json!({"file": "/in/customers.csv", "file_id": "f1", "line": 4, "offset": 52})
        );
        assert_eq!(dl["raw_text"], "C9,\"never closed\nC10,lost\n");
        assert_eq!(
            dl["reason"],
            "record still open at the end of the file (an unbalanced quote?) after the file stayed unchanged for 3000 ms (runaway_idle_ms): dead-lettered up to the end of the file (26 bytes); reading resumes at the next byte written"
        );
        // The same in UTF-16: offsets and bytes of the original.
        let fx = fixture(UTF16);
        let orig = le("\nC9,\"é");
        let (n, line, items) = run(&fx, &orig, true, true, 10);
        assert_eq!((n, line), (12, 3));
        assert_eq!(items[0].1, "csv:f1:12");
        assert_eq!(items[0].2["raw_length"], 10);
    }

    #[test]
    fn a_last_line_without_newline_waits_for_it_even_when_idle() {
        let fx = fixture(UTF8);
        let (n, line, items) = run(&fx, b"C1,Ann\nC2,Bob", false, false, 0);
        assert_eq!((n, line, items.len()), (7, 3, 1));
        // No quote open: not a runaway; the line waits for its newline.
        assert_eq!(run(&fx, b"C2,Bob", false, true, 7), (0, 2, vec![]));
        assert_eq!(run(&fx, b"C2,\"Bob\" x", false, true, 7), (0, 2, vec![]));
        // A quote open: dead-lettered.
        let (n, _, items) = run(&fx, b"C2,\"Bob", false, true, 7);
        assert_eq!((n, items.len()), (7, 1));
        // Blank lines alone are never forced into a record (read_text does not force them).
        assert_eq!(run(&fx, b"\n\n", false, false, 0).0, 0);
    }

    #[test]
    fn the_idle_clock_restarts_when_the_file_or_the_position_moves() {
        let t0 = Instant::now();
        let idle = Duration::from_millis(3000);
        let later = t0 + Duration::from_millis(3000);
        let mut tails = IdleTails::default();
        assert!(!tails.due("a", 10, 20, later, idle), "never watched");
        tails.watch("a", 10, 20, t0);
        tails.watch("a", 10, 20, t0 + Duration::from_millis(1000));
        assert!(!tails.due("a", 10, 20, t0 + Duration::from_millis(2999), idle));
        assert!(tails.due("a", 10, 20, later, idle), "first seen at t0");
        assert!(!tails.due("a", 10, 21, later, idle), "the file grew");
        tails.watch("a", 10, 21, t0 + Duration::from_millis(2000));
        assert!(!tails.due("a", 10, 21, later, idle), "clock restarted");
        assert!(!tails.due("b", 10, 21, later, idle), "per file");
    }

    /// A dead letter's reason describes the problem and the position, never the record's
    /// content: bytes that are not text, a 10 kB field, control characters, a long name.
    #[test]
    fn reasons_never_embed_the_records_content() {
        let big = "x".repeat(10_000);
        let mut bad: Vec<Vec<u8>> = vec![
            b"C1,\xff\xfeSECRET\n".to_vec(),
            format!("C2,{big},extra\n").into_bytes(),
            b"C3,\x01\x02SECRET\x1b[31m,more\n".to_vec(),
            b" ,SECRET\n".to_vec(),
            format!("C4,\"{big}\n").into_bytes(),
        ];
        bad.push(format!("C5,\"SECRET{big}").into_bytes());
        let fx = fixture(UTF8);
        let mut reasons = Vec::new();
        // A runaway quote.
        let (_, _, items) = run(&fx, b"C6,\"SECRET\x01 open\n", false, true, 0);
        reasons.extend(items.iter().map(|i| i.2["reason"].as_str().unwrap().into()));
        for rec in &bad {
            let (_, _, items) = run(&fx, rec, false, false, 0);
            for (dead, _, dl) in items {
                assert!(dead, "{dl}");
                reasons.push(dl["reason"].as_str().unwrap().to_string());
            }
        }
        // Fields of another encoding, UTF-16 surrogates.
        let mut fx = fixture(Input::Direct {
            enc: Some(encoding_rs::SHIFT_JIS),
            bom: 0,
        });
        let (_, _, items) = run(&fx, b"C6,SECRET\x81\n", false, false, 0);
        reasons.extend(items.iter().map(|i| i.2["reason"].as_str().unwrap().into()));
        fx.header.input = UTF16;
        let mut orig = le("C7,SECRET");
        orig.extend(0xDFFFu16.to_le_bytes());
        orig.extend(le("\n"));
        let (_, _, items) = run(&fx, &orig, true, false, 0);
        reasons.extend(items.iter().map(|i| i.2["reason"].as_str().unwrap().into()));
        // A header name of 10 kB with control characters is capped.
        let long = format!("\u{1b}{big}");
        fx.header.names = vec!["id".into(), long.clone()];
        fx.header.input = UTF8;
        let (_, _, items) = run(&fx, b"C8,\xff\n", false, false, 0);
        reasons.extend(items.iter().map(|i| i.2["reason"].as_str().unwrap().into()));
        fx.header.key_idx = header_keys(&[long.clone(), long.clone()], &["id".into()]);
        let (_, _, items) = run(&fx, b"C9,a\n", false, false, 0);
        reasons.extend(items.iter().map(|i| i.2["reason"].as_str().unwrap().into()));
        assert_eq!(reasons.len(), 11, "{reasons:#?}");
        for r in &reasons {
            assert!(
                !r.contains("SECRET")
                    && !r.contains("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")
                    && !r.contains('\u{fffd}')
                    && !r.chars().any(|c| c.is_control()),
                "{r}"
            );
            assert!(r.len() < 400, "{} bytes: {r}", r.len());
        }
    }
}
