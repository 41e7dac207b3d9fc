//! `scribe bench plugins`: what a plugin call costs here.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{BenchError, Summary};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::plugins::types::{Candidate, Priority, RetryInput};
use crate::plugins::{Plugins, ProviderError, Source, World};

/// Settings of the plugin benchmark.
#[derive(Debug, Clone)]
pub struct PluginBench {
    /// Calls measured per figure.
    pub iterations: usize,
    /// Hot swaps measured.
    pub swaps: usize,
    /// A provider component to measure instantiation with (else the first
    /// serving provider, if any).
    pub provider: Option<PathBuf>,
}

/// Runs the benchmark in a temporary data directory and prints its figures.
pub async fn run_plugins(settings: &PluginBench) -> Result<(), BenchError> {
    let dir = tempfile::tempdir()?;
    let vars = HashMap::from([("SCRIBE_DATA_DIR".to_string(), dir.path().display().to_string())]);
    let config = Config::from_vars(vars)?;
    let plugins = Plugins::start(&config, Metrics::new()).await?;
    let _watcher = plugins.watch()?;

    let retry = retry_decisions(&plugins, settings.iterations).await;
    print_us("retry decision (fresh pooled instance per call)", &retry);
    let rank = rank_decisions(&plugins, settings.iterations).await;
    print_us("priority ranking of 10 users (fresh pooled instance)", &rank);
    match provider_name(&plugins, settings).await? {
        Some(name) => {
            plugins.probe_provider(&name).await?;
            let instantiations = time_each(settings.iterations, || plugins.probe_provider(&name)).await;
            print_us(&format!("provider instantiation + info() ({name})"), &instantiations);
        }
        None => println!("provider instantiation: skipped (no provider loaded; pass --provider FILE)"),
    }
    let swaps = hot_swaps(&plugins, &config.plugin_dir, settings.swaps).await?;
    println!(
        "hot swap, file renamed into the plugin dir -> first call served by it: median {:.1} ms, p99 {:.1} ms ({} swaps)",
        swaps.median.as_secs_f64() * 1e3,
        swaps.p99.as_secs_f64() * 1e3,
        settings.swaps
    );
    Ok(())
}

fn print_us(what: &str, s: &Summary) {
    println!("{what}: median {:.1} us, p99 {:.1} us", s.median.as_secs_f64() * 1e6, s.p99.as_secs_f64() * 1e6);
}

/// Times `n` sequential calls of `call`, one sample each.
async fn time_each<F, Fut>(n: usize, mut call: F) -> Summary
where
    F: FnMut() -> Fut,
    Fut: std::future::Future,
{
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        std::hint::black_box(call().await);
        samples.push(start.elapsed());
    }
    Summary::of(samples)
}

async fn retry_decisions(plugins: &Plugins, n: usize) -> Summary {
    let input = RetryInput { attempt: 2, error: ProviderError::Transient("bench".into()), elapsed_ms: 10 };
    time_each(n, || plugins.decide_retry(&input)).await
}

async fn rank_decisions(plugins: &Plugins, n: usize) -> Summary {
    let candidates: Vec<Candidate> = (0..10u32)
        .map(|i| Candidate {
            job_id: format!("job-{i}"),
            user: format!("user-{i}"),
            priority: if i % 3 == 0 { Priority::High } else { Priority::Normal },
            submitted_at_ms: u64::from(i),
            user_running: i % 2,
            user_queued: 100,
            user_last_dispatch_ms: Some(u64::from(i) * 7),
        })
        .collect();
    time_each(n, || plugins.rank(&candidates)).await
}

async fn provider_name(plugins: &Plugins, settings: &PluginBench) -> Result<Option<String>, BenchError> {
    if let Some(path) = &settings.provider {
        plugins.install("bench-provider", std::fs::read(path)?, Source::File).await?;
        return Ok(Some("bench-provider".into()));
    }
    Ok(plugins.list().into_iter().find(|p| p.world == World::Provider).map(|p| p.name))
}

/// Writes new versions of the built-in retry policy into the plugin
/// directory (same code, a different custom section, so a new content
/// hash) and times each until a decision is served by it.
async fn hot_swaps(plugins: &Arc<Plugins>, dir: &std::path::Path, n: usize) -> Result<Summary, BenchError> {
    let base = crate::plugins::builtin_bytes("retry-backoff")
        .ok_or_else(|| BenchError::Measure("retry-backoff is not built in".into()))?;
    let input = RetryInput { attempt: 1, error: ProviderError::Transient("bench".into()), elapsed_ms: 0 };
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let bytes = with_custom_section(base, &format!("bench-{i}-{}", std::process::id()));
        let hash = crate::plugins::content_hash(&bytes);
        let tmp = dir.join(".retry-backoff.wasm.tmp");
        std::fs::write(&tmp, &bytes)?;
        let start = Instant::now();
        std::fs::rename(&tmp, dir.join("retry-backoff.wasm"))?;
        loop {
            if plugins.get("retry-backoff").is_some_and(|l| l.content_hash == hash) {
                plugins.decide_retry(&input).await;
                break;
            }
            if start.elapsed() > Duration::from_secs(30) {
                return Err(BenchError::Measure("a new version was not published within 30 s".into()));
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        samples.push(start.elapsed());
    }
    Ok(Summary::of(samples))
}

/// `bytes` with a custom section appended: the same component, another hash.
pub fn with_custom_section(bytes: &[u8], name: &str) -> Vec<u8> {
    let mut payload = leb128(name.len() as u64);
    payload.extend_from_slice(name.as_bytes());
    let mut out = bytes.to_vec();
    out.push(0);
    out.extend(leb128(payload.len() as u64));
    out.extend(payload);
    out
}

fn leb128(mut value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}
