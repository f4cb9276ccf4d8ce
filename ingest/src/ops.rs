//! `/health` and `/metrics` endpoints of the agent.
//!
//! `/health` tells the truth about each source: `running` (its loop turned in the last
//! [`STALL_MS`]), `stalled` (it did not), `retrying` (it failed on an error that retrying
//! can fix: the broker or the source is unreachable; with the error and the attempt count),
//! `stopped` (it failed on an error retrying cannot fix, with the reason: a missing grant, a
//! configuration the source refuses) or `finished`. The answer is 200 when every source is
//! running or finished, 503 otherwise, with the reasons in the body.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

/// A source whose loop has not turned for this long is reported stalled.
pub const STALL_MS: i64 = 30_000;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Liveness of one source: the source stamps `beat()` whenever its loop turns.
#[derive(Clone)]
pub struct Liveness {
    last_beat_ms: Arc<AtomicI64>,
}

impl Default for Liveness {
    fn default() -> Self {
        Self {
            last_beat_ms: Arc::new(AtomicI64::new(now_ms())),
        }
    }
}

impl Liveness {
    pub fn beat(&self) {
        self.last_beat_ms.store(now_ms(), Ordering::Relaxed);
    }
    fn last_ms(&self) -> i64 {
        self.last_beat_ms.load(Ordering::Relaxed)
    }
    fn age_ms(&self) -> i64 {
        now_ms() - self.last_ms()
    }
}

/// What the supervisor knows of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceState {
    Running,
    Retrying,
    Stopped,
    Finished,
}

struct Entry {
    state: SourceState,
    since_ms: i64,
    error: Option<String>,
    restarts: u64,
    /// When the source last failed: a beat after it means the restarted run turns.
    failed_at_ms: i64,
    liveness: Liveness,
}

/// One source in the `/health` answer.
#[derive(Debug, Serialize, PartialEq)]
pub struct SourceReport {
    pub name: &'static str,
    /// `running`, `stalled`, `retrying`, `stopped` or `finished`.
    pub state: &'static str,
    pub since_ms_ago: i64,
    pub last_beat_ms_ago: i64,
    pub restarts: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The `/health` answer.
#[derive(Debug, Serialize, PartialEq)]
pub struct HealthReport {
    /// `ok`, or `unhealthy` when a source is not running.
    pub status: &'static str,
    /// One line per source that is not running, for people.
    pub reasons: Vec<String>,
    pub sources: Vec<SourceReport>,
}

/// The states of all sources, shared by the supervisor and the `/health` endpoint.
#[derive(Clone, Default)]
pub struct Health {
    sources: Arc<Mutex<BTreeMap<&'static str, Entry>>>,
}

impl Health {
    /// Registers a source as running; its loop stamps the returned liveness.
    pub fn register(&self, name: &'static str) -> Liveness {
        let liveness = Liveness::default();
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        sources.insert(
            name,
            Entry {
                state: SourceState::Running,
                since_ms: now_ms(),
                error: None,
                restarts: 0,
                failed_at_ms: 0,
                liveness: liveness.clone(),
            },
        );
        metrics::gauge!("ingest_source_up", "source" => name).set(1.0);
        liveness
    }

    /// Records a change of state (with the error that caused it, if any).
    pub fn set(&self, name: &'static str, state: SourceState, error: Option<String>) {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        let Some(e) = sources.get_mut(name) else {
            return;
        };
        if state == SourceState::Retrying {
            e.restarts += 1;
            e.failed_at_ms = now_ms();
        }
        if e.state != state {
            e.since_ms = now_ms();
        }
        e.state = state;
        if state == SourceState::Running {
            e.liveness.beat();
        }
        if state == SourceState::Running {
            e.error = None;
        } else if error.is_some() {
            e.error = error;
        }
        let up = matches!(state, SourceState::Running | SourceState::Finished);
        metrics::gauge!("ingest_source_up", "source" => name).set(if up { 1.0 } else { 0.0 });
    }

