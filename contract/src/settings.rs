use serde::Deserialize;
use std::collections::BTreeMap;

/// `[kafka]` section of the configuration file, shared by every service: where the
/// contract's topics live.
#[derive(Debug, Clone, Deserialize)]
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
