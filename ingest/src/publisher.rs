//! Kafka publisher shared by the sources: an idempotent producer (acks=all) keyed by primary
//! key, which waits when its queue is full instead of dropping, and hands back delivery
//! acknowledgements so that a source advances its position only after the broker has them.

use etl_contract::KafkaSettings;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot create the Kafka producer for {brokers}: {source}")]
    Create {
        brokers: String,
        #[source]
        source: KafkaError,
    },
    #[error("cannot create topic {topic}: {source}")]
    Topic {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("cannot enqueue a record for {topic}: {source}")]
    Enqueue {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("the broker did not acknowledge a record for {topic}: {source} (is the broker up? the source will retry from its last checkpoint)")]
    Delivery {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("the producer was closed before a delivery was acknowledged")]
    Canceled,
}

impl PublishError {
    /// Whether retrying later (from the last checkpoint) can succeed: broker-side and network
    /// problems are; a rejected configuration is not.
    pub fn retryable(&self) -> bool {
        !matches!(self, PublishError::Create { .. })
    }
}

/// Builds a librdkafka configuration from the shared `[kafka]` settings.
pub fn client_config(settings: &KafkaSettings) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &settings.brokers);
    for (k, v) in &settings.client {
        cfg.set(k, v);
    }
    cfg
}

#[derive(Clone)]
pub struct Publisher {
    producer: FutureProducer,
    settings: KafkaSettings,
    max_message_bytes: usize,
}

/// Acknowledgements of the records sent since the batch was created.
#[derive(Default)]
pub struct Batch {
    pending: Vec<(Arc<str>, DeliveryFuture)>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.pending.len()
    }
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
    /// Waits until the broker acknowledged every record of the batch.
    pub async fn acknowledged(self) -> Result<usize, PublishError> {
        let n = self.pending.len();
        for (topic, fut) in self.pending {
            match fut.await {
                Ok(Ok(_)) => {}
                Ok(Err((source, _))) => {
                    return Err(PublishError::Delivery {
                        topic: topic.to_string(),
                        source,
                    })
                }
                Err(_) => return Err(PublishError::Canceled),
            }
        }
        Ok(n)
    }
}

/// A chunk's records, enqueued: their acknowledgements, and how many went to the data
/// topic and to the dead-letter topic.
pub struct Enqueued {
    pub batch: Batch,
    pub rows: u64,
    pub dead: u64,
}

