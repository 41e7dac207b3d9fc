//! `POST /v1/audio/transcriptions` over raw HTTP: model mapping, OpenAI's
//! error envelope for refusals and for a job the provider refused, and
//! the queue's limits in front of it (the SDK's view is in openai_sdk.rs).

use reqwest::StatusCode;
use scribe_tests::api::{form, serve_dispatching, Env, BOUNDARY};
use scribe_tests::fake_openai::{transcript_text, FakeOpenAi, Scripted};
use serde_json::Value;

async fn compat(fake: &FakeOpenAi) -> Env {
    serve_dispatching(fake, "[models]\nfast = \"openai-whisper\"\n", &[]).await
}

async fn post(env: &Env, key: &str, body: Vec<u8>) -> reqwest::Response {
    env.client
        .post(format!("{}/v1/audio/transcriptions", env.base))
        .bearer_auth(key)
        .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
        .body(body)
        .send()
        .await
        .expect("POST")
}

/// The `error` object of an OpenAI envelope, checking the status.
async fn openai_error(response: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.expect("JSON");
    let error = body["error"].clone();
    for key in ["message", "type", "param", "code"] {
        assert!(error.get(key).is_some(), "OpenAI's envelope has {key}: {body}");
    }
    error
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_map_to_providers_and_refusals_use_openais_envelope() {
    let fake = FakeOpenAi::start("sk-test").await;
    let env = compat(&fake).await;
    let audio = scribe_tests::wav(31, 300);

    let ok = post(&env, &env.ann, form(Some(&audio), &[("model", "fast")])).await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.headers()["content-type"], "application/json");
    assert_eq!(ok.json::<Value>().await.unwrap(), serde_json::json!({ "text": transcript_text(&audio) }));

    let error = openai_error(post(&env, &env.ann, form(Some(&audio), &[("model", "nope")])).await, StatusCode::NOT_FOUND).await;
    assert_eq!((error["code"].as_str(), error["param"].as_str()), (Some("model_not_found"), Some("model")));
    let error = openai_error(post(&env, &env.ann, form(Some(&audio), &[])).await, StatusCode::BAD_REQUEST).await;
    assert_eq!(error["param"], "model");
    let error = openai_error(post(&env, &env.ann, form(None, &[("model", "whisper-1")])).await, StatusCode::BAD_REQUEST).await;
    assert_eq!(error["param"], "file");
    let fields = [("model", "whisper-1"), ("timestamp_granularities[]", "word")];
    openai_error(post(&env, &env.ann, form(Some(&audio), &fields)).await, StatusCode::BAD_REQUEST).await;
    let error = openai_error(post(&env, "sk-wrong", form(Some(&audio), &[("model", "whisper-1")])).await, StatusCode::UNAUTHORIZED).await;
    assert_eq!(error["code"], "invalid_api_key");
    let text = b"plain text, not audio at all; nothing to hear here".repeat(4);
    let error = openai_error(post(&env, &env.ann, form(Some(&text), &[("model", "whisper-1")])).await, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    assert_eq!(error["type"], "invalid_request_error");
    assert_eq!(fake.calls(), 1, "only the accepted request reached the provider");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_the_provider_refuses_answers_with_its_reason() {
    let fake = FakeOpenAi::start("sk-test").await;
    fake.push_script(vec![Scripted::Status(400)]);
    let env = compat(&fake).await;
    let audio = scribe_tests::wav(32, 300);
    let response = post(&env, &env.ann, form(Some(&audio), &[("model", "whisper-1"), ("response_format", "srt")])).await;
    let error = openai_error(response, StatusCode::BAD_REQUEST).await;
    assert!(error["message"].as_str().unwrap().contains("invalid_input"), "{error}");
    // The job is a job like any other: listed, failed, its error kept.
    let page: Value = env.get(&env.ann, "/v1/jobs").await.json().await.unwrap();
    assert_eq!(page["jobs"][0]["status"], "failed");
    assert_eq!(page["jobs"][0]["error"]["kind"], "invalid_input");
}
