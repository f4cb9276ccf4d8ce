//! MySQL/MariaDB binlog source: a lockless consistent snapshot of the selected tables
//! (resumable mid-table), then the binlog from the snapshot's exact coordinates. Row events
//! become `c`/`u`/`d` change events with full before/after images on
//! `<prefix>.mysql.<db>_<table>`, keyed by primary key; the checkpoint (binlog file,
//! position and GTID of a transaction's end) is saved only after the broker acknowledged
//! every row before it. See `docs/change-events.md` for the value formats and source keys.

pub(crate) mod ddl;
pub(crate) mod schema;
pub mod settings;
mod snapshot;
pub(crate) mod stream;
pub(crate) mod values;

pub use settings::{MysqlSettings, ResumeMode, SnapshotMode};

use super::{Source, SourceContext, SourceError};
use crate::checkpoint::CheckpointFile;
use crate::publisher::Batch;
use futures::future::BoxFuture;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Row};
use serde::{Deserialize, Serialize};
use settings::TableFilter;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use stream::{Msg, Reader};
use tokio::sync::mpsc;
use tracing::{error, info, warn};
use values::PkValue;

/// A resume point in the binlog: the end of a transaction (or of a standalone DDL).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub file: String,
    pub pos: u64,
    /// MariaDB `domain-server-seq` (MySQL `uuid:gno`) of the last transaction, when known.
    #[serde(default)]
    pub gtid: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TableProgress {
    pub done: bool,
    /// Primary key of the last acknowledged row.
    pub last_pk: Option<Vec<PkValue>>,
    pub rows: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SnapshotState {
    /// Identity of this snapshot, in the source keys of its rows.
    pub id: String,
    pub attempts: u32,
    /// Binlog coordinates of the first attempt's read view: streaming starts there.
    pub start: Option<Position>,
    /// Progress by `db.table`.
    pub tables: BTreeMap<String, TableProgress>,
    pub complete: bool,
}

/// What the agent last announced about a table (schema event), and the renames seen in
/// DDL since then, to announce with its next columns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaMemo {
    pub shape: schema::TableShape,
    #[serde(default)]
    pub pending_renames: Vec<(String, String)>,
    #[serde(default)]
    pub pending_ddl: Vec<String>,
}

/// The MySQL source's checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MysqlCheckpoint {
    /// Where streaming resumes; `None` before the snapshot completed.
    pub position: Option<Position>,
    pub snapshot: Option<SnapshotState>,
    /// By `db.table`: the columns last announced in a schema event.
    #[serde(default)]
    pub schemas: BTreeMap<String, SchemaMemo>,
}

pub struct MysqlSource {
    settings: MysqlSettings,
    filter: TableFilter,
    opts: Opts,
    /// `host:port` for messages (no credentials).
    server: String,
    prefix: String,
}

/// Wraps a client error as a retryable source error.
pub(crate) fn upstream<E: std::error::Error + Send + Sync + 'static>(
    context: impl Into<String>,
) -> impl FnOnce(E) -> SourceError {
    let context = context.into();
    move |e| SourceError::Io {
        context,
        source: std::io::Error::other(e),
    }
}

impl MysqlSource {
    pub fn new(settings: MysqlSettings, prefix: &str) -> Result<Self, SourceError> {
        settings.validate().map_err(SourceError::Config)?;
        let filter = TableFilter::new(&settings).map_err(SourceError::Config)?;
        let opts = Opts::from_url(&settings.url)
            .map_err(|e| SourceError::Config(format!("[ingest.mysql] url: {e}")))?;
        let server = format!("{}:{}", opts.ip_or_hostname(), opts.tcp_port());
        Ok(MysqlSource {
            settings,
            filter,
            opts,
            server,
            prefix: prefix.to_string(),
        })
    }

    async fn connect(&self) -> Result<Conn, SourceError> {
        Conn::new(self.opts.clone()).await.map_err(upstream(format!(
            "connecting to MySQL at {} as {:?}",
            self.server,
            self.opts.user().unwrap_or("")
        )))
    }

