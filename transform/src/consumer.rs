//! Kafka consumer group whose offsets live in PostgreSQL. Polling runs on a dedicated thread;
//! on every partition assignment the rebalance callback reads `pipeline.consumer_offsets`
//! and assigns the partitions at those offsets (the beginning when there is none), so the
//! warehouse, not Kafka, decides where consumption resumes. A stored offset past the end of
//! the broker's log (a broker that lost its state) is reported, forgotten, and the partition
//! is read again from its beginning: bronze keeps each event once by its source position.

use crate::sql::DbError;
use etl_contract::KafkaSettings;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

struct PgOffsets {
    status: Arc<crate::ops::ConsumerStatus>,
    handle: Handle,
    /// Own connection for the rebalance callback (the batch loop's is busy in a transaction);
    /// re-opened if it drops.
    client: std::sync::Mutex<Option<tokio_postgres::Client>>,
    url: String,
    group: String,
}

impl ClientContext for PgOffsets {}

impl PgOffsets {
    /// The callback's connection, (re)opened when needed.
    fn connected(
        &self,
    ) -> Result<std::sync::MutexGuard<'_, Option<tokio_postgres::Client>>, DbError> {
        let mut guard = self.client.lock().unwrap_or_else(|e| e.into_inner());
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            *guard = Some(self.handle.block_on(crate::sql::connect(&self.url))?);
        }
        Ok(guard)
    }

    fn stored(&self, tpl: &TopicPartitionList) -> Result<Vec<(String, i32, i64)>, DbError> {
        let topics: Vec<String> = tpl
            .elements()
            .iter()
            .map(|e| e.topic().to_string())
            .collect();
        let guard = self.connected()?;
        let client = guard.as_ref().expect("connected");
        let rows = self
            .handle
            .block_on(client.query(
                "SELECT topic, partition, next_offset FROM pipeline.consumer_offsets WHERE group_id = $1 AND topic = ANY($2)",
                &[&self.group, &topics],
            ))
            .map_err(DbError::query("reading pipeline.consumer_offsets"))?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    /// Forgets the stored offset of a partition whose broker log was lost, so that
    /// consumption restarts at the new log's beginning and stays there across restarts.
    fn forget(&self, topic: &str, partition: i32) -> Result<(), DbError> {
        let guard = self.connected()?;
        let client = guard.as_ref().expect("connected");
        self.handle
            .block_on(client.execute(
                "DELETE FROM pipeline.consumer_offsets WHERE group_id = $1 AND topic = $2 AND partition = $3",
                &[&self.group, &topic, &partition],
            ))
            .map_err(DbError::query("forgetting a lost partition's offset"))?;
        Ok(())
    }

    /// The offset to resume a partition at: the stored one, or the beginning when there is
    /// none or when the broker's log now ends before it (the broker lost its state:
    /// restarted without storage, or replaced). Re-reading is safe: bronze keeps each
    /// event once by its source position.
    fn resume_at(
        &self,
        consumer: &BaseConsumer<Self>,
        topic: &str,
        partition: i32,
        stored: Option<i64>,
    ) -> Offset {
        let Some(o) = stored else {
            return Offset::Beginning;
        };
        match consumer.fetch_watermarks(topic, partition, Duration::from_secs(10)) {
            Ok((_, high)) if o > high => {
                error!(
                    topic,
                    partition,
                    stored_offset = o,
                    broker_end = high,
                    "the broker's log ends before the offset stored in the warehouse: the broker lost its state (restarted without storage, or replaced). Reading this partition again from its beginning (bronze keeps each event once); events published to the lost log and never consumed must be re-published from their sources"
                );
                metrics::counter!("transform_broker_state_lost_total").increment(1);
                if let Err(e) = self.forget(topic, partition) {
                    error!(error = %e, topic, partition, "cannot forget the stale offset; it is ignored for this assignment only");
                }
                Offset::Beginning
            }
            Ok(_) => Offset::Offset(o),
            Err(e) => {
                warn!(error = %e, topic, partition, "cannot read the partition's end from the broker; resuming at the stored offset");
                Offset::Offset(o)
            }
        }
    }
}

