//! The command-line client (`scribe submit`, `scribe status`): a user
//! transcribes a folder of files against a Scribe server, over the same
//! HTTP API any client uses.
//!
//! Files upload a few at a time, then each job is followed until it ends;
//! a progress bar counts uploaded, queued, running, done and failed; every
//! transcript is written beside its audio (`talk.wav` -> `talk.srt`), and
//! the files that failed are listed with their reasons.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

/// Audio file extensions a folder is searched for.
const AUDIO_EXTENSIONS: &[&str] = &["flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "oga", "ogg", "wav", "webm"];

/// How often a waiting client asks about its jobs.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// What `scribe submit` was asked to do.
#[derive(Debug, Clone)]
pub struct Submit {
    /// The server's base URL (`SCRIBE_URL`).
    pub server: String,
    /// The user's API key (`SCRIBE_API_KEY`).
    pub key: String,
    /// The provider, if not the server's default.
    pub provider: Option<String>,
    /// `json`, `text`, `srt`, `vtt` or `verbose_json`.
    pub format: String,
    /// Files, and folders to take every audio file from.
    pub paths: Vec<PathBuf>,
    /// Uploads at once.
    pub concurrency: usize,
    /// Print the job ids and stop, instead of waiting.
    pub no_wait: bool,
}

/// How one file ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The transcript was written here.
    Written(PathBuf),
    /// Submitted; not waited for (`--no-wait`).
    Submitted(String),
    /// It failed, for this reason.
    Failed(String),
}

/// Every file and how it ended.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// (audio file, outcome), in the order the files were given.
    pub files: Vec<(PathBuf, Outcome)>,
}

impl Report {
    /// The files that failed.
    pub fn failures(&self) -> Vec<&(PathBuf, Outcome)> {
        self.files.iter().filter(|(_, o)| matches!(o, Outcome::Failed(_))).collect()
    }
}

/// The client could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A path could not be read.
    #[error("{path}: {source}")]
    Path {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No audio file was found in the paths given.
    #[error("no audio files found (looked for: {})", AUDIO_EXTENSIONS.join(", "))]
    NoFiles,
    /// The server could not be asked.
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    /// The server refused.
    #[error("the server answered {status}: {detail}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// Its problem detail.
        detail: String,
    },
}

/// Runs `scribe submit`.
pub async fn submit(options: &Submit) -> Result<Report, ClientError> {
    let files = audio_files(&options.paths)?;
    let client = reqwest::Client::new();
    let bar = Arc::new(ProgressBar::new(files.len() as u64));
    bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}").unwrap_or_else(|_| ProgressStyle::default_bar()));
    let counts = Arc::new(std::sync::Mutex::new(Counts::default()));
    let outcomes: Vec<(PathBuf, Outcome)> = stream::iter(files)
        .map(|file| {
            let (client, bar, counts) = (client.clone(), bar.clone(), counts.clone());
            async move {
                let outcome = one_file(&client, options, &file, &bar, &counts).await;
                (file, outcome)
            }
        })
        .buffered(options.concurrency.max(1))
        .collect()
        .await;
    bar.finish();
    Ok(Report { files: outcomes })
}

/// Progress counts shown in the bar's message.
#[derive(Default)]
struct Counts {
    uploaded: u64,
    queued: u64,
    running: u64,
    done: u64,
    failed: u64,
}

impl Counts {
    fn show(&self, bar: &ProgressBar) {
        bar.set_message(format!(
            "uploaded {} · queued {} · running {} · done {} · failed {}",
            self.uploaded, self.queued, self.running, self.done, self.failed
        ));
    }
}

/// Uploads, follows and writes one file.
async fn one_file(
    client: &reqwest::Client,
    options: &Submit,
    file: &Path,
    bar: &ProgressBar,
    counts: &std::sync::Mutex<Counts>,
) -> Outcome {
    let update = |change: &dyn Fn(&mut Counts)| {
        let mut c = counts.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut c);
        c.show(bar);
    };
    let outcome = match upload(client, options, file).await {
        Err(reason) => Outcome::Failed(reason),
        Ok(id) if options.no_wait => Outcome::Submitted(id),
        Ok(id) => {
            update(&|c| {
                c.uploaded += 1;
                c.queued += 1;
            });
            let outcome = follow(client, options, &id, &update).await;
            match outcome {
                Ok(()) => write_transcript(client, options, &id, file).await,
                Err(reason) => Outcome::Failed(reason),
            }
        }
    };
    match &outcome {
        Outcome::Failed(_) => update(&|c| c.failed += 1),
        _ => update(&|c| c.done += 1),
    }
    bar.inc(1);
    outcome
}

