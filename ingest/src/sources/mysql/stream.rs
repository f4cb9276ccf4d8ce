//! The binlog reader: a task that owns the binlog connection, decodes events, groups rows by
//! transaction and hands encoded change events to the publishing loop over a bounded
//! channel. It runs in its own task so that a panic in the decoder (mysql_common's
//! `Event::read` panics on a malformed packet) ends the task, not the agent: the source then
//! restarts from its last checkpoint.

use super::schema::{
    encode, encode_schema_change, topic_name, Encoded, MysqlSourceBlock, PositionRef, Rename,
    SchemaChange, TableSchema, CONNECTOR,
};
use super::settings::TableFilter;
use super::values::{render, Kind, Out};
use super::{Position, SchemaMemo};
use crate::publisher::Publisher;
use etl_contract::{DeadLetter, DeadLetterOrigin, Op};
use futures::StreamExt;
use mysql_async::binlog::events::{
    BinlogEventHeader, Event, EventData, QueryEvent, RowsEventData, TableMapEvent,
};
use mysql_async::binlog::value::BinlogValue;
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest, Conn, Value};
use std::collections::BTreeMap;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// What the reader hands to the publishing loop.
pub enum Msg {
    /// Change events of one rows event (part of a transaction).
    Changes(Arc<str>, Vec<Encoded>),
    /// A transaction (or a standalone DDL) ended here: a safe resume point. `ts` is the
    /// event time (seconds since the epoch); `schemas`, when the schema memos changed since
    /// the previous commit, their state as of this point.
    Commit {
        pos: Position,
        ts: u32,
        schemas: Option<Arc<BTreeMap<String, SchemaMemo>>>,
    },
    /// The server had nothing to send for a heartbeat period: the agent is caught up.
    Heartbeat,
}

