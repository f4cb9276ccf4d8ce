//! The dashboard's part of the repository's single TOML configuration file.
//!
//! Read with figment: the file, then environment overrides `ETL_<SECTION>__<KEY>`
//! (`ETL_WAREHOUSE__URL`, `ETL_DASHBOARD__ADDR`, `ETL_DASHBOARD__REFRESH_MS`, `ETL_MODE`).
//! Sections the dashboard does not use are ignored; an unknown key in `[dashboard]` is an
//! error naming it.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    str::FromStr,
};

use figment::{
    providers::{Env, Format, Toml},
    Figment,
};
use serde::Deserialize;

use super::error::DashboardError;

/// Passwords that production mode refuses.
pub const WELL_KNOWN_PASSWORDS: &[&str] = &["postgres", "password", "changeme", "etl"];

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Development,
    Production,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Warehouse {
    pub url: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dashboard {
    #[serde(default = "default_addr")]
    pub addr: SocketAddr,
    #[serde(default = "default_refresh_ms")]
    pub refresh_ms: u64,
    /// Directory holding `pkg/dashboard.js`, `pkg/dashboard.wasm`, `style.css`...
    #[serde(default)]
    pub site_root: Option<PathBuf>,
    /// Signs session cookies, API tokens and cursors (HS256). Development falls back to a
    /// fixed, public value; production refuses to start without a real one (32+ bytes).
    #[serde(default)]
    pub secret: Option<String>,
    /// Lifetime of a browser session (hours).
    #[serde(default = "default_session_hours")]
    pub session_hours: u64,
    /// Lifetime of an API access token (minutes).
    #[serde(default = "default_token_minutes")]
    pub token_minutes: u64,
    /// Lifetime of an API refresh token (hours).
    #[serde(default = "default_refresh_hours")]
    pub refresh_hours: u64,
    /// API requests allowed per second per token (and per address without one), sustained.
    #[serde(default = "default_rate_per_second")]
    pub rate_per_second: u32,
    /// Burst above that rate before 429.
    #[serde(default = "default_rate_burst")]
    pub rate_burst: u32,
    /// Login attempts (page or API) per minute per address before 429.
    #[serde(default = "default_login_per_minute")]
    pub login_per_minute: u32,
    /// Most rows a CSV export returns.
    #[serde(default = "default_export_row_cap")]
    pub export_row_cap: u64,
    /// The reporting time zone (IANA name, as PostgreSQL knows it): "today" of the date
    /// presets. Gold's days are the sales' own dates.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    /// Freshness turns amber when the newest event shown is older than this (seconds)...
    #[serde(default = "default_freshness_amber_s")]
    pub freshness_amber_s: u64,
    /// ... and red past this.
    #[serde(default = "default_freshness_red_s")]
    pub freshness_red_s: u64,
}

impl Default for Dashboard {
    fn default() -> Self {
        Self {
            addr: default_addr(),
            refresh_ms: default_refresh_ms(),
            site_root: None,
            secret: None,
            session_hours: default_session_hours(),
            token_minutes: default_token_minutes(),
            refresh_hours: default_refresh_hours(),
            rate_per_second: default_rate_per_second(),
            rate_burst: default_rate_burst(),
            login_per_minute: default_login_per_minute(),
            export_row_cap: default_export_row_cap(),
            time_zone: default_time_zone(),
            freshness_amber_s: default_freshness_amber_s(),
            freshness_red_s: default_freshness_red_s(),
        }
    }
}

/// The development secret: public on purpose (it is in the source), refused in production.
pub const DEVELOPMENT_SECRET: &str = "development-only-secret-do-not-use-in-production";

fn default_session_hours() -> u64 {
    8
}
fn default_token_minutes() -> u64 {
    15
}
fn default_refresh_hours() -> u64 {
    24
}
fn default_rate_per_second() -> u32 {
    50
}
fn default_rate_burst() -> u32 {
    200
}
fn default_login_per_minute() -> u32 {
    30
}
fn default_export_row_cap() -> u64 {
    1_000_000
}
fn default_time_zone() -> String {
    "UTC".into()
}
fn default_freshness_amber_s() -> u64 {
    900
}
fn default_freshness_red_s() -> u64 {
    3600
}

fn default_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 3000))
}

fn default_refresh_ms() -> u64 {
    2000
}

/// Where another service answers `/health` (its section's `metrics_addr`); the rest of its
/// section is that service's business (it checks its own keys).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct OpsEndpoint {
    #[serde(default)]
    pub metrics_addr: Option<SocketAddr>,
}

