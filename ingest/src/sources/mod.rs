//! One module per source, behind the small [`Source`] trait. A source owns its checkpoint and
//! advances it only after the broker acknowledged what it published.

pub mod blob;
pub mod csv;
pub mod http;
pub mod mysql;

use crate::ops::Liveness;
use crate::publisher::{PublishError, Publisher};
use futures::future::BoxFuture;
use std::path::PathBuf;
use tokio::sync::watch;

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
