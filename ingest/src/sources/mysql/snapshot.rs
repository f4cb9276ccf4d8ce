//! The lockless consistent snapshot (InnoDB): one `START TRANSACTION WITH CONSISTENT
//! SNAPSHOT` read view whose exact binlog coordinates MariaDB reports
//! (`Binlog_snapshot_file` / `_position`); each table read in primary-key order, chunk by
//! chunk; every chunk published, acknowledged, then the last key checkpointed, so that a
//! crash resumes mid-table.
//!
//! A resumed snapshot opens a new read view, later than the first one; streaming still
//! starts at the *first* attempt's coordinates, so every change after the first read view is
//! replayed over the rows read later: folded by key, the result is the table's state.

use super::schema::{
    encode, encode_schema_change, entity_name, pg_type_from_information_schema,
    snapshot_source_key, topic_name, MysqlSourceBlock, PositionRef, SchemaChange, SnapshotMark,
    TableSchema, CONNECTOR,
};
use super::settings::SnapshotCoordinates;
use super::values::{render, Kind, Out, PkValue};
use super::{
    upstream, MysqlCheckpoint, MysqlSource, Position, SchemaMemo, SnapshotState, TableProgress,
};
use crate::checkpoint::CheckpointFile;
use crate::publisher::Batch;
use crate::sources::{SourceContext, SourceError};
use etl_contract::Op;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, Row, Value};
use std::sync::Arc;
use std::time::Instant;
use tracing::{info, warn};

fn quote(ident: &str) -> String {
    format!("`{}`", ident.replace('`', "``"))
}

async fn table_schema(
    conn: &mut Conn,
    prefix: &str,
    db: &str,
    table: &str,
) -> Result<TableSchema, SourceError> {
    type Col = (
        String,
        String,
        Option<u64>,
        Option<String>,
        String,
        Option<u64>,
        Option<u64>,
    );
    let cols: Vec<Col> = conn
        .exec(
            "SELECT COLUMN_NAME, DATA_TYPE, DATETIME_PRECISION, CHARACTER_SET_NAME, COLUMN_TYPE, NUMERIC_PRECISION, NUMERIC_SCALE \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            (db, table),
        )
        .await
        .map_err(upstream(format!("reading the columns of {db}.{table}")))?;
    let pk_names: Vec<String> = conn
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION",
            (db, table),
        )
        .await
        .map_err(upstream(format!("reading the primary key of {db}.{table}")))?;
    let names: Vec<String> = cols.iter().map(|c| c.0.clone()).collect();
    let kinds: Vec<Kind> = cols
        .iter()
        .map(|(_, ty, p, cs, ..)| Kind::from_information_schema(ty, *p, cs.as_deref()))
        .collect();
    let types = cols
        .iter()
        .zip(&kinds)
        .map(|((_, ty, _, _, col_ty, np, ns), k)| {
            pg_type_from_information_schema(k, ty, col_ty, *np, *ns)
        })
        .collect();
    let pk = pk_names
        .iter()
        .filter_map(|n| names.iter().position(|c| c == n))
        .collect();
    let topic = topic_name(prefix, db, table)
        .map_err(|e| SourceError::Config(format!("table {db}.{table} cannot have a topic: {e}")))?;
    Ok(TableSchema {
        db: db.into(),
        table: table.into(),
        entity: entity_name(db, table),
        topic: topic.into(),
        names,
        kinds,
        types,
        pk,
    })
}

