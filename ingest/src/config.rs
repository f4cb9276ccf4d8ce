//! Configuration: the project's single TOML file, with `ETL_<SECTION>__<KEY>` environment
//! overrides, read strictly by [`etl_contract::load_config`]: an unknown top-level key or
//! an unknown key in a section of ingest's is an error naming it.

pub use etl_contract::ConfigError;
use etl_contract::KafkaSettings;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Development,
    Production,
}

/// Ingest's part of the file: the other services' sections (`warehouse`, `transform`,
/// `dashboard`) are accepted unread; the loader refuses a top-level key that is no section.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    #[serde(default)]
    pub mode: Mode,
    pub kafka: KafkaSettings,
    pub ingest: IngestSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSettings {
    /// Address of the `/health` and `/metrics` endpoints.
    pub metrics_addr: SocketAddr,
    /// Directory of the checkpoint files (one per source).
    pub checkpoint_dir: PathBuf,
    pub csv: Option<CsvSettings>,
    /// MySQL/MariaDB binlog source (`[ingest.mysql]`).
    pub mysql: Option<crate::sources::mysql::MysqlSettings>,
    /// HTTP API source (`[ingest.http]`, `[[ingest.http.endpoints]]`).
    pub http: Option<crate::sources::http::HttpSettings>,
    /// Azure Blob source (`[ingest.blob]`).
    pub blob: Option<crate::sources::blob::BlobSettings>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvSettings {
    /// The watched folder.
    pub watch_dir: PathBuf,
    /// Default field delimiter (one byte).
    #[serde(default = "default_delimiter")]
    pub delimiter: char,
    /// Rescan interval, in addition to filesystem notifications.
    #[serde(default = "default_poll")]
    pub poll_interval_ms: u64,
    /// A record longer than this that never ends (an unbalanced quote) is dead-lettered.
    #[serde(default = "default_max_record")]
    pub max_record_bytes: usize,
    /// A record left open by an unbalanced quote at the end of a file that then stays
    /// unchanged this long is dead-lettered whole, up to the end of the file at that time,
    /// with its file, line, offset and the reason; reading resumes at the next byte written
    /// (bytes appended later never join that record). The decision is checkpointed once the
    /// broker has the dead letter; after a crash before that, it is taken again at the same
    /// offset under the same source key. A last line without a newline and outside quotes
    /// is not a runaway: it keeps waiting for its newline. `0`: never (an open record waits
    /// for its end, or for `max_record_bytes`).
    #[serde(default = "default_runaway_idle")]
    pub runaway_idle_ms: u64,
    /// Bytes read from a file before the records are published and the checkpoint saved.
    #[serde(default = "default_chunk")]
    pub chunk_bytes: usize,
    pub entities: Vec<CsvEntity>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvEntity {
    /// Entity name: the topic is `<prefix>.csv.<name>`.
    pub name: String,
    /// Glob on the file name (not the path), e.g. `sales*.csv`.
    pub pattern: String,
    /// Primary-key columns, by header name.
    pub key: Vec<String>,
    /// Overrides the default delimiter for this entity.
    pub delimiter: Option<char>,
    /// Character encoding of the entity's files, as a WHATWG label (`utf-8`, the default;
    /// `windows-1252` for French or German Excel exports, `iso-8859-1`, `iso-8859-15`,
    /// `shift_jis`, …; `utf-16le`, `utf-16be`, `utf-16` (= little-endian) for files without
    /// a byte-order mark, transcoded to UTF-8 before splitting). A file starting with a
    /// byte-order mark (UTF-8, UTF-16LE or UTF-16BE) is read in that encoding whatever this
    /// says. Other encodings whose delimiters and newlines are not ASCII bytes are refused.
    pub encoding: Option<String>,
}

impl CsvEntity {
    /// The entity's encoding; `None` for UTF-8 (read strictly, without copying).
    pub fn encoding(&self) -> Result<Option<&'static encoding_rs::Encoding>, String> {
        let Some(label) = self.encoding.as_deref() else {
            return Ok(None);
        };
        let enc = encoding_rs::Encoding::for_label(label.trim().as_bytes()).ok_or_else(|| {
            format!(
                "entity {:?}: unknown encoding {label:?} (use a WHATWG label such as \"utf-8\", \"windows-1252\", \"iso-8859-15\")",
                self.name
            )
        })?;
        if enc == encoding_rs::UTF_8 {
            return Ok(None);
        }
        let utf16 = enc == encoding_rs::UTF_16LE || enc == encoding_rs::UTF_16BE;
        if !enc.is_ascii_compatible() && !utf16 {
            return Err(format!(
                "entity {:?}: encoding {} is not supported (its delimiters and newlines are not single ASCII bytes); convert the files to UTF-8",
                self.name,
                enc.name()
            ));
        }
        Ok(Some(enc))
    }
}

fn default_delimiter() -> char {
    ','
}
fn default_poll() -> u64 {
    1000
}
fn default_max_record() -> usize {
    1 << 20
}
fn default_runaway_idle() -> u64 {
    30_000
}
fn default_chunk() -> usize {
    4 << 20
}

impl Settings {
    /// Reads `path` and the environment overrides, then checks the values.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let settings: Settings = etl_contract::load_config(path)?;
        settings.validate().map_err(|reason| ConfigError::Invalid {
            path: path.to_path_buf(),
            reason,
        })?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), String> {
        if let Some(csv) = &self.ingest.csv {
            let mut names = std::collections::HashSet::new();
            for e in &csv.entities {
                etl_contract::data_topic(&self.kafka.topic_prefix, "csv", &e.name)
                    .map_err(|err| format!("entity {:?}: {err}", e.name))?;
                if !names.insert(&e.name) {
                    return Err(format!("entity {:?} is declared twice", e.name));
                }
                if e.key.is_empty() {
                    return Err(format!("entity {:?} has no key column", e.name));
                }
                glob::Pattern::new(&e.pattern)
                    .map_err(|err| format!("entity {:?}: bad pattern: {err}", e.name))?;
                e.encoding()?;
                for d in [Some(csv.delimiter), e.delimiter].into_iter().flatten() {
                    if !d.is_ascii() {
                        return Err(format!("delimiter {d:?} is not a single ASCII byte"));
                    }
                }
            }
        }
        if let Some(m) = &self.ingest.mysql {
            m.validate()?;
        }
        if let Some(h) = &self.ingest.http {
            h.validate(&self.kafka.topic_prefix)?;
        }
        if let Some(b) = &self.ingest.blob {
            b.validate(&self.kafka.topic_prefix, self.mode == Mode::Production)?;
        }
        if self.mode == Mode::Production {
            if let Some(e) = self.ingest.http.as_ref().and_then(|h| h.inline_secret()) {
                return Err(format!(
                    "production mode: ingest.http endpoint {e:?} has its secret in the file; name an environment variable instead (token_env, value_env, password_env)"
                ));
            }
            for (k, v) in &self.kafka.client {
                if k.contains("password") && matches!(v.as_str(), "" | "changeme" | "password") {
                    return Err(format!(
                        "production mode: kafka.client.{k} is empty or a default password; set a real secret (ETL_KAFKA__CLIENT__...)"
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{CsvEntity, Settings};

    /// The variables the end-to-end harness sets (tests/src/lib.rs), and unrelated ones
    /// of the test environment.
    const HARNESS: &[(&str, &str)] = &[
        (
            "ETL_WAREHOUSE__URL",
            "postgres://postgres@127.0.0.1:5432/t_x",
        ),
        ("ETL_KAFKA__BROKERS", "127.0.0.1:9092"),
        ("ETL_KAFKA__TOPIC_PREFIX", "tx"),
        ("ETL_INGEST__CSV__WATCH_DIR", "/tmp/x/in"),
        ("ETL_INGEST__CHECKPOINT_DIR", "/tmp/x/checkpoints"),
        ("ETL_INGEST__METRICS_ADDR", "127.0.0.1:40001"),
        ("ETL_TRANSFORM__METRICS_ADDR", "127.0.0.1:40002"),
        ("ETL_TRANSFORM__GROUP_ID", "gx"),
        ("ETL_INGEST__BLOB__ENABLED", "false"),
        (
            "ETL_TEST_PG_URL",
            "postgres://postgres@127.0.0.1:5432/postgres",
        ),
        ("ETL_BIN_DIR", "/root/.cache/etl-platform/target/release"),
        ("ETL_TEST_X", "1"),
        ("ETL_CONFIG", "elsewhere.toml"),
        ("ETL_LOG_FORMAT", "json"),
    ];

    fn repo_config() -> String {
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../config/etl.toml"))
            .expect("config/etl.toml")
    }

    fn load(text: &str, vars: &[(&str, &str)]) -> Result<Settings, Vec<String>> {
        let vars = vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let s: Settings =
            etl_contract::load_config_str("config/etl.toml", text, vars).map_err(|e| e.lines())?;
        s.validate().map_err(|r| vec![r])?;
        Ok(s)
    }

    /// `text` with `from` replaced once (it must be there).
    fn typo(text: &str, from: &str, to: &str) -> String {
        assert!(text.contains(from), "{from:?} is not in the file");
        text.replacen(from, to, 1)
    }

    #[test]
    fn the_repository_file_loads_with_the_harness_environment() {
        let s = load(&repo_config(), HARNESS).unwrap();
        assert_eq!(s.kafka.topic_prefix, "tx");
        let csv = s.ingest.csv.unwrap();
        assert_eq!(csv.watch_dir, std::path::PathBuf::from("/tmp/x/in"));
        assert_eq!(csv.entities.len(), 5);
        assert_eq!(s.ingest.metrics_addr.port(), 40001);
        assert!(!s.ingest.blob.unwrap().enabled);
        assert_eq!(s.ingest.http.unwrap().endpoints.len(), 2);
        assert!(load(&repo_config(), &[]).is_ok());
    }

    #[test]
    fn a_misspelt_key_is_named_with_its_path() {
        let file = repo_config();
        let cases = [
            (
                typo(&file, "[warehouse]", "[warehous]"),
                "error: config/etl.toml: unknown key `warehous` (expected one of: mode, kafka, warehouse, ingest, transform, dashboard)",
            ),
            (
                typo(&file, "watch_dir =", "watch_dri ="),
                "error: config/etl.toml: unknown key `ingest.csv.watch_dri` (expected one of: watch_dir, delimiter, poll_interval_ms, max_record_bytes, runaway_idle_ms, chunk_bytes, entities)",
            ),
            (
                typo(&file, "checkpoint_dir =", "checkpoints_dir ="),
                "error: config/etl.toml: unknown key `ingest.checkpoints_dir` (expected one of: metrics_addr, checkpoint_dir, csv, mysql, http, blob)",
            ),
            (
                typo(&file, "pattern = \"products*.csv\"", "patern = \"products*.csv\""),
                "error: config/etl.toml: unknown key `ingest.csv.entities[1].patern` (expected one of: name, pattern, key, delimiter, encoding)",
            ),
            (
                typo(&file, "records = \"items\"", "record = \"items\""),
                "error: config/etl.toml: unknown key `ingest.http.endpoints[1].record` (expected one of: name, url, query, headers, auth, pagination, records, map_key_field, map_value_field, parent_fields, key, incremental, poll_interval_ms, rate_limit_per_s, timeout_ms, deletes, conditional, max_pages)",
            ),
            (
                typo(&file, "next_path = \"next_cursor\"", "next_pth = \"next_cursor\""),
                "error: config/etl.toml: unknown key `ingest.http.endpoints[0].pagination.next_pth` (expected one of: param, next_path)",
            ),
            (
                typo(&file, "lookback = \"7d\"", "look_back = \"7d\""),
                "error: config/etl.toml: unknown key `ingest.http.endpoints[0].incremental.look_back` (expected one of: field, param, lookback, initial)",
            ),
            (
                typo(&file, "lookback_days = 2", "lookback_day = 2"),
                "error: config/etl.toml: unknown key `ingest.blob.sources[0].lookback_day` (expected one of: entity, container, prefixes, format, key, delimiter, poll_interval_ms, emit_deletes, partitioning, lookback_days, full_rescan_interval_s)",
            ),
            (
                typo(&file, "list_page_size", "page_size"),
                "error: config/etl.toml: unknown key `ingest.blob.page_size` (expected one of: enabled, connection_string, account, account_key, sas_token, endpoint, emulator, poll_interval_ms, chunk_bytes, max_record_bytes, list_page_size, sources)",
            ),
            (
                typo(&file, "topic_prefix =", "topic_prefx ="),
                "error: config/etl.toml: unknown key `kafka.topic_prefx` (expected one of: brokers, topic_prefix, partitions, client)",
            ),
            (
                format!("{file}\n[ingest.mysql]\nurl = \"mysql://u@h:3306\"\nserverid = 7\n"),
                "error: config/etl.toml: unknown key `ingest.mysql.serverid` (expected one of: url, server_id, include, exclude, snapshot_mode, snapshot_coordinates, resume, snapshot_chunk_rows, heartbeat_interval_ms, checkpoint_interval_ms)",
            ),
            (
                typo(&file, "[ingest.http]\n", "[ingest.http]\nuser_agent = \"x\"\nauth = { type = \"bearer\", token_env = \"T\", token_var = \"T\" }\n"),
                "error: config/etl.toml: unknown key `ingest.http.auth` (expected one of: user_agent, timeout_ms, connect_timeout_ms, max_attempts, backoff_initial_ms, backoff_max_ms, retry_after_max_ms, endpoints)",
            ),
        ];
        for (text, line) in cases {
            assert_eq!(load(&text, HARNESS).unwrap_err(), vec![line.to_string()]);
        }
    }

    #[test]
    fn a_misspelt_auth_key_is_named() {
        let file = typo(
            &repo_config(),
            "rate_limit_per_s = 5\n",
            "rate_limit_per_s = 5\nauth = { type = \"bearer\", token_env = \"T\", token_var = \"T\" }\n",
        );
        assert_eq!(
            load(&file, &[]).unwrap_err(),
            vec!["error: config/etl.toml: unknown key `ingest.http.endpoints[1].auth.token_var` (expected one of: token, token_env)"]
        );
    }

    #[test]
    fn every_unknown_key_is_reported_at_once() {
        let mut file = typo(&repo_config(), "[warehouse]", "[warehous]");
        file = typo(&file, "delimiter = \",\"", "delimitter = \",\"");
        file = typo(
            &file,
            "key = [\"country_code\"]",
            "key = [\"country_code\"]\nencodng = \"utf-8\"",
        );
        file = typo(&file, "max_attempts", "max_attempt");
        assert_eq!(
            load(&file, HARNESS).unwrap_err(),
            vec![
                "error: config/etl.toml: unknown key `warehous` (expected one of: mode, kafka, warehouse, ingest, transform, dashboard)",
                "error: config/etl.toml: unknown key `ingest.csv.delimitter` (expected one of: watch_dir, delimiter, poll_interval_ms, max_record_bytes, runaway_idle_ms, chunk_bytes, entities)",
                "error: config/etl.toml: unknown key `ingest.csv.entities[2].encodng` (expected one of: name, pattern, key, delimiter, encoding)",
                "error: config/etl.toml: unknown key `ingest.http.max_attempt` (expected one of: user_agent, timeout_ms, connect_timeout_ms, max_attempts, backoff_initial_ms, backoff_max_ms, retry_after_max_ms, endpoints)",
            ]
        );
        // A misspelt required key is reported once, as unknown, and read under its right
        // name to look for the next mistakes.
        let file = typo(&file, "key = [\"customer_id\"]", "keys = [\"customer_id\"]");
        let file = typo(&file, "watch_dir =", "watchdir =");
        assert_eq!(
            load(&file, &[]).unwrap_err(),
            vec![
                "error: config/etl.toml: unknown key `warehous` (expected one of: mode, kafka, warehouse, ingest, transform, dashboard)",
                "error: config/etl.toml: unknown key `ingest.csv.delimitter` (expected one of: watch_dir, delimiter, poll_interval_ms, max_record_bytes, runaway_idle_ms, chunk_bytes, entities)",
                "error: config/etl.toml: unknown key `ingest.csv.entities[0].keys` (expected one of: name, pattern, key, delimiter, encoding)",
                "error: config/etl.toml: unknown key `ingest.csv.entities[2].encodng` (expected one of: name, pattern, key, delimiter, encoding)",
                "error: config/etl.toml: unknown key `ingest.csv.watchdir` (expected one of: watch_dir, delimiter, poll_interval_ms, max_record_bytes, runaway_idle_ms, chunk_bytes, entities)",
                "error: config/etl.toml: unknown key `ingest.http.max_attempt` (expected one of: user_agent, timeout_ms, connect_timeout_ms, max_attempts, backoff_initial_ms, backoff_max_ms, retry_after_max_ms, endpoints)",
            ]
        );
    }

    #[test]
    fn environment_overrides_are_checked_and_unrelated_variables_ignored() {
        let mut vars = HARNESS.to_vec();
        vars.push(("ETL_INGEST__CSV__WATCH_DRI", "/tmp/y"));
        assert_eq!(
            load(&repo_config(), &vars).unwrap_err(),
            vec!["error: environment variable ETL_INGEST__CSV__WATCH_DRI: unknown key `ingest.csv.watch_dri` (expected one of: watch_dir, delimiter, poll_interval_ms, max_record_bytes, runaway_idle_ms, chunk_bytes, entities)"]
        );
        vars.pop();
        vars.push(("ETL_INGEST__METRICS_ADDR", "not-an-address"));
        let err = load(&repo_config(), &vars).unwrap_err();
        assert_eq!(err.len(), 1);
        assert!(
            err[0].starts_with(
                "error: environment variable ETL_INGEST__METRICS_ADDR: key `ingest.metrics_addr`: "
            ),
            "{err:?}"
        );
        // The other services' sections and unrelated ETL_ variables are not ingest's concern.
        let file = typo(&repo_config(), "batch_max_ms", "batch_max_mss");
        let ok = load(&file, &[("ETL_TEST_X", "1"), ("ETL_DASHBOARD__ADRR", "x")]);
        assert!(ok.is_ok(), "{ok:?}");
    }

    fn entity(encoding: Option<&str>) -> CsvEntity {
        CsvEntity {
            name: "customers".into(),
            pattern: "customers*.csv".into(),
            key: vec!["customer_id".into()],
            delimiter: None,
            encoding: encoding.map(str::to_string),
        }
    }

    #[test]
    fn encodings_by_label() {
        assert_eq!(entity(None).encoding(), Ok(None));
        assert_eq!(entity(Some("UTF-8")).encoding(), Ok(None));
        let latin = entity(Some("windows-1252")).encoding().unwrap().unwrap();
        assert_eq!(latin.name(), "windows-1252");
        // WHATWG: iso-8859-1 is read as windows-1252 (its superset).
        let iso = entity(Some(" iso-8859-1 ")).encoding().unwrap().unwrap();
        assert_eq!(iso.name(), "windows-1252");
        assert!(entity(Some("latin-9000"))
            .encoding()
            .unwrap_err()
            .contains("unknown encoding"));
        for (label, name) in [
            ("utf-16le", "UTF-16LE"),
            ("utf-16", "UTF-16LE"),
            ("UTF-16BE", "UTF-16BE"),
        ] {
            let enc = entity(Some(label)).encoding().unwrap().unwrap();
            assert_eq!(enc.name(), name);
        }
        assert!(entity(Some("iso-2022-jp"))
            .encoding()
            .unwrap_err()
            .contains("convert the files to UTF-8"));
    }
}
