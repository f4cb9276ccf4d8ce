//! `[ingest.http]` and its `[[ingest.http.endpoints]]`.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Connector name: topics `<prefix>.api.<endpoint>`, source identities `api:<source_key>`.
pub const CONNECTOR: &str = "api";

/// The HTTP API source: endpoints polled on a schedule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Sent as `User-Agent` with every request.
    #[serde(default = "default_user_agent")]
    pub user_agent: String,
    /// Whole-request timeout (connect, headers and body), unless an endpoint sets its own.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_ms: u64,
    /// Attempts per request (429, 5xx, timeouts, connection errors, unparseable pages)
    /// before the poll is given up; the next poll starts over from the checkpoint.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// First backoff delay; doubled per attempt up to `backoff_max_ms` (a `Retry-After`
    /// from the server wins, up to `retry_after_max_ms`).
    #[serde(default = "default_backoff")]
    pub backoff_initial_ms: u64,
    #[serde(default = "default_backoff_max")]
    pub backoff_max_ms: u64,
    #[serde(default = "default_retry_after_max")]
    pub retry_after_max_ms: u64,
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
}

/// One polled API collection, published as entity `name` (topic `<prefix>.api.<name>`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub name: String,
    /// Absolute URL of the first page (it may carry a query string).
    pub url: String,
    /// Extra query parameters, added to every request.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Extra request headers (not secrets: use `auth` for those).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub auth: Option<Auth>,
    #[serde(default)]
    pub pagination: Pagination,
    /// Where the records sit in the JSON body, as a dotted path (`data.items`); empty: the
    /// body itself. An array gives one record per element; an object gives one record per
    /// member (see `map_key_field`).
    #[serde(default)]
    pub records: String,
    /// When `records` points at an object (`{"USD": 1.08, "GBP": 0.85}`), each member is a
    /// record: the member name goes into this field, and the member value is merged in
    /// (an object) or stored under `map_value_field` (anything else).
    #[serde(default)]
    pub map_key_field: Option<String>,
    #[serde(default = "default_map_value_field")]
    pub map_value_field: String,
    /// Fields of the top-level body copied into each record (e.g. `["date", "base"]` for a
    /// rates API answering `{"date": ..., "base": ..., "rates": {...}}`).
    #[serde(default)]
    pub parent_fields: Vec<String>,
    /// Primary-key field(s) of a record (dotted paths allowed).
    pub key: Vec<String>,
    #[serde(default)]
    pub incremental: Option<Incremental>,
    /// How often the endpoint is polled (from the start of one poll to the next).
    #[serde(default = "default_poll_interval")]
    pub poll_interval_ms: u64,
    /// Maximum requests per second to this endpoint (0: unlimited).
    #[serde(default = "default_rate_limit")]
    pub rate_limit_per_s: f64,
    /// Overrides `[ingest.http] timeout_ms`.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Emit `d` for keys no longer served: missing from two complete, consistent full polls
    /// in a row (a page-size change mid-poll makes a poll inconsistent).
    /// Not allowed with `incremental` (an incremental poll does not see every key).
    #[serde(default)]
    pub deletes: bool,
    /// Send `If-None-Match` / `If-Modified-Since` with the validators of the last answer
    /// for the same URL; a `304 Not Modified` page is skipped.
    #[serde(default = "default_true")]
    pub conditional: bool,
    /// Safety stop for a pagination that never ends.
    #[serde(default = "default_max_pages")]
    pub max_pages: u32,
}

/// Authentication; every secret is either given inline (`token`, `value`, `password`) or,
/// better, read from the environment variable named by the `*_env` key.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    /// `Authorization: Bearer <token>`.
    Bearer {
        token: Option<String>,
        token_env: Option<String>,
    },
    /// A header carrying an API key, e.g. `X-API-Key: <value>`.
    Header {
        name: String,
        value: Option<String>,
        value_env: Option<String>,
    },
    /// HTTP basic authentication.
    Basic {
        username: String,
        password: Option<String>,
        password_env: Option<String>,
    },
}

/// A resolved authentication, secrets read.
#[derive(Clone)]
pub enum ResolvedAuth {
    Bearer(String),
    Header(::http::HeaderName, ::http::HeaderValue),
    Basic(String, String),
}

fn secret(inline: &Option<String>, env: &Option<String>, what: &str) -> Result<String, String> {
    if let Some(var) = env {
        return std::env::var(var)
            .map_err(|_| format!("{what}: environment variable {var} is not set"));
    }
    inline
        .clone()
        .ok_or_else(|| format!("{what}: give it inline or name an environment variable (*_env)"))
}