    /// Checks that the server can be captured, with an error that says what to change.
    async fn check_server(&self, conn: &mut Conn) -> Result<(), SourceError> {
        let server = &self.server;
        type Settings = (String, Option<i64>, Option<String>, Option<String>);
        let row: Option<Settings> = conn
            .query_first("SELECT @@version, @@log_bin, @@binlog_format, @@binlog_row_image")
            .await
            .map_err(upstream("reading the server's binlog settings"))?;
        let (version, log_bin, format, image) = row.unwrap_or_default();
        if log_bin != Some(1) {
            return Err(SourceError::Config(format!(
                "the binary log is off on {server} ({version}): add log_bin=<path>, binlog_format=ROW, binlog_row_image=FULL and binlog_row_metadata=FULL to the server's configuration and restart it"
            )));
        }
        if !format
            .as_deref()
            .is_some_and(|f| f.eq_ignore_ascii_case("ROW"))
        {
            return Err(SourceError::Config(format!(
                "binlog_format is {} on {server}; change data capture needs ROW: SET GLOBAL binlog_format=ROW and set it in the server's configuration",
                format.unwrap_or_default()
            )));
        }
        if !image
            .as_deref()
            .is_some_and(|f| f.eq_ignore_ascii_case("FULL"))
        {
            return Err(SourceError::Config(format!(
                "binlog_row_image is {} on {server}; full before and after images need FULL: SET GLOBAL binlog_row_image=FULL and set it in the server's configuration",
                image.unwrap_or_default()
            )));
        }
        match conn.query_first::<Option<String>, _>("SELECT @@binlog_row_metadata").await {
            Ok(Some(Some(m))) if m.eq_ignore_ascii_case("FULL") => {}
            Ok(other) => {
                return Err(SourceError::Config(format!(
                    "binlog_row_metadata is {:?} on {server}; column names and keys in the binlog need FULL: SET GLOBAL binlog_row_metadata=FULL and set it in the server's configuration",
                    other.flatten().unwrap_or_default()
                )))
            }
            Err(e) => warn!(error = %e, "cannot read binlog_row_metadata (server older than MariaDB 10.5 / MySQL 8.0?)"),
        }
        let grants: Vec<String> = conn
            .query("SHOW GRANTS")
            .await
            .map_err(upstream("reading the CDC user's grants"))?;
        let grants = grants.join("\n").to_ascii_uppercase();
        let all = grants.contains("ALL PRIVILEGES ON *.*");
        let user = self.opts.user().unwrap_or("").to_string();
        if !all && !grants.contains("REPLICATION SLAVE") {
            return Err(SourceError::Config(format!(
                "user {user:?} lacks REPLICATION SLAVE on {server}: GRANT REPLICATION SLAVE, BINLOG MONITOR, SELECT ON *.* TO the CDC user (MySQL: REPLICATION CLIENT instead of BINLOG MONITOR)"
            )));
        }
        if self.settings.snapshot_mode != SnapshotMode::Never && !all && !grants.contains("SELECT")
        {
            return Err(SourceError::Config(format!(
                "user {user:?} lacks SELECT on {server}, needed by the snapshot: GRANT SELECT ON *.* (or on the captured databases) TO the CDC user, or set snapshot_mode = \"never\""
            )));
        }
        self.master_status(conn).await?;
        info!(server = %server, version = %version, "MySQL server checks passed (binlog ROW, FULL images, FULL metadata, privileges)");
        Ok(())
    }

