//! `dashboard`: serves the analytics app (pages and REST API) and manages its users.

use std::{io::BufRead, path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::{Parser, Subcommand};
use dashboard::{
    model::Role,
    ssr::{auth::users, db, serve, Mode, Settings},
};
use tracing_subscriber::EnvFilter;

/// The analytics app over the warehouse's gold layer: pages, REST API, users.
///
/// Settings come from the repository's TOML file (`mode`, `[warehouse] url`, `[dashboard]
/// addr, refresh_ms, site_root, secret, session_hours, token_minutes, ...`), overridden by
/// ETL_<SECTION>__<KEY> environment variables (ETL_WAREHOUSE__URL, ETL_DASHBOARD__ADDR,
/// ETL_DASHBOARD__SECRET, ETL_MODE). LEPTOS_SITE_ROOT, if set, is the directory holding the
/// client bundle (pkg/) and style.css.
#[derive(Debug, Parser)]
#[command(name = "dashboard", version, about, long_about)]
struct Cli {
    /// Configuration file.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "config/etl.toml",
        global = true
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the pages and the API (the default).
    Serve,
    /// Check the configuration and the warehouse connection, then exit.
    Check,
    /// Manage the users of the pages and the API (table app.users).
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add a user. The password is read from stdin (one line), or asked for on a terminal.
    Add {
        username: String,
        /// viewer (pages), analyst (+ detail lists and exports), admin (+ raw records, replay, users).
        #[arg(long, default_value = "viewer", value_parser = parse_role)]
        role: Role,
    },
    /// Set a new password (from stdin, or asked for); sessions and tokens issued before stop working.
    Passwd {
        username: String,
        /// Change the role too.
        #[arg(long, value_parser = parse_role)]
        role: Option<Role>,
    },
    /// Change a user's role only.
    Role {
        username: String,
        #[arg(value_parser = parse_role)]
        role: Role,
    },
    /// Remove a user.
    Remove { username: String },
    /// List the users.
    List,
}

fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text).ok_or_else(|| format!("unknown role {text:?}: use viewer, analyst or admin"))
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
        .with_writer(std::io::stderr)
        .init();
    let settings = Settings::load(&cli.config, explicit)
        .with_context(|| format!("loading configuration from {}", cli.config.display()))?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            if settings.mode == Mode::Production {
                tracing::info!("production mode");
            }
            serve(&settings).await.context("dashboard server")?;
        }
        Command::Check => {
            let pool = db::pool(&settings.warehouse.url, 1)?;
            db::ping(&pool)
                .await
                .map_err(|e| anyhow::anyhow!("the warehouse does not answer: {e}"))?;
            println!(
                "configuration ok; warehouse answers; mode {:?}",
                settings.mode
            );
        }
        Command::User(cmd) => user(&settings, cmd).await?,
    }
    Ok(())
}

fn read_password(prompt: &str) -> anyhow::Result<String> {
    let password = if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        let first = rpassword::prompt_password(prompt)?;
        let again = rpassword::prompt_password("again: ")?;
        anyhow::ensure!(first == again, "the two passwords differ");
        first
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    anyhow::ensure!(!password.is_empty(), "no password given (pipe it on stdin)");
    Ok(password)
}

async fn user(settings: &Settings, cmd: UserCommand) -> anyhow::Result<()> {
    let pool = db::pool(&settings.warehouse.url, 1)?;
    let client = users::client(&pool).await?;
    users::ensure_schema(&client).await?;
    match cmd {
        UserCommand::Add { username, role } => {
            let password = read_password(&format!("password for {username}: "))?;
            users::add(&client, &username, role, &password).await?;
            println!("added {username} ({role})");
        }
        UserCommand::Passwd { username, role } => {
            let password = read_password(&format!("new password for {username}: "))?;
            users::passwd(&client, &username, Some(&password), role).await?;
            println!("changed the password of {username}; their sessions and tokens were revoked");
        }
        UserCommand::Role { username, role } => {
            users::passwd(&client, &username, None, Some(role)).await?;
            println!("{username} is now {role}");
        }
        UserCommand::Remove { username } => {
            users::remove(&client, &username).await?;
            println!("removed {username}");
        }
        UserCommand::List => {
            println!(
                "{:<32} {:<8} {:<17} last login",
                "username", "role", "created (UTC)"
            );
            for [name, role, created, last] in users::list(&client).await? {
                println!("{name:<32} {role:<8} {created:<17} {last}");
            }
        }
    }
    Ok(())
}
