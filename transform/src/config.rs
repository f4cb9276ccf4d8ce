//! Configuration: the project's single TOML file with `ETL_<SECTION>__<KEY>` overrides.

use etl_contract::KafkaSettings;
use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::Deserialize;
use std::collections::BTreeMap;
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
    pub warehouse: WarehouseSettings,
    pub transform: TransformSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WarehouseSettings {
    /// libpq-style URL, e.g. `postgres://user:password@host:5432/warehouse`.
    pub url: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TransformSettings {
    pub metrics_addr: SocketAddr,
    pub group_id: String,
    #[serde(default = "default_batch_records")]
    pub batch_max_records: usize,
    #[serde(default = "default_batch_ms")]
    pub batch_max_ms: u64,
    /// Silver models by name (customers, products, countries, employees, sales).
    #[serde(default)]
    pub silver: BTreeMap<String, SilverModelSettings>,
    /// Scheduled analytics jobs (`[transform.analytics.jobs.<name>]`) and the RFM segment
    /// rules (`[[transform.analytics.rfm_segments]]`).
    #[serde(default)]
    pub analytics: crate::jobs::JobsSettings,
}

/// How one source entity maps onto a silver model.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilverModelSettings {
    /// Source connector feeding the model (`csv`, ...): the topic is
    /// `<kafka.topic_prefix>.<source>.<entity>`.
    #[serde(default = "default_source")]
    pub source: String,
    /// Source entity feeding the model; defaults to the model's name.
    pub entity: Option<String>,
    /// Model field -> source column, for the fields whose column has another name.
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
    /// chrono formats tried in order for date fields.
    #[serde(default = "default_date_formats")]
    pub date_formats: Vec<String>,
    /// Decimal separator of numbers in the source ('.' or ',').
    #[serde(default = "default_decimal_separator")]
    pub decimal_separator: char,
    /// Row filters, all of which a row must pass to be kept (`"age > 20"`,
    /// `"country != 'Test'"`): `<field> <op> <literal>` with op one of `= != > >= < <=`,
    /// compared on the typed value. A row that fails one is counted as filtered (not
    /// quarantined), and removes its key from silver if it was there.
    #[serde(default)]
    pub filter: Vec<String>,
}

fn default_source() -> String {
    "csv".into()
}
fn default_batch_records() -> usize {
    20000
}
fn default_batch_ms() -> u64 {
    200
}
fn default_date_formats() -> Vec<String> {
    vec!["%Y-%m-%d".into()]
}
fn default_decimal_separator() -> char {
    '.'
}

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

/// Passwords that must never reach production.
const DEFAULT_PASSWORDS: &[&str] = &["", "postgres", "password", "changeme", "etl", "secret"];

impl Settings {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let s: Settings = Figment::new()
            .merge(Toml::file_exact(path))
            .merge(Env::prefixed("ETL_").split("__"))
            .extract()
            .map_err(|e| ConfigError::Load {
                path: path.to_path_buf(),
                source: Box::new(e),
            })?;
        s.validate().map_err(|reason| ConfigError::Invalid {
            path: path.to_path_buf(),
            reason,
        })?;
        Ok(s)
    }

    pub fn validate(&self) -> Result<(), String> {
        for (name, m) in &self.transform.silver {
            let model = crate::silver::model(name).ok_or_else(|| {
                format!(
                    "transform.silver.{name}: no such silver model (known: {})",
                    crate::silver::MODELS
                        .iter()
                        .map(|m| m.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
            for field in m.columns.keys() {
                if !model.fields.iter().any(|f| f.name == field) {
                    return Err(format!(
                        "transform.silver.{name}.columns: model has no field {field:?}"
                    ));
                }
            }
            for f in &m.filter {
                crate::silver::filter::RowFilter::parse(model, f)
                    .map_err(|e| format!("transform.silver.{name}.filter {f:?}: {e}"))?;
            }
            if !matches!(m.decimal_separator, '.' | ',') {
                return Err(format!(
                    "transform.silver.{name}.decimal_separator must be '.' or ','"
                ));
            }
        }
        self.transform.analytics.validate()?;
        if self.mode == Mode::Production {
            let cfg: tokio_postgres::Config = self
                .warehouse
                .url
                .parse()
                .map_err(|e| format!("warehouse.url is not a valid PostgreSQL URL: {e}"))?;
            let pw = cfg
                .get_password()
                .map(|p| String::from_utf8_lossy(p).into_owned());
            if pw
                .as_deref()
                .map(|p| DEFAULT_PASSWORDS.contains(&p))
                .unwrap_or(true)
            {
                return Err("production mode: warehouse.url has no password or a default one; set ETL_WAREHOUSE__URL with a real secret".into());
            }
        }
        Ok(())
    }
}
