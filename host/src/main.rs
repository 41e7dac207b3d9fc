//! The `scribe` binary: parses the command line, reads the configuration,
//! and hands over to the library. Errors become messages here, at the edge.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use scribe_host::bench::{self, PluginBench};
use scribe_host::config::Config;
use scribe_host::server;

/// Scribe: a transcription job gateway with WebAssembly provider plugins.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Starts the HTTP server (configuration from the environment and
    /// SCRIBE_CONFIG).
    Serve,
    /// Manages users (works while a server runs on the same database).
    Users {
        #[command(subcommand)]
        what: UsersCommand,
    },
    /// Measures and prints figures.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Creates a user and prints its API key (as the last line; it is not
    /// stored and cannot be shown again).
    Add {
        /// The user's unique name.
        name: String,
    },
    /// Lists users.
    List,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Policy decision, provider instantiation and hot-swap latency.
    Plugins {
        /// Calls measured per figure.
        #[arg(long, default_value_t = 20_000)]
        iterations: usize,
        /// Hot swaps measured.
        #[arg(long, default_value_t = 20)]
        swaps: usize,
        /// A provider component to measure instantiation with.
        #[arg(long)]
        provider: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve => serve().await,
        Command::Users { what } => users(what).await,
        Command::Bench { what: BenchCommand::Plugins { iterations, swaps, provider } } => {
            let settings = PluginBench { iterations, swaps, provider };
            Ok(bench::run_plugins(&settings).await?)
        }
    }
}

async fn serve() -> anyhow::Result<()> {
    let config = Config::from_env().context("configuration")?;
    let running = server::start(config).await?;
    let addr = running.addr;
    println!("scribe listening on http://{addr}");
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; draining"),
        _ = terminate.recv() => tracing::info!("SIGTERM; draining"),
    }
    running.shutdown().await?;
    Ok(())
}

async fn users(command: UsersCommand) -> anyhow::Result<()> {
    let config = Config::from_env().context("configuration")?;
    let store = scribe_host::store::open(&config).await.context("opening the database")?;
    match command {
        UsersCommand::Add { name } => {
            let now = scribe_host::clock::now_ms();
            let (user, key) = scribe_host::users::add(&*store, &name, now).await?;
            println!("created user {} (id {})", user.name, user.id);
            println!("API key (shown once; send it as Authorization: Bearer <key>):");
            println!("{key}");
        }
        UsersCommand::List => {
            for user in store.list_users().await? {
                println!("{}\t{}\t{}", user.name, user.id, user.created_at_ms);
            }
        }
    }
    Ok(())
}