impl MysqlSource {
    /// Publishes a snapshot marker (schema event, `start` or `end`) of a table to every
    /// partition of its topic and waits for the acknowledgement.
    async fn snapshot_mark(
        &self,
        ctx: &SourceContext,
        schema: &TableSchema,
        snapshot_id: &str,
        start: &Position,
        phase: &str,
    ) -> Result<(), SourceError> {
        let shape = schema.shape();
        let partitions = ctx.publisher.partition_count(&schema.topic).await?;
        let now_ms = chrono::Utc::now().timestamp_millis();
        let source_key = format!(
            "snapshot:{snapshot_id}:{}.{}:schema-{phase}",
            schema.db, schema.table
        );
        let src = MysqlSourceBlock {
            version: super::schema::version(),
            connector: CONNECTOR,
            name: &ctx.topic_prefix,
            entity: &schema.entity,
            ts_ms: now_ms,
            server_id: 0,
            file: &start.file,
            pos: start.pos,
            row: 0,
            gtid: start.gtid.as_deref(),
            db: &schema.db,
            table: &schema.table,
            snapshot: true,
            source_key: &source_key,
        };
        let change = SchemaChange {
            db: &schema.db,
            table: &schema.table,
            columns: &shape.columns,
            pk: &shape.pk,
            renames: Vec::new(),
            ddl: &[],
            position: PositionRef {
                file: &start.file,
                pos: start.pos,
            },
            truncated: false,
            snapshot: Some(SnapshotMark {
                id: snapshot_id,
                phase,
            }),
        };
        let mut batch = Batch::default();
        for e in encode_schema_change(&change, None, &src, partitions, now_ms) {
            ctx.publisher
                .send_to(&mut batch, &schema.topic, e.partition, &e.key, &e.payload)
                .await?;
        }
        batch.acknowledged().await?;
        Ok(())
    }
}

/// One table being read by the snapshot: what every chunk of it needs.
struct TableRead<'a> {
    schema: &'a TableSchema,
    /// `db.table`.
    name: &'a str,
    db: &'a str,
    table: &'a str,
    snapshot_id: &'a str,
    /// The snapshot's streaming start, in the source block of every row.
    start: &'a Position,
}

impl MysqlSource {
    /// Runs (or resumes) the snapshot; on success the checkpoint holds the snapshot's binlog
    /// coordinates as the streaming start and the snapshot is marked complete.
    pub(super) async fn snapshot(
        &self,
        ctx: &SourceContext,
        cp: &CheckpointFile,
        state: &mut MysqlCheckpoint,
    ) -> Result<(), SourceError> {
        let mut conn = self.connect().await?;
        let here = self.open_read_view(&mut conn).await?;
        let snap = state.snapshot.get_or_insert_with(|| SnapshotState {
            id: format!("{:016x}", rand::random::<u64>()),
            ..SnapshotState::default()
        });
        snap.attempts += 1;
        if snap.start.is_none() {
            snap.start = Some(here.clone());
        }
        let snapshot_id = snap.id.clone();
        let start = snap.start.clone().unwrap_or(here.clone());
        // The snapshot id and start must be durable before any row carrying them is published.
        cp.save(state)?;
        info!(snapshot_id = %snapshot_id, file = %here.file, pos = here.pos, gtid = ?here.gtid, attempt = state.snapshot.as_ref().map_or(0, |s| s.attempts), "snapshot started");

        let listed: Vec<(String, String)> = conn
            .query("SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_SCHEMA, TABLE_NAME")
            .await
            .map_err(upstream("listing the tables"))?;
        let tables: Vec<(String, String)> = listed
            .into_iter()
            .filter(|(d, t)| self.filter.matches(d, t))
            .collect();
        let started = Instant::now();
        let mut total = 0u64;
        for (db, table) in &tables {
            let read = self
                .snapshot_table(ctx, cp, state, &mut conn, &snapshot_id, &start, db, table)
                .await?;
            match read {
                Some(n) => total += n,
                None => return Ok(()),
            }
        }
        let _ = conn.query_drop("COMMIT").await;
        if let Some(s) = state.snapshot.as_mut() {
            s.complete = true;
        }
        state.position = Some(start.clone());
        cp.save(state)?;
        let secs = started.elapsed().as_secs_f64();
        info!(snapshot_id = %snapshot_id, tables = tables.len(), rows = total, seconds = secs, rows_per_s = (total as f64 / secs.max(1e-3)) as u64, stream_from = %format!("{}:{}", start.file, start.pos), "snapshot complete");
        Ok(())
    }

