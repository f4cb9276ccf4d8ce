//! Configuration: the project's single TOML file with `ETL_<SECTION>__<KEY>` overrides,
//! read strictly by [`etl_contract::load_config`]: an unknown top-level key or an unknown
//! key in a section of transform's is an error naming it.

pub use etl_contract::ConfigError;
use etl_contract::KafkaSettings;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Development,
    Production,
}

/// Transform's part of the file: the other services' sections (`ingest`, `dashboard`) are
/// accepted unread; the loader refuses a top-level key that is no section.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    #[serde(default)]
    pub mode: Mode,
    pub kafka: KafkaSettings,
    pub warehouse: WarehouseSettings,
    pub transform: TransformSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarehouseSettings {
    /// libpq-style URL, e.g. `postgres://user:password@host:5432/warehouse`.
    pub url: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformSettings {
    pub metrics_addr: SocketAddr,
    pub group_id: String,
    #[serde(default = "default_batch_records")]
    pub batch_max_records: usize,
    #[serde(default = "default_batch_ms")]
    pub batch_max_ms: u64,
    /// While transform is behind (its batches come full), gold is brought up to date at
    /// least this often, in bulk, instead of in every batch; 0 = always in the batch.
    #[serde(default = "default_gold_catch_up_secs")]
    pub gold_catch_up_secs: u64,
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
fn default_gold_catch_up_secs() -> u64 {
    30
}
fn default_date_formats() -> Vec<String> {
    vec!["%Y-%m-%d".into()]
}
fn default_decimal_separator() -> char {
    '.'
}

/// Passwords that must never reach production.
const DEFAULT_PASSWORDS: &[&str] = &["", "postgres", "password", "changeme", "etl", "secret"];

impl Settings {
    /// Reads `path` and the environment overrides, then checks the values.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let s: Settings = etl_contract::load_config(path)?;
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

#[cfg(test)]
mod tests {
    use super::Settings;

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
        ("ETL_TRANSFORM__ANALYTICS__JOBS__RFM__EVERY_S", "3600"),
        ("ETL_TRANSFORM__ANALYTICS__JOBS__RFM__ENABLED", "false"),
        (
            "ETL_TEST_PG_URL",
            "postgres://postgres@127.0.0.1:5432/postgres",
        ),
        ("ETL_BIN_DIR", "/root/.cache/etl-platform/target/release"),
        ("ETL_TEST_X", "1"),
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

    fn typo(text: &str, from: &str, to: &str) -> String {
        assert!(text.contains(from), "{from:?} is not in the file");
        text.replacen(from, to, 1)
    }

    #[test]
    fn the_repository_file_loads_with_the_harness_environment() {
        let s = load(&repo_config(), HARNESS).unwrap();
        assert_eq!(s.transform.group_id, "gx");
        assert_eq!(s.transform.metrics_addr.port(), 40002);
        assert_eq!(s.warehouse.url, "postgres://postgres@127.0.0.1:5432/t_x");
        assert_eq!(s.transform.silver.len(), 8);
        let rfm = &s.transform.analytics.jobs["rfm"];
        assert_eq!((rfm.every_s, rfm.enabled), (3600, false));
        assert!(load(&repo_config(), &[]).is_ok());
    }

    #[test]
    fn a_misspelt_key_is_named_with_its_path() {
        let file = repo_config();
        let jobs = "# [transform.analytics.jobs.forecast]\n# every_s = 900\n";
        let segment = "# [[transform.analytics.rfm_segments]]   # first match wins; r, f, m are inclusive ranges\n# name = \"Champions\"\n# r = [4, 5]\n# f = [4, 5]\n# m = [4, 5]\n";
        let cases = [
            (
                typo(&file, "[dashboard]", "[dashbaord]"),
                "error: config/etl.toml: unknown key `dashbaord` (expected one of: mode, kafka, warehouse, ingest, transform, dashboard)",
            ),
            (
                typo(&file, "batch_max_ms", "batch_max_mss"),
                "error: config/etl.toml: unknown key `transform.batch_max_mss` (expected one of: metrics_addr, group_id, batch_max_records, batch_max_ms, gold_catch_up_secs, silver, analytics)",
            ),
            (
                typo(&file, "url = \"postgres:", "uri = \"postgres:"),
                "error: config/etl.toml: unknown key `warehouse.uri` (expected: url)",
            ),
            (
                typo(&file, "decimal_separator", "decimal_sep"),
                "error: config/etl.toml: unknown key `transform.silver.sales.decimal_sep` (expected one of: source, entity, columns, date_formats, decimal_separator, filter)",
            ),
            (
                typo(&file, jobs, "[transform.analytics.jobs.forecast]\nevery_s = 900\ntimeout = 60\n"),
                "error: config/etl.toml: unknown key `transform.analytics.jobs.forecast.timeout` (expected one of: every_s, timeout_s, retries, enabled)",
            ),
            (
                typo(&file, jobs, "[transform.analytics]\nreportting = {}\n"),
                "error: config/etl.toml: unknown key `transform.analytics.reportting` (expected one of: jobs, rfm_segments, reporting)",
            ),
            (
                typo(&file, jobs, "[transform.analytics.reporting]\ncurrency = \"EUR\"\nbase = \"EUR\"\n"),
                "error: config/etl.toml: unknown key `transform.analytics.reporting.base` (expected one of: currency, rates_base, country_currency)",
            ),
            (
                typo(&file, segment, "[[transform.analytics.rfm_segments]]\nname = \"All\"\nr = [1, 5]\nf = [1, 5]\nm = [1, 5]\nnote = \"x\"\n"),
                "error: config/etl.toml: unknown key `transform.analytics.rfm_segments[0].note` (expected one of: name, r, f, m)",
            ),
            (
                typo(&file, "partitions = 3", "partitions = 3\n[kafka.client]\n\"security.protocol\" = \"plaintext\"\n[kafka.clients]"),
                "error: config/etl.toml: unknown key `kafka.clients` (expected one of: brokers, topic_prefix, partitions, client)",
            ),
        ];
        for (text, line) in cases {
            assert_eq!(load(&text, HARNESS).unwrap_err(), vec![line.to_string()]);
        }
        // The sections of the other services are theirs to check.
        assert!(load(&typo(&file, "watch_dir", "watch_dri"), HARNESS).is_ok());
    }

    #[test]
    fn environment_overrides_are_checked_and_unrelated_variables_ignored() {
        let mut vars = HARNESS.to_vec();
        vars.push(("ETL_TRANSFORM__GROUPID", "g"));
        assert_eq!(
            load(&repo_config(), &vars).unwrap_err(),
            vec!["error: environment variable ETL_TRANSFORM__GROUPID: unknown key `transform.groupid` (expected one of: metrics_addr, group_id, batch_max_records, batch_max_ms, gold_catch_up_secs, silver, analytics)"]
        );
        vars.pop();
        vars.push(("ETL_TRANSFORM__ANALYTICS__JOBS__RFM__EVERY", "5"));
        assert_eq!(
            load(&repo_config(), &vars).unwrap_err(),
            vec!["error: environment variable ETL_TRANSFORM__ANALYTICS__JOBS__RFM__EVERY: unknown key `transform.analytics.jobs.rfm.every` (expected one of: every_s, timeout_s, retries, enabled)"]
        );
        vars.pop();
        vars.push(("ETL_TRANSFORM__BATCH_MAX_MS", "soon"));
        assert_eq!(
            load(&repo_config(), &vars).unwrap_err(),
            vec!["error: environment variable ETL_TRANSFORM__BATCH_MAX_MS: key `transform.batch_max_ms`: invalid type: found string \"soon\", expected u64"]
        );
    }
}