impl Auth {
    pub fn resolve(&self) -> Result<ResolvedAuth, String> {
        Ok(match self {
            Auth::Bearer { token, token_env } => {
                ResolvedAuth::Bearer(secret(token, token_env, "bearer token")?)
            }
            Auth::Header {
                name,
                value,
                value_env,
            } => {
                let v = secret(value, value_env, "API-key header value")?;
                let name = ::http::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|e| format!("auth header name {name:?}: {e}"))?;
                let mut v = ::http::HeaderValue::from_str(&v)
                    .map_err(|e| format!("auth header value: {e}"))?;
                v.set_sensitive(true);
                ResolvedAuth::Header(name, v)
            }
            Auth::Basic {
                username,
                password,
                password_env,
            } => ResolvedAuth::Basic(
                username.clone(),
                secret(password, password_env, "basic password")?,
            ),
        })
    }
}

/// How the next page is found.
/// Unknown keys are refused in the variants with fields; serde ignores them next to the
/// `type` of a variant without (`none`, `link_header`).
#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Pagination {
    /// One request per poll.
    #[default]
    None,
    /// `?page=N` from `start`, until a page has no record.
    Page {
        #[serde(default = "default_page_param")]
        param: String,
        #[serde(default = "default_one")]
        start: u64,
        /// Page-size parameter and the size asked for (the server may answer otherwise).
        size_param: Option<String>,
        size: Option<u64>,
    },
    /// `?offset=N&limit=M`; the next offset is this one plus the records received (so a
    /// server that changes its page size mid-poll skips nothing), until a page is empty.
    Offset {
        #[serde(default = "default_offset_param")]
        offset_param: String,
        #[serde(default = "default_limit_param")]
        limit_param: String,
        #[serde(default = "default_limit")]
        limit: u64,
    },
    /// An opaque cursor found in the body at `next_path`, sent back as `param`, until it is
    /// missing, null, false or empty.
    Cursor {
        #[serde(default = "default_cursor_param")]
        param: String,
        next_path: String,
    },
    /// The next page's URL found in the body at `next_path` (absolute or relative).
    NextLink { next_path: String },
    /// The `Link: <...>; rel="next"` response header (RFC 8288), as GitHub and others do.
    LinkHeader,
}

/// Incremental polling: only records whose `field` is at or after the last poll's
/// highest value minus `lookback` are asked for (`param`), so that late records are not
/// missed; records seen again unchanged are not re-emitted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Incremental {
    /// Record field holding the cursor value (a date, an RFC 3339 timestamp or a number).
    pub field: String,
    /// Query parameter carrying the low watermark.
    pub param: String,
    /// How far back the low watermark reaches: `"2d"`, `"6h"`, `"15m"`, `"30s"` for dates
    /// and timestamps (and epoch-second numbers), or a plain number for numeric cursors.
    #[serde(default = "default_lookback")]
    pub lookback: String,
    /// Value sent on the very first poll (none: the parameter is left out).
    #[serde(default)]
    pub initial: Option<String>,
}

fn default_user_agent() -> String {
    concat!("etl-platform-ingest/", env!("CARGO_PKG_VERSION")).into()
}
fn default_timeout() -> u64 {
    10_000
}
fn default_connect_timeout() -> u64 {
    5_000
}
fn default_attempts() -> u32 {
    8
}
fn default_backoff() -> u64 {
    250
}
fn default_backoff_max() -> u64 {
    30_000
}
fn default_retry_after_max() -> u64 {
    300_000
}
fn default_map_value_field() -> String {
    "value".into()
}
fn default_poll_interval() -> u64 {
    60_000
}
fn default_rate_limit() -> f64 {
    10.0
}
fn default_true() -> bool {
    true
}
fn default_max_pages() -> u32 {
    100_000
}
fn default_page_param() -> String {
    "page".into()
}
fn default_one() -> u64 {
    1
}
fn default_offset_param() -> String {
    "offset".into()
}
fn default_limit_param() -> String {
    "limit".into()
}
fn default_limit() -> u64 {
    100
}
fn default_cursor_param() -> String {
    "cursor".into()
}
fn default_lookback() -> String {
    "0".into()
}

/// A parsed lookback: a duration, or a plain number for numeric cursors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Lookback {
    Duration(Duration),
    Number(f64),
}

