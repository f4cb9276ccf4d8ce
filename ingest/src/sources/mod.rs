//! One module per source, behind the small [`Source`] trait. A source owns its checkpoint and
//! advances it only after the broker acknowledged what it published.

//!
//! Each source is behind its Cargo feature (`source-csv`, `source-mysql`, `source-http`,
//! `source-blob`; the default build has all four). Its settings are compiled in every build,
//! so that one configuration file parses everywhere: without the feature, the module is
//! only its settings, and [`SourceBuilder::build`] refuses a configured section.

#[cfg(feature = "source-blob")]
pub mod blob;
#[cfg(feature = "source-csv")]
pub mod csv;
#[cfg(feature = "source-http")]
pub mod http;
#[cfg(feature = "source-mysql")]
pub mod mysql;

use crate::ops::Liveness;
use crate::publisher::{PublishError, Publisher};
use futures::future::BoxFuture;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::watch;

/// A source's configuration section turned into the running source (as Vector's
/// `SourceConfig::build`); each source module implements it for its settings, and `main`
/// builds every configured section the same way.
pub trait SourceBuilder {
    /// Checks what the settings' validation does not (patterns, URLs, credentials) and
    /// builds the source publishing to topics under `topic_prefix`.
    fn build(&self, topic_prefix: &str) -> Result<Arc<dyn Source>, SourceError>;
}

/// The error of a configured section whose source this build does not have.
pub fn not_compiled(source: &str) -> SourceError {
    SourceError::Config(format!(
        "[ingest.{source}] is configured but this ingest was built without the source-{source} feature; rebuild with --features source-{source} or remove the section"
    ))
}

/// [`SourceBuilder`] of a source left out of the build: `build` says so. (Unused when
/// every source is in.)
#[allow(unused_macros)]
macro_rules! not_compiled_builder {
    ($settings:ty, $source:literal) => {
        impl $crate::sources::SourceBuilder for $settings {
            fn build(
                &self,
                _topic_prefix: &str,
            ) -> Result<std::sync::Arc<dyn $crate::sources::Source>, $crate::sources::SourceError>
            {
                Err($crate::sources::not_compiled($source))
            }
        }
    };
}

/// Without `source-blob`: the settings of `[ingest.blob]` alone.
#[cfg(not(feature = "source-blob"))]
pub mod blob {
    pub mod settings;
    pub use settings::{BlobSettings, BlobSourceSettings, Partitioning};
    not_compiled_builder!(BlobSettings, "blob");
}

/// Without `source-csv`: the blob source still reads CSV blobs with its record splitter
/// (the settings of `[ingest.csv]` are in [`crate::config`]).
#[cfg(not(feature = "source-csv"))]
pub mod csv {
    #[cfg(feature = "source-blob")]
    pub(crate) mod records;
    not_compiled_builder!(crate::config::CsvSettings, "csv");
}

/// Without `source-http`: the settings of `[ingest.http]` alone.
#[cfg(not(feature = "source-http"))]
pub mod http {
    pub mod settings;
    pub use settings::{Endpoint, HttpSettings, CONNECTOR};
    not_compiled_builder!(HttpSettings, "http");
}

/// Without `source-mysql`: the settings of `[ingest.mysql]` alone.
#[cfg(not(feature = "source-mysql"))]
pub mod mysql {
    pub mod settings;
    pub use settings::{MysqlSettings, ResumeMode, SnapshotMode};
    not_compiled_builder!(MysqlSettings, "mysql");
}

/// What every source gets from the agent.
#[derive(Clone)]
pub struct SourceContext {
    pub publisher: Publisher,
    pub topic_prefix: String,
    pub checkpoint_dir: PathBuf,
    pub liveness: Liveness,
    /// Turns `true` when the agent is asked to stop; a source then finishes the batch in
    /// flight, saves its checkpoint and returns.
    pub shutdown: watch::Receiver<bool>,
}

/// Errors of a source, with the hint a supervisor needs: retry later, or stop.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
}

impl SourceError {
    pub fn retryable(&self) -> bool {
        match self {
            SourceError::Publish(e) => e.retryable(),
            SourceError::Io { .. } => true,
            SourceError::Checkpoint(_) | SourceError::Config(_) => false,
        }
    }
}

pub trait Source: Send + Sync {
    /// Name for logs and metrics, e.g. `csv`.
    fn name(&self) -> &'static str;
    /// Topics this source publishes to (created at start if missing).
    fn topics(&self) -> Vec<String>;
    /// Runs until shutdown (Ok) or a failure (Err); the supervisor restarts a retryable one.
    fn run(&self, ctx: SourceContext) -> BoxFuture<'_, Result<(), SourceError>>;
}
