//! `scribe-fakes`: the fake OpenAI and Replicate servers, started by hand,
//! so Scribe can be tried without provider keys.
//!
//! ```text
//! cargo run -p scribe-fakes --bin scribe-fakes
//! # then, in another shell, the variables it prints, and:
//! cargo run --release --bin scribe -- serve
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use scribe_fakes::openai::FakeOpenAi;
use scribe_fakes::replicate::FakeReplicate;

/// Fake OpenAI and Replicate transcription APIs on 127.0.0.1.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Where the fake OpenAI listens.
    #[arg(long, default_value = "127.0.0.1:9101")]
    openai: SocketAddr,
    /// Where the fake Replicate listens.
    #[arg(long, default_value = "127.0.0.1:9102")]
    replicate: SocketAddr,
    /// The API key the fake OpenAI accepts.
    #[arg(long, default_value = "sk-fake")]
    openai_key: String,
    /// The token the fake Replicate accepts.
    #[arg(long, default_value = "r8_fake")]
    replicate_token: String,
    /// The fake OpenAI's answer time, in ms.
    #[arg(long, default_value_t = 200)]
    latency_ms: u64,
    /// How long a fake Replicate prediction runs, in ms.
    #[arg(long, default_value_t = 1500)]
    run_time_ms: u64,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let openai = FakeOpenAi::start_on(args.openai, &args.openai_key).await?;
    openai.set_latency(Duration::from_millis(args.latency_ms));
    let replicate = FakeReplicate::start_on(args.replicate, &args.replicate_token).await?;
    replicate.set_run_time(Duration::from_millis(args.run_time_ms));
    println!("fake OpenAI on {} and fake Replicate on {}; point Scribe at them with:", openai.base_url(), replicate.base_url());
    println!("export OPENAI_API_KEY={} OPENAI_BASE_URL={}", args.openai_key, openai.base_url());
    println!("export REPLICATE_API_TOKEN={} REPLICATE_BASE_URL={}", args.replicate_token, replicate.base_url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
