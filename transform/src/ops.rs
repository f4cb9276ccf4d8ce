//! `/health` and `/metrics` endpoints of the transform service.
//!
//! `/health` reports each part with its state and, when it is not well, why:
//! - `warehouse`: `ok`, or `failing` with the error of the last batch transaction (the batch
//!   is retried with backoff);
//! - `consumer`: `running` (polling; with its assigned partitions and the age of the last
//!   record), `erroring` (the broker answered only errors for [`STALE_MS`], with the last one)
//!   or `stopped` (the polling thread ended);
//! - `loop`: the batch loop turned in the last [`STALE_MS`];
//! - `gold`: `current`, or `catching_up` with `behind_ms` while batches defer their gold
//!   changes to the queue (a backlog: not a failure, so it does not make the answer 503).
//!
//! 200 when every part is well, 503 otherwise with the reasons.

use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

/// A part silent (or only failing) for this long is reported unwell.
pub const STALE_MS: i64 = 30_000;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// What the polling thread knows, shared with `/health`.
#[derive(Default)]
pub struct ConsumerStatus {
    stopped: AtomicBool,
    assigned: AtomicI64,
    /// Last poll that answered without an error (a record or nothing), ms since the epoch.
    last_ok_ms: AtomicI64,
    last_record_ms: AtomicI64,
    last_error: Mutex<Option<(i64, String)>>,
}

impl ConsumerStatus {
    pub fn polled(&self, record: bool) {
        let now = now_ms();
        self.last_ok_ms.store(now, Ordering::Relaxed);
        if record {
            self.last_record_ms.store(now, Ordering::Relaxed);
        }
    }
    pub fn error(&self, e: String) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some((now_ms(), e));
    }
    pub fn assigned(&self, partitions: usize) {
        self.assigned.store(partitions as i64, Ordering::Relaxed);
        metrics::gauge!("transform_assigned_partitions").set(partitions as f64);
    }
    pub fn stopped(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }
}

/// One part in the `/health` answer.
#[derive(Debug, Serialize, PartialEq)]
pub struct Part {
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assigned_partitions: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_record_ms_ago: Option<i64>,
    pub last_ok_ms_ago: i64,
}

/// Gold in the `/health` answer.
#[derive(Debug, Serialize, PartialEq)]
pub struct GoldPart {
    pub state: &'static str,
    /// How long gold has been behind silver (its queue not drained).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub behind_ms: Option<i64>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct HealthReport {
    pub status: &'static str,
    pub reasons: Vec<String>,
    pub warehouse: Part,
    pub consumer: Part,
    #[serde(rename = "loop")]
    pub batch_loop: Part,
    pub gold: GoldPart,
}

/// Health as seen by the batch loop and the polling thread.
#[derive(Clone)]
pub struct Health {
    last_ok_ms: Arc<AtomicI64>,
    warehouse_ok_ms: Arc<AtomicI64>,
    warehouse_error: Arc<Mutex<Option<String>>>,
    pub consumer: Arc<ConsumerStatus>,
    /// Since when gold is behind silver (ms since the epoch; 0: current).
    gold_behind_since_ms: Arc<AtomicI64>,
}

impl Default for Health {
    fn default() -> Self {
        let now = now_ms();
        let consumer = ConsumerStatus::default();
        consumer.last_ok_ms.store(now, Ordering::Relaxed);
        Self {
            last_ok_ms: Arc::new(AtomicI64::new(now)),
            warehouse_ok_ms: Arc::new(AtomicI64::new(now)),
            warehouse_error: Arc::default(),
            consumer: Arc::new(consumer),
            gold_behind_since_ms: Arc::default(),
        }
    }
}

