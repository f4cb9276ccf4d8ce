//! HTTP API source: polls JSON endpoints on a schedule and publishes their records as
//! change events to `<prefix>.api.<endpoint>`.
//!
//! Per endpoint (`[[ingest.http.endpoints]]`): URL and query, authentication, pagination
//! (page number, offset/limit, cursor in the body, next link in the body, `Link` header),
//! the records' path in the body, the primary key, an optional incremental cursor with a
//! lookback window, a poll interval, a rate limit, conditional requests (`ETag`,
//! `Last-Modified`), and optionally deletes for keys gone from a full poll.
//!
//! Change detection: a record is hashed (canonical JSON); a new key is emitted as `c`, a
//! changed hash as `u` (with `before: null`: the agent keeps hashes, not images), an
//! unchanged record not at all. With `deletes = true`, a key missing from two complete and
//! consistent full polls in a row is emitted as `d` whose `before` holds the key fields (one
//! miss is not enough: with page numbers or offsets, a record can shift onto a page already
//! read while the server's data changes mid-poll; it is then read by the next poll). The state
//! (key -> hash and change counter, the cursor, page validators) lives in
//! `<checkpoint_dir>/http/` (see [`state`]): written ahead before publishing, confirmed after
//! the broker's acknowledgement, so a crash never loses a change and the events re-sent after
//! one carry the same source keys: `<endpoint>:<key>:<content hash>:<counter>`.
//!
//! A page that cannot be parsed (invalid JSON, records path missing) is dead-lettered with
//! its URL, status and raw body, and the same page is asked for again with backoff (the
//! next page's address may be inside the bad one); after `max_attempts` the poll is given
//! up without moving the cursor or emitting deletes, and the next poll starts over.

pub mod fetch;
pub mod page;
pub mod settings;
pub mod state;

use super::{Source, SourceContext, SourceError};
use crate::publisher::Batch;
use etl_contract::{
    data_topic, dead_letter_topic, DeadLetter, DeadLetterOrigin, Envelope, Op, CONTRACT_VERSION,
};
use fetch::{Answer, FetchError, Fetcher};
use futures::future::BoxFuture;
use page::{canonical, content_hash, first_url, next_url, parse_page, record_key, scalar_text};
use serde::Serialize;
use serde_json::Value;
pub use settings::{Endpoint, HttpSettings, CONNECTOR};
use settings::{Lookback, Pagination};
use state::{decide, decide_delete, KeyState, PageMemo, StateError, Store};
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

impl From<StateError> for SourceError {
    fn from(e: StateError) -> Self {
        match e {
            StateError::Checkpoint(c) => SourceError::Checkpoint(c),
            StateError::Io { path, source } => SourceError::Io {
                context: format!("state journal {}", path.display()),
                source,
            },
        }
    }
}

pub struct HttpSource {
    settings: HttpSettings,
    prefix: String,
}

/// The `source` block of an API change event.
#[derive(Serialize)]
struct ApiSource<'a> {
    version: &'a str,
    connector: &'a str,
    name: &'a str,
    entity: &'a str,
    ts_ms: i64,
    /// The page the record was read from.
    url: &'a str,
    /// Poll number (1 for the endpoint's first poll) and page within the poll (1-based).
    poll: u64,
    page: u64,
    /// Index of the record in the page (`null` for a delete).
    index: Option<usize>,
    /// Content hash of the record (`null` for a delete).
    hash: Option<&'a str>,
    /// Change counter of the key.
    seq: u64,
    source_key: &'a str,
    snapshot: bool,
}

/// How a poll ended.
#[derive(Debug)]
enum PollEnd {
    Complete {
        pages: u64,
        emitted: u64,
        /// The page sizes were inconsistent: poll again at once.
        repoll: bool,
    },
    Abandoned(String),
    Stopped,
}

#[derive(Default)]
struct PollStats {
    created: u64,
    updated: u64,
    deleted: u64,
    dead: u64,
}