    /// Opens the consistent read view on `conn` and returns its binlog coordinates (or,
    /// when the server does not report them, the position read just before it).
    async fn open_read_view(&self, conn: &mut Conn) -> Result<Position, SourceError> {
        // Read before the read view opens: the fallback streaming start (see
        // SnapshotCoordinates::Preceding).
        let preceding = self.master_status(conn).await?;
        for setup in [
            "SET time_zone = '+00:00'",
            "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
            "START TRANSACTION WITH CONSISTENT SNAPSHOT",
        ] {
            conn.query_drop(setup)
                .await
                .map_err(upstream("starting the consistent snapshot"))?;
        }
        let status: Vec<(String, String)> = conn
            .query("SHOW STATUS LIKE 'binlog_snapshot_%'")
            .await
            .map_err(upstream("reading the snapshot's binlog coordinates"))?;
        let get = |k: &str| {
            status
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.clone())
        };
        let exact = match (get("Binlog_snapshot_file"), get("Binlog_snapshot_position")) {
            (Some(file), Some(pos))
                if !file.is_empty()
                    && self.settings.snapshot_coordinates == SnapshotCoordinates::Auto =>
            {
                let pos: u64 = pos.parse().map_err(|_| {
                    SourceError::Config(format!("Binlog_snapshot_position {pos:?} is not a number"))
                })?;
                Some((file, pos))
            }
            _ => None,
        };
        let (file, pos) = match exact {
            Some(fp) => fp,
            None => {
                info!(file = %preceding.file, pos = preceding.pos, "the server does not report the read view's binlog coordinates (MySQL) or snapshot_coordinates = \"preceding\": streaming will start at the position read just before it (changes in between are streamed again; full row images make that harmless)");
                (preceding.file.clone(), preceding.pos)
            }
        };
        let gtid: Option<String> = conn
            .exec_first::<Option<String>, _, _>("SELECT BINLOG_GTID_POS(?, ?)", (file.clone(), pos))
            .await
            .ok()
            .flatten()
            .flatten()
            .filter(|g| !g.is_empty());
        Ok(Position { file, pos, gtid })
    }

    /// Reads one table (from its checkpointed progress) chunk by chunk: each chunk
    /// published, acknowledged, then checkpointed. Returns the rows read, or `None` when a
    /// shutdown interrupted it.
    #[allow(clippy::too_many_arguments)]
    async fn snapshot_table(
        &self,
        ctx: &SourceContext,
        cp: &CheckpointFile,
        state: &mut MysqlCheckpoint,
        conn: &mut Conn,
        snapshot_id: &str,
        start: &Position,
        db: &str,
        table: &str,
    ) -> Result<Option<u64>, SourceError> {
        let name = format!("{db}.{table}");
        let progress = state
            .snapshot
            .as_ref()
            .and_then(|s| s.tables.get(&name).cloned())
            .unwrap_or_default();
        if progress.done {
            return Ok(Some(0));
        }
        let schema = Arc::new(table_schema(conn, &ctx.topic_prefix, db, table).await?);
        ctx.publisher
            .ensure_topics(&[schema.topic.to_string()])
            .await?;
        if schema.pk.is_empty() {
            warn!(table = %name, "table without a primary key: read in one pass (not resumable mid-table), keyed by the whole row");
        }
        // The table's columns, on every partition before its rows (re-sent with the same
        // source keys when the snapshot resumes).
        self.snapshot_mark(ctx, &schema, snapshot_id, start, "start")
            .await?;
        let read = TableRead {
            schema: &schema,
            name: &name,
            db,
            table,
            snapshot_id,
            start,
        };
        let mut last: Option<Vec<PkValue>> = progress.last_pk.clone();
        let mut rows_done = progress.rows;
        let mut total = 0u64;
        loop {
            if *ctx.shutdown.borrow() {
                info!(table = %name, "snapshot interrupted by shutdown; it resumes at the next start");
                return Ok(None);
            }
            let (sql, params) = self.chunk_query(&read, &last);
            let rows: Vec<Row> = conn
                .exec(sql, params)
                .await
                .map_err(|e| match &e {
                    mysql_async::Error::Server(se) if se.code == 1142 || se.code == 1143 => SourceError::Config(format!(
                        "the CDC user may not read {name} ({}): GRANT SELECT ON {}.* TO the CDC user",
                        se.message,
                        quote(db)
                    )),
                    _ => upstream(format!("reading {name}"))(e),
                })?;
            let n = rows.len();
            Self::publish_chunk(ctx, &read, rows, &mut last).await?;
            rows_done += n as u64;
            total += n as u64;
            metrics::counter!("ingest_mysql_rows_published_total", "phase" => "snapshot")
                .increment(n as u64);
            let finished = schema.pk.is_empty() || n < self.settings.snapshot_chunk_rows;
            if let Some(s) = state.snapshot.as_mut() {
                s.tables.insert(
                    name.clone(),
                    TableProgress {
                        done: finished,
                        last_pk: last.clone(),
                        rows: rows_done,
                    },
                );
            }
            cp.save(state)?;
            ctx.liveness.beat();
            if finished {
                // After the last row: rows of the table that this snapshot did not see
                // are gone from the source (matters when a snapshot is taken again).
                self.snapshot_mark(ctx, &schema, snapshot_id, start, "end")
                    .await?;
                state.schemas.insert(
                    name.clone(),
                    SchemaMemo {
                        shape: schema.shape(),
                        ..SchemaMemo::default()
                    },
                );
                cp.save(state)?;
                info!(table = %name, rows = rows_done, "table snapshot done");
                return Ok(Some(total));
            }
        }
    }

    /// The SELECT of a table's next chunk: after the last key read, in key order, at most
    /// `snapshot_chunk_rows` rows (a table without a primary key: all of it at once).
    fn chunk_query(&self, read: &TableRead<'_>, last: &Option<Vec<PkValue>>) -> (String, Params) {
        let schema = read.schema;
        let cols: Vec<String> = schema.names.iter().map(|n| quote(n)).collect();
        let pk_cols: Vec<String> = schema.pk.iter().map(|&i| quote(&schema.names[i])).collect();
        let base = format!(
            "SELECT {} FROM {}.{}",
            cols.join(", "),
            quote(read.db),
            quote(read.table)
        );
        if schema.pk.is_empty() {
            return (base, Params::Empty);
        }
        let order = format!(
            " ORDER BY {} LIMIT {}",
            pk_cols.join(", "),
            self.settings.snapshot_chunk_rows
        );
        match last {
            None => (format!("{base}{order}"), Params::Empty),
            Some(vals) => {
                let marks = vec!["?"; vals.len()].join(", ");
                (
                    format!("{base} WHERE ({}) > ({marks}){order}", pk_cols.join(", ")),
                    Params::Positional(vals.iter().map(PkValue::to_value).collect()),
                )
            }
        }
    }

    /// Publishes the rows of one chunk as `r` events and waits for the broker's
    /// acknowledgement; `last` becomes the key of the chunk's last row.
    async fn publish_chunk(
        ctx: &SourceContext,
        read: &TableRead<'_>,
        rows: Vec<Row>,
        last: &mut Option<Vec<PkValue>>,
    ) -> Result<(), SourceError> {
        let (schema, name, start) = (read.schema, read.name, read.start);
        let mut batch = Batch::default();
        let now_ms = chrono::Utc::now().timestamp_millis();
        for row in rows {
            let raw: Vec<Value> = row.unwrap();
            if !schema.pk.is_empty() {
                *last = Some(
                    schema
                        .pk
                        .iter()
                        .filter_map(|&i| raw.get(i))
                        .map(PkValue::from)
                        .collect(),
                );
            }
            let mut vals = Vec::with_capacity(raw.len());
            for (i, v) in raw.into_iter().enumerate() {
                let kind = schema.kinds.get(i).unwrap_or(&Kind::Text);
                let out = render(kind, v).map_err(|e| {
                    SourceError::Config(format!(
                        "{name}, column {}: {e}",
                        schema.names.get(i).map_or("?", |s| s.as_str())
                    ))
                })?;
                vals.push(out);
            }
            let vals: Vec<Out> = vals;
            let source_key = snapshot_source_key(read.snapshot_id, schema, &vals);
            let src = MysqlSourceBlock {
                version: super::schema::version(),
                connector: CONNECTOR,
                name: &ctx.topic_prefix,
                entity: &schema.entity,
                ts_ms: now_ms,
                server_id: 0,
                file: &start.file,
                pos: start.pos,
                row: 0,
                gtid: start.gtid.as_deref(),
                db: read.db,
                table: read.table,
                snapshot: true,
                source_key: &source_key,
            };
            let e = encode(schema, Op::Read, None, Some(&vals), &src, now_ms);
            ctx.publisher
                .send(&mut batch, &schema.topic, &e.key, &e.payload)
                .await?;
        }
        batch.acknowledged().await?;
        Ok(())
    }
}
