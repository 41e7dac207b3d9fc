//! Operator routes: `/readyz`, and pausing and resuming a provider (its
//! jobs wait, nothing is lost, all finish after the resume).

use std::time::Duration;

use reqwest::StatusCode;
use scribe_tests::api::{form, serve, serve_dispatching, Env};
use scribe_tests::fake_openai::FakeOpenAi;
use scribe_tests::problem;
use serde_json::Value;

const ADMIN: &str = "admin-secret-key";

async fn admin_post(env: &Env, path: &str, key: &str) -> reqwest::Response {
    env.client.post(format!("{}{path}", env.base)).bearer_auth(key).send().await.expect("POST")
}

#[tokio::test]
async fn readyz_says_ready_or_what_is_missing() {
    let env = serve(&[]).await;
    let ready = env.client.get(format!("{}/readyz", env.base)).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(ready.json::<Value>().await.unwrap()["status"], "ready");

    let env = serve(&[("SCRIBE_RETRY_POLICY", "no-such-policy")]).await;
    let response = env.client.get(format!("{}/readyz", env.base)).send().await.unwrap();
    let detail = problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(detail.contains("no-such-policy"), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_provider_gets_no_calls_and_its_jobs_finish_after_resume() {
    let fake = FakeOpenAi::start("sk-test").await;
    let env = serve_dispatching(&fake, "", &[("ADMIN_API_KEY", ADMIN)]).await;
    problem(admin_post(&env, "/admin/providers/openai-whisper/pause", "wrong").await, StatusCode::UNAUTHORIZED).await;
    problem(admin_post(&env, "/admin/providers/nope/pause", ADMIN).await, StatusCode::NOT_FOUND).await;
    let paused = admin_post(&env, "/admin/providers/openai-whisper/pause", ADMIN).await;
    assert_eq!(paused.status(), StatusCode::OK);
    assert_eq!(paused.json::<Value>().await.unwrap(), serde_json::json!({"provider": "openai-whisper", "paused": true}));

    let mut ids = Vec::new();
    for seed in 0..3 {
        let job: Value = env.submit(&env.ann, form(Some(&scribe_tests::wav(40 + seed, 300)), &[])).send().await.unwrap().json().await.unwrap();
        ids.push(job["id"].as_str().unwrap().to_string());
    }
    // A negative check: in this window an unpaused provider would have been
    // called three times (the submits woke the scheduler).
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(fake.calls(), 0, "no call reaches a paused provider");
    for id in &ids {
        let job: Value = env.get(&env.ann, &format!("/v1/jobs/{id}")).await.json().await.unwrap();
        assert_eq!(job["status"], "queued");
    }

    let resumed = admin_post(&env, "/admin/providers/openai-whisper/resume", ADMIN).await;
    assert_eq!(resumed.json::<Value>().await.unwrap()["paused"], false);
    for id in &ids {
        env.job_reaching(id, "succeeded").await;
    }
    assert_eq!(fake.calls(), 3);
}