/// One event ready to publish.
struct Out {
    dead: bool,
    key: Vec<u8>,
    value: Vec<u8>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Orders incremental cursor values: numerically when both are numbers, else as text
/// (ISO dates and timestamps of one format sort correctly as text).
fn cmp_cursor(a: &str, b: &str) -> Ordering {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        _ => a.cmp(b),
    }
}

fn max_cursor(a: Option<String>, b: Option<&str>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if cmp_cursor(&a, b) == Ordering::Less {
            b.to_string()
        } else {
            a
        }),
        (a, b) => a.or(b.map(str::to_string)),
    }
}

/// The low watermark of the next incremental poll: the cursor minus the lookback, in the
/// cursor's own format.
pub fn lower_cursor(cursor: &str, lookback: Lookback) -> String {
    use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat};
    let secs = match lookback {
        Lookback::Duration(d) => d.as_secs_f64(),
        Lookback::Number(n) => n,
    };
    if let Ok(n) = cursor.parse::<i64>() {
        return (n - secs.ceil() as i64).to_string();
    }
    if let Ok(x) = cursor.parse::<f64>() {
        return (x - secs).to_string();
    }
    let d = chrono::Duration::milliseconds((secs * 1000.0) as i64);
    if let Ok(date) = NaiveDate::parse_from_str(cursor, "%Y-%m-%d") {
        let days = (secs / 86400.0).ceil() as i64;
        return (date - chrono::Duration::days(days))
            .format("%Y-%m-%d")
            .to_string();
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(cursor) {
        let z = cursor.ends_with('Z') || cursor.ends_with('z');
        let t = t - d;
        return if z {
            t.with_timezone(&chrono::Utc)
                .to_rfc3339_opts(SecondsFormat::AutoSi, true)
        } else {
            t.to_rfc3339_opts(SecondsFormat::AutoSi, false)
        };
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(cursor, f) {
            return (t - d).format(f).to_string();
        }
    }
    warn!(
        cursor,
        "cannot subtract a lookback from this cursor value; sending it as it is"
    );
    cursor.to_string()
}

impl HttpSource {
    pub fn new(settings: HttpSettings, prefix: &str) -> Result<Self, SourceError> {
        settings.validate(prefix).map_err(SourceError::Config)?;
        Ok(HttpSource {
            settings,
            prefix: prefix.to_string(),
        })
    }

    async fn run_all(&self, ctx: SourceContext) -> Result<(), SourceError> {
        let client = fetch::build_client(&self.settings).map_err(SourceError::Config)?;
        info!(
            endpoints = self.settings.endpoints.len(),
            "http source started"
        );
        let tasks = self
            .settings
            .endpoints
            .iter()
            .map(|ep| self.run_endpoint(ep, client.clone(), ctx.clone()));
        futures::future::try_join_all(tasks).await?;
        info!("http source stopped");
        Ok(())
    }

