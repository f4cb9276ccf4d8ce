//! `[ingest.mysql]`: the MySQL/MariaDB binlog source's configuration.

use serde::Deserialize;

/// What to do about existing rows.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotMode {
    /// Snapshot the tables once (when there is no checkpoint yet), then stream.
    #[default]
    Initial,
    /// Never snapshot: stream from the current binlog position (or the checkpoint).
    Never,
    /// Snapshot, then stop capturing (no streaming).
    InitialOnly,
    /// Like `initial`, and snapshot again when the checkpoint's binlog file was purged.
    WhenNeeded,
}

/// Where streaming resumes from a checkpoint.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ResumeMode {
    /// The checkpoint's binlog file and position; its MariaDB GTID when that file was
    /// purged from the server.
    #[default]
    Position,
    /// The checkpoint's MariaDB GTID (`SET @slave_connect_state`, strict mode): independent
    /// of file names, so it survives a purge or a failover to a server with other files.
    Gtid,
}

/// Which binlog coordinates streaming starts from after a snapshot.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotCoordinates {
    /// Exact coordinates of the snapshot's read view when the server reports them (MariaDB:
    /// `Binlog_snapshot_file/_position`), otherwise `preceding`.
    #[default]
    Auto,
    /// The binlog position read just before the read view was opened (MySQL, which does not
    /// report the read view's coordinates, without any lock): the changes committed in
    /// between are streamed again over rows that already hold them. Change events carry full
    /// row images, so consumers folding by key end in the same state.
    Preceding,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlSettings {
    /// `mysql://user:password@host:port` of the server whose binlog is read.
    pub url: String,
    /// Replica server id of this agent: unique among the server's replicas and tailers
    /// (a second tailer with the same id disconnects the first).
    #[serde(default = "default_server_id")]
    pub server_id: u32,
    /// `db.table` globs of the captured tables (`*` matches any run of characters).
    #[serde(default = "default_include")]
    pub include: Vec<String>,
    /// `db.table` globs of tables left out (applied after `include`).
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub snapshot_mode: SnapshotMode,
    /// `auto` (default) or `preceding`: see [`SnapshotCoordinates`].
    #[serde(default)]
    pub snapshot_coordinates: SnapshotCoordinates,
    /// `position` (default) or `gtid` (MariaDB): how streaming resumes from a checkpoint.
    #[serde(default)]
    pub resume: ResumeMode,
    /// Rows read per primary-key chunk during the snapshot (published, acknowledged, then
    /// checkpointed).
    #[serde(default = "default_chunk_rows")]
    pub snapshot_chunk_rows: usize,
    /// The server sends a heartbeat after this long without events.
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_interval_ms: u64,
    /// The checkpoint is saved at most this often while streaming (always at a transaction's
    /// end, after the broker acknowledged every row before it).
    #[serde(default = "default_checkpoint_ms")]
    pub checkpoint_interval_ms: u64,
}

fn default_server_id() -> u32 {
    5401
}
fn default_include() -> Vec<String> {
    vec!["*.*".into()]
}
fn default_chunk_rows() -> usize {
    5000
}
fn default_heartbeat_ms() -> u64 {
    2000
}
fn default_checkpoint_ms() -> u64 {
    100
}

/// Databases never captured.
pub const SYSTEM_DATABASES: [&str; 4] =
    ["mysql", "information_schema", "performance_schema", "sys"];

/// The include/exclude patterns, compiled.
#[derive(Debug, Clone)]
pub struct TableFilter {
    include: Vec<glob::Pattern>,
    exclude: Vec<glob::Pattern>,
}

impl TableFilter {
    pub fn new(s: &MysqlSettings) -> Result<Self, String> {
        let compile = |v: &[String]| -> Result<Vec<glob::Pattern>, String> {
            v.iter()
                .map(|p| {
                    glob::Pattern::new(p).map_err(|e| {
                        format!("[ingest.mysql] table pattern {p:?} is not a valid glob: {e}")
                    })
                })
                .collect()
        };
        Ok(TableFilter {
            include: compile(&s.include)?,
            exclude: compile(&s.exclude)?,
        })
    }

    pub fn matches(&self, db: &str, table: &str) -> bool {
        if SYSTEM_DATABASES.contains(&db.to_ascii_lowercase().as_str()) {
            return false;
        }
        let name = format!("{db}.{table}");
        self.include.iter().any(|p| p.matches(&name))
            && !self.exclude.iter().any(|p| p.matches(&name))
    }
}

impl MysqlSettings {
    pub fn validate(&self) -> Result<(), String> {
        TableFilter::new(self)?;
        if self.server_id == 0 {
            return Err(
                "[ingest.mysql] server_id must not be 0 (the server refuses replicas with id 0)"
                    .into(),
            );
        }
        if self.snapshot_chunk_rows == 0 {
            return Err("[ingest.mysql] snapshot_chunk_rows must be at least 1".into());
        }
        // (Without the source, a configured section is refused at start anyway.)
        #[cfg(feature = "source-mysql")]
        mysql_async::Opts::from_url(&self.url)
            .map_err(|e| format!("[ingest.mysql] url is not a valid mysql:// URL: {e}"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter() {
        let s: MysqlSettings = serde_json::from_value(serde_json::json!({
            "url": "mysql://u@h:3306",
            "include": ["shop.*", "crm.customers"],
            "exclude": ["shop.tmp_*"]
        }))
        .unwrap();
        let f = TableFilter::new(&s).unwrap();
        assert!(f.matches("shop", "orders"));
        assert!(!f.matches("shop", "tmp_x"));
        assert!(f.matches("crm", "customers"));
        assert!(!f.matches("crm", "leads"));
        assert!(!f.matches("mysql", "user"));
        assert_eq!(s.server_id, 5401);
        assert_eq!(s.snapshot_mode, SnapshotMode::Initial);
        assert!(s.validate().is_ok());
    }
}
