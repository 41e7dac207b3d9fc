//! The built-in `replicate` provider through the real plugin runtime
//! against the fake Replicate server: the exact requests it sends (data URI
//! or files API, `Prefer: wait`, polling `urls.get`), cancel before the
//! deadline, and how each answer becomes a `provider-error`
//! (provider-apis.md §2).

use std::time::{Duration, Instant};

use scribe_host::plugins::types::{TranscribeRequest, Transcript};
use scribe_host::plugins::{CallError, ProviderError};
use scribe_tests::fake_openai::transcript_text;
use scribe_tests::fake_replicate::{FakeReplicate, Scripted};
use scribe_tests::TestHost;

const TOKEN: &str = "r8_test_0123456789";
const PLUGIN: &str = "replicate";

/// A host whose replicate plugin points at `fake`, with `config_toml`.
async fn host_for(fake: &FakeReplicate, config_toml: &str, token: &str) -> TestHost {
    let base_url = fake.base_url();
    TestHost::start(config_toml, &[("REPLICATE_API_TOKEN", token), ("REPLICATE_BASE_URL", &base_url)]).await
}

async fn transcribe(host: &TestHost, audio: &[u8], language: Option<&str>) -> Result<Transcript, ProviderError> {
    let request = TranscribeRequest {
        audio: audio.to_vec(),
        audio_format: "wav".into(),
        language: language.map(str::to_string),
        ..Default::default()
    };
    match host.plugins.transcribe(PLUGIN, request).await {
        Ok(transcript) => Ok(transcript),
        Err(CallError::Provider(error)) => Err(error),
        Err(CallError::Plugin(error)) => panic!("the plugin itself failed: {error}"),
    }
}

fn halves(text: &str) -> (String, String) {
    let words: Vec<&str> = text.split(' ').collect();
    let (a, b) = words.split_at(words.len() / 2);
    (format!(" {}", a.join(" ")), format!(" {}", b.join(" ")))
}

#[tokio::test]
async fn small_audio_goes_inline_and_the_output_becomes_a_transcript() {
    let fake = FakeReplicate::start(TOKEN).await;
    let host = host_for(&fake, "", TOKEN).await;
    let audio = scribe_tests::wav(1, 2000);
    let transcript = transcribe(&host, &audio, Some("fr")).await.expect("transcribed");
    let text = transcript_text(&audio);
    assert_eq!(transcript.text, text);
    assert_eq!(transcript.language.as_deref(), Some("fr"), "detected \"french\" comes back as its code");
    assert_eq!(transcript.duration, Some(2.0));
    let (first, second) = halves(&text);
    let segments: Vec<(f64, f64, String)> = transcript.segments.iter().map(|s| (s.start, s.end, s.text.clone())).collect();
    assert_eq!(segments, [(0.0, 1.0, first), (1.0, 2.0, second)]);

    let received = fake.received();
    assert_eq!(received.len(), 1, "one create, answered finished (Prefer: wait)");
    let create = &received[0];
    assert_eq!((create.method.as_str(), create.path.as_str()), ("POST", "/v1/predictions"));
    assert_eq!(create.authorization.as_deref(), Some(format!("Bearer {TOKEN}").as_str()));
    assert_eq!(create.prefer.as_deref(), Some("wait=60"));
    assert_eq!(create.json["version"], "8099696689d249cf8b122d833c36ac3f75505c666a395ca40ef26f68e7d3d16e");
    assert!(create.json["input"]["audio"].as_str().unwrap().starts_with("data:audio/wav;base64,UklGR"));
    assert_eq!(create.json["input"]["language"], "fr");
    assert_eq!(create.json["input"]["transcription"], "plain text");
}

#[tokio::test]
async fn large_audio_goes_through_the_files_api() {
    let fake = FakeReplicate::start(TOKEN).await;
    let host = host_for(&fake, "[plugins.replicate.config]\nversion = \"abc123\"\n", TOKEN).await;
    let audio = scribe_tests::wav(2, 200_000); // 400 KB: over the 256 KiB inline limit
    let transcript = transcribe(&host, &audio, None).await.expect("transcribed");
    assert_eq!(transcript.text, transcript_text(&audio), "the fake transcribed the uploaded bytes");
    assert_eq!(transcript.language.as_deref(), Some("en"));
    let received = fake.received();
    let paths: Vec<&str> = received.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/v1/files", "/v1/predictions"]);
    let input = &received[1].json["input"];
    assert!(input["audio"].as_str().unwrap().starts_with(&format!("{}/v1/files/", fake.base_url())), "{input}");
    assert_eq!(input["language"], "auto");
    assert_eq!(received[1].json["version"], "abc123");
}