/// Errors of the reader.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("binlog stream from {file}:{pos} on {server}: {source} (check that the server is up and that the position still exists: SHOW BINARY LOGS; when it was purged, set snapshot_mode = \"when_needed\" and move the checkpoint away to take a new snapshot)")]
    Stream {
        server: String,
        file: String,
        pos: u64,
        #[source]
        source: mysql_async::Error,
    },
    #[error("cannot decode a binlog event at {file}:{pos}: {reason}")]
    Decode {
        file: String,
        pos: u64,
        reason: String,
    },
    #[error(transparent)]
    Schema(#[from] super::schema::SchemaError),
    #[error("cannot create topic: {0}")]
    Topic(#[from] crate::publisher::PublishError),
}

impl ReadError {
    /// The server no longer holds the resume point (error 1236: its binlog, or with a GTID
    /// resume the binlog holding the transactions after the GTID, was purged).
    pub fn position_lost(&self) -> bool {
        matches!(
            self,
            ReadError::Stream {
                source: mysql_async::Error::Server(mysql_async::ServerError { code: 1236, .. }),
                ..
            }
        )
    }

    /// A schema problem (no column names) does not go away by retrying, nor does a resume
    /// point the server no longer holds (error 1236: the file, or with a GTID resume the
    /// GTID's binlog, was purged); connection and broker errors do.
    pub fn retryable(&self) -> bool {
        !matches!(
            self,
            ReadError::Schema(super::schema::SchemaError::NoColumnNames { .. })
                | ReadError::Stream {
                    source: mysql_async::Error::Server(mysql_async::ServerError { code: 1236, .. }),
                    ..
                }
        )
    }
}

pub struct Reader {
    pub conn: Conn,
    pub server: String,
    pub server_id: u32,
    pub heartbeat_ms: u64,
    pub start: Position,
    /// Resume from this MariaDB GTID (`domain-server-seq`, the last transaction already
    /// published) instead of `start`'s file and position.
    pub from_gtid: Option<String>,
    pub prefix: String,
    pub filter: TableFilter,
    pub publisher: Publisher,
    /// `<prefix>.dlq`, for events that cannot be decoded.
    pub dlq: Arc<str>,
    /// What was last announced per table (from the checkpoint).
    pub schemas: BTreeMap<String, SchemaMemo>,
    pub tx: mpsc::Sender<Msg>,
}

/// `<prefix>.mysql._ddl`: every DDL statement read from the binlog, for the warehouse's
/// schema history (no table's entity can be `_ddl`: those are `<db>_<table>`).
pub fn ddl_topic(prefix: &str) -> Option<String> {
    etl_contract::data_topic(prefix, CONNECTOR, "_ddl").ok()
}

/// Partitions of a table topic (schema events go to each), asked of the broker once.
async fn partition_count(
    publisher: &Publisher,
    known: &mut HashMap<Arc<str>, i32>,
    topic: &Arc<str>,
) -> Result<i32, ReadError> {
    if let Some(&n) = known.get(topic) {
        return Ok(n);
    }
    let n = publisher.partition_count(topic).await?;
    known.insert(topic.clone(), n);
    Ok(n)
}

/// Objects whose DDL is schema history (not users, roles or grants).
const HISTORY_OBJECTS: [&str; 8] = [
    "TABLE", "DATABASE", "SCHEMA", "INDEX", "VIEW", "SEQUENCE", "TRIGGER", "COLUMN",
];

/// The DDL history event of a statement.
#[allow(clippy::too_many_arguments)]
fn ddl_event(
    prefix: &str,
    server_id: u32,
    file: &str,
    pos: u64,
    gtid: Option<&str>,
    ts_ms: i64,
    db: &str,
    info: &super::ddl::DdlInfo,
    query: &str,
) -> Encoded {
    let source_key = format!("ddl:{server_id}:{file}:{pos}");
    let table = info.table.as_ref().map(|t| t.1.as_str()).unwrap_or("");
    let src = MysqlSourceBlock {
        version: super::schema::version(),
        connector: CONNECTOR,
        name: prefix,
        entity: "_ddl",
        ts_ms,
        server_id,
        file,
        pos,
        row: 0,
        gtid,
        db,
        table,
        snapshot: false,
        source_key: &source_key,
    };
    let after = serde_json::json!({
        "ddl": query,
        "verb": info.verb,
        "db": db,
        "table": info.table.as_ref().map(|t| &t.1),
        "renames": info.renames.iter().map(|(f, t)| serde_json::json!({"from": f, "to": t})).collect::<Vec<_>>(),
    });
    let env = etl_contract::Envelope {
        before: None::<serde_json::Value>,
        after: Some(after),
        op: Op::Create,
        source: &src,
        ts_ms: chrono::Utc::now().timestamp_millis(),
    };
    Encoded {
        key: source_key.clone().into_bytes(),
        payload: serde_json::to_vec(&env).unwrap_or_default(),
        partition: None,
    }
}

/// A binlog file name from a ROTATE event. The first, fake ROTATE (timestamp 0) arrives on
/// MariaDB with the 4 CRC bytes appended (the server checksums it before the client saw the
/// format description): drop them when the name does not end in `.<digits>` without them.
fn clean_file_name(raw: &[u8], fake: bool) -> String {
    fn ext_digits(b: &[u8]) -> Option<usize> {
        let dot = b.iter().rposition(|&c| c == b'.')?;
        let ext = &b[dot + 1..];
        (!ext.is_empty() && ext.iter().all(u8::is_ascii_digit)).then_some(ext.len())
    }
    if fake && raw.len() > 4 {
        let cut = &raw[..raw.len() - 4];
        let whole = ext_digits(raw);
        if ext_digits(cut).is_some() && whole.is_none_or(|n| n > 6) {
            return String::from_utf8_lossy(cut).into_owned();
        }
    }
    String::from_utf8_lossy(raw).into_owned()
}

pub fn row_values(
    schema: &TableSchema,
    row: &mut mysql_async::binlog::row::BinlogRow,
) -> Result<Vec<Out>, String> {
    let mut out = Vec::with_capacity(schema.kinds.len());
    for (i, kind) in schema.kinds.iter().enumerate() {
        let v = match row.take(i) {
            None => Out::Null,
            Some(BinlogValue::Value(v)) => render(kind, v).map_err(|e| format!("column {}: {e}", schema.names[i]))?,
            Some(BinlogValue::Jsonb(j)) => {
                // The error's kind only: its fields may hold the document's bytes.
                let j: serde_json::Value = j.try_into().map_err(|e| {
                    let kind = format!("{e:?}");
                    let kind: String = kind.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                    format!("column {}: its JSON value cannot be decoded ({kind})", schema.names[i])
                })?;
                if *kind == Kind::Json {
                    Out::S(j.to_string())
                } else {
                    render(kind, Value::Bytes(j.to_string().into_bytes()))?
                }
            }
            Some(BinlogValue::JsonDiff(_)) => {
                return Err(format!(
                    "column {}: partial JSON update; set binlog_row_value_options='' on the server so that full JSON values are logged",
                    schema.names[i]
                ))
            }
        };
        out.push(v);
    }
    Ok(out)
}

/// Where an undecodable binlog event (or one row of it) came from.
pub struct BadEvent<'a> {
    pub server_id: u32,
    pub file: &'a str,
    /// End position of the event (`log_pos`), as in the source keys of change events.
    pub pos: u64,
    pub event_type: u8,
    /// `(db, table)` when the table is known.
    pub table: Option<(&'a str, &'a str)>,
    /// Index of the row in the rows event (the same numbering as change events' `row`);
    /// `None` when the whole event could not be read.
    pub row: Option<u32>,
}