    /// Sleeps `d` in short steps (so the agent stays live); false when stopping.
    async fn pause(ctx: &SourceContext, d: Duration) -> bool {
        let mut shutdown = ctx.shutdown.clone();
        let end = Instant::now() + d;
        loop {
            ctx.liveness.beat();
            if *shutdown.borrow() {
                return false;
            }
            let now = Instant::now();
            if now >= end {
                return true;
            }
            let step = (end - now).min(Duration::from_secs(5));
            tokio::select! {
                _ = tokio::time::sleep(step) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    async fn run_endpoint(
        &self,
        ep: &Endpoint,
        client: reqwest::Client,
        ctx: SourceContext,
    ) -> Result<(), SourceError> {
        let dir = ctx.checkpoint_dir.join("http");
        let mut store = Store::open(&dir, &ep.name)?;
        let mut fetcher = Fetcher::new(client, &self.settings, ep).map_err(SourceError::Config)?;
        info!(endpoint = %ep.name, url = %ep.url, keys = store.snap.keys.len(), polls = store.snap.polls, "endpoint ready");
        loop {
            let started = Instant::now();
            let end = self.poll(ep, &ctx, &mut store, &mut fetcher).await?;
            let secs = started.elapsed().as_secs_f64();
            metrics::histogram!("ingest_http_poll_seconds", "endpoint" => ep.name.clone())
                .record(secs);
            metrics::gauge!("ingest_http_keys_tracked", "endpoint" => ep.name.clone())
                .set(store.snap.keys.len() as f64);
            let mut wait =
                Duration::from_millis(ep.poll_interval_ms).saturating_sub(started.elapsed());
            match end {
                PollEnd::Stopped => return Ok(()),
                PollEnd::Complete {
                    pages,
                    emitted,
                    repoll,
                } => {
                    metrics::counter!("ingest_http_polls_total", "endpoint" => ep.name.clone(), "outcome" => "complete").increment(1);
                    info!(endpoint = %ep.name, pages, emitted, seconds = secs, keys = store.snap.keys.len(), "poll complete");
                    if repoll {
                        warn!(endpoint = %ep.name, "the page size changed during the poll: polling again at once (no deletes from this poll)");
                        wait = Duration::ZERO;
                    }
                }
                PollEnd::Abandoned(reason) => {
                    metrics::counter!("ingest_http_polls_total", "endpoint" => ep.name.clone(), "outcome" => "abandoned").increment(1);
                    warn!(endpoint = %ep.name, reason = %reason, "poll given up; the next one starts over from the checkpoint");
                }
            }
            if !Self::pause(&ctx, wait).await {
                return Ok(());
            }
        }
    }

    fn dead_letter(
        &self,
        ep: &Endpoint,
        reason: String,
        origin: serde_json::Value,
        source_key: String,
        raw: &[u8],
    ) -> Out {
        let dl = DeadLetter::new(
            reason,
            DeadLetterOrigin {
                connector: CONNECTOR,
                name: &self.prefix,
                entity: Some(&ep.name),
                position: origin,
                source_key: source_key.clone(),
            },
            raw,
            now_ms(),
        );
        Out {
            dead: true,
            key: source_key.into_bytes(),
            value: serde_json::to_vec(&dl).expect("dead letter serializes"),
        }
    }

    async fn publish(
        &self,
        ctx: &SourceContext,
        topic: &Arc<str>,
        dlq: &Arc<str>,
        outs: &[Out],
    ) -> Result<Batch, SourceError> {
        let records: Vec<(bool, &[u8], &[u8])> = outs
            .iter()
            .map(|o| (o.dead, o.key.as_slice(), o.value.as_slice()))
            .collect();
        Ok(ctx.publisher.enqueue(topic, dlq, records).await?.batch)
    }

    /// One poll of an endpoint: every page, then deletes, then the snapshot.
    async fn poll(
        &self,
        ep: &Endpoint,
        ctx: &SourceContext,
        store: &mut Store,
        fetcher: &mut Fetcher,
    ) -> Result<PollEnd, SourceError> {
        let topic: Arc<str> = data_topic(&self.prefix, CONNECTOR, &ep.name)
            .map_err(|e| SourceError::Config(e.to_string()))?
            .into();
        let dlq: Arc<str> = dead_letter_topic(&self.prefix)
            .map_err(|e| SourceError::Config(e.to_string()))?
            .into();
        let poll_no = store.snap.polls + 1;
        let since = ep.incremental.as_ref().and_then(|inc| {
            let lb = Lookback::parse(&inc.lookback).unwrap_or(Lookback::Number(0.0));
            store
                .snap
                .cursor
                .as_deref()
                .map(|c| lower_cursor(c, lb))
                .or_else(|| inc.initial.clone())
                .map(|v| (inc.param.clone(), v))
        });
        let mut url = first_url(ep, since.as_ref().map(|(p, v)| (p.as_str(), v.as_str())))
            .map_err(SourceError::Config)?;
        // Conditional requests only when every key's state is certain (a 304 page must not
        // hide a record whose last event may be lost).
        let conditional = ep.conditional && !store.snap.keys.values().any(|s| s.uncertain);
        debug!(endpoint = %ep.name, poll = poll_no, %url, "poll starts");
        let mut run = PollRun {
            source: self,
            ep,
            ctx,
            topic,
            dlq,
            poll_no,
            page_no: 0,
            seen: HashSet::new(),
            visited: HashSet::new(),
            cursor_max: None,
            sizes: Vec::new(),
            in_flight: None,
            stats: PollStats::default(),
            memos: HashMap::new(),
        };

        let end_reason: Option<String> = loop {
            ctx.liveness.beat();
            if *ctx.shutdown.borrow() {
                run.settle(store).await?;
                return Ok(PollEnd::Stopped);
            }
            run.page_no += 1;
            if run.page_no > ep.max_pages as u64 {
                break Some(format!("more than max_pages = {} pages", ep.max_pages));
            }
            if !run.visited.insert(url.to_string()) {
                break Some(format!("the pagination came back to {url}"));
            }
            let memo = if conditional {
                store.snap.pages.get(url.as_str()).cloned()
            } else {
                None
            };
            let next = match run.fetch(fetcher, &url, memo.as_ref()).await? {
                Fetched::Stopped => {
                    run.settle(store).await?;
                    return Ok(PollEnd::Stopped);
                }
                Fetched::Abandon(reason) => break Some(reason),
                Fetched::NotModified => {
                    run.not_modified(&url, memo.expect("a 304 comes with a memo"))
                }
                Fetched::Fresh(page, validators, link) => {
                    run.fresh_page(store, &url, page, validators, link).await?
                }
            };
            match next {
                Some(n) => url = n,
                None => break None,
            }
        };
        run.settle(store).await?;
        run.finish(store, end_reason).await
    }
}

/// A page as the server answered it.
enum Fetched {
    /// 304: the page is as it was (its memo holds it).
    NotModified,
    Fresh(page::Page, fetch::Validators, Option<String>),
    /// The poll is given up: why.
    Abandon(String),
    Stopped,
}

/// The page's change events and what they change.
#[derive(Default)]
struct PageEvents {
    outs: Vec<Out>,
    /// New key states, and whether each must be durable before the publish.
    changes: Vec<(String, KeyState, bool)>,
    /// The new states of this page's keys so far (a key may come twice in a page).
    overlay: HashMap<String, KeyState>,
    keys: Vec<String>,
    cursor: Option<String>,
}

/// Where a record was read in a poll.
struct RecordAt<'a> {
    url: &'a str,
    index: usize,
    ts_ms: i64,
}

/// One poll of an endpoint in progress.
struct PollRun<'a> {
    source: &'a HttpSource,
    ep: &'a Endpoint,
    ctx: &'a SourceContext,
    topic: Arc<str>,
    dlq: Arc<str>,
    poll_no: u64,
    page_no: u64,
    /// Keys read by this poll (on fresh pages and on pages answered 304).
    seen: HashSet<String>,
    visited: HashSet<String>,
    cursor_max: Option<String>,
    /// Records per page (pages with records).
    sizes: Vec<usize>,
    /// The last page's events: enqueued, not acknowledged yet, and how many are not dead
    /// letters.
    in_flight: Option<(Batch, u64)>,
    stats: PollStats,
    memos: HashMap<String, PageMemo>,
}

impl PollRun<'_> {
    /// Waits for the acknowledgement of the page in flight, then confirms its states.
    async fn settle(&mut self, store: &mut Store) -> Result<(), SourceError> {
        if let Some((b, n)) = self.in_flight.take() {
            b.acknowledged().await?;
            store.acknowledged()?;
            metrics::counter!("ingest_rows_published_total", "source" => "api", "entity" => self.ep.name.clone()).increment(n);
        }
        Ok(())
    }