impl Publisher {
    pub fn new(settings: &KafkaSettings) -> Result<Self, PublishError> {
        let mut cfg = ClientConfig::new();
        cfg.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", "200000")
            .set("queue.buffering.max.kbytes", "262144")
            .set("message.timeout.ms", "120000")
            // Change events are verbose JSON (field names repeat in every record): lz4
            // shrinks them several times for little CPU, and brokers store batches as sent.
            .set("compression.type", "lz4");
        // The [kafka.client] settings come last, so that a user can override ours.
        cfg.set("bootstrap.servers", &settings.brokers);
        for (k, v) in &settings.client {
            cfg.set(k, v);
        }
        let producer: FutureProducer = cfg.create().map_err(|source| PublishError::Create {
            brokers: settings.brokers.clone(),
            source,
        })?;
        let max_message_bytes = settings
            .client
            .get("message.max.bytes")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000);
        Ok(Publisher {
            producer,
            settings: settings.clone(),
            max_message_bytes,
        })
    }

    /// Creates the topics that do not exist yet (an existing topic is left as it is).
    pub async fn ensure_topics(&self, topics: &[String]) -> Result<(), PublishError> {
        let admin: AdminClient<DefaultClientContext> = client_config(&self.settings)
            .create()
            .map_err(|source| PublishError::Create {
                brokers: self.settings.brokers.clone(),
                source,
            })?;
        let new: Vec<NewTopic> = topics
            .iter()
            .map(|t| NewTopic::new(t, self.settings.partitions, TopicReplication::Fixed(1)))
            .collect();
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = admin
            .create_topics(new.iter(), &opts)
            .await
            .map_err(|source| PublishError::Topic {
                topic: topics.join(","),
                source,
            })?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(PublishError::Topic {
                        topic,
                        source: KafkaError::AdminOp(code),
                    })
                }
            }
        }
        Ok(())
    }

    /// Enqueues one record, waiting while the producer queue is full, and adds its
    /// acknowledgement to `batch`.
    pub async fn send(
        &self,
        batch: &mut Batch,
        topic: &Arc<str>,
        key: &[u8],
        payload: &[u8],
    ) -> Result<(), PublishError> {
        self.send_to(batch, topic, None, key, payload).await
    }

    /// Enqueues a chunk's records in order, `(dead, key, value)` each: to `topic`, or to
    /// `dlq` for a dead letter. The caller waits for [`Enqueued::batch`]'s
    /// acknowledgement before it checkpoints past the chunk.
    pub async fn enqueue<'a>(
        &self,
        topic: &Arc<str>,
        dlq: &Arc<str>,
        records: impl IntoIterator<Item = (bool, &'a [u8], &'a [u8])>,
    ) -> Result<Enqueued, PublishError> {
        let mut batch = Batch::default();
        let (mut rows, mut dead) = (0u64, 0u64);
        for (is_dead, key, value) in records {
            let t = if is_dead {
                dead += 1;
                dlq
            } else {
                rows += 1;
                topic
            };
            self.send(&mut batch, t, key, value).await?;
        }
        Ok(Enqueued { batch, rows, dead })
    }

    /// Number of partitions of a topic, from the broker's metadata (retried briefly: a topic
    /// just created may not show its partitions yet).
    pub async fn partition_count(&self, topic: &str) -> Result<i32, PublishError> {
        for attempt in 0..50 {
            let producer = self.producer.clone();
            let t = topic.to_string();
            let md = tokio::task::spawn_blocking(move || {
                producer
                    .client()
                    .fetch_metadata(Some(&t), Duration::from_secs(10))
            })
            .await
            .map_err(|_| PublishError::Canceled)?;
            match md {
                Ok(md) => {
                    let n = md
                        .topics()
                        .iter()
                        .find(|m| m.name() == topic)
                        .map_or(0, |m| m.partitions().len());
                    if n > 0 {
                        return Ok(n as i32);
                    }
                }
                Err(source) if attempt == 49 => {
                    return Err(PublishError::Topic {
                        topic: topic.to_string(),
                        source,
                    })
                }
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(self.settings.partitions.max(1))
    }

    /// [`Publisher::send`] to a given partition (`None`: by key).
    pub async fn send_to(
        &self,
        batch: &mut Batch,
        topic: &Arc<str>,
        partition: Option<i32>,
        key: &[u8],
        payload: &[u8],
    ) -> Result<(), PublishError> {
        let mut record = FutureRecord::to(topic).key(key).payload(payload);
        if let Some(p) = partition {
            record = record.partition(p);
        }
        loop {
            match self.producer.send_result(record) {
                Ok(fut) => {
                    batch.pending.push((topic.clone(), fut));
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    metrics::counter!("ingest_producer_queue_full_waits_total").increment(1);
                    record = r;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err((source, _)) => {
                    return Err(PublishError::Enqueue {
                        topic: topic.to_string(),
                        source,
                    })
                }
            }
        }
    }

    /// Largest record (key + value + overhead) the producer accepts
    /// (`message.max.bytes`); a source dead-letters a larger one instead of failing on it.
    pub fn max_record_bytes(&self) -> usize {
        self.max_message_bytes.saturating_sub(1024)
    }

    /// Waits up to `timeout` for every queued record to be delivered.
    pub fn flush(&self, timeout: Duration) -> Result<(), PublishError> {
        self.producer
            .flush(timeout)
            .map_err(|source| PublishError::Delivery {
                topic: "*".into(),
                source,
            })
    }
}
