//! Scheduled jobs of the transform service: the analytics refreshes of
//! [`crate::gold::analytics::jobs`] and `verify`.
//!
//! Each enabled job runs in its own task on its own warehouse connection, every `every_s`
//! seconds (the first run about 5 s after start). An occurrence runs only where
//! `pg_try_advisory_lock(<job key>)` succeeds and no other process completed the job in the
//! last half period (`pipeline.job_runs`), so several transforms of one consumer group run
//! each job once per period, whatever the offset between their schedules. Every attempt is a row of `pipeline.job_runs` (running, then ok, failed or
//! timeout, with the rows written or the error); a failed or timed-out attempt is retried up
//! to `retries` times with exponential backoff (1 s, 2 s, 4 s, … at most 60 s). A timed-out
//! attempt's query is cancelled on the server. Metrics: `transform_job_runs_total{job,status}`
//! (status ok, failed, timeout or skipped) and `transform_job_seconds{job}`.
//!
//! Configuration (`[transform.analytics.jobs.<name>]`, e.g. `every_s = 300`, `timeout_s = 600`,
//! `retries = 3`, `enabled = true`); jobs not configured run with their defaults (see
//! [`JOBS`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_postgres::{Client, NoTls};
use tracing::{debug, error, info, warn};

use crate::gold::analytics::jobs as analytics;
use crate::gold::analytics::rfm::{self, SegmentRule};
use crate::sql::{self, DbError};

/// Every job the scheduler knows, with its default period in seconds.
pub const JOBS: &[(&str, u64)] = &[
    ("rfm", 300),
    ("cohorts", 300),
    ("forecast", 900),
    ("anomalies", 300),
    ("live_anomalies", 60),
    ("verify", 3600),
    ("reporting_currency", 300),
];

/// Default limit on one attempt, in seconds.
pub const DEFAULT_TIMEOUT_S: u64 = 600;
/// Default number of retries after a failed or timed-out attempt.
pub const DEFAULT_RETRIES: u32 = 3;
/// Delay from the scheduler's start to each job's first run.
pub const FIRST_RUN_DELAY: Duration = Duration::from_secs(5);
/// Cap on the backoff between attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Advisory-lock key of the first job of [`JOBS`]; the others follow ("etl_job" + index).
const LOCK_BASE: i64 = 0x6574_6c5f_6a6f_6200;

/// Schedule and limits of one job (`[transform.analytics.jobs.<name>]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSettings {
    /// Seconds between the starts of two occurrences.
    pub every_s: u64,
    /// Limit on one attempt, in seconds (default 600).
    #[serde(default = "default_timeout_s")]
    pub timeout_s: u64,
    /// Retries after a failed or timed-out attempt (default 3).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Whether the scheduler runs the job (default true; `run_once` runs it regardless).
    #[serde(default = "default_enabled")]
    pub enabled: bool,
}

fn default_timeout_s() -> u64 {
    DEFAULT_TIMEOUT_S
}
fn default_retries() -> u32 {
    DEFAULT_RETRIES
}
fn default_enabled() -> bool {
    true
}

impl JobSettings {
    /// Every `every_s` seconds, with the default timeout, retries, enabled.
    pub fn every(every_s: u64) -> Self {
        Self {
            every_s,
            timeout_s: DEFAULT_TIMEOUT_S,
            retries: DEFAULT_RETRIES,
            enabled: true,
        }
    }

    /// The period as a duration.
    pub fn period(&self) -> Duration {
        Duration::from_secs(self.every_s)
    }

    /// The attempt limit as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_s)
    }
}

/// The jobs section: per-job settings by name, and the RFM segment rules.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsSettings {
    /// Settings of the configured jobs; the others run with their defaults.
    #[serde(default)]
    pub jobs: BTreeMap<String, JobSettings>,
    /// RFM segments in evaluation order; [`rfm::default_rules`] when absent.
    #[serde(default)]
    pub rfm_segments: Option<Vec<SegmentRule>>,
    /// The reporting currency and the currency of each country's sales.
    #[serde(default)]
    pub reporting: crate::gold::analytics::currency::ReportingSettings,
}

