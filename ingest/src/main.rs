//! `ingest`: the source agents. Reads the `[kafka]` and `[ingest]` sections of the
//! configuration file and runs every configured source until SIGINT/SIGTERM.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use ingest::config::{ConfigError, Settings};
use ingest::ops::{self, Health, SourceState};
use ingest::publisher::Publisher;
use ingest::sources::{Source, SourceBuilder, SourceContext};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tracing::{error, info, warn};

/// mimalloc: the agent allocates small buffers at a high rate; glibc malloc showed as a
/// quarter of the CPU profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    version,
    about = "Source agents: capture changes (CSV folder, ...) and publish them to Kafka as change events"
)]
struct Cli {
    /// Configuration file (TOML); every key can be overridden with ETL_<SECTION>__<KEY>.
    #[arg(long, short, default_value = "config/etl.toml", env = "ETL_CONFIG")]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every configured source until SIGINT or SIGTERM.
    Run,
    /// Load and validate the configuration, print the topics, and exit.
    Check,
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,rdkafka=warn".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if std::env::var("ETL_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Exit status: 0, or [`etl_contract::CONFIG_ERROR_EXIT_CODE`] (2) for a configuration
/// mistake (one `error: <file or variable>: <what>` line per problem on stderr), or 1 for
/// any other failure (`error: <what>: <cause>` on one line).
#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    init_tracing();
    let settings = Settings::load(&cli.config).unwrap_or_else(|e| e.exit());
    let sources = build_sources(&settings).unwrap_or_else(|reason| {
        ConfigError::Invalid {
            path: cli.config.clone(),
            reason,
        }
        .exit()
    });
    let result = match cli.command {
        Command::Check => {
            for s in &sources {
                for t in s.topics() {
                    println!("{}\t{t}", s.name());
                }
            }
            Ok(())
        }
        Command::Run if sources.is_empty() => ConfigError::Invalid {
            path: cli.config.clone(),
            reason: "no source is configured: add an [ingest.csv], [ingest.mysql], [ingest.http] or [ingest.blob] section".into(),
        }
        .exit(),
        Command::Run => run(settings, sources).await,
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// The configured sources; their builders check what the settings' validation does not
/// (patterns, URLs, credentials), and refuse a section whose source this build left out.
fn build_sources(settings: &Settings) -> Result<Vec<Arc<dyn Source>>, String> {
    let ingest = &settings.ingest;
    let configured: [Option<&dyn SourceBuilder>; 4] = [
        ingest.csv.as_ref().map(|s| s as _),
        ingest.blob.as_ref().filter(|b| b.enabled).map(|s| s as _),
        ingest.mysql.as_ref().map(|s| s as _),
        ingest.http.as_ref().map(|s| s as _),
    ];
    configured
        .into_iter()
        .flatten()
        .map(|s| {
            s.build(&settings.kafka.topic_prefix)
                .map_err(|e| e.to_string())
        })
        .collect()
}

async fn run(settings: Settings, sources: Vec<Arc<dyn Source>>) -> anyhow::Result<()> {
    let metrics = etl_contract::install_metrics()?;
    let health = Health::default();
    let ops_addr = settings.ingest.metrics_addr;
    let ops_health = health.clone();
    tokio::spawn(async move {
        if let Err(e) =
            etl_contract::serve_ops(ops_addr, "ingest.metrics_addr", metrics, move || {
                ops_health.report()
            })
            .await
        {
            error!(error = %e, "ops endpoint failed");
            std::process::exit(2);
        }
    });
    let publisher = Publisher::new(&settings.kafka)?;
    let mut topics: Vec<String> = sources.iter().flat_map(|s| s.topics()).collect();
    // Sources share some topics (the dead-letter one); the broker rejects a request naming
    // a topic twice.
    topics.sort();
    topics.dedup();
    let mut delay = Duration::from_millis(500);
    loop {
        match publisher.ensure_topics(&topics).await {
            Ok(()) => break,
            Err(e) => {
                warn!(error = %e, brokers = %settings.kafka.brokers, "cannot create topics yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let ctx = SourceContext {
        publisher: publisher.clone(),
        topic_prefix: settings.kafka.topic_prefix.clone(),
        checkpoint_dir: settings.ingest.checkpoint_dir.clone(),
        liveness: ops::Liveness::default(),
        shutdown: stop_rx,
    };
    let mut tasks = Vec::new();
    for source in sources {
        let ctx = SourceContext {
            liveness: health.register(source.name()),
            ..ctx.clone()
        };
        tasks.push(tokio::spawn(supervise(source, ctx, health.clone())));
    }
    info!(topics = ?topics, "ingest running");
    shutdown_signal().await;
    info!("stopping: finishing the batches in flight");
    let _ = stop_tx.send(true);
    let mut failed = false;
    for t in tasks {
        if let Ok(Err(e)) = t.await {
            error!(error = %e, "source failed");
            failed = true;
        }
    }
    publisher
        .flush(Duration::from_secs(30))
        .context("flushing the producer at shutdown")?;
    anyhow::ensure!(
        !failed,
        "a source stopped on an error that retrying cannot fix"
    );
    Ok(())
}

/// Runs a source and restarts it with backoff after a retryable failure; it resumes from
/// its last checkpoint, so nothing is lost.
/// Its state is in `/health` all along.
async fn supervise(
    source: Arc<dyn Source>,
    ctx: SourceContext,
    health: Health,
) -> anyhow::Result<()> {
    let mut delay = Duration::from_millis(500);
    let name = source.name();
    loop {
        let started = std::time::Instant::now();
        let result = source.run(ctx.clone()).await;
        // A run that lasted a while was healthy: the next failure starts the backoff anew.
        if started.elapsed() > Duration::from_secs(60) {
            delay = Duration::from_millis(500);
        }
        match result {
            Ok(()) => {
                health.set(name, SourceState::Finished, None);
                return Ok(());
            }
            Err(e) if e.retryable() && !*ctx.shutdown.borrow() => {
                health.set(name, SourceState::Retrying, Some(e.to_string()));
                warn!(source = source.name(), error = %e, retry_in_ms = delay.as_millis() as u64, "source failed; restarting from its checkpoint");
                metrics::counter!("ingest_source_restarts_total", "source" => source.name())
                    .increment(1);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
            Err(e) => {
                health.set(name, SourceState::Stopped, Some(e.to_string()));
                error!(source = source.name(), error = %e, "source stopped");
                return Err(e.into());
            }
        }
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