/// A binlog event or row that cannot be turned into a change event, as a dead letter for
/// `<prefix>.dlq`: the reason, the table, binlog file, position and row index, and the raw
/// event body. Its key is its source key, `<server_id>:<file>:<pos>:<row>` (`event` instead
/// of a row index for a whole event), so that a dead letter re-sent after a crash is stored
/// once. Bad input goes there and the stream carries on; the checkpoint moves past it with
/// its transaction, after the broker acknowledged the dead letter.
pub fn dead_letter(
    prefix: &str,
    bad: &BadEvent<'_>,
    reason: &str,
    raw: &[u8],
    now_ms: i64,
) -> Encoded {
    let row = bad
        .row
        .map_or_else(|| "event".to_string(), |r| r.to_string());
    let source_key = format!("{}:{}:{}:{row}", bad.server_id, bad.file, bad.pos);
    let entity = bad
        .table
        .map(|(db, table)| super::schema::entity_name(db, table));
    let position = serde_json::json!({
        "server_id": bad.server_id,
        "file": bad.file,
        "pos": bad.pos,
        "row": bad.row,
        "event_type": bad.event_type,
        "db": bad.table.map(|t| t.0),
        "table": bad.table.map(|t| t.1),
    });
    let dl = DeadLetter::new(
        reason,
        DeadLetterOrigin {
            connector: CONNECTOR,
            name: prefix,
            entity: entity.as_deref(),
            position,
            source_key: source_key.clone(),
        },
        raw,
        now_ms,
    );
    metrics::counter!("ingest_mysql_dead_letters_total").increment(1);
    warn!(file = %bad.file, pos = bad.pos, row = ?bad.row, table = ?bad.table, reason, "binlog event dead-lettered");
    Encoded {
        key: source_key.into_bytes(),
        payload: serde_json::to_vec(&dl).unwrap_or_default(),
        partition: None,
    }
}

/// A binlog stream error at `file:pos` on `server`.
fn stream_err(server: &str, file: &str, pos: u64) -> impl FnOnce(mysql_async::Error) -> ReadError {
    let server = server.to_string();
    let file = file.to_string();
    move |source| ReadError::Stream {
        server,
        file,
        pos,
        source,
    }
}

/// Opens the binlog stream at `start` (or, with `from_gtid`, after that MariaDB GTID).
/// Returns the stream and the file it starts in (empty with a GTID resume: the first ROTATE
/// names it).
async fn open_stream(
    mut conn: Conn,
    server: &str,
    server_id: u32,
    heartbeat_ms: u64,
    start: &Position,
    from_gtid: Option<&str>,
) -> Result<(BinlogStream, String), ReadError> {
    // MariaDB: real GTID events (type 162). MySQL ignores the variable.
    let _ = conn.query_drop("SET @mariadb_slave_capability=4").await;
    conn.query_drop(format!(
        "SET @master_heartbeat_period={}",
        heartbeat_ms.max(1) * 1_000_000
    ))
    .await
    .map_err(stream_err(server, &start.file, start.pos))?;
    // MariaDB GTID resume: the server starts after the given GTID, from the file that
    // holds it (file "" and position 4 are placeholders; the first ROTATE names the file).
    let (req_file, req_pos) = match from_gtid {
        Some(g) => {
            for q in [
                format!("SET @slave_connect_state='{g}'"),
                "SET @slave_gtid_strict_mode=1".to_string(),
            ] {
                conn.query_drop(q)
                    .await
                    .map_err(stream_err(server, &format!("GTID {g}"), 4))?;
            }
            (String::new(), 4)
        }
        None => (start.file.clone(), start.pos),
    };
    let stream = conn
        .get_binlog_stream(
            BinlogStreamRequest::new(server_id)
                .with_filename(req_file.as_bytes())
                .with_pos(req_pos),
        )
        .await
        .map_err(stream_err(
            server,
            if from_gtid.is_some() {
                "(GTID resume)"
            } else {
                &start.file
            },
            req_pos,
        ))?;
    info!(file = %start.file, pos = start.pos, gtid = ?start.gtid, from_gtid = ?from_gtid, server_id, "binlog stream opened");
    Ok((stream, req_file))
}

/// What to do after an event.
enum Step {
    /// Go on; `true`: the event ended a transaction (or was a standalone DDL), a safe resume
    /// point.
    Next(bool),
    /// The publishing loop is gone: stop reading.
    Closed,
}

/// The reader while it streams: where it is in the binlog and what it knows of the tables.
struct StreamState {
    prefix: String,
    filter: TableFilter,
    publisher: Publisher,
    dlq: Arc<str>,
    schemas: BTreeMap<String, SchemaMemo>,
    /// The schema memos changed since the last commit.
    schemas_dirty: bool,
    tx: mpsc::Sender<Msg>,
    ddl_topic: Option<Arc<str>>,
    partitions: HashMap<Arc<str>, i32>,
    file: String,
    gtid: Option<String>,
    in_txn: bool,
    /// By table id: the schema of a captured table, `None` for one not captured.
    tables: HashMap<u64, Option<Arc<TableSchema>>>,
    /// Topics known to exist.
    topics: HashSet<Arc<str>>,
}