/// The known job names, comma-separated (for messages).
pub fn known_jobs() -> String {
    JOBS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

/// The job's name as a `'static` string and its index in [`JOBS`].
fn lookup(name: &str) -> Option<(usize, &'static str)> {
    JOBS.iter()
        .enumerate()
        .find(|(_, (n, _))| *n == name)
        .map(|(i, (n, _))| (i, *n))
}

/// The advisory-lock key that guards a job's occurrences; `None` for an unknown job.
pub fn lock_key(name: &str) -> Option<i64> {
    lookup(name).map(|(i, _)| LOCK_BASE + i as i64)
}

/// Delay after failed attempt number `attempt` (1-based): 1 s, 2 s, 4 s, … capped at
/// [`MAX_BACKOFF`].
pub fn backoff(attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(16);
    Duration::from_secs(1u64 << exp).min(MAX_BACKOFF)
}

impl JobsSettings {
    /// A known job's effective settings (configured, or the defaults); `None` if unknown.
    pub fn job(&self, name: &str) -> Option<JobSettings> {
        let (i, _) = lookup(name)?;
        Some(
            self.jobs
                .get(name)
                .cloned()
                .unwrap_or_else(|| JobSettings::every(JOBS[i].1)),
        )
    }

    /// The jobs the scheduler runs, in [`JOBS`] order, with their effective settings.
    pub fn enabled(&self) -> Vec<(&'static str, JobSettings)> {
        JOBS.iter()
            .filter_map(|(name, _)| Some((*name, self.job(name)?)))
            .filter(|(_, s)| s.enabled)
            .collect()
    }

    /// The RFM segment rules: the configured ones or [`rfm::default_rules`].
    pub fn segment_rules(&self) -> Vec<SegmentRule> {
        self.rfm_segments.clone().unwrap_or_else(rfm::default_rules)
    }

    /// Checks job names (listing the known ones), periods and timeouts (at least 1 s) and the
    /// RFM segment rules.
    pub fn validate(&self) -> Result<(), String> {
        let unknown: Vec<&str> = self
            .jobs
            .keys()
            .map(String::as_str)
            .filter(|n| lookup(n).is_none())
            .collect();
        if !unknown.is_empty() {
            return Err(format!(
                "unknown job{} {} in [transform.analytics.jobs]; the known jobs are: {}",
                if unknown.len() > 1 { "s" } else { "" },
                unknown
                    .iter()
                    .map(|n| format!("{n:?}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                known_jobs()
            ));
        }
        for (name, s) in &self.jobs {
            if s.every_s == 0 {
                return Err(format!(
                    "[transform.analytics.jobs.{name}] every_s must be at least 1"
                ));
            }
            if s.timeout_s == 0 {
                return Err(format!(
                    "[transform.analytics.jobs.{name}] timeout_s must be at least 1"
                ));
            }
        }
        if let Some(rules) = &self.rfm_segments {
            rfm::validate_rules(rules).map_err(|e| format!("rfm_segments: {e}"))?;
        }
        self.reporting.validate()
    }
}

/// The host name recorded in `pipeline.job_runs`.
fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// Runs one job once on `client`; the rows it wrote (for `verify`: the marts checked).
async fn run_job(job: &str, client: &mut Client, settings: &JobsSettings) -> anyhow::Result<u64> {
    Ok(match job {
        "rfm" => analytics::rfm(client, &settings.segment_rules()).await?,
        "cohorts" => analytics::cohorts(client).await?,
        "reporting_currency" => {
            crate::gold::analytics::currency::refresh(client, &settings.reporting).await?
        }
        "forecast" => analytics::forecast(client).await?,
        "anomalies" => analytics::anomalies(client).await?,
        "live_anomalies" => analytics::live_anomalies(client).await?,
        "verify" => verify(client).await?,
        other => anyhow::bail!(
            "unknown job {other:?}; the known jobs are: {}",
            known_jobs()
        ),
    })
}

/// `transform verify` as a job: fails, naming the drifting marts, when gold drifted.
async fn verify(client: &mut Client) -> anyhow::Result<u64> {
    let checks = crate::gold::verify::verify(client).await?;
    let drifting: Vec<String> = checks
        .iter()
        .filter(|c| !c.ok())
        .map(|c| {
            format!(
                "{} ({} stored rows not recomputed, {} recomputed rows not stored, {} differing cells)",
                c.mart, c.extra, c.missing, c.differing_cells
            )
        })
        .collect();
    if !drifting.is_empty() {
        anyhow::bail!(
            "{} gold marts drifted from silver: {}; `transform rebuild` recomputes them",
            drifting.len(),
            drifting.join(", ")
        );
    }
    Ok(checks.len() as u64)
}

/// How an occurrence ended.
#[derive(Debug)]
enum Outcome {
    /// Another process holds the job's lock.
    Skipped,
    /// The last attempt succeeded, writing this many rows.
    Ok(u64),
    /// Every attempt failed; the last error.
    Failed(String),
}

fn record(job: &'static str, status: &'static str) {
    metrics::counter!("transform_job_runs_total", "job" => job, "status" => status).increment(1);
}

/// One job's schedule, connection and bookkeeping.
struct Runner {
    job: &'static str,
    key: i64,
    cfg: JobSettings,
    settings: Arc<JobsSettings>,
    url: String,
    client: Option<Client>,
    host: String,
    pid: i32,
    /// Run by the scheduler (skips when another transform ran the job recently), not by
    /// `run_once`.
    scheduled: bool,
    /// This runner's last successful run.
    last_ok: Option<i64>,
    /// Whether the current connection holds the job's lock (a new connection does not).
    locked: bool,
}

impl Runner {
    fn new(job: &'static str, cfg: JobSettings, settings: Arc<JobsSettings>, url: String) -> Self {
        Self {
            job,
            key: lock_key(job).unwrap_or(LOCK_BASE),
            cfg,
            settings,
            url,
            client: None,
            host: host_name(),
            pid: i32::try_from(std::process::id()).unwrap_or(0),
            scheduled: false,
            last_ok: None,
            locked: false,
        }
    }

    /// The job's connection, (re)connecting when there is none or it was lost.
    async fn connection(&mut self) -> Result<&mut Client, DbError> {
        let client = match self.client.take() {
            Some(c) if !c.is_closed() => c,
            _ => {
                // The session's lock, if any, went with the old connection.
                self.locked = false;
                sql::connect(&self.url).await?
            }
        };
        Ok(self.client.insert(client))
    }

    /// Whether the job's lock is still held (the connection that took it is alive).
    fn holds_lock(&self) -> bool {
        self.locked && self.client.as_ref().is_some_and(|c| !c.is_closed())
    }

    async fn try_lock(&mut self) -> Result<bool, DbError> {
        let key = self.key;
        let client = self.connection().await?;
        let row = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
            .await
            .map_err(DbError::query("taking the job lock"))?;
        let got: bool = row
            .try_get(0)
            .map_err(DbError::query("taking the job lock"))?;
        self.locked = got;
        Ok(got)
    }

    async fn unlock(&mut self) {
        if !std::mem::take(&mut self.locked) {
            return;
        }
        let Some(client) = self.client.as_ref().filter(|c| !c.is_closed()) else {
            return;
        };
        if let Err(e) = client
            .execute("SELECT pg_advisory_unlock($1)", &[&self.key])
            .await
        {
            // Closing the session releases the lock.
            warn!(job = self.job, error = %sql::pg_message(&e), "cannot release the job lock; reconnecting");
            self.client = None;
        }
    }

    /// Whether another runner completed this job less than half a period ago (so that
    /// transforms with offset schedules still run it once per period); this runner's own
    /// runs do not count. On error: no.
    async fn ran_recently(&mut self) -> bool {
        let (job, half, own) = (self.job, self.cfg.every_s as f64 / 2.0, self.last_ok);
        let result = match self.connection().await {
            Ok(client) => client
                .query_opt(
                    "SELECT run_id, started_at > now() - make_interval(secs => $2)
                     FROM pipeline.job_runs WHERE job = $1 AND status = 'ok'
                     ORDER BY started_at DESC LIMIT 1",
                    &[&job, &half],
                )
                .await
                .and_then(|row| match row {
                    Some(r) => Ok(r.try_get::<_, bool>(1)? && Some(r.try_get::<_, i64>(0)?) != own),
                    None => Ok(false),
                })
                .map_err(|e| sql::pg_message(&e)),
            Err(e) => Err(e.to_string()),
        };
        result.unwrap_or_else(|e| {
            warn!(job, error = %e, "cannot read the job's last run; running it");
            false
        })
    }

    /// Takes the job's lock; `Some(outcome)` when the occurrence must not run: the lock is
    /// held elsewhere, or (scheduled runs) the job ran recently elsewhere.
    async fn lock_or_skip(&mut self) -> Option<Outcome> {
        match self.try_lock().await {
            Ok(true) => {}
            Ok(false) => {
                debug!(
                    job = self.job,
                    "job running in another process; occurrence skipped"
                );
                record(self.job, "skipped");
                return Some(Outcome::Skipped);
            }
            Err(e) => {
                warn!(job = self.job, error = %e, "cannot take the job lock; occurrence skipped");
                self.client = None;
                return Some(Outcome::Failed(e.to_string()));
            }
        }
        if self.scheduled && self.ran_recently().await {
            debug!(
                job = self.job,
                "job ran recently in another process; occurrence skipped"
            );
            record(self.job, "skipped");
            self.unlock().await;
            return Some(Outcome::Skipped);
        }
        None
    }

    /// The occurrence: lock, attempts with backoff, unlock.
    async fn occurrence(&mut self) -> Outcome {
        if let Some(skipped) = self.lock_or_skip().await {
            return skipped;
        }
        let attempts = self.cfg.retries.saturating_add(1);
        let mut outcome = Outcome::Failed("not run".into());
        for attempt in 1..=attempts {
            outcome = self.attempt(attempt).await;
            if matches!(outcome, Outcome::Ok(_)) || attempt == attempts {
                break;
            }
            let delay = backoff(attempt);
            info!(
                job = self.job,
                attempt,
                delay_s = delay.as_secs(),
                "retrying the job"
            );
            tokio::time::sleep(delay).await;
            // A lost connection took the session's lock with it: take it again or stop.
            if !self.holds_lock() && !matches!(self.try_lock().await, Ok(true)) {
                warn!(
                    job = self.job,
                    "lost the connection and the job lock; occurrence abandoned"
                );
                break;
            }
        }
        self.unlock().await;
        outcome
    }

    /// One attempt, recorded in `pipeline.job_runs`.
    async fn attempt(&mut self, attempt: u32) -> Outcome {
        let (job, settings, limit) = (self.job, self.settings.clone(), self.cfg.timeout());
        let (host, pid) = (self.host.clone(), self.pid);
        let attempt_no = i32::try_from(attempt).unwrap_or(i32::MAX);
        let client = match self.connection().await {
            Ok(c) => c,
            Err(e) => {
                warn!(job, attempt, error = %e, "job attempt without a warehouse connection");
                record(job, "failed");
                return Outcome::Failed(e.to_string());
            }
        };
        let run_id: i64 = match client
            .query_one(
                "INSERT INTO pipeline.job_runs (job, status, attempt, host, pid)
                 VALUES ($1, 'running', $2, $3, $4) RETURNING run_id",
                &[&job, &attempt_no, &host, &pid],
            )
            .await
            .and_then(|r| r.try_get(0))
        {
            Ok(id) => id,
            Err(e) => {
                let message = sql::pg_message(&e);
                warn!(job, attempt, error = %message, "cannot record the job run");
                record(job, "failed");
                return Outcome::Failed(message);
            }
        };
        let cancel = client.cancel_token();
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(limit, run_job(job, client, &settings)).await;
        let seconds = started.elapsed().as_secs_f64();
        metrics::histogram!("transform_job_seconds", "job" => job).record(seconds);
        let (status, rows, error) = match result {
            Ok(Ok(n)) => ("ok", Some(n), None),
            Ok(Err(e)) => ("failed", None, Some(format!("{e:#}"))),
            Err(_) => {
                if let Err(e) = cancel.cancel_query(NoTls).await {
                    warn!(job, error = %e, "cannot cancel the timed-out job's query");
                }
                let message = format!("timed out after {} s", limit.as_secs());
                ("timeout", None, Some(message))
            }
        };
        record(job, status);
        if error.is_some() {
            // A failed or cancelled run may leave its session mid-way (a lock, a transaction):
            // the next attempt starts on a new connection (and takes the job lock again).
            self.client = None;
        }
        match &error {
            None => info!(job, attempt, run_id, rows, seconds, "job run ok"),
            Some(e) => warn!(job, attempt, run_id, status, seconds, error = %e, "job run failed"),
        }
        self.finish(run_id, status, rows, error.as_deref()).await;
        if rows.is_some() {
            self.last_ok = Some(run_id);
        }
        match (rows, error) {
            (Some(n), _) => Outcome::Ok(n),
            (None, e) => Outcome::Failed(e.unwrap_or_default()),
        }
    }

    /// Completes the run's row; once more on a fresh connection if that fails.
    async fn finish(&mut self, run_id: i64, status: &str, rows: Option<u64>, error: Option<&str>) {
        let rows = rows.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        for last_try in [false, true] {
            let result = match self.connection().await {
                Ok(client) => client
                    .execute(
                        "UPDATE pipeline.job_runs SET finished_at = now(), status = $2, rows = $3,
                             error = $4 WHERE run_id = $1",
                        &[&run_id, &status, &rows, &error],
                    )
                    .await
                    .map(drop)
                    .map_err(|e| sql::pg_message(&e)),
                Err(e) => Err(e.to_string()),
            };
            match result {
                Ok(()) => return,
                Err(e) if last_try => {
                    warn!(job = self.job, run_id, error = %e, "cannot record the end of the job run")
                }
                Err(e) => {
                    debug!(job = self.job, run_id, error = %e, "recording the end of the job run; retrying")
                }
            }
        }
    }

    /// Runs occurrences forever: the first after [`FIRST_RUN_DELAY`], then every period
    /// (right away when an occurrence took longer than the period).
    async fn schedule(mut self) {
        let mut due = Instant::now() + FIRST_RUN_DELAY;
        loop {
            tokio::time::sleep_until(due).await;
            let started = Instant::now();
            let outcome = self.occurrence().await;
            debug!(job = self.job, ?outcome, "job occurrence done");
            due = (started + self.cfg.period()).max(Instant::now());
        }
    }
}

/// Starts the scheduler: one task per enabled job (see the module documentation). The
/// returned task never ends by itself; aborting it stops every job. Call
/// [`JobsSettings::validate`] first: unknown job names are ignored here.
pub fn spawn(settings: JobsSettings, warehouse_url: String) -> JoinHandle<()> {
    let settings = Arc::new(settings);
    tokio::spawn(async move {
        if let Err(e) = settings.validate() {
            warn!(error = %e, "job settings invalid; running the known jobs only");
        }
        let mut tasks = JoinSet::new();
        let enabled = settings.enabled();
        let names: Vec<&str> = enabled.iter().map(|(n, _)| *n).collect();
        info!(jobs = ?names, "job scheduler started");
        for (job, cfg) in enabled {
            let mut runner = Runner::new(job, cfg, settings.clone(), warehouse_url.clone());
            runner.scheduled = true;
            tasks.spawn(runner.schedule());
        }
        while let Some(done) = tasks.join_next().await {
            if let Err(e) = done {
                error!(error = %e, "a job task ended unexpectedly");
            }
        }
    })
}

/// Runs one job now (for `transform job NAME`), enabled or not, with its lock, its
/// `pipeline.job_runs` rows, timeout and retries; returns the rows written. Fails when the
/// job is unknown, another process is running it, or every attempt failed.
pub async fn run_once(name: &str, settings: &JobsSettings, url: &str) -> anyhow::Result<u64> {
    settings.validate().map_err(anyhow::Error::msg)?;
    let (Some((_, job)), Some(cfg)) = (lookup(name), settings.job(name)) else {
        anyhow::bail!("unknown job {name:?}; the known jobs are: {}", known_jobs());
    };
    let mut runner = Runner::new(job, cfg, Arc::new(settings.clone()), url.to_owned());
    runner.connection().await?;
    match runner.occurrence().await {
        Outcome::Ok(rows) => Ok(rows),
        Outcome::Skipped => anyhow::bail!(
            "job {job} is running in another process (advisory lock {} is held); try again later",
            runner.key
        ),
        Outcome::Failed(e) => anyhow::bail!("job {job} failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::providers::{Format, Toml};
    use figment::Figment;

    fn parse(toml: &str) -> Result<JobsSettings, String> {
        Figment::from(Toml::string(toml))
            .extract()
            .map_err(|e| e.to_string())
    }

    #[test]
    fn unconfigured_jobs_run_with_their_defaults() {
        let s = JobsSettings::default();
        let every: Vec<(&str, u64)> = s.enabled().iter().map(|(n, c)| (*n, c.every_s)).collect();
        assert_eq!(every, JOBS.to_vec());
        let rfm = s.job("rfm").unwrap();
        assert_eq!((rfm.timeout_s, rfm.retries, rfm.enabled), (600, 3, true));
        assert_eq!(s.job("live_anomalies").unwrap().every_s, 60);
        assert_eq!(s.job("verify").unwrap().every_s, 3600);
        assert!(s.job("nope").is_none());
        assert_eq!(s.segment_rules(), rfm::default_rules());
        assert!(s.validate().is_ok());
    }

    #[test]
    fn configured_jobs_override_and_fill_defaults() {
        let s = parse(
            r#"
            [jobs.forecast]
            every_s = 60
            [jobs.verify]
            every_s = 10
            timeout_s = 5
            retries = 0
            enabled = false
            [[rfm_segments]]
            name = "Top"
            r = [5, 5]
            f = [1, 5]
            m = [1, 5]
            "#,
        )
        .unwrap();
        assert!(s.validate().is_ok());
        assert_eq!(s.job("forecast").unwrap(), JobSettings::every(60));
        let verify = s.job("verify").unwrap();
        assert_eq!(
            (verify.timeout_s, verify.retries, verify.enabled),
            (5, 0, false)
        );
        let names: Vec<&str> = s.enabled().iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "rfm",
                "cohorts",
                "forecast",
                "anomalies",
                "live_anomalies",
                "reporting_currency"
            ]
        );
        assert_eq!(s.segment_rules()[0].name, "Top");
    }

    #[test]
    fn unknown_jobs_and_fields_are_rejected_clearly() {
        let s = parse("[jobs.rmf]\nevery_s = 5\n[jobs.cohorts]\nevery_s = 5\n").unwrap();
        let e = s.validate().unwrap_err();
        assert!(e.contains("\"rmf\""), "{e}");
        for (name, _) in JOBS {
            assert!(e.contains(name), "{e} lists {name}");
        }
        assert!(parse("[jobs.rfm]\nevery_s = 5\nevery = 3\n").is_err());
        assert!(
            parse("[jobs.rfm]\ntimeout_s = 5\n").is_err(),
            "every_s is required"
        );
        assert!(parse("unknown = 1\n").is_err());
        let zero = parse("[jobs.rfm]\nevery_s = 0\n").unwrap();
        assert!(zero.validate().unwrap_err().contains("every_s"));
        let bad_rule =
            parse("[[rfm_segments]]\nname = \"X\"\nr = [0, 5]\nf = [1, 5]\nm = [1, 5]\n").unwrap();
        assert!(bad_rule.validate().unwrap_err().contains("rfm_segments"));
    }

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        let secs: Vec<u64> = (1..=9).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
        assert_eq!(backoff(0).as_secs(), 1);
    }

    #[test]
    fn every_job_has_its_own_lock() {
        let mut keys: Vec<i64> = JOBS.iter().filter_map(|(n, _)| lock_key(n)).collect();
        assert_eq!(keys.len(), JOBS.len());
        keys.dedup();
        assert_eq!(keys.len(), JOBS.len());
        assert!(lock_key("nope").is_none());
    }
}
