//! `dashboard`: serves the live sales dashboard.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::Parser;
use dashboard::ssr::{serve, Mode, Settings};
use tracing_subscriber::EnvFilter;

/// Live sales dashboard over the warehouse's gold layer.
///
/// Settings come from the repository's TOML file (`mode`, `[warehouse] url`, `[dashboard]
/// addr, refresh_ms, site_root`), overridden by ETL_<SECTION>__<KEY> environment variables
/// (ETL_WAREHOUSE__URL, ETL_DASHBOARD__ADDR, ETL_DASHBOARD__REFRESH_MS, ETL_MODE).
/// LEPTOS_SITE_ROOT, if set, is the directory holding the client bundle (pkg/) and style.css.
#[derive(Debug, Parser)]
#[command(name = "dashboard", version, about, long_about)]
struct Cli {
    /// Configuration file.
    #[arg(long, value_name = "PATH", default_value = "config/etl.toml")]
    config: PathBuf,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dashboard: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let explicit = std::env::args_os().any(|a| a.to_string_lossy().starts_with("--config"));
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let settings = Settings::load(&cli.config, explicit)
        .with_context(|| format!("loading configuration from {}", cli.config.display()))?;
    if settings.mode == Mode::Production {
        tracing::info!("production mode");
    }
    serve(&settings).await.context("dashboard server")?;
    Ok(())
}