async fn upload(client: &reqwest::Client, options: &Submit, file: &Path) -> Result<String, String> {
    let bytes = tokio::fs::read(file).await.map_err(|e| format!("cannot read it: {e}"))?;
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "audio".into());
    let mut form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(bytes).file_name(name))
        .text("response_format", options.format.clone());
    if let Some(provider) = &options.provider {
        form = form.text("provider", provider.clone());
    }
    let url = format!("{}/v1/jobs", options.server.trim_end_matches('/'));
    let response = client.post(url).bearer_auth(&options.key).multipart(form).send().await.map_err(|e| e.to_string())?;
    let job = answer(response).await.map_err(|e| e.to_string())?;
    job["id"].as_str().map(str::to_string).ok_or_else(|| "the server's answer has no job id".into())
}

/// Polls the job until it ends; `Err` with the job's error if it failed.
async fn follow(client: &reqwest::Client, options: &Submit, id: &str, update: &dyn Fn(&dyn Fn(&mut Counts))) -> Result<(), String> {
    let url = format!("{}/v1/jobs/{id}", options.server.trim_end_matches('/'));
    let mut running = false;
    loop {
        let response = client.get(&url).bearer_auth(&options.key).send().await.map_err(|e| e.to_string())?;
        let job = answer(response).await.map_err(|e| e.to_string())?;
        match job["status"].as_str().unwrap_or("") {
            "succeeded" => return Ok(()),
            "failed" | "canceled" => {
                let reason = job["error"]["message"].as_str().unwrap_or("no reason given");
                return Err(format!("job {id} {}: {reason}", job["status"].as_str().unwrap_or("")));
            }
            "running" if !running => {
                running = true;
                update(&|c| {
                    c.queued = c.queued.saturating_sub(1);
                    c.running += 1;
                });
            }
            _ => {}
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Fetches the transcript and writes it beside `file`.
async fn write_transcript(client: &reqwest::Client, options: &Submit, id: &str, file: &Path) -> Outcome {
    let url = format!("{}/v1/jobs/{id}/transcript?format={}", options.server.trim_end_matches('/'), options.format);
    let body = match client.get(url).bearer_auth(&options.key).send().await {
        Ok(response) if response.status().is_success() => response.bytes().await.map_err(|e| e.to_string()),
        Ok(response) => Err(answer(response).await.err().map_or("unexpected answer".into(), |e| e.to_string())),
        Err(e) => Err(e.to_string()),
    };
    let target = file.with_extension(extension_for(&options.format));
    match body {
        Ok(bytes) => match tokio::fs::write(&target, &bytes).await {
            Ok(()) => Outcome::Written(target),
            Err(e) => Outcome::Failed(format!("cannot write {}: {e}", target.display())),
        },
        Err(reason) => Outcome::Failed(reason),
    }
}

/// The file extension of a transcript format.
pub fn extension_for(format: &str) -> &'static str {
    match format {
        "srt" => "srt",
        "vtt" => "vtt",
        "text" => "txt",
        _ => "json",
    }
}

/// A 2xx answer's JSON, or the refusal with the problem's detail.
async fn answer(response: reqwest::Response) -> Result<Value, ClientError> {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(body);
    }
    let detail = body["detail"].as_str().or(body["error"]["message"].as_str()).unwrap_or("no details").to_string();
    Err(ClientError::Refused { status: status.as_u16(), detail })
}

/// The audio files among `paths`: files as given, folders searched (not
/// recursively) for audio extensions, sorted.
fn audio_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ClientError> {
    let mut files = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|source| ClientError::Path { path: path.clone(), source })?;
        if meta.is_file() {
            files.push(path.clone());
            continue;
        }
        let entries = std::fs::read_dir(path).map_err(|source| ClientError::Path { path: path.clone(), source })?;
        let mut found: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .filter(|p| p.extension().and_then(|e| e.to_str()).is_some_and(|e| AUDIO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str())))
            .collect();
        found.sort();
        files.extend(found);
    }
    if files.is_empty() {
        return Err(ClientError::NoFiles);
    }
    Ok(files)
}

/// Runs `scribe status`: the queue-status document, for a terminal.
pub async fn status(server: &str) -> Result<String, ClientError> {
    let url = format!("{}/api/queue-status", server.trim_end_matches('/'));
    let doc = answer(reqwest::get(url).await?).await?;
    let (q, s, d, c) = (&doc["queue"], &doc["system"], &doc["database"], &doc["cache"]);
    Ok(format!(
        "queue     {} queued, {} running, {} calls this minute (limit {})\n\
         system    {:.0} ms average call, {:.1} % errors, {} submits/min, {:.0} MiB, {} active users\n\
         database  {} of {} connections in use\n\
         cache     {} hits, {} misses ({:.0} %)",
        q["queueLength"], q["processing"], q["requestsThisMinute"], q["rateLimitPerMinute"],
        s["averageResponseTime"].as_f64().unwrap_or(0.0),
        s["errorRate"].as_f64().unwrap_or(0.0) * 100.0,
        s["requestsPerMinute"],
        s["memoryUsage"].as_f64().unwrap_or(0.0) / 1_048_576.0,
        s["activeUsers"],
        d["current"], d["max"],
        c["hits"], c["misses"], c["hitRate"].as_f64().unwrap_or(0.0) * 100.0,
    ))
}
