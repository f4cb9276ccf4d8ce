//! The change-event contract shared by the source agents (`ingest`) and the warehouse loader
//! (`transform`). It is documented for outside consumers in `docs/change-events.md`.
//!
//! * Topics are named `<prefix>.<source>.<entity>`; dead letters go to `<prefix>.dlq`.
//! * The record key is the source row's primary key as a JSON object.
//! * The record value is a Debezium-style envelope `{before, after, op, source, ts_ms}`.
//! * `source` always has `version`, `connector`, `name`, `entity` and `ts_ms`, plus the
//!   connector's position fields; [`source_key`] turns them into a stable identity that the
//!   warehouse uses to absorb an event published twice.
//! * The configuration file every service shares: its [`SECTIONS`], the shared `[kafka]`
//!   section and the strict loader ([`load_config`]).
//! * The `/health` and `/metrics` endpoints of every service ([`serve_ops`]).

mod envelope;
mod load;
mod ops;
pub mod settings;
mod topics;

pub use envelope::*;
pub use load::{
    load_config, load_config_str, load_config_with, ConfigError, ConfigProblem,
    CONFIG_ERROR_EXIT_CODE,
};
pub use ops::{install_metrics, serve_ops, HealthReport, OpsError};
pub use settings::*;
pub use topics::*;

/// Version of this contract, written into every `source.version`.
pub const CONTRACT_VERSION: &str = "1";
