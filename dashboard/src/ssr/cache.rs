//! Answers cached by the gold version (`gold.version`, bumped by the transform in the same
//! transaction as every change of gold). One task reads the version every `poll`; an answer
//! is reused while the version it was computed at is current, so any number of open tabs
//! and API clients cost one query per mart and commit.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use deadpool_postgres::Pool;

/// No version known (warehouse unreachable or not migrated): nothing is cached.
const UNKNOWN: i64 = -1;
const MAX_ENTRIES: usize = 4096;

pub struct GoldCache {
    version: AtomicI64,
    entries: Mutex<HashMap<String, (i64, Arc<str>)>>,
}

impl Default for GoldCache {
    fn default() -> Self {
        Self {
            version: AtomicI64::new(UNKNOWN),
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl GoldCache {
    /// The version now, if known.
    pub fn version(&self) -> Option<i64> {
        let v = self.version.load(Ordering::Acquire);
        (v != UNKNOWN).then_some(v)
    }

    pub fn set_version(&self, v: Option<i64>) {
        let new = v.unwrap_or(UNKNOWN);
        let old = self.version.swap(new, Ordering::AcqRel);
        if old != new {
            let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            entries.retain(|_, (at, _)| *at == new);
            metrics::gauge!("dashboard_gold_version").set(new as f64);
        }
    }

    /// The cached answer for `key` at the current version.
    pub fn get(&self, key: &str) -> Option<Arc<str>> {
        let v = self.version()?;
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let hit = entries
            .get(key)
            .filter(|(at, _)| *at == v)
            .map(|(_, a)| a.clone());
        metrics::counter!("dashboard_cache_lookups_total", "outcome" => if hit.is_some() { "hit" } else { "miss" })
            .increment(1);
        hit
    }

    /// Keeps `answer`, computed when the version was `at` (read before the query ran).
    pub fn put(&self, key: String, at: Option<i64>, answer: Arc<str>) {
        let (Some(at), Some(now)) = (at, self.version()) else {
            return;
        };
        if at != now {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(key, (at, answer));
    }

    /// Reads `gold.version` every `poll` until the process ends.
    pub fn watch(self: &Arc<Self>, pool: Pool, poll: Duration) {
        let cache = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(poll);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                cache.set_version(read_version(&pool).await);
            }
        });
    }
}

async fn read_version(pool: &Pool) -> Option<i64> {
    let client = pool.get().await.ok()?;
    client
        .query_opt("SELECT version FROM gold.version", &[])
        .await
        .ok()
        .flatten()
        .map(|r| r.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_lives_as_long_as_its_version() {
        let c = GoldCache::default();
        c.put("a".into(), Some(1), "x".into());
        assert!(c.get("a").is_none(), "no version known: nothing cached");
        c.set_version(Some(1));
        c.put("a".into(), Some(1), "x".into());
        assert_eq!(c.get("a").as_deref(), Some("x"));
        c.put("b".into(), Some(0), "old".into());
        assert!(c.get("b").is_none(), "computed at an older version");
        c.set_version(Some(2));
        assert!(c.get("a").is_none(), "the version moved");
        c.set_version(None);
        assert!(c.get("a").is_none());
    }
}