    pub(super) async fn master_status(&self, conn: &mut Conn) -> Result<Position, SourceError> {
        // MySQL 8.4 renamed it SHOW BINARY LOG STATUS (and dropped the old name); MariaDB
        // 10.11 knows only the old one.
        let first = conn.query_first::<Row, _>("SHOW MASTER STATUS").await;
        let first = match first {
            Err(mysql_async::Error::Server(se)) if se.code == 1064 => {
                conn.query_first::<Row, _>("SHOW BINARY LOG STATUS").await
            }
            other => other,
        };
        let row: Option<Row> = first.map_err(|e| match &e {
            mysql_async::Error::Server(se) if se.code == 1227 => SourceError::Config(format!(
                "user {:?} may not read the binlog position on {} ({}): GRANT BINLOG MONITOR ON *.* TO the CDC user (MySQL: REPLICATION CLIENT)",
                self.opts.user().unwrap_or(""),
                self.server,
                se.message
            )),
            _ => upstream("SHOW MASTER STATUS")(e),
        })?;
        let row = row.ok_or_else(|| {
            SourceError::Config(format!(
                "SHOW MASTER STATUS is empty on {}: the binary log is off",
                self.server
            ))
        })?;
        let file: Option<String> = row.get(0);
        let pos: Option<u64> = row.get(1);
        Ok(Position {
            file: file.unwrap_or_default(),
            pos: pos.unwrap_or(4),
            gtid: None,
        })
    }

    async fn binlog_exists(&self, conn: &mut Conn, file: &str) -> Result<bool, SourceError> {
        let rows: Vec<Row> = conn
            .query("SHOW BINARY LOGS")
            .await
            .map_err(upstream("SHOW BINARY LOGS"))?;
        Ok(rows
            .iter()
            .any(|r| r.get::<String, _>(0).as_deref() == Some(file)))
    }

    async fn run_loop(&self, ctx: SourceContext) -> Result<(), SourceError> {
        let cp = CheckpointFile::new(ctx.checkpoint_dir.join("mysql.json"));
        let mut state: MysqlCheckpoint = cp.load()?;
        let mut conn = self.connect().await?;
        self.check_server(&mut conn).await?;
        let mode = self.settings.snapshot_mode;
        let mut from_gtid: Option<String> = None;
        if let Some(p) = state.position.clone() {
            let gtid = p.gtid.as_deref().filter(|g| mariadb_gtid(g));
            let exists = self.binlog_exists(&mut conn, &p.file).await?;
            if self.settings.resume == ResumeMode::Gtid && gtid.is_none() && exists {
                warn!(file = %p.file, pos = p.pos, gtid = ?p.gtid, "resume = \"gtid\" but the checkpoint holds no MariaDB GTID (domain-server-seq) yet: resuming from its file and position");
            }
            if let Some(g) = gtid.filter(|_| self.settings.resume == ResumeMode::Gtid || !exists) {
                if exists {
                    info!(gtid = %g, file = %p.file, pos = p.pos, "resume = \"gtid\": resuming from the checkpoint's GTID");
                } else {
                    warn!(gtid = %g, file = %p.file, pos = p.pos, "the checkpoint's binlog file was purged from the server: resuming from the checkpoint's GTID");
                }
                from_gtid = Some(g.to_string());
            } else if !exists {
                if mode == SnapshotMode::WhenNeeded {
                    warn!(file = %p.file, pos = p.pos, "the checkpoint's binlog file was purged from the server; snapshot_mode when_needed: taking a new snapshot");
                    state = MysqlCheckpoint::default();
                    cp.save(&state)?;
                } else {
                    return Err(SourceError::Config(format!(
                        "the checkpoint's binlog file {} is no longer on {} (purged) and the checkpoint holds no MariaDB GTID to resume from; changes since then are lost to the binlog. Set snapshot_mode = \"when_needed\" to take a new snapshot automatically, or move {} away to start over",
                        p.file,
                        self.server,
                        cp.path().display()
                    )));
                }
            }
        }
        let needs_snapshot = mode != SnapshotMode::Never
            && (state.position.is_none() || state.snapshot.as_ref().is_some_and(|s| !s.complete));
        if needs_snapshot {
            self.snapshot(&ctx, &cp, &mut state).await?;
            if *ctx.shutdown.borrow() {
                return Ok(());
            }
        }
        if state.position.is_none() {
            let p = self.master_status(&mut conn).await?;
            info!(file = %p.file, pos = p.pos, "no checkpoint and no snapshot: streaming from the current binlog position");
            state.position = Some(p);
            cp.save(&state)?;
        }
        drop(conn);
        if mode == SnapshotMode::InitialOnly {
            info!("snapshot_mode initial_only: snapshot done, not streaming");
            let mut shutdown = ctx.shutdown.clone();
            while !*shutdown.borrow() {
                if shutdown.changed().await.is_err() {
                    break;
                }
            }
            return Ok(());
        }
        self.stream(&ctx, &cp, &mut state, from_gtid).await
    }