impl Reader {
    pub async fn run(self) -> Result<(), ReadError> {
        let Reader {
            conn,
            server,
            server_id,
            heartbeat_ms,
            start,
            from_gtid,
            prefix,
            filter,
            publisher,
            dlq,
            schemas,
            tx,
        } = self;
        let ddl_topic: Option<Arc<str>> = ddl_topic(&prefix).map(Arc::from);
        if let Some(t) = &ddl_topic {
            publisher.ensure_topics(&[t.to_string()]).await?;
        }
        let (mut stream, file) = open_stream(
            conn,
            &server,
            server_id,
            heartbeat_ms,
            &start,
            from_gtid.as_deref(),
        )
        .await?;
        let mut st = StreamState {
            prefix,
            filter,
            publisher,
            dlq,
            schemas,
            schemas_dirty: false,
            tx,
            ddl_topic,
            partitions: HashMap::new(),
            file,
            gtid: start.gtid.clone(),
            in_txn: false,
            tables: HashMap::new(),
            topics: HashSet::new(),
        };
        while let Some(ev) = stream.next().await {
            let ev = ev.map_err(stream_err(&server, &st.file, 0))?;
            let committed = match st.on_event(&stream, &ev).await? {
                Step::Closed => return Ok(()),
                Step::Next(committed) => committed,
            };
            // A transaction's end (XID, COMMIT) or a standalone statement (DDL): the only
            // places a checkpoint is safe.
            if committed {
                let hdr = ev.header();
                if let Step::Closed = st.commit(hdr.log_pos() as u64, hdr.timestamp()).await {
                    return Ok(());
                }
            }
        }
        Err(ReadError::Decode {
            file: st.file,
            pos: 0,
            reason: "the server ended the binlog stream".into(),
        })
    }
}

impl StreamState {
    /// Hands events to the publishing loop; `false` when it is gone.
    async fn send(&self, topic: Arc<str>, events: Vec<Encoded>) -> bool {
        self.tx.send(Msg::Changes(topic, events)).await.is_ok()
    }

    /// Tells the publishing loop that a transaction ended at `log_pos` (with the schema
    /// memos when they changed).
    async fn commit(&mut self, log_pos: u64, ts: u32) -> Step {
        let pos = Position {
            file: self.file.clone(),
            pos: log_pos,
            gtid: self.gtid.clone(),
        };
        let snapshot = self.schemas_dirty.then(|| Arc::new(self.schemas.clone()));
        self.schemas_dirty = false;
        let msg = Msg::Commit {
            pos,
            ts,
            schemas: snapshot,
        };
        if self.tx.send(msg).await.is_err() {
            return Step::Closed;
        }
        Step::Next(true)
    }

    async fn on_event(&mut self, stream: &BinlogStream, ev: &Event) -> Result<Step, ReadError> {
        let hdr = ev.header();
        let log_pos = hdr.log_pos() as u64;
        metrics::counter!("ingest_mysql_events_total").increment(1);
        match hdr.event_type_raw() {
            // MariaDB GTID: seq u64, domain u32, flags2 u8 (bit 0: standalone, no XID).
            162 => {
                let d = ev.data();
                if d.len() >= 13 {
                    let seq = u64::from_le_bytes(d[0..8].try_into().unwrap_or_default());
                    let domain = u32::from_le_bytes(d[8..12].try_into().unwrap_or_default());
                    self.gtid = Some(format!("{domain}-{}-{seq}", hdr.server_id()));
                    self.in_txn = d[12] & 1 == 0;
                }
                return Ok(Step::Next(false));
            }
            // HEARTBEAT (MySQL 27; MariaDB also sends it with the same code).
            27 => {
                if self.tx.send(Msg::Heartbeat).await.is_err() {
                    return Ok(Step::Closed);
                }
                return Ok(Step::Next(false));
            }
            _ => {}
        }
        let data = match ev.read_data() {
            Ok(d) => d,
            Err(e) => {
                // Bad input: dead-letter the whole event and carry on.
                let bad = BadEvent {
                    server_id: hdr.server_id(),
                    file: &self.file,
                    pos: log_pos,
                    event_type: hdr.event_type_raw(),
                    table: None,
                    row: None,
                };
                let reason = format!(
                    "cannot decode binlog event of type {}: {e}",
                    hdr.event_type_raw()
                );
                let dl = dead_letter(
                    &self.prefix,
                    &bad,
                    &reason,
                    ev.data(),
                    chrono::Utc::now().timestamp_millis(),
                );
                if !self.send(self.dlq.clone(), vec![dl]).await {
                    return Ok(Step::Closed);
                }
                return Ok(Step::Next(false));
            }
        };
        match data {
            Some(EventData::RotateEvent(r)) => {
                let name = clean_file_name(r.name_raw(), hdr.timestamp() == 0);
                if name != self.file {
                    info!(from = %self.file, to = %name, "binlog rotated");
                }
                self.file = name;
                Ok(Step::Next(false))
            }
            Some(EventData::GtidEvent(g)) => {
                let sid = g.sid();
                let uuid: String = sid.iter().map(|b| format!("{b:02x}")).collect();
                self.gtid = Some(format!(
                    "{}-{}-{}-{}-{}:{}",
                    &uuid[0..8],
                    &uuid[8..12],
                    &uuid[12..16],
                    &uuid[16..20],
                    &uuid[20..32],
                    g.gno()
                ));
                self.in_txn = false;
                Ok(Step::Next(false))
            }
            Some(EventData::TableMapEvent(t)) => self.on_table_map(&hdr, &t).await,
            Some(EventData::RowsEvent(r)) => self.on_rows(stream, ev, &hdr, &r).await,
            Some(EventData::XidEvent(_)) => {
                self.in_txn = false;
                Ok(Step::Next(true))
            }
            Some(EventData::QueryEvent(q)) => self.on_query(&hdr, &q).await,
            _ => Ok(Step::Next(false)),
        }
    }

