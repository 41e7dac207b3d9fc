//! The official OpenAI Python SDK against Scribe's OpenAI-compatible route
//! (`tests/openai-sdk/check.py`, run with the venv `tests/run` prepares and
//! names in `SCRIBE_TEST_PYTHON`): every response format comes back as the
//! type the SDK gives for OpenAI, and its error classes come out right.

use std::time::Duration;

use scribe_host::clock::now_ms;
use scribe_host::users;
use scribe_tests::api::serve_dispatching;
use scribe_tests::fake_openai::{transcript_text, FakeOpenAi};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_python_sdk_works_unchanged_against_scribe() {
    let python = std::env::var("SCRIBE_TEST_PYTHON")
        .expect("SCRIBE_TEST_PYTHON names a Python with the openai package: run the tests with `bash tests/run`");
    let fake = FakeOpenAi::start("sk-test").await;
    let env = serve_dispatching(&fake, "", &[("SCRIBE_MAX_UPLOAD_BYTES", "100000")]).await;
    let (_, key) = users::add(&*env.server.store, "sdk", now_ms()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let audio = scribe_tests::wav(21, 800);
    let audio_path = dir.path().join("speech.wav");
    std::fs::write(&audio_path, &audio).unwrap();
    let big_path = dir.path().join("big.wav");
    std::fs::write(&big_path, scribe_tests::wav(22, 150_000)).unwrap();

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/openai-sdk/check.py");
    let run = tokio::process::Command::new(&python)
        .args([script, &env.base, &key, audio_path.to_str().unwrap(), big_path.to_str().unwrap()])
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run).await.expect("the SDK script ends").expect("python runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "check.py failed:\n{stderr}");
    let seen: Value = serde_json::from_slice(&output.stdout).expect("check.py prints JSON");

    let text = transcript_text(&audio);
    assert_eq!(seen["json"]["type"], "Transcription");
    assert_eq!(seen["json"]["text"], text.as_str());
    assert_eq!(seen["text"]["type"], "str");
    assert_eq!(seen["text"]["body"].as_str().unwrap().trim_end(), text);
    assert_eq!(seen["srt"]["type"], "str");
    assert!(seen["srt"]["body"].as_str().unwrap().starts_with("1\n00:00:00,000 --> 00:00:01,000\n"), "{}", seen["srt"]);
    assert_eq!(seen["vtt"]["type"], "str");
    assert!(seen["vtt"]["body"].as_str().unwrap().starts_with("WEBVTT\n\n00:00:00.000 --> "), "{}", seen["vtt"]);
    assert_eq!(seen["verbose_json"]["type"], "TranscriptionVerbose");
    assert_eq!(seen["verbose_json"]["language"], "english");
    assert_eq!(seen["verbose_json"]["duration"], 2.0);
    assert_eq!(seen["verbose_json"]["segments"].as_array().unwrap().len(), 2);
    assert_eq!(fake.calls(), 1, "five formats of one audio: one provider call");

    assert_eq!(seen["bad_key"]["class"], "AuthenticationError", "{}", seen["bad_key"]);
    assert_eq!(seen["bad_key"]["status"], 401);
    assert_eq!(seen["too_large"]["status"], 413, "{}", seen["too_large"]);
    assert!(seen["too_large"]["message"].as_str().unwrap().contains("SCRIBE_MAX_UPLOAD_BYTES"), "{}", seen["too_large"]);
    assert_eq!(fake.calls(), 1, "refused requests reach no provider");
}