    async fn stream(
        &self,
        ctx: &SourceContext,
        cp: &CheckpointFile,
        state: &mut MysqlCheckpoint,
        from_gtid: Option<String>,
    ) -> Result<(), SourceError> {
        let start = state.position.clone().unwrap_or_default();
        let (tx, mut rx) = mpsc::channel::<Msg>(256);
        let reader = Reader {
            conn: self.connect().await?,
            server: self.server.clone(),
            server_id: self.settings.server_id,
            heartbeat_ms: self.settings.heartbeat_interval_ms,
            start,
            from_gtid,
            prefix: ctx.topic_prefix.clone(),
            filter: self.filter.clone(),
            publisher: ctx.publisher.clone(),
            dlq: etl_contract::dead_letter_topic(&ctx.topic_prefix)
                .map_err(|e| SourceError::Config(e.to_string()))?
                .into(),
            schemas: state.schemas.clone(),
            tx,
        };
        let mut handle = tokio::spawn(reader.run());
        let interval = Duration::from_millis(self.settings.checkpoint_interval_ms.max(1));
        let mut batch = Batch::default();
        let mut pending: Option<Pending> = None;
        let mut last_save = Instant::now();
        let mut shutdown = ctx.shutdown.clone();
        let mut published = 0u64;
        let result: Result<(), SourceError> = loop {
            ctx.liveness.beat();
            let wait = interval.saturating_sub(last_save.elapsed());
            let msg = tokio::select! {
                biased;
                _ = shutdown.changed() => break Ok(()),
                m = rx.recv() => m,
                _ = tokio::time::sleep(wait), if pending.is_some() => {
                    if let Err(e) = self.commit(cp, state, &mut batch, &mut pending, &mut last_save).await { break Err(e); }
                    continue;
                }
            };
            let step = match msg {
                Some(Msg::Changes(topic, events)) => {
                    let mut r = Ok(());
                    for e in &events {
                        if let Err(err) = ctx
                            .publisher
                            .send_to(&mut batch, &topic, e.partition, &e.key, &e.payload)
                            .await
                        {
                            r = Err(err.into());
                            break;
                        }
                    }
                    published += events.len() as u64;
                    metrics::counter!("ingest_mysql_rows_published_total", "phase" => "stream")
                        .increment(events.len() as u64);
                    r
                }
                Some(Msg::Commit { pos, ts, schemas }) => {
                    // A later commit without schema news keeps the earlier one's.
                    let schemas = schemas.or_else(|| pending.take().and_then(|p| p.schemas));
                    pending = Some(Pending { pos, ts, schemas });
                    if batch.len() >= 20_000 || last_save.elapsed() >= interval {
                        self.commit(cp, state, &mut batch, &mut pending, &mut last_save)
                            .await
                    } else {
                        Ok(())
                    }
                }
                Some(Msg::Heartbeat) => {
                    metrics::gauge!("ingest_mysql_lag_ms").set(0.0);
                    metrics::counter!("ingest_mysql_heartbeats_total").increment(1);
                    self.commit(cp, state, &mut batch, &mut pending, &mut last_save)
                        .await
                }
                None => {
                    // The reader ended: commit what was acknowledged, then report why.
                    let _ = self
                        .commit(cp, state, &mut batch, &mut pending, &mut last_save)
                        .await;
                    break match (&mut handle).await {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(e)) if e.retryable() => Err(upstream("binlog reader")(e)),
                        Ok(Err(e))
                            if e.position_lost()
                                && self.settings.snapshot_mode == SnapshotMode::WhenNeeded =>
                        {
                            // The changes since the checkpoint are lost to the binlog: take
                            // the captured tables again. Each table's snapshot ends with a
                            // marker that makes the warehouse drop the rows it did not see.
                            warn!(error = %e, "the resume point was purged from the server; snapshot_mode when_needed: taking a new snapshot of the captured tables");
                            *state = MysqlCheckpoint::default();
                            if let Err(err) = cp.save(state) {
                                break Err(err.into());
                            }
                            Err(upstream("binlog reader")(std::io::Error::other(format!(
                                "resume point purged ({e}); a new snapshot starts at the restart"
                            ))))
                        }
                        Ok(Err(e)) => Err(SourceError::Config(e.to_string())),
                        Err(join) => {
                            error!(error = %join, "the binlog decoder panicked (malformed event?); restarting from the checkpoint");
                            Err(upstream("binlog reader")(std::io::Error::other(format!(
                                "decoder task failed: {join}"
                            ))))
                        }
                    };
                }
            };
            if let Err(e) = step {
                break Err(e);
            }
        };
        handle.abort();
        if result.is_ok() {
            self.commit(cp, state, &mut batch, &mut pending, &mut last_save)
                .await?;
            info!(published, position = ?state.position, "mysql source stopped");
        }
        result
    }

    /// Waits for the broker to acknowledge everything sent, then saves the last transaction
    /// end as the checkpoint.
    async fn commit(
        &self,
        cp: &CheckpointFile,
        state: &mut MysqlCheckpoint,
        batch: &mut Batch,
        pending: &mut Option<Pending>,
        last_save: &mut Instant,
    ) -> Result<(), SourceError> {
        let Some(Pending { pos, ts, schemas }) = pending.take() else {
            return Ok(());
        };
        std::mem::take(batch).acknowledged().await?;
        state.position = Some(pos);
        if let Some(s) = schemas {
            state.schemas = (*s).clone();
        }
        cp.save(state)?;
        *last_save = Instant::now();
        let lag = chrono::Utc::now().timestamp_millis() - ts as i64 * 1000;
        metrics::gauge!("ingest_mysql_lag_ms").set(lag.max(0) as f64);
        Ok(())
    }
}

