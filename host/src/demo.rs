//! `scribe demo`: Scribe's main job on the embedded defaults, for a fresh
//! machine with no API key. It installs the offline model if the default
//! provider needs it, starts the server (SQLite in the data dir), creates a
//! user, transcribes the sample clips through the real HTTP path (the
//! command-line client against the server), prints the transcripts and
//! where the dashboard is, and keeps serving until Ctrl-C.
//!
//! Nothing here is a shortcut: the clips go through intake, the queue, the
//! limits, the cache and the sandbox like any client's files.

use std::path::{Path, PathBuf};

use crate::client::{self, Outcome, Submit};
use crate::config::{Config, LOCAL_PROVIDER};
use crate::{models, server, users};

/// What `scribe demo` was asked to do.
#[derive(Debug, Clone)]
pub struct Demo {
    /// The folder of sample clips (`examples/audio`).
    pub audio: PathBuf,
    /// Stop after printing, instead of serving until Ctrl-C.
    pub once: bool,
}

/// Why the demo stopped early.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The offline model could not be installed.
    #[error("installing the model: {0}")]
    Model(#[from] models::FetchError),
    /// The server did not start.
    #[error(transparent)]
    Server(#[from] server::ServerError),
    /// The demo user could not be created.
    #[error("creating the demo user: {0}")]
    User(String),
    /// The samples could not be copied.
    #[error("copying the sample clips from {dir}: {source}")]
    Samples {
        /// The samples folder.
        dir: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The client failed as a whole.
    #[error(transparent)]
    Client(#[from] client::ClientError),
    /// Some clips were not transcribed.
    #[error("{0} of the sample clips failed (see above)")]
    Failed(usize),
}

/// Runs the demo, printing as it goes.
pub async fn run(config: Config, demo: &Demo) -> Result<(), DemoError> {
    if config.default_provider() == LOCAL_PROVIDER {
        let model_dir = config.model_dir.clone();
        let progress = |step: &str| println!("model {}: {step}", models::DEFAULT_MODEL);
        tokio::task::block_in_place(|| models::fetch(models::DEFAULT_MODEL, &model_dir, None, &progress))?;
    }
    let work = config.data_dir.join("demo");
    let running = server::start(config).await?;
    let base = format!("http://{}", running.addr);
    let name = format!("demo-{}", crate::clock::now_ms());
    let (_, key) = users::add(&*running.store, &name, crate::clock::now_ms()).await.map_err(|e| DemoError::User(e.to_string()))?;
    let clips = copy_clips(&demo.audio, &work).map_err(|source| DemoError::Samples { dir: demo.audio.clone(), source })?;
    println!("transcribing {clips} sample clips from {} through {base} ...", demo.audio.display());
    let options = Submit {
        server: base.clone(),
        key: key.clone(),
        provider: None,
        format: "text".into(),
        paths: vec![work],
        concurrency: 4,
        no_wait: false,
    };
    let report = client::submit(&options).await?;
    for (file, outcome) in &report.files {
        let name = file.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        match outcome {
            Outcome::Written(path) => println!("\n{name}:\n{}", std::fs::read_to_string(path).unwrap_or_default().trim()),
            Outcome::Failed(reason) => println!("\n{name}: FAILED: {reason}"),
            Outcome::Submitted(id) => println!("\n{name}: job {id}"),
        }
    }
    let failed = report.failures().len();
    println!("\ndashboard: {base}/   (user {name}, API key {key})");
    if !demo.once && failed == 0 {
        println!("serving until Ctrl-C");
        let _ = tokio::signal::ctrl_c().await;
    }
    running.shutdown().await?;
    if failed > 0 {
        return Err(DemoError::Failed(failed));
    }
    Ok(())
}

/// Copies the `.wav` files of `from` into `to` (the client writes each
/// transcript beside its audio, and the samples' folder is not ours to
/// write in); how many.
fn copy_clips(from: &Path, to: &Path) -> std::io::Result<usize> {
    if to.exists() {
        std::fs::remove_dir_all(to)?;
    }
    std::fs::create_dir_all(to)?;
    let mut copied = 0;
    for entry in std::fs::read_dir(from)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "wav") {
            std::fs::copy(&path, to.join(path.file_name().unwrap_or_default()))?;
            copied += 1;
        }
    }
    Ok(copied)
}