    /// A TABLE_MAP: the table's schema, the first time its id is seen (and its new columns
    /// announced before any row written with them).
    async fn on_table_map(
        &mut self,
        hdr: &BinlogEventHeader,
        t: &TableMapEvent<'_>,
    ) -> Result<Step, ReadError> {
        let id = t.table_id();
        if self.tables.contains_key(&id) {
            return Ok(Step::Next(false));
        }
        let (db, table) = (t.database_name(), t.table_name());
        let schema = if self.filter.matches(&db, &table) {
            let s = Arc::new(TableSchema::from_table_map(t, &self.prefix)?);
            if self.topics.insert(s.topic.clone()) {
                self.publisher.ensure_topics(&[s.topic.to_string()]).await?;
            }
            debug!(db = %s.db, table = %s.table, table_id = id, columns = s.names.len(), "table map");
            if let Step::Closed = self.announce_columns(hdr, &s).await? {
                return Ok(Step::Closed);
            }
            Some(s)
        } else {
            None
        };
        if self.tables.len() > 10_000 {
            self.tables.clear();
        }
        self.tables.insert(id, schema);
        Ok(Step::Next(false))
    }

    /// New columns (first sight, or after a DDL): announce them on every partition before
    /// the rows written with them.
    async fn announce_columns(
        &mut self,
        hdr: &BinlogEventHeader,
        s: &TableSchema,
    ) -> Result<Step, ReadError> {
        let log_pos = hdr.log_pos() as u64;
        let shape = s.shape();
        let memo = self.schemas.entry(s.name()).or_default();
        if memo.shape == shape {
            return Ok(Step::Next(false));
        }
        let n = partition_count(&self.publisher, &mut self.partitions, &s.topic).await?;
        let file = &self.file;
        let old: Vec<&str> = memo.shape.columns.iter().map(|c| c.name.as_str()).collect();
        let renames: Vec<Rename> = memo
            .pending_renames
            .iter()
            .filter(|(f, t)| {
                old.contains(&f.as_str()) && shape.columns.iter().any(|c| &c.name == t)
            })
            .map(|(f, t)| Rename { from: f, to: t })
            .collect();
        let source_key = format!("schema:{}:{}:{}", hdr.server_id(), file, log_pos);
        let src = MysqlSourceBlock {
            version: super::schema::version(),
            connector: CONNECTOR,
            name: &self.prefix,
            entity: &s.entity,
            ts_ms: hdr.timestamp() as i64 * 1000,
            server_id: hdr.server_id(),
            file,
            pos: log_pos,
            row: 0,
            gtid: self.gtid.as_deref(),
            db: &s.db,
            table: &s.table,
            snapshot: false,
            source_key: &source_key,
        };
        let change = SchemaChange {
            db: &s.db,
            table: &s.table,
            columns: &shape.columns,
            pk: &shape.pk,
            renames,
            ddl: &memo.pending_ddl,
            position: PositionRef { file, pos: log_pos },
            truncated: false,
            snapshot: None,
        };
        let before = (!memo.shape.columns.is_empty()).then_some(&memo.shape);
        let events = encode_schema_change(
            &change,
            before,
            &src,
            n,
            chrono::Utc::now().timestamp_millis(),
        );
        info!(db = %s.db, table = %s.table, columns = shape.columns.len(), renames = change.renames.len(), file = %file, pos = log_pos, "schema change announced");
        *memo = SchemaMemo {
            shape,
            ..SchemaMemo::default()
        };
        self.schemas_dirty = true;
        if !self.send(s.topic.clone(), events).await {
            return Ok(Step::Closed);
        }
        Ok(Step::Next(false))
    }

    /// A rows event of a captured table: its change events (dead letters for rows that
    /// cannot be decoded), to the publishing loop.
    async fn on_rows(
        &mut self,
        stream: &BinlogStream,
        ev: &Event,
        hdr: &BinlogEventHeader,
        r: &RowsEventData<'_>,
    ) -> Result<Step, ReadError> {
        let id = r.table_id();
        let Some(Some(schema)) = self.tables.get(&id).cloned() else {
            return Ok(Step::Next(false));
        };
        let rows = RowsAt {
            prefix: &self.prefix,
            file: &self.file,
            gtid: self.gtid.as_deref(),
            hdr,
            raw: ev.data(),
            schema: &schema,
            now_ms: chrono::Utc::now().timestamp_millis(),
        };
        let Some(tme) = stream.get_tme(id) else {
            let dead = vec![rows.dead_letter(
                None,
                format!("rows event for table id {id}, whose TABLE_MAP the decoder does not hold"),
            )];
            if !self.send(self.dlq.clone(), dead).await {
                return Ok(Step::Closed);
            }
            return Ok(Step::Next(false));
        };
        let (out, dead) = rows.decode(r, tme);
        metrics::counter!("ingest_mysql_rows_decoded_total").increment(out.len() as u64);
        if !dead.is_empty() && !self.send(self.dlq.clone(), dead).await {
            return Ok(Step::Closed);
        }
        if !out.is_empty() && !self.send(schema.topic.clone(), out).await {
            return Ok(Step::Closed);
        }
        Ok(Step::Next(false))
    }