/// The settings the dashboard uses.
#[derive(Clone, Debug, Deserialize)]
pub struct Settings {
    #[serde(default)]
    pub mode: Mode,
    pub warehouse: Warehouse,
    #[serde(default)]
    pub dashboard: Dashboard,
    /// `[ingest] metrics_addr`: the pipeline page shows the agent's live source states.
    #[serde(default)]
    pub ingest: OpsEndpoint,
    /// `[transform] metrics_addr`: the pipeline page shows the transform's live states.
    #[serde(default)]
    pub transform: OpsEndpoint,
}

impl Settings {
    /// Reads `path` (which must exist if `required`) and the `ETL_` environment overrides.
    pub fn load(path: &Path, required: bool) -> Result<Self, DashboardError> {
        if required && !path.is_file() {
            return Err(DashboardError::ConfigMissing(path.to_path_buf()));
        }
        Self::from_figment(
            Figment::new()
                .merge(Toml::file(path))
                .merge(Env::prefixed("ETL_").split("__")),
        )
    }

    /// Extracts and validates settings from any figment (used by tests).
    pub fn from_figment(figment: Figment) -> Result<Self, DashboardError> {
        let settings: Settings = figment.extract().map_err(Box::new)?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), DashboardError> {
        let pg = tokio_postgres::Config::from_str(&self.warehouse.url)
            .map_err(DashboardError::WarehouseUrl)?;
        if self.dashboard.refresh_ms < 100 {
            return Err(DashboardError::Invalid(format!(
                "[dashboard] refresh_ms = {} is below the minimum of 100",
                self.dashboard.refresh_ms
            )));
        }
        let d = &self.dashboard;
        for (key, value) in [
            ("session_hours", d.session_hours),
            ("token_minutes", d.token_minutes),
            ("refresh_hours", d.refresh_hours),
            ("rate_per_second", u64::from(d.rate_per_second)),
            ("rate_burst", u64::from(d.rate_burst)),
            ("login_per_minute", u64::from(d.login_per_minute)),
            ("export_row_cap", d.export_row_cap),
            ("freshness_amber_s", d.freshness_amber_s),
            ("freshness_red_s", d.freshness_red_s),
        ] {
            if value == 0 {
                return Err(DashboardError::Invalid(format!(
                    "[dashboard] {key} = 0: it must be at least 1"
                )));
            }
        }
        if d.time_zone.is_empty()
            || !d
                .time_zone
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/_+-".contains(c))
        {
            return Err(DashboardError::Invalid(format!(
                "[dashboard] time_zone = {:?}: use an IANA name such as Europe/Paris or UTC",
                d.time_zone
            )));
        }
        if d.freshness_amber_s > d.freshness_red_s {
            return Err(DashboardError::Invalid(format!(
                "[dashboard] freshness_amber_s = {} is above freshness_red_s = {}",
                d.freshness_amber_s, d.freshness_red_s
            )));
        }
        if self.mode == Mode::Production {
            match d.secret.as_deref() {
                None => return Err(DashboardError::InsecureSecret("is not set")),
                Some(DEVELOPMENT_SECRET) => {
                    return Err(DashboardError::InsecureSecret("is the development default"))
                }
                Some(s) if s.len() < 32 => {
                    return Err(DashboardError::InsecureSecret("is shorter than 32 bytes"))
                }
                Some(_) => {}
            }
            match pg.get_password() {
                None | Some(b"") => {
                    return Err(DashboardError::InsecureProduction("has no password"))
                }
                Some(p) => {
                    let p = String::from_utf8_lossy(p).to_lowercase();
                    if WELL_KNOWN_PASSWORDS.contains(&p.as_str()) {
                        return Err(DashboardError::InsecureProduction(
                            "uses a well-known default password",
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The signing secret: the configured one, else (development only) the public default.
    pub fn secret(&self) -> &str {
        self.dashboard
            .secret
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(DEVELOPMENT_SECRET)
    }

    /// Where the static site is: `LEPTOS_SITE_ROOT` if set, else `[dashboard] site_root`,
    /// else `target/site` if it exists, else `site/` next to the binary's directory
    /// (`$CARGO_TARGET_DIR/release/dashboard` → `$CARGO_TARGET_DIR/site`), else `target/site`.
    pub fn site_root(&self) -> PathBuf {
        if let Some(root) = std::env::var_os("LEPTOS_SITE_ROOT").filter(|v| !v.is_empty()) {
            return PathBuf::from(root);
        }
        if let Some(root) = &self.dashboard.site_root {
            return root.clone();
        }
        let local = PathBuf::from("target/site");
        if local.is_dir() {
            return local;
        }
        std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.parent()?.join("site")))
            .filter(|p| p.is_dir())
            .unwrap_or(local)
    }
}

/// The URL with its password masked, for logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(toml: &str) -> Result<Settings, DashboardError> {
        Settings::from_figment(Figment::new().merge(Toml::string(toml)))
    }

    #[test]
    fn reads_the_repository_file() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/etl.toml");
        let figment = Figment::new().merge(Toml::file(path));
        let s = Settings::from_figment(figment).expect("config/etl.toml is valid");
        assert_eq!(s.mode, Mode::Development);
        assert_eq!(s.dashboard.refresh_ms, 2000);
        assert_eq!(s.dashboard.addr, "127.0.0.1:3000".parse().unwrap());
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure returns figment::Error
    fn env_overrides_with_double_underscore() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "etl.toml",
                "[warehouse]\nurl = \"postgres://u@h/db\"\n[dashboard]\nrefresh_ms = 2000\n",
            )?;
            jail.set_env("ETL_DASHBOARD__REFRESH_MS", "500");
            jail.set_env("ETL_DASHBOARD__ADDR", "127.0.0.1:4567");
            jail.set_env("ETL_WAREHOUSE__URL", "postgres://x@y/z");
            let s = Settings::load(Path::new("etl.toml"), true).map_err(|e| e.to_string())?;
            assert_eq!(s.dashboard.refresh_ms, 500);
            assert_eq!(s.dashboard.addr.port(), 4567);
            assert_eq!(s.warehouse.url, "postgres://x@y/z");
            Ok(())
        });
    }

    #[test]
    fn production_needs_a_real_password() {
        let base = |url: &str| {
            format!(
                "mode = \"production\"\n[warehouse]\nurl = \"{url}\"\n\
                 [dashboard]\nsecret = \"0123456789abcdef0123456789abcdef\"\n"
            )
        };
        for url in [
            "postgres://postgres@127.0.0.1/warehouse",
            "postgres://postgres:postgres@127.0.0.1/warehouse",
            "postgres://etl:ChangeMe@db/warehouse",
            "host=db user=etl password=etl dbname=w",
        ] {
            let err = settings(&base(url)).expect_err(url);
            assert!(
                matches!(err, DashboardError::InsecureProduction(_)),
                "{url}: {err}"
            );
        }
        assert!(settings(&base("postgres://etl:s3cr3t-Value@db/warehouse")).is_ok());
        assert!(settings("[warehouse]\nurl = \"postgres://postgres@127.0.0.1/w\"\n").is_ok());
    }

    #[test]
    fn production_needs_a_real_secret() {
        let base = |secret: &str| {
            format!(
                "mode = \"production\"\n[warehouse]\nurl = \"postgres://etl:s3cr3t-Value@db/w\"\n\
                 [dashboard]\n{secret}"
            )
        };
        for secret in [
            String::new(),
            "secret = \"short\"\n".to_string(),
            format!("secret = \"{DEVELOPMENT_SECRET}\"\n"),
        ] {
            let err = settings(&base(&secret)).expect_err(&secret);
            assert!(
                matches!(err, DashboardError::InsecureSecret(_)),
                "{secret}: {err}"
            );
        }
        let ok = settings(&base("secret = \"0123456789abcdef0123456789abcdef-x\"\n")).unwrap();
        assert_eq!(ok.secret(), "0123456789abcdef0123456789abcdef-x");
        let dev = settings("[warehouse]\nurl = \"postgres://a@b/c\"\n").unwrap();
        assert_eq!(dev.secret(), DEVELOPMENT_SECRET);
    }

    #[test]
    fn unknown_dashboard_keys_are_errors() {
        let err =
            settings("[warehouse]\nurl = \"postgres://a@b/c\"\n[dashboard]\nrefersh_ms = 5\n")
                .expect_err("misspelt key");
        assert!(err.to_string().contains("refersh_ms"), "{err}");
    }

    #[test]
    fn rejects_bad_values() {
        assert!(
            settings("[warehouse]\nurl = \"postgres://a@b/c\"\n[dashboard]\nrefresh_ms = 5\n")
                .is_err()
        );
        assert!(settings("mode = \"staging\"\n[warehouse]\nurl = \"postgres://a@b/c\"\n").is_err());
        assert!(
            settings("[dashboard]\nrefresh_ms = 500\n").is_err(),
            "warehouse.url is required"
        );
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://etl:secret@db:5432/w"),
            "postgres://etl:***@db:5432/w"
        );
        assert_eq!(
            redact_url("postgres://postgres@db/w"),
            "postgres://postgres@db/w"
        );
    }
}
