//! Source agents: each source captures changes and publishes them to Kafka as change events
//! (see the `etl-contract` crate). A source's position advances only after the broker
//! acknowledged the records it covers.

pub mod checkpoint;
pub mod config;
pub mod ops;
pub mod publisher;
pub mod sources;