    /// A QUERY event: BEGIN, COMMIT, or a statement outside a transaction (DDL).
    async fn on_query(
        &mut self,
        hdr: &BinlogEventHeader,
        q: &QueryEvent<'_>,
    ) -> Result<Step, ReadError> {
        let query = q.query();
        let trimmed = query.trim();
        if trimmed.eq_ignore_ascii_case("BEGIN") {
            self.in_txn = true;
            return Ok(Step::Next(false));
        }
        if !trimmed.eq_ignore_ascii_case("COMMIT") && self.in_txn {
            return Ok(Step::Next(false));
        }
        if !trimmed.eq_ignore_ascii_case("COMMIT") {
            let default_db = q.schema().into_owned();
            if let Step::Closed = self.on_ddl(hdr, &default_db, trimmed).await? {
                return Ok(Step::Closed);
            }
        }
        self.in_txn = false;
        Ok(Step::Next(true))
    }

    /// A DDL statement: its history event, and for a captured table the statement (and
    /// renames) remembered for the next schema event; a TRUNCATE announced at once.
    async fn on_ddl(
        &mut self,
        hdr: &BinlogEventHeader,
        default_db: &str,
        trimmed: &str,
    ) -> Result<Step, ReadError> {
        let log_pos = hdr.log_pos() as u64;
        info!(schema = %default_db, query = %trimmed.chars().take(200).collect::<String>(), file = %self.file, pos = log_pos, "DDL");
        metrics::counter!("ingest_mysql_ddl_total").increment(1);
        let info = super::ddl::parse(trimmed);
        let db = info
            .table
            .as_ref()
            .and_then(|t| t.0.clone())
            .unwrap_or_else(|| default_db.to_string());
        let captured = match &info.table {
            Some((_, t)) => self.filter.matches(&db, t),
            None => {
                !super::settings::SYSTEM_DATABASES.contains(&db.to_ascii_lowercase().as_str())
                    && HISTORY_OBJECTS.iter().any(|o| info.object == *o)
            }
        };
        if !captured {
            return Ok(Step::Next(false));
        }
        if let Some(t) = &self.ddl_topic {
            let ev = ddl_event(
                &self.prefix,
                hdr.server_id(),
                &self.file,
                log_pos,
                self.gtid.as_deref(),
                hdr.timestamp() as i64 * 1000,
                &db,
                &info,
                trimmed,
            );
            if !self.send(t.clone(), vec![ev]).await {
                return Ok(Step::Closed);
            }
        }
        let Some((_, table)) = &info.table else {
            return Ok(Step::Next(false));
        };
        let name = format!("{db}.{table}");
        let memo = self.schemas.entry(name).or_default();
        memo.pending_renames.extend(info.renames.iter().cloned());
        memo.pending_ddl.push(trimmed.to_string());
        self.schemas_dirty = true;
        if let (true, false, Ok(topic)) = (
            info.truncate,
            memo.shape.columns.is_empty(),
            topic_name(&self.prefix, &db, table),
        ) {
            return self.announce_truncate(hdr, &db, table, topic.into()).await;
        }
        Ok(Step::Next(false))
    }

    /// No row events for a TRUNCATE: tell the warehouse that the rows written before this
    /// point are gone.
    async fn announce_truncate(
        &mut self,
        hdr: &BinlogEventHeader,
        db: &str,
        table: &str,
        topic: Arc<str>,
    ) -> Result<Step, ReadError> {
        let log_pos = hdr.log_pos() as u64;
        if self.topics.insert(topic.clone()) {
            self.publisher.ensure_topics(&[topic.to_string()]).await?;
        }
        let n = partition_count(&self.publisher, &mut self.partitions, &topic).await?;
        let memo = &self.schemas[&format!("{db}.{table}")];
        let file = &self.file;
        let entity = super::schema::entity_name(db, table);
        let source_key = format!("truncate:{}:{}:{}", hdr.server_id(), file, log_pos);
        let src = MysqlSourceBlock {
            version: super::schema::version(),
            connector: CONNECTOR,
            name: &self.prefix,
            entity: &entity,
            ts_ms: hdr.timestamp() as i64 * 1000,
            server_id: hdr.server_id(),
            file,
            pos: log_pos,
            row: 0,
            gtid: self.gtid.as_deref(),
            db,
            table,
            snapshot: false,
            source_key: &source_key,
        };
        let change = SchemaChange {
            db,
            table,
            columns: &memo.shape.columns,
            pk: &memo.shape.pk,
            renames: Vec::new(),
            ddl: std::slice::from_ref(memo.pending_ddl.last().expect("pushed above")),
            position: PositionRef { file, pos: log_pos },
            truncated: true,
            snapshot: None,
        };
        let events = encode_schema_change(
            &change,
            Some(&memo.shape),
            &src,
            n,
            chrono::Utc::now().timestamp_millis(),
        );
        if !self.send(topic, events).await {
            return Ok(Step::Closed);
        }
        Ok(Step::Next(false))
    }
}