impl Lookback {
    pub fn parse(s: &str) -> Result<Lookback, String> {
        let s = s.trim();
        let (num, unit) = match s.char_indices().last() {
            Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], Some(c)),
            _ => (s, None),
        };
        let n: f64 = num.trim().parse().map_err(|_| {
            format!("lookback {s:?}: expected e.g. \"2d\", \"6h\", \"90s\" or a number")
        })?;
        if !(n >= 0.0 && n.is_finite()) {
            return Err(format!("lookback {s:?} must be a non-negative number"));
        }
        let secs = match unit {
            None => return Ok(Lookback::Number(n)),
            Some('s') => n,
            Some('m') => n * 60.0,
            Some('h') => n * 3600.0,
            Some('d') => n * 86400.0,
            Some(u) => return Err(format!("lookback {s:?}: unknown unit {u:?} (s, m, h, d)")),
        };
        Ok(Lookback::Duration(Duration::from_secs_f64(secs)))
    }
}

impl HttpSettings {
    /// The first endpoint whose secret is written in the configuration rather than read
    /// from the environment (refused in production mode).
    pub fn inline_secret(&self) -> Option<&str> {
        self.endpoints
            .iter()
            .find(|e| match &e.auth {
                Some(Auth::Bearer { token_env, .. }) => token_env.is_none(),
                Some(Auth::Header { value_env, .. }) => value_env.is_none(),
                Some(Auth::Basic { password_env, .. }) => password_env.is_none(),
                None => false,
            })
            .map(|e| e.name.as_str())
    }

    pub fn validate(&self, prefix: &str) -> Result<(), String> {
        let mut names = std::collections::HashSet::new();
        for e in &self.endpoints {
            let what = format!("ingest.http endpoint {:?}", e.name);
            etl_contract::data_topic(prefix, CONNECTOR, &e.name)
                .map_err(|err| format!("{what}: {err}"))?;
            if !names.insert(&e.name) {
                return Err(format!("{what} is declared twice"));
            }
            // (Without the source, a configured section is refused at start anyway.)
            #[cfg(feature = "source-http")]
            {
                let url =
                    reqwest::Url::parse(&e.url).map_err(|err| format!("{what}: url: {err}"))?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(format!("{what}: url must be http or https"));
                }
            }
            if e.key.is_empty() {
                return Err(format!("{what}: key lists no field"));
            }
            if e.deletes && e.incremental.is_some() {
                return Err(format!(
                    "{what}: deletes = true needs full polls; it cannot go with incremental"
                ));
            }
            if let Some(inc) = &e.incremental {
                Lookback::parse(&inc.lookback).map_err(|err| format!("{what}: {err}"))?;
            }
            if let Some(a) = &e.auth {
                a.resolve().map_err(|err| format!("{what}: auth: {err}"))?;
            }
            if e.rate_limit_per_s < 0.0 || !e.rate_limit_per_s.is_finite() {
                return Err(format!("{what}: rate_limit_per_s must be >= 0"));
            }
            if let Pagination::Page { size: Some(0), .. } = e.pagination {
                return Err(format!("{what}: page size must be positive"));
            }
            for k in e.headers.keys() {
                ::http::HeaderName::from_bytes(k.as_bytes())
                    .map_err(|err| format!("{what}: header {k:?}: {err}"))?;
            }
        }
        if self.max_attempts == 0 {
            return Err("ingest.http.max_attempts must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookbacks() {
        assert_eq!(
            Lookback::parse("2d").unwrap(),
            Lookback::Duration(Duration::from_secs(172_800))
        );
        assert_eq!(
            Lookback::parse("90s").unwrap(),
            Lookback::Duration(Duration::from_secs(90))
        );
        assert_eq!(Lookback::parse("100").unwrap(), Lookback::Number(100.0));
        assert!(Lookback::parse("2w").is_err());
        assert!(Lookback::parse("-1").is_err());
    }

    #[test]
    fn endpoint_from_toml() {
        let s: HttpSettings = toml_like(
            r#"{"endpoints":[{"name":"rates","url":"https://x.test/v1","key":["date","currency"],
            "pagination":{"type":"cursor","next_path":"meta.next"},
            "auth":{"type":"header","name":"X-API-Key","value":"k"},
            "incremental":{"field":"date","param":"since","lookback":"3d"}}]}"#,
        );
        assert_eq!(
            s.endpoints[0].pagination,
            Pagination::Cursor {
                param: "cursor".into(),
                next_path: "meta.next".into()
            }
        );
        s.validate("etl").unwrap();
        assert_eq!(s.inline_secret(), Some("rates"));
        let mut bad = s.clone();
        bad.endpoints[0].deletes = true;
        assert!(bad.validate("etl").unwrap_err().contains("incremental"));
    }

    fn toml_like(json: &str) -> HttpSettings {
        serde_json::from_str(json).unwrap()
    }
}
