//! The transform service: consumes change events from Kafka and builds the warehouse's
//! medallion layers in PostgreSQL.
//!
//! * [`consumer`]: a Kafka consumer group whose offsets live in PostgreSQL
//!   (`pipeline.consumer_offsets`), sought on every partition assignment.
//! * [`bronze`]: every event, append-only, loaded with binary COPY; the unique source key
//!   turns a re-published event into a no-op.
//! * [`silver`]: typed, cleaned, deduplicated current state, one declared model per entity;
//!   rejected rows go to `silver.quarantine`.
//! * [`gold`]: the star schema, datamarts and KPIs as stored tables kept exact in each batch's
//!   transaction; [`jobs`]: the scheduled analytics.
//!
//! One consumed batch is one PostgreSQL transaction: bronze rows, silver changes and the
//! consumer offsets commit together, so a crash at any point replays exactly what was not
//! committed.

pub mod bronze;
pub mod config;
pub mod consumer;
pub mod gold;
pub mod jobs;
pub mod migrate;
pub mod ops;
pub mod pipeline;
pub mod silver;
pub mod sql;