    pub fn report(&self) -> HealthReport {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        let now = now_ms();
        for (name, e) in sources.iter_mut() {
            // Restarted after a failure, and its loop turned since: running again.
            if e.state == SourceState::Retrying && e.liveness.last_ms() > e.failed_at_ms {
                e.state = SourceState::Running;
                e.since_ms = e.liveness.last_ms();
                e.error = None;
                metrics::gauge!("ingest_source_up", "source" => *name).set(1.0);
            }
        }
        let mut reasons = Vec::new();
        let list = sources
            .iter()
            .map(|(name, e)| {
                let beat = e.liveness.age_ms();
                let state = match e.state {
                    SourceState::Running if beat > STALL_MS => "stalled",
                    SourceState::Running => "running",
                    SourceState::Retrying => "retrying",
                    SourceState::Stopped => "stopped",
                    SourceState::Finished => "finished",
                };
                match state {
                    "stalled" => reasons.push(format!(
                        "source {name}: its loop has not turned for {} s",
                        beat / 1000
                    )),
                    "retrying" | "stopped" => reasons.push(format!(
                        "source {name} {state}: {}",
                        e.error.as_deref().unwrap_or("no error recorded")
                    )),
                    _ => {}
                }
                SourceReport {
                    name,
                    state,
                    since_ms_ago: now - e.since_ms,
                    last_beat_ms_ago: beat,
                    restarts: e.restarts,
                    error: e.error.clone(),
                }
            })
            .collect();
        HealthReport {
            status: if reasons.is_empty() {
                "ok"
            } else {
                "unhealthy"
            },
            reasons,
            sources: list,
        }
    }
}

impl etl_contract::HealthReport for HealthReport {
    fn is_ok(&self) -> bool {
        self.status == "ok"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_is_reported_with_its_reason() {
        let h = Health::default();
        h.register("csv");
        h.register("mysql");
        h.register("http");
        let r = h.report();
        assert_eq!(r.status, "ok");
        assert_eq!(
            r.sources.iter().map(|s| s.state).collect::<Vec<_>>(),
            ["running", "running", "running"]
        );
        h.set(
            "mysql",
            SourceState::Stopped,
            Some("Access denied; grant REPLICATION SLAVE to etl_cdc".into()),
        );
        h.set(
            "http",
            SourceState::Retrying,
            Some("connection refused".into()),
        );
        h.set(
            "http",
            SourceState::Retrying,
            Some("connection refused".into()),
        );
        let r = h.report();
        assert_eq!(r.status, "unhealthy");
        assert_eq!(
            r.reasons,
            [
                "source http retrying: connection refused",
                "source mysql stopped: Access denied; grant REPLICATION SLAVE to etl_cdc"
            ]
        );
        let http = r.sources.iter().find(|s| s.name == "http").unwrap();
        assert_eq!((http.state, http.restarts), ("retrying", 2));
        // The restarted run turns: running again, the error cleared, the restart count kept.
        std::thread::sleep(std::time::Duration::from_millis(2));
        h.sources.lock().unwrap()["http"].liveness.beat();
        let r = h.report();
        let http = r.sources.iter().find(|s| s.name == "http").unwrap();
        assert_eq!(
            (http.state, http.restarts, http.error.clone()),
            ("running", 2, None)
        );
        assert_eq!(r.reasons.len(), 1);
    }

    #[test]
    fn a_loop_that_stops_turning_is_stalled() {
        let h = Health::default();
        let l = h.register("csv");
        l.last_beat_ms
            .store(now_ms() - STALL_MS - 1000, Ordering::Relaxed);
        let r = h.report();
        assert_eq!(r.status, "unhealthy");
        assert_eq!(r.sources[0].state, "stalled");
        assert!(r.reasons[0].starts_with("source csv: its loop has not turned for 3"));
        l.beat();
        assert_eq!(h.report().status, "ok");
    }
}