    /// Fetches and parses a page, dead-lettering and asking again for an unparseable one.
    async fn fetch(
        &mut self,
        fetcher: &mut Fetcher,
        url: &reqwest::Url,
        memo: Option<&PageMemo>,
    ) -> Result<Fetched, SourceError> {
        let (ep, ctx, settings) = (self.ep, self.ctx, &self.source.settings);
        let mut bad_pages = 0u32;
        loop {
            let mut stop = ctx.shutdown.clone();
            // A request in flight (up to its timeout) does not hold up a shutdown.
            let answer = tokio::select! {
                a = fetcher.get(
                    settings,
                    &ep.name,
                    url,
                    memo.map(|m| &m.validators),
                    |d| HttpSource::pause(ctx, d),
                ) => a,
                _ = stop.wait_for(|s| *s) => Err(FetchError::Shutdown),
            };
            match answer {
                Err(FetchError::Shutdown) => return Ok(Fetched::Stopped),
                Err(e) => return Ok(Fetched::Abandon(e.to_string())),
                Ok(Answer::NotModified) => {
                    return Ok(match memo {
                        Some(_) => Fetched::NotModified,
                        None => Fetched::Abandon(format!(
                            "{url}: 304 Not Modified to a request without validators"
                        )),
                    })
                }
                Ok(Answer::Ok {
                    status,
                    body,
                    validators,
                    link,
                    content_type,
                }) => match parse_page(ep, &body) {
                    Ok(p) => return Ok(Fetched::Fresh(p, validators, link)),
                    Err(e) => {
                        bad_pages += 1;
                        self.stats.dead += 1;
                        metrics::counter!("ingest_dead_letters_total", "source" => "api", "entity" => ep.name.clone()).increment(1);
                        metrics::counter!("ingest_http_pages_total", "endpoint" => ep.name.clone(), "result" => "invalid").increment(1);
                        let url_s = url.to_string();
                        let sk = format!(
                            "{}:{}:page:{}:{}",
                            CONNECTOR,
                            ep.name,
                            content_hash(url_s.as_bytes()),
                            content_hash(&body)
                        );
                        warn!(endpoint = %ep.name, url = %url_s, status, error = %e, attempt = bad_pages, "unparseable page dead-lettered; asking for it again");
                        let out = self.source.dead_letter(
                            ep,
                            format!("unparseable page: {e}"),
                            serde_json::json!({
                                "url": url_s, "status": status, "content_type": content_type,
                                "poll": self.poll_no, "page": self.page_no,
                            }),
                            sk,
                            &body,
                        );
                        self.source
                            .publish(ctx, &self.topic, &self.dlq, std::slice::from_ref(&out))
                            .await?
                            .acknowledged()
                            .await?;
                        if bad_pages >= settings.max_attempts {
                            return Ok(Fetched::Abandon(format!(
                                "{url}: unparseable {bad_pages} times: {e}"
                            )));
                        }
                        if !HttpSource::pause(ctx, fetch::backoff(settings, bad_pages)).await {
                            return Ok(Fetched::Stopped);
                        }
                    }
                },
            }
        }
    }

