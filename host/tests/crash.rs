//! Crash safety of the real binary: `scribe serve` is killed with SIGKILL
//! while jobs are running, started again on the same data directory, and
//! every job it acknowledged finishes exactly once with the right
//! transcript; then SIGTERM stops it cleanly.
//!
//! This lives in the host package (not `tests/`) because Cargo builds the
//! `scribe` binary, and names it in `CARGO_BIN_EXE_scribe`, only for the
//! integration tests of the package that defines it.

mod support;

use std::time::Duration;

use scribe_host::store::{JobStatus, SqliteStore, Store};
use scribe_tests::fake_openai::{transcript_text, FakeOpenAi};
use scribe_tests::{wait_until, wav};
use serde_json::Value;
use support::{add_user, serve, status, submit};
use tokio::process::Command;

const JOBS: u32 = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_loses_no_accepted_job_and_finishes_each_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path();
    let fake = FakeOpenAi::start("sk-test").await;
    fake.set_latency(Duration::from_millis(300));
    let openai = fake.base_url();
    let client = reqwest::Client::new();

    let first = serve(data, &openai, &[], "first").await;
    let key = add_user(data, &openai, &[], "ann").await;
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

    let second = serve(data, &openai, &[], "second").await;
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