impl ConsumerContext for PgOffsets {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let stored = loop {
                    match self.stored(tpl) {
                        Ok(s) => break s,
                        Err(e) => {
                            error!(error = %e, "cannot read stored offsets; retrying");
                            std::thread::sleep(Duration::from_secs(1));
                        }
                    }
                };
                let elems: Vec<(String, i32)> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect();
                for (topic, partition) in &elems {
                    let at = stored
                        .iter()
                        .find(|(t, p, _)| t == topic && p == partition)
                        .map(|(_, _, o)| *o);
                    let offset = self.resume_at(consumer, topic, *partition, at);
                    if let Err(e) = tpl.set_partition_offset(topic, *partition, offset) {
                        error!(error = %e, topic, partition, "cannot set the assigned offset");
                    }
                }
                info!(partitions = ?elems, "partitions assigned at the offsets stored in the warehouse");
                self.status.assigned(elems.len());
                if let Err(e) = consumer.assign(tpl) {
                    error!(error = %e, "assign failed");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                info!("partitions revoked");
                self.status.assigned(0);
                if let Err(e) = consumer.unassign() {
                    error!(error = %e, "unassign failed");
                }
            }
            other => {
                warn!(error = ?other, "rebalance error; dropping the assignment");
                let _ = consumer.unassign();
            }
        }
    }
}

/// How often the polling thread checks that the broker answers (for `/health`).
const PROBE_EVERY: Duration = Duration::from_secs(10);

/// Starts the polling thread. Batches of at most `max_records`, closed after `max_wait`,
/// arrive on the returned channel; the thread stops when `stop` is set or the channel closes.
pub fn start(
    kafka: &KafkaSettings,
    group: &str,
    warehouse_url: &str,
    max_records: usize,
    max_wait: Duration,
    stop: Arc<AtomicBool>,
    status: Arc<crate::ops::ConsumerStatus>,
) -> Result<
    (
        mpsc::Receiver<Vec<OwnedMessage>>,
        std::thread::JoinHandle<()>,
    ),
    KafkaError,
> {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &kafka.brokers);
    for (k, v) in &kafka.client {
        cfg.set(k, v);
    }
    cfg.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        .set("topic.metadata.refresh.interval.ms", "2000")
        .set("fetch.wait.max.ms", "50");
    let ctx = PgOffsets {
        status: status.clone(),
        handle: Handle::current(),
        client: std::sync::Mutex::new(None),
        url: warehouse_url.to_string(),
        group: group.to_string(),
    };
    let consumer: BaseConsumer<PgOffsets> = cfg.create_with_context(ctx)?;
    let pattern = etl_contract::topic_pattern(&kafka.topic_prefix);
    consumer.subscribe(&[&pattern])?;
    info!(pattern, group, "subscribed");
    let (tx, rx) = mpsc::channel::<Vec<OwnedMessage>>(2);
    let handle = std::thread::Builder::new()
        .name("kafka-consumer".into())
        .spawn(move || {
            let mut probed = Instant::now()
                .checked_sub(PROBE_EVERY)
                .unwrap_or_else(Instant::now);
            while !stop.load(Ordering::Relaxed) {
                // An idle consumer says nothing about the broker: ask it, now and then.
                if probed.elapsed() >= PROBE_EVERY {
                    probed = Instant::now();
                    match consumer.fetch_metadata(None, Duration::from_secs(2)) {
                        Ok(_) => status.polled(false),
                        Err(e) => status.error(format!("broker metadata request failed: {e}")),
                    }
                }
                let mut batch = Vec::new();
                let deadline = Instant::now() + max_wait;
                while batch.len() < max_records {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    match consumer.poll(left.min(Duration::from_millis(100))) {
                        Some(Ok(m)) => {
                            status.polled(true);
                            batch.push(m.detach())
                        }
                        Some(Err(e)) => {
                            status.error(e.to_string());
                            warn!(error = %e, "consumer error")
                        }
                        None => {
                            if stop.load(Ordering::Relaxed) {
                                break;
                            }
                        }
                    }
                }
                if !batch.is_empty() && tx.blocking_send(batch).is_err() {
                    break;
                }
            }
            consumer.unsubscribe();
            status.stopped();
            info!("consumer thread stopped");
        })
        .expect("spawn consumer thread");
    Ok((rx, handle))
}

/// Next offsets to store, per (topic, partition), for a batch.
pub fn next_offsets(batch: &[OwnedMessage]) -> Vec<(String, i32, i64)> {
    let mut m: std::collections::BTreeMap<(String, i32), i64> = Default::default();
    for msg in batch {
        let e = m
            .entry((msg.topic().to_string(), msg.partition()))
            .or_insert(0);
        *e = (*e).max(msg.offset() + 1);
    }
    m.into_iter().map(|((t, p), o)| (t, p, o)).collect()
}