    /// A page answered 304: as it was; its keys count as seen. Returns the next page.
    fn not_modified(&mut self, url: &reqwest::Url, m: PageMemo) -> Option<reqwest::Url> {
        metrics::counter!("ingest_http_pages_total", "endpoint" => self.ep.name.clone(), "result" => "not_modified").increment(1);
        self.seen.extend(m.keys.iter().cloned());
        self.cursor_max = max_cursor(self.cursor_max.take(), m.cursor_max.as_deref());
        if !m.keys.is_empty() {
            self.sizes.push(m.keys.len());
        }
        let next = m.next.as_deref().and_then(|n| reqwest::Url::parse(n).ok());
        self.memos.insert(url.to_string(), m);
        next
    }

    /// A fresh page: its change events written ahead and enqueued (after the previous
    /// page's acknowledgement). Returns the next page.
    async fn fresh_page(
        &mut self,
        store: &mut Store,
        url: &reqwest::Url,
        page: page::Page,
        validators: fetch::Validators,
        link: Option<String>,
    ) -> Result<Option<reqwest::Url>, SourceError> {
        let ep = self.ep;
        metrics::counter!("ingest_http_pages_total", "endpoint" => ep.name.clone(), "result" => "fresh").increment(1);
        let url_s = url.to_string();
        let ev = self.page_events(store, &url_s, &page);
        let n_records = page.records.len();
        if n_records > 0 {
            self.sizes.push(n_records);
        }
        self.cursor_max = max_cursor(self.cursor_max.take(), ev.cursor.as_deref());
        let next = next_url(ep, url, Some(&page.body), n_records, link.as_deref());
        if ep.conditional && (validators.etag.is_some() || validators.last_modified.is_some()) {
            self.memos.insert(
                url_s.clone(),
                PageMemo {
                    validators,
                    keys: ev.keys,
                    next: next.as_ref().map(|u| u.to_string()),
                    cursor_max: ev.cursor,
                },
            );
        }
        // The previous page is acknowledged before this one is written ahead:
        // the journal holds at most one unacknowledged group.
        self.settle(store).await?;
        let n = ev.outs.iter().filter(|o| !o.dead).count() as u64;
        store.stage(ev.changes)?;
        let batch = self
            .source
            .publish(self.ctx, &self.topic, &self.dlq, &ev.outs)
            .await?;
        self.in_flight = Some((batch, n));
        Ok(next)
    }