#[tokio::test]
async fn a_prediction_still_running_after_the_wait_is_polled_until_done() {
    let fake = FakeReplicate::start(TOKEN).await;
    fake.set_run_time(Duration::from_millis(2500));
    let host = host_for(&fake, "[plugins.replicate.config]\nwait_secs = \"1\"\n", TOKEN).await;
    let audio = scribe_tests::wav(3, 500);
    let transcript = transcribe(&host, &audio, None).await.expect("transcribed");
    assert_eq!(transcript.text, transcript_text(&audio));
    assert_eq!(fake.received()[0].prefer.as_deref(), Some("wait=1"));
    let polls = fake.count("GET", "/v1/predictions/");
    assert!((2..=5).contains(&polls), "polled every 0.5 s for ~1.5 s: {polls}");
    assert_eq!(fake.canceled(), 0);
}

#[tokio::test]
async fn a_prediction_that_would_outlive_the_deadline_is_canceled_first() {
    let fake = FakeReplicate::start(TOKEN).await;
    fake.set_run_time(Duration::from_secs(30));
    let host = host_for(&fake, "[plugins.replicate]\ndeadline_ms = 3000\n", TOKEN).await;
    let started = Instant::now();
    let error = transcribe(&host, &scribe_tests::wav(4, 500), None).await.unwrap_err();
    assert!(matches!(&error, ProviderError::Transient(m) if m.contains("deadline") && m.contains("canceled")), "{error:?}");
    assert!(started.elapsed() < Duration::from_millis(3000), "returned before the deadline: {:?}", started.elapsed());
    assert_eq!(fake.canceled(), 1, "the prediction was canceled on Replicate");
    assert_eq!(fake.count("POST", "/v1/predictions/"), 1, "one cancel call");
}

#[tokio::test]
async fn every_answer_maps_to_its_kind_with_replicates_detail() {
    let fake = FakeReplicate::start(TOKEN).await;
    let host = host_for(&fake, "", TOKEN).await;
    let audio = scribe_tests::wav(5, 300);
    fake.push_script(vec![
        Scripted::Throttled(Some(2)),
        Scripted::Throttled(None),
        Scripted::ThrottledUntil(std::time::SystemTime::now() + Duration::from_secs(30)),
        Scripted::Status(503),
        Scripted::Status(422),
        Scripted::Failed("audio could not be decoded".into()),
    ]);
    assert_eq!(transcribe(&host, &audio, None).await.unwrap_err(), ProviderError::RateLimited(Some(2000)));
    assert_eq!(transcribe(&host, &audio, None).await.unwrap_err(), ProviderError::RateLimited(None));
    // An HTTP date: the wait until then (whole seconds on the wire).
    let until = transcribe(&host, &audio, None).await.unwrap_err();
    assert!(matches!(until, ProviderError::RateLimited(Some(ms)) if (27_000..=30_000).contains(&ms)), "{until:?}");
    assert!(matches!(transcribe(&host, &audio, None).await.unwrap_err(), ProviderError::Transient(m) if m.contains("503")));
    assert!(matches!(transcribe(&host, &audio, None).await.unwrap_err(), ProviderError::InvalidInput(m) if m.contains("422")));
    let failed = transcribe(&host, &audio, None).await.unwrap_err();
    assert!(matches!(&failed, ProviderError::InvalidInput(m) if m.contains("could not be decoded")), "{failed:?}");
    assert!(transcribe(&host, &audio, None).await.is_ok(), "then the script is used up");

    let wrong = host_for(&fake, "", "r8_wrong").await;
    let error = transcribe(&wrong, &audio, None).await.unwrap_err();
    assert!(matches!(&error, ProviderError::Unauthorized(m) if m.contains("Invalid token.")), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_for_replicate_runs_end_to_end() {
    use serde_json::Value;
    let fake = FakeReplicate::start(TOKEN).await;
    fake.set_run_time(Duration::from_millis(300));
    let base_url = fake.base_url();
    let env = scribe_tests::api::serve(&[
        ("SCRIBE_DISPATCH", "true"),
        ("OPENAI_API_KEY", ""),
        ("REPLICATE_API_TOKEN", TOKEN),
        ("REPLICATE_BASE_URL", &base_url),
        ("TRANSCRIPTION_RATE_LIMIT_PER_MINUTE", "6000"),
    ])
    .await;
    let audio = scribe_tests::wav(6, 700);
    let form = scribe_tests::api::form(Some(&audio), &[("response_format", "vtt")]);
    let job: Value = env.submit(&env.ann, form).send().await.unwrap().json().await.unwrap();
    assert_eq!(job["provider"], "replicate", "the default provider with only REPLICATE_API_TOKEN set");
    let id = job["id"].as_str().unwrap();
    env.job_reaching(id, "succeeded").await;
    let vtt = env.get(&env.ann, &format!("/v1/jobs/{id}/transcript")).await.text().await.unwrap();
    let (first, _) = halves(&transcript_text(&audio));
    assert!(vtt.starts_with(&format!("WEBVTT\n\n00:00:00.000 --> 00:00:01.000\n{}\n", first.trim())), "{vtt}");
}