impl Health {
    /// The batch loop turned (a batch committed, or nothing to do).
    pub fn ok(&self) {
        let now = now_ms();
        self.last_ok_ms.store(now, Ordering::Relaxed);
        self.warehouse_ok_ms.store(now, Ordering::Relaxed);
        *self
            .warehouse_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Gold is behind silver since `since_ms` (ms since the epoch), or current (`None`).
    pub fn gold_behind(&self, since_ms: Option<i64>) {
        self.gold_behind_since_ms
            .store(since_ms.unwrap_or(0), Ordering::Relaxed);
    }

    /// A batch transaction failed with `error` (it is retried).
    pub fn failing(&self, error: String) {
        *self
            .warehouse_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(error);
    }

    pub fn report(&self) -> HealthReport {
        let now = now_ms();
        let mut reasons = Vec::new();
        let werr = self
            .warehouse_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(e) = &werr {
            reasons.push(format!("warehouse failing: {e}"));
        }
        let warehouse = Part {
            state: if werr.is_some() { "failing" } else { "ok" },
            error: werr,
            assigned_partitions: None,
            last_record_ms_ago: None,
            last_ok_ms_ago: now - self.warehouse_ok_ms.load(Ordering::Relaxed),
        };
        let c = &self.consumer;
        let ok_age = now - c.last_ok_ms.load(Ordering::Relaxed);
        let last_error = c
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let recent_error = last_error.filter(|(at, _)| *at > now - STALE_MS);
        let state = if c.stopped.load(Ordering::Relaxed) {
            reasons.push("consumer stopped: the polling thread ended".into());
            "stopped"
        } else if ok_age > STALE_MS {
            reasons.push(format!(
                "consumer erroring for {} s: {}",
                ok_age / 1000,
                recent_error
                    .as_ref()
                    .map_or("no answer from the broker", |(_, e)| e.as_str())
            ));
            "erroring"
        } else {
            "running"
        };
        let last_record = c.last_record_ms.load(Ordering::Relaxed);
        let consumer = Part {
            state,
            error: recent_error.map(|(_, e)| e),
            assigned_partitions: Some(c.assigned.load(Ordering::Relaxed)),
            last_record_ms_ago: (last_record > 0).then(|| now - last_record),
            last_ok_ms_ago: ok_age,
        };
        let loop_age = now - self.last_ok_ms.load(Ordering::Relaxed);
        if loop_age > STALE_MS {
            reasons.push(format!(
                "batch loop has not turned for {} s",
                loop_age / 1000
            ));
        }
        let batch_loop = Part {
            state: if loop_age > STALE_MS {
                "stalled"
            } else {
                "running"
            },
            error: None,
            assigned_partitions: None,
            last_record_ms_ago: None,
            last_ok_ms_ago: loop_age,
        };
        let behind = self.gold_behind_since_ms.load(Ordering::Relaxed);
        let gold = GoldPart {
            state: if behind > 0 { "catching_up" } else { "current" },
            behind_ms: (behind > 0).then(|| now - behind),
        };
        HealthReport {
            gold,
            status: if reasons.is_empty() {
                "ok"
            } else {
                "unhealthy"
            },
            reasons,
            warehouse,
            consumer,
            batch_loop,
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
    fn each_part_reports_its_state_and_reason() {
        let h = Health::default();
        assert_eq!(h.report().status, "ok");
        h.failing("upserting into silver.sales: connection reset".into());
        let r = h.report();
        assert_eq!(r.status, "unhealthy");
        assert_eq!(
            r.reasons,
            ["warehouse failing: upserting into silver.sales: connection reset"]
        );
        assert_eq!(r.warehouse.state, "failing");
        // The next committed batch clears it.
        h.ok();
        assert_eq!(h.report().status, "ok");

        h.consumer
            .error("BrokerTransportFailure (Local: Broker transport failure)".into());
        assert_eq!(
            h.report().status,
            "ok",
            "one error among good polls is not a failure"
        );
        h.consumer
            .last_ok_ms
            .store(now_ms() - STALE_MS - 5000, Ordering::Relaxed);
        let r = h.report();
        assert_eq!(r.consumer.state, "erroring");
        assert!(
            r.reasons[0].starts_with("consumer erroring for 35 s: BrokerTransportFailure"),
            "{:?}",
            r.reasons
        );
        h.consumer.polled(true);
        h.consumer.assigned(3);
        let r = h.report();
        assert_eq!(
            (r.consumer.state, r.consumer.assigned_partitions),
            ("running", Some(3))
        );
        h.consumer.stopped();
        assert_eq!(h.report().consumer.state, "stopped");
    }

    #[test]
    fn gold_catching_up_is_reported_without_failing() {
        let h = Health::default();
        assert_eq!(h.report().gold.state, "current");
        h.gold_behind(Some(now_ms() - 4000));
        let r = h.report();
        assert_eq!((r.status, r.gold.state), ("ok", "catching_up"));
        assert!(r
            .gold
            .behind_ms
            .is_some_and(|ms| (4000..60_000).contains(&ms)));
        h.gold_behind(None);
        assert_eq!(
            h.report().gold,
            GoldPart {
                state: "current",
                behind_ms: None
            }
        );
    }
}
