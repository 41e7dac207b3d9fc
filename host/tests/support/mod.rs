//! Running the real `scribe` binary in tests: its environment, `serve`
//! with the address it prints, `users add`, and the jobs API calls the
//! process tests make.

#![allow(dead_code)] // each test file uses its own part of this

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use scribe_tests::wav;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A `scribe` process and the address it printed.
pub struct Scribe {
    /// The process (killed when dropped).
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

/// The environment of every `scribe` run here: nothing inherited but PATH;
/// data in `data`, a 2 s lease, OpenAI at `openai`, 5 calls at a time at
/// 6000 a minute, then `env` on top.
pub fn command(data: &Path, openai: &str, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_scribe"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .env("SCRIBE_DATA_DIR", data)
        .env("SCRIBE_LISTEN", "127.0.0.1:0")
        .env("SCRIBE_LEASE_SECONDS", "2")
        .env("OPENAI_API_KEY", "sk-test")
        .env("OPENAI_BASE_URL", openai)
        .env("TRANSCRIPTION_RATE_LIMIT_PER_MINUTE", "6000")
        .env("MAX_CONCURRENT_TRANSCRIPTIONS", "5")
        .envs(env.iter().copied())
        .kill_on_drop(true);
    command
}

/// Starts `scribe serve` and waits for the line with its address; its log
/// goes to `{data}/{run}.log`.
pub async fn serve(data: &Path, openai: &str, env: &[(&str, &str)], run: &str) -> Scribe {
    std::fs::create_dir_all(data).expect("data dir");
    let log = std::fs::File::create(data.join(format!("{run}.log"))).expect("log file");
    let mut child = command(data, openai, env).arg("serve").stdout(Stdio::piped()).stderr(log).spawn().expect("scribe starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let line = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
        .await
        .expect("scribe prints its address within 2 minutes")
        .expect("reading stdout")
        .unwrap_or_else(|| panic!("scribe exited before listening; see {run}.log"));
    let base = line.strip_prefix("scribe listening on ").expect("the address line").to_string();
    Scribe { child, base }
}

/// `scribe users add NAME` (against the same database); the key it prints last.
pub async fn add_user(data: &Path, openai: &str, env: &[(&str, &str)], name: &str) -> String {
    let output = command(data, openai, env).args(["users", "add", name]).output().await.expect("scribe users add runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).expect("UTF-8");
    stdout.lines().last().expect("a key line").trim().to_string()
}

/// Submits the test WAV of `seed` as the user with `key`; the job id.
pub async fn submit(client: &reqwest::Client, base: &str, key: &str, seed: u32) -> String {
    let form = reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(wav(seed, 800)).file_name("a.wav"));
    let response = client.post(format!("{base}/v1/jobs")).bearer_auth(key).multipart(form).send().await.expect("submit");
    assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED);
    response.json::<Value>().await.expect("job JSON")["id"].as_str().expect("id").to_string()
}

/// `GET /v1/jobs/{id}`.
pub async fn status(client: &reqwest::Client, base: &str, key: &str, id: &str) -> Value {
    let response = client.get(format!("{base}/v1/jobs/{id}")).bearer_auth(key).send().await.expect("show");
    response.json().await.expect("job JSON")
}