/// A transaction end waiting to be checkpointed, with the schema memos as of then.
struct Pending {
    pos: Position,
    ts: u32,
    schemas: Option<std::sync::Arc<BTreeMap<String, SchemaMemo>>>,
}

/// A MariaDB GTID, `domain-server-seq` (decimal numbers): the form `@slave_connect_state`
/// takes. A MySQL GTID (`uuid:gno`) is not one.
fn mariadb_gtid(g: &str) -> bool {
    let parts: Vec<&str> = g.split('-').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 20 && p.bytes().all(|b| b.is_ascii_digit()))
}

impl super::SourceBuilder for MysqlSettings {
    fn build(&self, topic_prefix: &str) -> Result<std::sync::Arc<dyn Source>, SourceError> {
        Ok(std::sync::Arc::new(MysqlSource::new(
            self.clone(),
            topic_prefix,
        )?))
    }
}

impl Source for MysqlSource {
    fn name(&self) -> &'static str {
        "mysql"
    }

    /// The table topics are created as tables are discovered (snapshot or TABLE_MAP
    /// events); the dead-letter topic is the one known up front.
    fn topics(&self) -> Vec<String> {
        etl_contract::dead_letter_topic(&self.prefix)
            .into_iter()
            .collect()
    }

    fn run(&self, ctx: SourceContext) -> BoxFuture<'_, Result<(), SourceError>> {
        Box::pin(self.run_loop(ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::mariadb_gtid;

    #[test]
    fn only_mariadb_gtids_are_used_to_resume() {
        assert!(mariadb_gtid("0-1-42"));
        assert!(mariadb_gtid("12-3401-18446744073709551615"));
        assert!(!mariadb_gtid("3e11fa47-71ca-11e1-9e33-c80aa9429562:23"));
        assert!(!mariadb_gtid("0-1"));
        assert!(!mariadb_gtid("0-1-2'; DROP TABLE x; --"));
        assert!(!mariadb_gtid("0--2"));
    }
}