    /// The change events of a fresh page's records (new or changed ones), and dead letters
    /// for records without a key.
    fn page_events(&mut self, store: &Store, url_s: &str, page: &page::Page) -> PageEvents {
        let ep = self.ep;
        let ts_ms = now_ms();
        let mut ev = PageEvents {
            keys: Vec::with_capacity(page.records.len()),
            ..PageEvents::default()
        };
        let mut buf = Vec::new();
        for (i, rec) in page.records.iter().enumerate() {
            buf.clear();
            canonical(rec, &mut buf);
            let h = content_hash(&buf);
            let kv = match record_key(ep, rec) {
                Ok(kv) => kv,
                Err(reason) => {
                    self.stats.dead += 1;
                    let sk = format!(
                        "{CONNECTOR}:{}:record:{}:{h}",
                        ep.name,
                        content_hash(url_s.as_bytes())
                    );
                    ev.outs.push(self.source.dead_letter(
                        ep,
                        reason,
                        serde_json::json!({"url": url_s, "poll": self.poll_no, "page": self.page_no, "index": i}),
                        sk,
                        &buf,
                    ));
                    continue;
                }
            };
            let key_str = serde_json::to_string(&kv.iter().map(|(_, v)| *v).collect::<Vec<_>>())
                .expect("key serializes");
            if let Some(inc) = &ep.incremental {
                if let Some(c) = page::at_path(rec, &inc.field).and_then(scalar_text) {
                    ev.cursor = max_cursor(ev.cursor.take(), Some(&c));
                }
            }
            ev.keys.push(key_str.clone());
            self.seen.insert(key_str.clone());
            let prev = ev
                .overlay
                .get(&key_str)
                .or_else(|| store.snap.keys.get(&key_str));
            let Some((op, st)) = decide(prev, &h) else {
                continue;
            };
            // See Store::stage: what needs its new state durable before the publish.
            let durable = ep.deletes || prev.is_some();
            let at = RecordAt {
                url: url_s,
                index: i,
                ts_ms,
            };
            let out = self.change_event(&at, rec, &kv, &key_str, &h, op, st.n, &buf);
            ev.outs.push(out);
            ev.overlay.insert(key_str.clone(), st.clone());
            ev.changes.push((key_str, st, durable));
        }
        ev
    }

    /// The `c` or `u` event of a record (`seq`: the key's change counter), or its dead
    /// letter when it is over the producer's limit (`canonical`: the record's canonical
    /// JSON).
    #[allow(clippy::too_many_arguments)]
    fn change_event(
        &mut self,
        at: &RecordAt<'_>,
        rec: &Value,
        kv: &[(&str, &Value)],
        key_str: &str,
        h: &str,
        op: Op,
        seq: u64,
        canonical: &[u8],
    ) -> Out {
        let ep = self.ep;
        let ts_ms = at.ts_ms;
        let max_bytes = self.ctx.publisher.max_record_bytes();
        let source_key = format!("{}:{key_str}:{h}:{}", ep.name, seq);
        let src = ApiSource {
            version: CONTRACT_VERSION,
            connector: CONNECTOR,
            name: &self.source.prefix,
            entity: &ep.name,
            ts_ms,
            url: at.url,
            poll: self.poll_no,
            page: self.page_no,
            index: Some(at.index),
            hash: Some(h),
            seq,
            source_key: &source_key,
            snapshot: false,
        };
        let value = serde_json::to_vec(&Envelope {
            before: None::<&Value>,
            after: Some(rec),
            op,
            source: &src,
            ts_ms,
        })
        .expect("envelope serializes");
        let key = key_object(kv);
        if value.len() + key.len() > max_bytes {
            self.stats.dead += 1;
            return self.source.dead_letter(
                ep,
                format!("the change event would be {} bytes, over the producer's limit of {max_bytes} (raise kafka.client.\"message.max.bytes\")", value.len()),
                serde_json::json!({"url": at.url, "poll": self.poll_no, "page": self.page_no, "index": at.index, "key": key_str}),
                format!("{CONNECTOR}:{source_key}"),
                canonical,
            );
        }
        match op {
            Op::Create => self.stats.created += 1,
            _ => self.stats.updated += 1,
        }
        Out {
            dead: false,
            key,
            value,
        }
    }

