//! `[ingest.blob]`: the storage account, how to authenticate, and the blob sources.

//!
//! Compiled in every build; what needs the Azure SDK (the client) only with `source-blob`.

#[cfg(feature = "source-blob")]
use super::decode::Format;
#[cfg(feature = "source-blob")]
use azure_storage::{CloudLocation, ConnectionString, StorageCredentials};
#[cfg(feature = "source-blob")]
use azure_storage_blobs::prelude::ClientBuilder;
use serde::Deserialize;

/// Azurite's (the storage emulator's) endpoint for its well-known development account.
pub const EMULATOR_ENDPOINT: &str = "http://127.0.0.1:10000/devstoreaccount1";

/// Azurite's published key of its development account (the Azure SDK's
/// `EMULATOR_ACCOUNT_KEY`; a test compares them), refused in production mode.
pub const EMULATOR_ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobSettings {
    /// `false` keeps the section but does not start the source (the end-to-end test
    /// harness sets `ETL_INGEST__BLOB__ENABLED=false` for tests of other sources).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Full connection string (`DefaultEndpointsProtocol=https;AccountName=...;AccountKey=...`
    /// or with `SharedAccessSignature=`/`BlobEndpoint=`). Wins over the fields below.
    #[serde(default)]
    pub connection_string: Option<String>,
    /// Storage account name (with `account_key` or `sas_token`).
    #[serde(default)]
    pub account: Option<String>,
    /// Shared key of the account (set it from the environment:
    /// `ETL_INGEST__BLOB__ACCOUNT_KEY`).
    #[serde(default)]
    pub account_key: Option<String>,
    /// SAS token (`sv=...&sig=...`), instead of a key.
    #[serde(default)]
    pub sas_token: Option<String>,
    /// Blob endpoint, for Azurite or another cloud (default
    /// `https://<account>.blob.core.windows.net`).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Use Azurite's well-known development account and its published key (refused in
    /// production mode). `endpoint` defaults to [`EMULATOR_ENDPOINT`].
    #[serde(default)]
    pub emulator: bool,
    /// Default poll interval of the sources.
    #[serde(default = "default_poll")]
    pub poll_interval_ms: u64,
    /// Bytes of a blob's (streamed) body decoded and published before the checkpoint moves.
    #[serde(default = "default_chunk")]
    pub chunk_bytes: u64,
    /// A record (line, array element, CSV row) longer than this is dead-lettered.
    #[serde(default = "default_max_record")]
    pub max_record_bytes: usize,
    /// Blobs listed per page.
    #[serde(default = "default_page")]
    pub list_page_size: u32,
    /// The blob sources (a section with `enabled = false` alone needs none).
    #[serde(default)]
    pub sources: Vec<BlobSourceSettings>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Partitioning {
    /// List every blob under the prefixes at each poll; the etag of every blob is remembered.
    #[default]
    None,
    /// Blob names under a prefix start with `yyyy/mm/dd/`: only the day partitions of the
    /// recent window are listed at each poll (see the module documentation).
    Date,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobSourceSettings {
    /// Entity name: the topic is `<prefix>.blob.<entity>`.
    pub entity: String,
    pub container: String,
    /// Name prefixes to list (`[""]`, the default, is the whole container).
    #[serde(default = "default_prefixes")]
    pub prefixes: Vec<String>,
    /// `auto` (by extension: `.csv`, `.jsonl`/`.ndjson`, `.json`, each optionally `.gz`),
    /// `csv`, `jsonl` or `json` (an array of objects).
    #[serde(default)]
    pub format: Option<FormatSetting>,
    /// Primary-key fields of a record.
    pub key: Vec<String>,
    /// CSV field delimiter.
    #[serde(default = "default_delimiter")]
    pub delimiter: char,
    #[serde(default)]
    pub poll_interval_ms: Option<u64>,
    /// Publish `d` events for the records of a blob that was removed (and, for a changed
    /// blob, for the keys its new version no longer has).
    #[serde(default)]
    pub emit_deletes: bool,
    #[serde(default)]
    pub partitioning: Partitioning,
    /// With date partitioning: day partitions this many days older than the newest one stay
    /// in the listed window (late files, rewrites).
    #[serde(default = "default_lookback")]
    pub lookback_days: u32,
    /// With date partitioning: every this many seconds, list every partition once and
    /// re-read those whose content changed (0: never).
    #[serde(default = "default_rescan")]
    pub full_rescan_interval_s: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FormatSetting {
    Auto,
    Csv,
    Jsonl,
    Json,
}

#[cfg(feature = "source-blob")]
impl FormatSetting {
    pub fn format(self) -> Option<Format> {
        match self {
            FormatSetting::Auto => None,
            FormatSetting::Csv => Some(Format::Csv),
            FormatSetting::Jsonl => Some(Format::Jsonl),
            FormatSetting::Json => Some(Format::Json),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_poll() -> u64 {
    5000
}
fn default_chunk() -> u64 {
    4 << 20
}
fn default_max_record() -> usize {
    1 << 20
}
fn default_page() -> u32 {
    5000
}
fn default_prefixes() -> Vec<String> {
    vec![String::new()]
}
fn default_delimiter() -> char {
    ','
}
fn default_lookback() -> u32 {
    2
}
fn default_rescan() -> u64 {
    86_400
}

impl BlobSettings {
    pub fn validate(&self, prefix: &str, production: bool) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        if self.sources.is_empty() {
            return Err("[ingest.blob] has no [[ingest.blob.sources]]".into());
        }
        let mut names = std::collections::HashSet::new();
        for s in &self.sources {
            etl_contract::data_topic(prefix, "blob", &s.entity)
                .map_err(|e| format!("[ingest.blob] entity {:?}: {e}", s.entity))?;
            if !names.insert(&s.entity) {
                return Err(format!(
                    "[ingest.blob] entity {:?} is declared twice",
                    s.entity
                ));
            }
            if s.key.is_empty() {
                return Err(format!("[ingest.blob] entity {:?} has no key", s.entity));
            }
            if s.container.is_empty() {
                return Err(format!(
                    "[ingest.blob] entity {:?} has no container",
                    s.entity
                ));
            }
            if !s.delimiter.is_ascii() {
                return Err(format!(
                    "[ingest.blob] entity {:?}: delimiter {:?} is not one ASCII byte",
                    s.entity, s.delimiter
                ));
            }
        }
        if self.chunk_bytes < 64 * 1024 {
            return Err("[ingest.blob] chunk_bytes must be at least 65536".into());
        }
        let has_key =
            self.account.is_some() && (self.account_key.is_some() || self.sas_token.is_some());
        if self.connection_string.is_none() && !has_key && !self.emulator {
            return Err("[ingest.blob] needs connection_string, or account with account_key or sas_token, or emulator = true (Azurite)".into());
        }
        if production {
            let emulator_key = self.emulator
                || self.account_key.as_deref() == Some(EMULATOR_ACCOUNT_KEY)
                || self.connection_string.as_deref().is_some_and(|c| {
                    c.contains(EMULATOR_ACCOUNT_KEY) || c.contains("UseDevelopmentStorage=true")
                });
            if emulator_key {
                return Err("production mode: [ingest.blob] uses Azurite's published development key; configure a real account (ETL_INGEST__BLOB__CONNECTION_STRING or ACCOUNT/ACCOUNT_KEY/SAS_TOKEN)".into());
            }
        }
        Ok(())
    }
}

#[cfg(feature = "source-blob")]
impl BlobSettings {
    /// A client builder for the configured account; `what` names the endpoint for messages
    /// (never a secret).
    pub fn client(&self) -> Result<(ClientBuilder, String), String> {
        if let Some(cs) = &self.connection_string {
            let parsed = ConnectionString::new(cs)
                .map_err(|e| format!("[ingest.blob] connection_string: {e}"))?;
            if parsed.use_development_storage == Some(true) {
                let endpoint = self
                    .endpoint
                    .clone()
                    .unwrap_or_else(|| EMULATOR_ENDPOINT.to_string());
                return Ok((emulator_builder(&endpoint), endpoint));
            }
            let creds = parsed
                .storage_credentials()
                .map_err(|e| format!("[ingest.blob] connection_string: {e}"))?;
            let account = parsed
                .account_name
                .ok_or("[ingest.blob] connection_string has no AccountName")?
                .to_string();
            let endpoint = self
                .endpoint
                .clone()
                .or(parsed.blob_endpoint.map(str::to_string))
                .or(parsed
                    .endpoint_suffix
                    .map(|s| format!("https://{account}.blob.{s}")));
            return Ok(builder(account, endpoint, creds));
        }
        if self.emulator && self.account_key.is_none() && self.sas_token.is_none() {
            let endpoint = self
                .endpoint
                .clone()
                .unwrap_or_else(|| EMULATOR_ENDPOINT.to_string());
            return Ok((emulator_builder(&endpoint), endpoint));
        }
        let account = self
            .account
            .clone()
            .ok_or("[ingest.blob] account is not set")?;
        let creds = if let Some(sas) = &self.sas_token {
            StorageCredentials::sas_token(sas.trim_start_matches('?'))
                .map_err(|e| format!("[ingest.blob] sas_token: {e}"))?
        } else if let Some(key) = &self.account_key {
            StorageCredentials::access_key(account.clone(), key.clone())
        } else {
            return Err("[ingest.blob] account_key or sas_token is not set".into());
        };
        Ok(builder(account, self.endpoint.clone(), creds))
    }
}

#[cfg(feature = "source-blob")]
fn emulator_builder(endpoint: &str) -> ClientBuilder {
    let account = azure_storage::clients::EMULATOR_ACCOUNT.to_string();
    ClientBuilder::with_location(
        CloudLocation::Custom {
            account,
            uri: endpoint.trim_end_matches('/').to_string(),
        },
        StorageCredentials::emulator(),
    )
}

#[cfg(feature = "source-blob")]
fn builder(
    account: String,
    endpoint: Option<String>,
    creds: StorageCredentials,
) -> (ClientBuilder, String) {
    match endpoint {
        Some(uri) => {
            let uri = uri.trim_end_matches('/').to_string();
            (
                ClientBuilder::with_location(
                    CloudLocation::Custom {
                        account,
                        uri: uri.clone(),
                    },
                    creds,
                ),
                uri,
            )
        }
        None => {
            let what = format!("https://{account}.blob.core.windows.net");
            (ClientBuilder::new(account, creds), what)
        }
    }
}

#[cfg(all(test, feature = "source-blob"))]
mod tests {
    use super::*;
    use figment::providers::{Format as _, Toml};

    #[test]
    fn the_emulator_key_is_the_sdks() {
        assert_eq!(
            EMULATOR_ACCOUNT_KEY,
            azure_storage::clients::EMULATOR_ACCOUNT_KEY
        );
    }

    fn parse(toml: &str) -> BlobSettings {
        figment::Figment::from(Toml::string(toml))
            .extract()
            .unwrap()
    }

    const SOURCE: &str =
        "\n[[sources]]\nentity = \"web_events\"\ncontainer = \"web-usage\"\nkey = [\"event_id\"]\n";

    #[test]
    fn the_emulator_key_is_refused_in_production() {
        let emu = parse(&format!("emulator = true{SOURCE}"));
        assert!(emu.validate("etl", false).is_ok());
        let err = emu.validate("etl", true).unwrap_err();
        assert!(err.contains("production mode"), "{err}");
        let (_, endpoint) = emu.client().unwrap();
        assert_eq!(endpoint, EMULATOR_ENDPOINT);

        let published = format!(
            "connection_string = \"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={};BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;\"{SOURCE}",
            azure_storage::clients::EMULATOR_ACCOUNT_KEY
        );
        let cs = parse(&published);
        assert!(cs.validate("etl", true).is_err());
        let (_, endpoint) = cs.client().unwrap();
        assert_eq!(endpoint, "http://127.0.0.1:10000/devstoreaccount1");

        let real = parse(&format!(
            "account = \"acme\"\nsas_token = \"?sv=2022-11-02&ss=b&srt=co&sp=rl&se=2030-01-01T00:00:00Z&sig=abc%3D\"{SOURCE}"
        ));
        assert!(real.validate("etl", true).is_ok());
        let (_, endpoint) = real.client().unwrap();
        assert_eq!(endpoint, "https://acme.blob.core.windows.net");
    }

    #[test]
    fn needs_credentials_and_a_key() {
        let none = parse(SOURCE);
        assert!(none
            .validate("etl", false)
            .unwrap_err()
            .contains("connection_string"));
        // What the test harness's ETL_INGEST__BLOB__ENABLED=false gives a configuration
        // without the section: accepted, not started.
        let off = parse("enabled = false\n");
        assert!(off.validate("etl", true).is_ok());
        let no_sources = parse("emulator = true\n");
        assert!(no_sources
            .validate("etl", false)
            .unwrap_err()
            .contains("no [[ingest.blob.sources]]"));
        let no_key =
            parse("emulator = true\n[[sources]]\nentity = \"e\"\ncontainer = \"c\"\nkey = []\n");
        assert!(no_key
            .validate("etl", false)
            .unwrap_err()
            .contains("no key"));
    }
}
