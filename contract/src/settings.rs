use serde::Deserialize;
use std::collections::BTreeMap;

/// The top-level keys of the configuration file, one file for every service: each service
/// reads its own sections and accepts the others', and every service refuses a key that is
/// not in this list.
pub const SECTIONS: &[&str] = &[
    "mode",
    "kafka",
    "warehouse",
    "ingest",
    "transform",
    "dashboard",
];

/// Prefix of the environment variables that override keys of the configuration file:
/// `ETL_<SECTION>__<KEY>__<KEY>...`.
pub const ENV_PREFIX: &str = "ETL_";

/// The key path an environment variable overrides (`ETL_INGEST__CSV__WATCH_DIR` →
/// `["ingest", "csv", "watch_dir"]`, lowercased); `None` for a variable that is no
/// override: another prefix, or a first segment that is not one of [`SECTIONS`]
/// (`ETL_TEST_PG_URL`, `ETL_BIN_DIR`, `ETL_CONFIG`, `ETL_LOG_FORMAT`).
pub fn override_path(var: &str) -> Option<Vec<String>> {
    let var = var.trim();
    let head = var.get(..ENV_PREFIX.len())?;
    if !head.eq_ignore_ascii_case(ENV_PREFIX) {
        return None;
    }
    let path: Vec<String> = var[ENV_PREFIX.len()..]
        .split("__")
        .flat_map(|s| s.split('.'))
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    if path.iter().any(String::is_empty) || !SECTIONS.contains(&path[0].as_str()) {
        return None;
    }
    Some(path)
}

/// `[kafka]` section of the configuration file, shared by every service: where the
/// contract's topics live.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    /// Bootstrap servers, comma separated.
    pub brokers: String,
    /// First part of every topic name.
    pub topic_prefix: String,
    /// Partitions of the topics a source agent creates.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// Extra librdkafka properties (security.protocol, sasl.*, ...) for every client.
    #[serde(default)]
    pub client: BTreeMap<String, String>,
}

fn default_partitions() -> i32 {
    3
}

#[cfg(test)]
mod tests {
    use super::override_path;

    #[test]
    fn overrides_are_the_variables_of_a_known_section() {
        assert_eq!(
            override_path("ETL_INGEST__CSV__WATCH_DIR"),
            Some(vec!["ingest".into(), "csv".into(), "watch_dir".into()])
        );
        assert_eq!(override_path("ETL_MODE"), Some(vec!["mode".into()]));
        assert_eq!(
            override_path("etl_kafka__brokers"),
            Some(vec!["kafka".into(), "brokers".into()])
        );
        for other in [
            "ETL_TEST_PG_URL",
            "ETL_BIN_DIR",
            "ETL_CONFIG",
            "ETL_LOG_FORMAT",
            "ETL_TEST_X",
            "ETL_INGEST__",
            "ETL_",
            "PATH",
            "É",
        ] {
            assert_eq!(override_path(other), None, "{other}");
        }
    }
}
