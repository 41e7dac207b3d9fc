//! `scribe bench local`: how fast the offline provider transcribes here.
//!
//! The figures an operator sizes a machine with (and issue 6 asks for):
//! the real-time factor (processing time / audio duration) of each sample
//! clip through the real plugin runtime (sandbox, memory cap, warm
//! instances), the one-off cost of a cold call (instantiate + model load),
//! and the process's peak memory. Calls run one at a time, so each figure
//! is one core's work.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::BenchError;
use crate::config::{Config, LOCAL_PROVIDER};
use crate::metrics::Metrics;
use crate::models;
use crate::plugins::types::TranscribeRequest;
use crate::plugins::{Plugins, Source};

/// Settings of the local-provider benchmark.
#[derive(Debug, Clone)]
pub struct LocalBench {
    /// The model (`base`, `tiny.en`).
    pub model: String,
    /// The folder of WAV clips to transcribe.
    pub audio: PathBuf,
    /// Warm calls measured per clip (the median is printed).
    pub rounds: usize,
    /// A build of the local provider to measure instead of the built-in one
    /// (installed under its name, so it gets the same grants).
    pub component: Option<PathBuf>,
}

/// One clip's figures.
struct ClipFigures {
    name: String,
    seconds: f64,
    median: Duration,
}

/// Runs the benchmark and prints its figures.
pub async fn run_local(settings: &LocalBench) -> Result<(), BenchError> {
    let dir = tempfile::tempdir()?;
    // The operator's settings (model dir, memory cap, plugin size limit),
    // with a throwaway data directory.
    let mut vars: HashMap<String, String> = std::env::vars().collect();
    vars.insert("SCRIBE_DATA_DIR".into(), dir.path().display().to_string());
    let config = Config::from_vars(vars)?;
    let spec = models::spec(&settings.model).map_err(|e| BenchError::Measure(e.to_string()))?;
    if !models::present(spec, &config.model_dir) {
        return Err(BenchError::Measure(format!(
            "model {} is not installed in {}: run `{}`",
            settings.model,
            config.model_dir.display(),
            models::fetch_command(&settings.model)
        )));
    }
    let clips = read_clips(&settings.audio)?;
    let plugins = Plugins::start(&config, Metrics::new()).await?;
    if let Some(path) = &settings.component {
        plugins.install(LOCAL_PROVIDER, std::fs::read(path)?, Source::File).await?;
    }
    let first = &clips[0];
    let cold = time_call(&plugins, &settings.model, &first.1).await?;
    let warm_first = time_call(&plugins, &settings.model, &first.1).await?;
    let mut figures = Vec::new();
    for (path, bytes) in &clips {
        let mut samples = Vec::with_capacity(settings.rounds);
        let mut seconds = 0.0;
        for _ in 0..settings.rounds.max(1) {
            let (elapsed, duration) = time_call(&plugins, &settings.model, bytes).await?;
            samples.push(elapsed);
            seconds = duration;
        }
        samples.sort();
        let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
        figures.push(ClipFigures { name, seconds, median: samples[samples.len() / 2] });
    }
    print_figures(settings, cold.0.saturating_sub(warm_first.0), &figures);
    Ok(())
}

/// The WAV files of `dir`, shortest first, with their bytes.
fn read_clips(dir: &Path) -> Result<Vec<(PathBuf, Vec<u8>)>, BenchError> {
    let mut clips = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("wav")) {
            let bytes = std::fs::read(&path)?;
            clips.push((path, bytes));
        }
    }
    if clips.is_empty() {
        return Err(BenchError::Measure(format!("no .wav file in {}", dir.display())));
    }
    clips.sort_by_key(|(_, bytes)| bytes.len());
    Ok(clips)
}

/// One transcription: how long it took and the audio's duration.
async fn time_call(plugins: &Plugins, model: &str, audio: &[u8]) -> Result<(Duration, f64), BenchError> {
    let request = TranscribeRequest {
        audio: audio.to_vec(),
        audio_format: "wav".into(),
        language: None,
        prompt: None,
        temperature: None,
        model: Some(model.to_string()),
    };
    let start = Instant::now();
    let transcript = plugins
        .transcribe(LOCAL_PROVIDER, request)
        .await
        .map_err(|e| BenchError::Measure(format!("{LOCAL_PROVIDER} failed: {e}")))?;
    let elapsed = start.elapsed();
    let duration = transcript.duration.ok_or_else(|| BenchError::Measure("the transcript has no duration".into()))?;
    Ok((elapsed, duration))
}

fn print_figures(settings: &LocalBench, cold_overhead: Duration, figures: &[ClipFigures]) {
    println!("{LOCAL_PROVIDER}, model {}, one call at a time (median of {} warm calls per clip):", settings.model, settings.rounds.max(1));
    for f in figures {
        println!(
            "  {:<24} {:>6.1} s of audio in {:>6.2} s: real-time factor {:.2}",
            f.name,
            f.seconds,
            f.median.as_secs_f64(),
            f.median.as_secs_f64() / f.seconds
        );
    }
    let audio: f64 = figures.iter().map(|f| f.seconds).sum();
    let busy: f64 = figures.iter().map(|f| f.median.as_secs_f64()).sum();
    println!("  all clips: {audio:.1} s of audio in {busy:.2} s: real-time factor {:.2}", busy / audio);
    println!("cold call overhead (instantiate + model load): {:.2} s", cold_overhead.as_secs_f64());
    match peak_rss_mib() {
        Some(mib) => println!("peak memory of this process (VmHWM): {mib} MiB"),
        None => println!("peak memory: unknown (no /proc/self/status)"),
    }
}

/// The process's peak resident set, from `/proc/self/status`.
fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}
