//! The jobs API over real HTTP: submit (multipart), show, list, cancel,
//! idempotency, per-user isolation, and every refusal as problem JSON,
//! after which the server still serves and the accepted job is unchanged.

use reqwest::StatusCode;
use scribe_host::clock::now_ms;
use scribe_tests::api::{form, serve, serve_dispatching, wav};
use scribe_tests::problem;
use serde_json::Value;

#[tokio::test]
async fn a_submitted_job_is_shown_listed_private_and_cancelable() {
    let env = serve(&[]).await;
    let audio = wav(800);
    let response = env.submit(&env.ann, form(Some(&audio), &[("priority", "high"), ("language", "en")])).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let job: Value = response.json().await.unwrap();
    assert_eq!(job["status"], "queued");
    assert_eq!(job["provider"], "openai-whisper", "the default provider with OPENAI_API_KEY set");
    assert_eq!(job["priority"], "high");
    assert_eq!(job["response_format"], "json");
    assert_eq!(job["audio_bytes"], audio.len() as u64);
    assert_eq!(job["attempts"], 0);
    assert!(job["error"].is_null() && job["started_at"].is_null() && job["finished_at"].is_null());
    assert!(job["created_at"].as_str().unwrap().ends_with('Z'), "RFC 3339 UTC: {}", job["created_at"]);
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(uuid_version(&id), '7', "a UUID v7: {id}");

    let shown: Value = env.get(&env.ann, &format!("/v1/jobs/{id}")).await.json().await.unwrap();
    assert_eq!(shown, job);
    let page: Value = env.get(&env.ann, "/v1/jobs").await.json().await.unwrap();
    assert_eq!(page["jobs"].as_array().unwrap(), &vec![job.clone()]);
    assert_eq!((page["limit"].as_u64(), page["offset"].as_u64()), (Some(50), Some(0)));
    let page: Value = env.get(&env.ann, "/v1/jobs?limit=1000&offset=1").await.json().await.unwrap();
    assert_eq!((page["jobs"].as_array().unwrap().len(), page["limit"].as_u64()), (0, Some(200)));
    problem(env.get(&env.ann, "/v1/jobs?limit=abc").await, StatusCode::BAD_REQUEST).await;

    // Bob sees nothing of Ann's.
    problem(env.get(&env.bob, &format!("/v1/jobs/{id}")).await, StatusCode::NOT_FOUND).await;
    problem(env.delete(&env.bob, &id).await, StatusCode::NOT_FOUND).await;
    let page: Value = env.get(&env.bob, "/v1/jobs").await.json().await.unwrap();
    assert!(page["jobs"].as_array().unwrap().is_empty());
    env.still_serving_with(&job).await;
    problem(env.delete(&env.ann, "no-such-job").await, StatusCode::NOT_FOUND).await;

    let canceled = env.delete(&env.ann, &id).await;
    assert_eq!(canceled.status(), StatusCode::OK);
    let canceled: Value = canceled.json().await.unwrap();
    assert_eq!(canceled["status"], "canceled");
    assert!(canceled["finished_at"].is_string());
    let again = env.delete(&env.ann, &id).await;
    assert_eq!(again.status(), StatusCode::OK, "canceling a canceled job again is fine");

    // A running job cannot be canceled: 409 naming its status.
    let second: Value = env.submit(&env.ann, form(Some(&wav(10)), &[])).send().await.unwrap().json().await.unwrap();
    let second_id = second["id"].as_str().unwrap();
    let now = now_ms();
    env.server.store.claim(second_id, "test-worker", now + 1_000, now + 60_000).await.unwrap().expect("claimed");
    let detail = problem(env.delete(&env.ann, second_id).await, StatusCode::CONFLICT).await;
    assert!(detail.contains("running"), "{detail}");
}

fn uuid_version(id: &str) -> char {
    id.chars().nth(14).unwrap_or('?')
}