    /// After the last page: the records' counts, then (a complete poll) deletes, cursor,
    /// validators and the poll number into the state.
    async fn finish(
        mut self,
        store: &mut Store,
        end_reason: Option<String>,
    ) -> Result<PollEnd, SourceError> {
        let ep = self.ep;
        let stats = &self.stats;
        metrics::counter!("ingest_http_records_total", "endpoint" => ep.name.clone(), "op" => "c")
            .increment(stats.created);
        metrics::counter!("ingest_http_records_total", "endpoint" => ep.name.clone(), "op" => "u")
            .increment(stats.updated);
        metrics::counter!("ingest_http_dead_letters_total", "endpoint" => ep.name.clone())
            .increment(stats.dead);
        if let Some(reason) = end_reason {
            // Acknowledged changes are in the journal; keep it bounded.
            if store.journal_bytes() > store.compact_after_bytes {
                store.compact()?;
            }
            return Ok(PollEnd::Abandoned(reason));
        }
        // Page sizes: every page but the last must have the same size, or records may have
        // shifted between pages (page-number pagination while the server changed its size).
        let sizes = &self.sizes;
        let repoll = matches!(ep.pagination, Pagination::Page { .. })
            && sizes.len() > 1
            && sizes[..sizes.len() - 1].iter().any(|s| *s != sizes[0]);
        if ep.deletes && !repoll {
            self.deletes(store).await?;
        }
        if ep.incremental.is_some() {
            store.snap.cursor = max_cursor(store.snap.cursor.take(), self.cursor_max.as_deref());
        }
        // Keep the validators of the pages of this poll only.
        if ep.conditional {
            store.snap.pages = self.memos.into_iter().collect();
        }
        store.snap.polls = self.poll_no;
        store.compact()?;
        Ok(PollEnd::Complete {
            pages: self.page_no,
            emitted: self.stats.created + self.stats.updated + self.stats.deleted,
            repoll,
        })
    }

    /// Keys missing now and in the previous complete poll: deleted (written ahead,
    /// published, acknowledged, confirmed). Missing for the first time: remembered, deleted
    /// if the next complete poll misses them too.
    async fn deletes(&mut self, store: &mut Store) -> Result<(), SourceError> {
        let ep = self.ep;
        let mut missing = std::collections::BTreeSet::new();
        let mut gone: Vec<(String, KeyState)> = Vec::new();
        for (k, s) in store
            .snap
            .keys
            .iter()
            .filter(|(k, _)| !self.seen.contains(*k))
        {
            let Some(d) = decide_delete(s) else { continue };
            if store.snap.missing.contains(k) || s.hash.is_none() {
                gone.push((k.clone(), d));
            } else {
                missing.insert(k.clone());
            }
        }
        if !missing.is_empty() {
            debug!(endpoint = %ep.name, keys = missing.len(), "keys missing from this poll; deleted if the next one misses them too");
        }
        store.snap.missing = missing;
        if gone.is_empty() {
            return Ok(());
        }
        let outs = self.delete_events(&gone);
        self.stats.deleted = gone.len() as u64;
        store.stage(gone.into_iter().map(|(k, s)| (k, s, true)).collect())?;
        self.source
            .publish(self.ctx, &self.topic, &self.dlq, &outs)
            .await?
            .acknowledged()
            .await?;
        store.acknowledged()?;
        metrics::counter!("ingest_http_records_total", "endpoint" => ep.name.clone(), "op" => "d")
            .increment(self.stats.deleted);
        Ok(())
    }

