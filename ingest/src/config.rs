//! Configuration: the project's single TOML file, with `ETL_<SECTION>__<KEY>` environment
//! overrides.

use etl_contract::KafkaSettings;
use figment::providers::{Env, Format, Toml};
use figment::Figment;
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

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    #[serde(default)]
    pub mode: Mode,
    pub kafka: KafkaSettings,
    pub ingest: IngestSettings,
}

#[derive(Debug, Clone, Deserialize)]
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
    /// Bytes read from a file before the records are published and the checkpoint saved.
    #[serde(default = "default_chunk")]
    pub chunk_bytes: usize,
    pub entities: Vec<CsvEntity>,
}

#[derive(Debug, Clone, Deserialize)]
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
    /// `shift_jis`, …). Encodings whose delimiters, quotes and newlines are not ASCII bytes
    /// (UTF-16) are refused at start.
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
        if !enc.is_ascii_compatible() {
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
fn default_chunk() -> usize {
    4 << 20
}

/// Errors loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot load configuration {path}: {source} (check the file, or the ETL_* environment variables)")]
    Load {
        path: PathBuf,
        #[source]
        source: Box<figment::Error>,
    },
    #[error("invalid configuration {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

impl Settings {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let settings: Settings = Figment::new()
            .merge(Toml::file_exact(path))
            .merge(Env::prefixed("ETL_").split("__"))
            .extract()
            .map_err(|e| ConfigError::Load {
                path: path.to_path_buf(),
                source: Box::new(e),
            })?;
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
    use super::CsvEntity;

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
        assert!(entity(Some("utf-16le"))
            .encoding()
            .unwrap_err()
            .contains("convert the files to UTF-8"));
    }
}
