//! Crash safety of the real binary: `scribe serve` is killed with SIGKILL
//! while jobs are running, started again on the same data directory, and
//! every job it acknowledged finishes exactly once with the right
//! transcript; then SIGTERM stops it cleanly.
//!
//! This lives in the host package (not `tests/`) because Cargo builds the
//! `scribe` binary, and names it in `CARGO_BIN_EXE_scribe`, only for the
//! integration tests of the package that defines it.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use scribe_host::store::{JobStatus, SqliteStore, Store};
use scribe_tests::fake_openai::{transcript_text, FakeOpenAi};
use scribe_tests::{wait_until, wav};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const JOBS: u32 = 30;

/// A `scribe` process and the address it printed.
struct Scribe {
    child: Child,
    base: String,
}

/// The environment of every `scribe` run here: nothing inherited but PATH.
fn command(data: &Path, openai: &str) -> Command {
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
        .kill_on_drop(true);
    command
}

/// Starts `scribe serve` and waits for the line with its address.
async fn serve(data: &Path, openai: &str, run: &str) -> Scribe {
    let log = std::fs::File::create(data.join(format!("{run}.log"))).expect("log file");
    let mut child = command(data, openai)
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("scribe starts");
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
async fn add_user(data: &Path, openai: &str, name: &str) -> String {
    let output = command(data, openai).args(["users", "add", name]).output().await.expect("scribe users add runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).expect("UTF-8");
    stdout.lines().last().expect("a key line").trim().to_string()
}

async fn submit(client: &reqwest::Client, base: &str, key: &str, seed: u32) -> String {
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(wav(seed, 800)).file_name("a.wav"));
    let response = client.post(format!("{base}/v1/jobs")).bearer_auth(key).multipart(form).send().await.expect("submit");
    assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED);
    response.json::<Value>().await.expect("job JSON")["id"].as_str().expect("id").to_string()
}

async fn status(client: &reqwest::Client, base: &str, key: &str, id: &str) -> Value {
    let response = client.get(format!("{base}/v1/jobs/{id}")).bearer_auth(key).send().await.expect("show");
    response.json().await.expect("job JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_loses_no_accepted_job_and_finishes_each_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path();
    let fake = FakeOpenAi::start("sk-test").await;
    fake.set_latency(Duration::from_millis(300));
    let openai = fake.base_url();
    let client = reqwest::Client::new();

    let first = serve(data, &openai, "first").await;
    let key = add_user(data, &openai, "ann").await;
    let mut ids = Vec::new();
    for seed in 0..JOBS {
        ids.push(submit(&client, &first.base, &key, seed).await);
    }
    wait_until("some jobs done and calls in flight", Duration::from_secs(60), || async {
        fake.calls() >= 8 && fake.in_flight() >= 1
    })
    .await;
    let mut first = first;
    first.child.kill().await.expect("SIGKILL");
    let calls_at_kill = fake.calls();
    assert!(calls_at_kill < u64::from(JOBS), "the kill came mid-run ({calls_at_kill} calls)");

    let second = serve(data, &openai, "second").await;
    for id in &ids {
        wait_until("every accepted job to succeed after the restart", Duration::from_secs(60), || async {
            status(&client, &second.base, &key, id).await["status"] == "succeeded"
        })
        .await;
    }

    let page: Value = client
        .get(format!("{}/v1/jobs?limit=100", second.base))
        .bearer_auth(&key)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("page");
    assert_eq!(page["jobs"].as_array().expect("jobs").len(), JOBS as usize, "no job lost or doubled");

    let url = format!("sqlite://{}", data.join("scribe.db").display());
    let store = SqliteStore::open(&url, 2, Duration::from_secs(5)).await.expect("the database opens alongside");
    let mut rerun = 0;
    for (seed, id) in ids.iter().enumerate() {
        let job = store.job_by_id(id).await.expect("read").expect("the job exists");
        assert_eq!(job.status, JobStatus::Succeeded);
        assert!(job.finished_at_ms.is_some());
        assert!((1..=2).contains(&job.attempts), "job {id}: {} attempts", job.attempts);
        rerun += u64::from(job.attempts == 2);
        let transcript = store.transcript(id).await.expect("read").expect("a stored transcript");
        let expected = transcript_text(&wav(seed as u32, 800));
        assert!(transcript.contains(&expected), "job {id}: {transcript}");
    }
    assert!(rerun >= 1, "the jobs running at the kill ran again after their lease expired");
    let calls = fake.calls();
    assert!(
        (u64::from(JOBS)..=u64::from(JOBS) + rerun).contains(&calls),
        "{calls} provider calls for {JOBS} jobs, {rerun} of which ran twice"
    );

    // SIGTERM drains and exits cleanly.
    let pid = second.child.id().expect("running").to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status().await.expect("kill runs");
    assert!(sent.success());
    let mut second = second;
    let exit = tokio::time::timeout(Duration::from_secs(40), second.child.wait())
        .await
        .expect("scribe exits after SIGTERM")
        .expect("wait");
    assert!(exit.success(), "exit status {exit:?}");
}