    /// The `d` events of deleted keys (their `before`: the key fields).
    fn delete_events(&self, gone: &[(String, KeyState)]) -> Vec<Out> {
        let ep = self.ep;
        let ts_ms = now_ms();
        let mut outs = Vec::with_capacity(gone.len());
        for (k, st) in gone {
            let values: Vec<Value> = serde_json::from_str(k).unwrap_or_default();
            let kv: Vec<(&str, &Value)> = ep
                .key
                .iter()
                .map(String::as_str)
                .zip(values.iter())
                .collect();
            let before = key_image(&kv);
            let source_key = format!("{}:{k}:deleted:{}", ep.name, st.n);
            let src = ApiSource {
                version: CONTRACT_VERSION,
                connector: CONNECTOR,
                name: &self.source.prefix,
                entity: &ep.name,
                ts_ms,
                url: ep.url.as_str(),
                poll: self.poll_no,
                page: self.page_no,
                index: None,
                hash: None,
                seq: st.n,
                source_key: &source_key,
                snapshot: false,
            };
            outs.push(Out {
                dead: false,
                key: key_object(&kv),
                value: serde_json::to_vec(&Envelope {
                    before: Some(&before),
                    after: None,
                    op: Op::Delete,
                    source: &src,
                    ts_ms,
                })
                .expect("envelope serializes"),
            });
        }
        outs
    }
}

/// The key fields as a JSON object (the Kafka record key, and a delete's before image).
fn key_image(kv: &[(&str, &Value)]) -> Value {
    Value::Object(
        kv.iter()
            .map(|(k, v)| (k.to_string(), (*v).clone()))
            .collect(),
    )
}

fn key_object(kv: &[(&str, &Value)]) -> Vec<u8> {
    serde_json::to_vec(&key_image(kv)).expect("key serializes")
}

impl super::SourceBuilder for HttpSettings {
    fn build(&self, topic_prefix: &str) -> Result<Arc<dyn Source>, SourceError> {
        Ok(Arc::new(HttpSource::new(self.clone(), topic_prefix)?))
    }
}

impl Source for HttpSource {
    fn name(&self) -> &'static str {
        "http"
    }

    fn topics(&self) -> Vec<String> {
        let mut t: Vec<String> = self
            .settings
            .endpoints
            .iter()
            .filter_map(|e| data_topic(&self.prefix, CONNECTOR, &e.name).ok())
            .collect();
        t.extend(dead_letter_topic(&self.prefix).ok());
        t
    }

    fn run(&self, ctx: SourceContext) -> BoxFuture<'_, Result<(), SourceError>> {
        Box::pin(self.run_all(ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_order_and_lookback() {
        assert_eq!(cmp_cursor("9", "10"), Ordering::Less);
        assert_eq!(cmp_cursor("2024-01-09", "2024-01-10"), Ordering::Less);
        assert_eq!(
            max_cursor(Some("5".into()), Some("12")).as_deref(),
            Some("12")
        );
        assert_eq!(max_cursor(None, Some("a")).as_deref(), Some("a"));
        let d = |s| Lookback::parse(s).unwrap();
        assert_eq!(lower_cursor("2024-03-05", d("2d")), "2024-03-03");
        assert_eq!(lower_cursor("2024-03-05", d("1h")), "2024-03-04");
        assert_eq!(
            lower_cursor("2024-03-05T10:00:00Z", d("90m")),
            "2024-03-05T08:30:00Z"
        );
        assert_eq!(
            lower_cursor("2024-03-05T10:00:00+01:00", d("1h")),
            "2024-03-05T09:00:00+01:00"
        );
        assert_eq!(
            lower_cursor("2024-03-05 10:00:00", d("30s")),
            "2024-03-05 09:59:30"
        );
        assert_eq!(lower_cursor("1000", d("100")), "900");
        assert_eq!(lower_cursor("opaque", d("1d")), "opaque");
    }
}
