//! The transcript cache end to end: the same audio asked the same way is
//! transcribed once, across formats, across a restart, and when the twins
//! arrive together; hits and misses are counted.

use std::time::Duration;

use reqwest::StatusCode;
use scribe_tests::api::{form, serve_dispatching, Env};
use scribe_tests::fake_openai::{transcript_text, FakeOpenAi};
use serde_json::Value;

async fn dispatching(fake: &FakeOpenAi) -> Env {
    serve_dispatching(fake, "", &[]).await
}

async fn submit(env: &Env, audio: &[u8], fields: &[(&str, &str)]) -> Value {
    let response = env.submit(&env.ann, form(Some(audio), fields)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    response.json().await.unwrap()
}

async fn until_succeeded(env: &Env, job: &Value) -> Value {
    env.job_reaching(job["id"].as_str().unwrap(), "succeeded").await
}

async fn transcript(env: &Env, job: &Value) -> String {
    let path = format!("/v1/jobs/{}/transcript", job["id"].as_str().unwrap());
    let response = env.get(&env.ann, &path).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_audio_is_transcribed_once_in_every_format_and_after_a_restart() {
    let fake = FakeOpenAi::start("sk-test").await;
    let env = dispatching(&fake).await;
    let audio = scribe_tests::wav(11, 600);
    let first = until_succeeded(&env, &submit(&env, &audio, &[("language", "en")]).await).await;
    assert_eq!(first["attempts"], 1);
    assert_eq!((env.server.metrics.cache_hits.get(), env.server.metrics.cache_misses.get()), (0, 1));

    // The same audio and options, in each format: finished on submit.
    for format in ["json", "text", "srt", "vtt", "verbose_json"] {
        let job = submit(&env, &audio, &[("language", "en"), ("response_format", format)]).await;
        assert_eq!(job["status"], "succeeded", "{format}: finished at once");
        assert_eq!(job["attempts"], 0, "{format}");
        assert!(transcript(&env, &job).await.contains(&transcript_text(&audio)[..10]), "{format}");
    }
    assert_eq!(fake.calls(), 1, "one provider call for six jobs");
    assert_eq!((env.server.metrics.cache_hits.get(), env.server.metrics.cache_misses.get()), (5, 1));

    // Other options are another transcript.
    until_succeeded(&env, &submit(&env, &audio, &[("language", "de")]).await).await;
    assert_eq!(fake.calls(), 2);

    // After a restart (memory empty), the store still knows it.
    let env = env.restart().await;
    let again = submit(&env, &audio, &[("language", "en")]).await;
    assert_eq!(again["status"], "succeeded");
    assert_eq!(fake.calls(), 2, "still no new call after the restart");
    assert_eq!(env.server.metrics.cache_hits.get(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twins_submitted_together_share_one_call() {
    let fake = FakeOpenAi::start("sk-test").await;
    fake.set_latency(Duration::from_millis(400));
    let env = dispatching(&fake).await;
    let audio = scribe_tests::wav(12, 600);
    let submits = (0..4).map(|_| submit(&env, &audio, &[]));
    let jobs = futures_util::future::join_all(submits).await;
    assert!(jobs.iter().all(|j| j["status"] == "queued"), "none is known yet: {jobs:?}");
    for job in &jobs {
        until_succeeded(&env, job).await;
    }
    let texts = futures_util::future::join_all(jobs.iter().map(|j| transcript(&env, j))).await;
    assert!(texts.iter().all(|t| t == &texts[0]));
    assert_eq!(fake.calls(), 1, "four simultaneous twins, one provider call");
    assert_eq!((env.server.metrics.cache_hits.get(), env.server.metrics.cache_misses.get()), (3, 1));
}