/// One rows event of a captured table, being decoded.
struct RowsAt<'a> {
    prefix: &'a str,
    file: &'a str,
    gtid: Option<&'a str>,
    hdr: &'a BinlogEventHeader,
    /// The raw event body (for dead letters).
    raw: &'a [u8],
    schema: &'a TableSchema,
    now_ms: i64,
}

impl RowsAt<'_> {
    /// The dead letter of one row of the event (`None`: the whole event).
    fn dead_letter(&self, row: Option<u32>, reason: String) -> Encoded {
        let bad = BadEvent {
            server_id: self.hdr.server_id(),
            file: self.file,
            pos: self.hdr.log_pos() as u64,
            event_type: self.hdr.event_type_raw(),
            table: Some((&self.schema.db, &self.schema.table)),
            row,
        };
        dead_letter(self.prefix, &bad, &reason, self.raw, self.now_ms)
    }

    /// The event's change events (`row` numbers them; an update that changes the key is a
    /// delete and a create), and dead letters for the rows that cannot be decoded.
    fn decode(
        &self,
        r: &RowsEventData<'_>,
        tme: &TableMapEvent<'_>,
    ) -> (Vec<Encoded>, Vec<Encoded>) {
        let (schema, log_pos) = (self.schema, self.hdr.log_pos() as u64);
        let mut dead = Vec::new();
        let mut out = Vec::new();
        let mut row_idx: u32 = 0;
        for row in r.rows(tme) {
            let (before, after) = match row {
                Ok(images) => images,
                Err(e) => {
                    // The rest of the event cannot be parsed past a broken row.
                    dead.push(self.dead_letter(Some(row_idx), format!("{}.{}: row {row_idx} and the rows after it in this event cannot be parsed: {e}", schema.db, schema.table)));
                    break;
                }
            };
            let images = (
                before.map(|mut b| row_values(schema, &mut b)).transpose(),
                after.map(|mut a| row_values(schema, &mut a)).transpose(),
            );
            let (before, after) = match images {
                (Ok(b), Ok(a)) => (b, a),
                (Err(reason), _) | (_, Err(reason)) => {
                    dead.push(self.dead_letter(
                        Some(row_idx),
                        format!("{}.{}: row {row_idx}: {reason}", schema.db, schema.table),
                    ));
                    row_idx += 1;
                    continue;
                }
            };
            let mut emit = |op: Op, before: Option<&[Out]>, after: Option<&[Out]>, idx: u32| {
                out.push(self.encode(op, before, after, idx));
            };
            // WRITE rows carry only an after image, DELETE only a before image,
            // UPDATE both (v1 and v2 events alike).
            match (before, after) {
                (None, Some(a)) => emit(Op::Create, None, Some(&a), row_idx),
                (Some(b), None) => emit(Op::Delete, Some(&b), None, row_idx),
                (Some(b), Some(a)) if schema.same_key(&b, &a) => {
                    emit(Op::Update, Some(&b), Some(&a), row_idx)
                }
                (Some(b), Some(a)) => {
                    // The key changed: a delete of the old key, then a create of the
                    // new one, so that consumers folding by key stay right.
                    emit(Op::Delete, Some(&b), None, row_idx);
                    row_idx += 1;
                    emit(Op::Create, None, Some(&a), row_idx);
                }
                (None, None) => {
                    warn!(db = %schema.db, table = %schema.table, file = %self.file, pos = log_pos, "rows event row without images; skipped");
                }
            }
            row_idx += 1;
        }
        (out, dead)
    }

    /// The change event of row `idx` of the event.
    fn encode(&self, op: Op, before: Option<&[Out]>, after: Option<&[Out]>, idx: u32) -> Encoded {
        let (hdr, schema) = (self.hdr, self.schema);
        let log_pos = hdr.log_pos() as u64;
        let source_key = format!("{}:{}:{}:{}", hdr.server_id(), self.file, log_pos, idx);
        let src = MysqlSourceBlock {
            version: super::schema::version(),
            connector: CONNECTOR,
            name: self.prefix,
            entity: &schema.entity,
            ts_ms: hdr.timestamp() as i64 * 1000,
            server_id: hdr.server_id(),
            file: self.file,
            pos: log_pos,
            row: idx,
            gtid: self.gtid,
            db: &schema.db,
            table: &schema.table,
            snapshot: false,
            source_key: &source_key,
        };
        encode(schema, op, before, after, &src, self.now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::{clean_file_name, dead_letter, row_values, BadEvent};
    use crate::sources::mysql::schema::TableSchema;
    use crate::sources::mysql::values::Kind;
    use etl_contract::DeadLetter;
    use mysql_async::binlog::row::BinlogRow;
    use mysql_async::binlog::value::BinlogValue;
    use mysql_async::consts::ColumnType;
    use mysql_async::{Column, Value};
    use std::sync::Arc;

    fn schema() -> TableSchema {
        TableSchema {
            db: "shop".into(),
            table: "orders".into(),
            entity: "shop_orders".into(),
            topic: "p.mysql.shop_orders".into(),
            names: vec!["id".into(), "qty".into()],
            kinds: vec![Kind::Int, Kind::Int],
            types: vec!["integer".into(), "integer".into()],
            pk: vec![0],
        }
    }

    fn row(values: Vec<Value>) -> BinlogRow {
        let columns: Arc<[Column]> = values
            .iter()
            .map(|_| Column::new(ColumnType::MYSQL_TYPE_LONG))
            .collect();
        BinlogRow::new(
            values
                .into_iter()
                .map(|v| Some(BinlogValue::Value(v)))
                .collect(),
            columns,
        )
    }

    /// A value the decoder cannot render (an INT column holding bytes) is an error naming
    /// the column, and becomes a dead letter that carries the table, file, position, row
    /// index, the raw event and the reason: the stream does not stop on it.
    #[test]
    fn an_undecodable_row_becomes_a_dead_letter() {
        let s = schema();
        let ok = row_values(&s, &mut row(vec![Value::Int(1), Value::Int(5)])).unwrap();
        assert_eq!(ok.len(), 2);
        let reason = row_values(
            &s,
            &mut row(vec![Value::Int(2), Value::Bytes(b"\xff\xfe".to_vec())]),
        )
        .unwrap_err();
        assert!(reason.contains("column qty"), "{reason}");
        let raw = b"\x01\x02 raw rows event body \xff";
        let bad = BadEvent {
            server_id: 7,
            file: "mariadb-bin.000042",
            pos: 1234,
            event_type: 30,
            table: Some(("shop", "orders")),
            row: Some(3),
        };
        let e = dead_letter("p", &bad, &reason, raw, 99);
        assert_eq!(e.key, b"7:mariadb-bin.000042:1234:3");
        let dl: DeadLetter = serde_json::from_slice(&e.payload).unwrap();
        assert_eq!(dl.connector, "mysql");
        assert_eq!(dl.name, "p");
        assert_eq!(dl.entity.as_deref(), Some("shop_orders"));
        assert_eq!(dl.reason, reason);
        assert_eq!(dl.source_key, "7:mariadb-bin.000042:1234:3");
        assert_eq!(dl.origin["file"], "mariadb-bin.000042");
        assert_eq!(dl.origin["pos"], 1234);
        assert_eq!(dl.origin["row"], 3);
        assert_eq!(dl.origin["db"], "shop");
        assert_eq!(dl.origin["table"], "orders");
        assert_eq!(dl.origin["event_type"], 30);
        assert_eq!(dl.raw().unwrap(), raw.to_vec());
        assert_eq!(dl.raw_length, raw.len() as u64);
        assert_eq!(dl.ts_ms, 99);

        // A whole event that cannot be read: no table, no row index.
        let whole = BadEvent {
            table: None,
            row: None,
            ..bad
        };
        let e = dead_letter("p", &whole, "cannot decode", raw, 99);
        assert_eq!(e.key, b"7:mariadb-bin.000042:1234:event");
        let dl: DeadLetter = serde_json::from_slice(&e.payload).unwrap();
        assert_eq!(dl.entity, None);
        assert!(dl.origin["row"].is_null());
    }

    #[test]
    fn a_purged_resume_point_stops_other_stream_errors_are_retried() {
        let err = |code| super::ReadError::Stream {
            server: "db:3306".into(),
            file: "(GTID resume)".into(),
            pos: 4,
            source: mysql_async::Error::Server(mysql_async::ServerError {
                code,
                message: "purged".into(),
                state: "HY000".into(),
            }),
        };
        assert!(!err(1236).retryable());
        assert!(err(2013).retryable());
        assert!(super::ReadError::Decode {
            file: "f".into(),
            pos: 0,
            reason: "the server ended the binlog stream".into()
        }
        .retryable());
    }

    #[test]
    fn fake_rotate_names_lose_their_crc() {
        assert_eq!(
            clean_file_name(b"mariadb-bin.000003\x12\xab\xcd\xef", true),
            "mariadb-bin.000003"
        );
        assert_eq!(
            clean_file_name(b"mariadb-bin.000003", true),
            "mariadb-bin.000003"
        );
        assert_eq!(clean_file_name(b"binlog.0001231201", true), "binlog.000123");
        assert_eq!(clean_file_name(b"binlog.000123", false), "binlog.000123");
    }
}
