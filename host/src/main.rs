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
    /// Measures and prints figures.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
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
        Command::Bench { what: BenchCommand::Plugins { iterations, swaps, provider } } => {
            let settings = PluginBench { iterations, swaps, provider };
            bench::run_plugins(&settings).await.map_err(|e| anyhow::anyhow!("{e}"))
        }
    }
}

async fn serve() -> anyhow::Result<()> {
    let config = Config::from_env().context("configuration")?;
    let running = server::start(config).await?;
    let addr = running.addr;
    println!("scribe listening on http://{addr}");
    tokio::select! {
        result = running.wait() => result?,
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; stopping"),
    }
    Ok(())
}