#[tokio::test]
async fn the_same_idempotency_key_returns_the_same_job() {
    let env = serve(&[]).await;
    let send = || env.submit(&env.ann, form(Some(&wav(100)), &[])).header("Idempotency-Key", "k-1").send();
    let first = send().await.unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first: Value = first.json().await.unwrap();
    let second = send().await.unwrap();
    assert_eq!(second.status(), StatusCode::OK);
    let second: Value = second.json().await.unwrap();
    assert_eq!(first["id"], second["id"]);
    let page: Value = env.get(&env.ann, "/v1/jobs").await.json().await.unwrap();
    assert_eq!(page["jobs"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn requests_without_a_valid_key_get_401() {
    let env = serve(&[]).await;
    let url = format!("{}/v1/jobs", env.base);
    let missing = env.client.get(&url).send().await.unwrap();
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    problem(missing, StatusCode::UNAUTHORIZED).await;
    let wrong = env.submit("sk-scribe-wrong", form(Some(&wav(10)), &[])).send().await.unwrap();
    assert_eq!(wrong.headers()["www-authenticate"], "Bearer");
    problem(wrong, StatusCode::UNAUTHORIZED).await;
    problem(env.get("wrong", "/v1/jobs/x").await, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn bad_submits_are_refused_with_a_message_and_change_nothing() {
    let env = serve(&[("SCRIBE_MAX_UPLOAD_BYTES", "100000")]).await;
    let job: Value = env.submit(&env.ann, form(Some(&wav(100)), &[])).send().await.unwrap().json().await.unwrap();
    assert_eq!(job["status"], "queued");

    let detail = problem(env.submit(&env.ann, form(Some(b""), &[])).send().await.unwrap(), StatusCode::BAD_REQUEST).await;
    assert!(detail.contains("empty"), "{detail}");
    env.still_serving_with(&job).await;

    let text = b"Dear diary, today I did not record any audio at all.\n".repeat(20);
    let detail =
        problem(env.submit(&env.ann, form(Some(&text), &[])).send().await.unwrap(), StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    assert!(detail.contains("not audio") && detail.contains("WAV"), "{detail}");
    env.still_serving_with(&job).await;

    // 300,000 bytes against a 100,000-byte limit: the client reads the 413.
    let big = {
        let mut b = wav(150_000);
        b.truncate(300_000);
        b
    };
    let response = env.submit(&env.ann, form(Some(&big), &[])).send().await.expect("an answer, not a reset");
    let detail = problem(response, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert!(detail.contains("100000") && detail.contains("SCRIBE_MAX_UPLOAD_BYTES"), "{detail}");
    env.still_serving_with(&job).await;

    let refusals: &[(&[(&str, &str)], &str)] = &[
        (&[("provider", "nope")], "openai-whisper"),
        (&[("provider", "retry-backoff")], "loaded providers"),
        (&[("priority", "urgent")], "priority"),
        (&[("response_format", "docx")], "response_format"),
        (&[("temperature", "hot")], "temperature"),
        (&[("temperature", "3")], "temperature"),
        (&[("colour", "blue")], "colour"),
    ];
    for (fields, needle) in refusals {
        let response = env.submit(&env.ann, form(Some(&wav(10)), fields)).send().await.unwrap();
        let detail = problem(response, StatusCode::BAD_REQUEST).await;
        assert!(detail.contains(needle), "{fields:?}: {detail}");
        env.still_serving_with(&job).await;
    }
    let no_file = problem(env.submit(&env.ann, form(None, &[("language", "en")])).send().await.unwrap(), StatusCode::BAD_REQUEST).await;
    assert!(no_file.contains("file"), "{no_file}");

    let json = |body: &'static str| {
        env.client
            .post(format!("{}/v1/jobs", env.base))
            .bearer_auth(&env.ann)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let detail = problem(json("{\"audio_url\": ").await.unwrap(), StatusCode::BAD_REQUEST).await;
    assert!(detail.contains("JSON"), "{detail}");
    let detail = problem(json(r#"{"audio_url":"https://example.com/a.wav","priority":"asap"}"#).await.unwrap(), StatusCode::BAD_REQUEST).await;
    assert!(detail.contains("priority"), "{detail}");
    let detail = problem(json(r#"{"audio_url":"ftp://example.com/a.wav"}"#).await.unwrap(), StatusCode::BAD_REQUEST).await;
    assert!(detail.contains("audio_url") && detail.contains("http"), "{detail}");
    let plain = env.client.post(format!("{}/v1/jobs", env.base)).bearer_auth(&env.ann).body("hello").send().await.unwrap();
    problem(plain, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    env.still_serving_with(&job).await;

    let page: Value = env.get(&env.ann, "/v1/jobs").await.json().await.unwrap();
    assert_eq!(page["jobs"].as_array().unwrap().len(), 1, "no refused submit left a job");
}

#[tokio::test]
async fn a_provider_without_its_secret_is_refused_naming_the_variable() {
    let env = serve(&[("OPENAI_API_KEY", "")]).await;
    let response = env.submit(&env.ann, form(Some(&wav(10)), &[("provider", "openai-whisper")])).send().await.unwrap();
    let detail = problem(response, StatusCode::BAD_REQUEST).await;
    assert!(detail.contains("OPENAI_API_KEY"), "{detail}");
}

#[tokio::test]
async fn a_full_queue_answers_429_with_retry_after() {
    let env = serve(&[("SCRIBE_MAX_QUEUE_LENGTH", "1")]).await;
    let first = env.submit(&env.ann, form(Some(&wav(10)), &[])).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let job: Value = first.json().await.unwrap();
    let full = env.submit(&env.bob, form(Some(&wav(20)), &[])).send().await.unwrap();
    assert_eq!(full.headers()["retry-after"], "5");
    let detail = problem(full, StatusCode::TOO_MANY_REQUESTS).await;
    assert!(detail.contains("SCRIBE_MAX_QUEUE_LENGTH"), "{detail}");
    env.still_serving_with(&job).await;
    // Once the queued job is canceled there is room again.
    assert_eq!(env.delete(&env.ann, job["id"].as_str().unwrap()).await.status(), StatusCode::OK);
    let again = env.submit(&env.bob, form(Some(&wav(20)), &[])).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn uploads_past_axums_default_body_limit_are_accepted_up_to_ours() {
    let env = serve(&[]).await;
    // 3 MB: over axum's 2 MB default, under the 25 MiB default limit.
    let audio = wav(1_500_000);
    let response = env.submit(&env.ann, form(Some(&audio), &[])).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let job: Value = response.json().await.unwrap();
    assert_eq!(job["audio_bytes"], audio.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submitted_jobs_run_through_the_provider_and_succeed() {
    let fake = scribe_tests::fake_openai::FakeOpenAi::start("sk-test").await;
    let env = serve_dispatching(&fake, "", &[]).await;
    let mut ids = Vec::new();
    for seed in 1..=3 {
        let audio = scribe_tests::wav(seed, 400);
        let response = env.submit(&env.ann, form(Some(&audio), &[("language", "en")])).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        ids.push(response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        let job = env.job_reaching(id, "succeeded").await;
        assert_eq!(job["attempts"], 1);
        assert!(job["finished_at"].is_string(), "{job}");
    }
    assert_eq!(fake.calls(), 3, "one provider call per job");
    assert!(fake.requests().iter().all(|r| r.field("language") == Some("en")), "the job's options reach the provider");
}

