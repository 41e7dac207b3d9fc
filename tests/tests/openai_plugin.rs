//! The built-in `openai-whisper` provider, called through the real plugin
//! runtime against the fake OpenAI server: what it sends, and how each kind
//! of answer becomes a `provider-error` (provider-apis.md §1.5-1.6).
//!
//! The fake is granted the way an operator grants OpenAI: `OPENAI_BASE_URL`
//! sets the plugin's `base_url` and allows its host; `OPENAI_API_KEY` is
//! mapped to `api_key`.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use scribe_host::plugins::types::{TranscribeRequest, Transcript};
use scribe_host::plugins::{CallError, FirstRequestWait, ProviderError, World};
use scribe_tests::fake_openai::{transcript_text, FakeOpenAi, Scripted};
use scribe_tests::TestHost;

const KEY: &str = "sk-test-0123456789abcdef";
const PLUGIN: &str = "openai-whisper";

/// A host whose openai-whisper plugin points at `fake`, with `config_toml`.
async fn host_for(fake: &FakeOpenAi, config_toml: &str) -> TestHost {
    let base_url = fake.base_url();
    TestHost::start(config_toml, &[("OPENAI_API_KEY", KEY), ("OPENAI_BASE_URL", &base_url)]).await
}

fn request(audio: &[u8]) -> TranscribeRequest {
    TranscribeRequest { audio: audio.to_vec(), audio_format: "wav".into(), ..Default::default() }
}

async fn transcribe(host: &TestHost, request: TranscribeRequest) -> Result<Transcript, ProviderError> {
    match host.plugins.transcribe(PLUGIN, request).await {
        Ok(transcript) => Ok(transcript),
        Err(CallError::Provider(error)) => Err(error),
        Err(CallError::Plugin(error)) => panic!("the plugin itself failed: {error}"),
    }
}

/// Some bytes that look like the start of a WAV file.
fn audio(len: usize) -> Vec<u8> {
    let mut audio = b"RIFF\x24\x08\x00\x00WAVEfmt ".to_vec();
    audio.extend((0..len).map(|i| (i * 31 % 251) as u8));
    audio
}

#[tokio::test]
async fn the_plugin_is_built_in_and_describes_openai() {
    let host = TestHost::start("", &[]).await;
    assert_eq!(host.plugins.get(PLUGIN).expect("built in").world, World::Provider);
    let info = host.plugins.provider_info(PLUGIN).expect("a provider");
    assert_eq!(info.name, "openai-whisper");
    assert_eq!(info.accepted_formats, ["flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "oga", "ogg", "wav", "webm"]);
    assert_eq!(info.max_audio_bytes, 26_214_400);
    assert!(!info.in_process);
}

#[tokio::test]
async fn a_transcription_sends_the_form_openai_expects() {
    let fake = FakeOpenAi::start(KEY).await;
    let host = host_for(&fake, "").await;
    let audio = audio(100_000);
    let request = TranscribeRequest {
        language: Some("en".into()),
        prompt: Some("Zoë, Åsa and \"Bob\"\r\non a call".into()),
        temperature: Some(0.2),
        ..request(&audio)
    };
    let transcript = transcribe(&host, request).await.expect("transcribed");
    assert_eq!(transcript.text, transcript_text(&audio));
    assert_eq!(transcript.language.as_deref(), Some("en"), "verbose_json's \"english\" comes back as its code");
    assert_eq!(transcript.duration, Some(2.0));
    // The fake's two segments: the text's words halved, a second each.
    let text = transcript_text(&audio);
    let words: Vec<&str> = text.split(' ').collect();
    let (first, second) = words.split_at(words.len() / 2);
    let segments: Vec<(f64, f64, String)> = transcript.segments.iter().map(|s| (s.start, s.end, s.text.clone())).collect();
    assert_eq!(segments, [(0.0, 1.0, format!(" {}", first.join(" "))), (1.0, 2.0, format!(" {}", second.join(" ")))]);

    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let seen = &requests[0];
    assert_eq!(seen.authorization.as_deref(), Some(format!("Bearer {KEY}").as_str()));
    assert!(seen.content_type.as_deref().is_some_and(|c| c.starts_with("multipart/form-data; boundary=")), "{:?}", seen.content_type);
    assert_eq!(seen.field("model"), Some("whisper-1"));
    assert_eq!(seen.field("language"), Some("en"));
    assert_eq!(seen.field("prompt"), Some("Zoë, Åsa and \"Bob\"\r\non a call"));
    assert_eq!(seen.field("temperature"), Some("0.2"));
    assert_eq!(seen.field("response_format"), Some("verbose_json"), "whisper-1 gives segments");
    let file = seen.file.as_ref().expect("a file part");
    assert_eq!(file.filename.as_deref(), Some("audio.wav"));
    assert_eq!(file.content_type.as_deref(), Some("audio/wav"));
    assert_eq!(file.len, audio.len());
    assert_eq!(seen.answered, Some(200));
    assert_eq!(fake.calls(), 1);
}

#[tokio::test]
async fn calls_one_after_another_reuse_one_connection() {
    let fake = FakeOpenAi::start(KEY).await;
    let host = host_for(&fake, "").await;
    for seed in 0..5 {
        let audio = audio(1_000 + seed);
        let transcript = transcribe(&host, request(&audio)).await.expect("transcribed");
        assert_eq!(transcript.text, transcript_text(&audio), "call {seed}");
    }
    assert_eq!(fake.calls(), 5);
    assert_eq!(fake.connections(), 1, "each call after the first goes over the kept-alive connection");
}

/// The scheduler's pacing holds a call's first request, not the call: the
/// guest runs up to its request, which leaves only once the wait is over,
/// while other calls go on.
#[tokio::test]
async fn a_first_request_leaves_only_once_its_wait_is_over() {
    let fake = FakeOpenAi::start(KEY).await;
    let host = host_for(&fake, "").await;
    let (reached, reached_rx) = tokio::sync::oneshot::channel::<()>();
    let (open, opened) = tokio::sync::oneshot::channel::<()>();
    let wait: FirstRequestWait = Box::pin(async move {
        let _ = reached.send(());
        let _ = opened.await;
    });
    let held_audio = audio(1000);
    let held = tokio::spawn({
        let (plugins, request) = (host.plugins.clone(), request(&held_audio));
        async move { plugins.transcribe_paced(PLUGIN, request, Some(wait)).await }
    });
    let waiting = tokio::time::timeout(Duration::from_secs(30), reached_rx).await;
    assert!(matches!(waiting, Ok(Ok(()))), "the call came to its first request and waits");
    transcribe(&host, request(&audio(10))).await.expect("a call with no wait is not held");
    assert_eq!(fake.calls(), 1, "the held request has not left");
    let opened_at = Instant::now();
    open.send(()).expect("the held call is still waiting");
    let transcript = held.await.expect("joined").expect("the held call goes on once its wait is over");
    assert_eq!(transcript.text, transcript_text(&held_audio));
    assert_eq!(fake.calls(), 2);
    assert!(fake.arrivals()[1] >= opened_at, "it left after the wait");
}

#[tokio::test]
async fn optional_fields_are_left_out_and_the_model_follows_job_then_setting() {
    let fake = FakeOpenAi::start(KEY).await;
    // The SDK's form of the base URL (with `/v1/`) works too.
    let base_url = format!("{}/v1/", fake.base_url());
    let toml = "[plugins.openai-whisper.config]\nmodel = \"gpt-4o-mini-transcribe\"\n";
    let host = TestHost::start(toml, &[("OPENAI_API_KEY", KEY), ("OPENAI_BASE_URL", &base_url)]).await;

    let audio = audio(10);
    transcribe(&host, TranscribeRequest { audio_format: "mp3".into(), ..request(&audio) }).await.expect("configured model");
    transcribe(&host, TranscribeRequest { model: Some("whisper-1".into()), ..request(&audio) }).await.expect("job's model");

    let requests = fake.requests();
    assert_eq!(requests[0].field("model"), Some("gpt-4o-mini-transcribe"));
    let names: Vec<&str> = requests[0].fields.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["model", "response_format"]);
    assert_eq!(requests[0].field("response_format"), Some("json"), "gpt-4o-mini-transcribe takes json only");
    let file = requests[0].file.as_ref().expect("a file part");
    assert_eq!((file.filename.as_deref(), file.content_type.as_deref()), (Some("audio.mp3"), Some("audio/mpeg")));
    assert_eq!(requests[1].field("model"), Some("whisper-1"));
    assert_eq!(requests[1].field("response_format"), Some("verbose_json"));
}

#[tokio::test]
async fn rate_limits_carry_the_wait_openai_asked_for() {
    let fake = FakeOpenAi::start(KEY).await;
    let host = host_for(&fake, "").await;
    let until = SystemTime::now() + Duration::from_secs(30);
    fake.push_script(vec![
        Scripted::RateLimited { retry_after: Some(Duration::from_secs(3)) },
        Scripted::RateLimitedMs(1234.5),
        Scripted::RateLimited { retry_after: None },
        Scripted::RateLimitedUntil(until),
        Scripted::Ok,
    ]);
    let audio = audio(64);
    assert_eq!(transcribe(&host, request(&audio)).await, Err(ProviderError::RateLimited(Some(3000))));
    assert_eq!(transcribe(&host, request(&audio)).await, Err(ProviderError::RateLimited(Some(1235))));
    assert_eq!(transcribe(&host, request(&audio)).await, Err(ProviderError::RateLimited(None)));
    // An HTTP date has whole seconds, and some time passed since `until`.
    match transcribe(&host, request(&audio)).await {
        Err(ProviderError::RateLimited(Some(ms))) => assert!((25_000..=30_000).contains(&ms), "{ms}"),
        other => panic!("expected rate-limited with a wait, got {other:?}"),
    }
    assert_eq!(transcribe(&host, request(&audio)).await.expect("the script ends with Ok").text, transcript_text(&audio));
    assert_eq!(fake.calls(), 5);
}

#[tokio::test]
async fn an_exhausted_quota_is_fatal_with_openais_message() {
    let fake = FakeOpenAi::start(KEY).await;
    let host = host_for(&fake, "").await;
    fake.push_script(vec![Scripted::InsufficientQuota]);
    match transcribe(&host, request(&audio(64))).await {
        Err(ProviderError::Fatal(message)) => {
            assert!(message.contains("You exceeded your current quota"), "{message}");
            assert!(message.contains("insufficient_quota"), "{message}");
        }
        other => panic!("expected fatal, got {other:?}"),
    }
}

#[tokio::test]
async fn error_statuses_map_to_their_kinds_with_openais_message() {
    let fake = FakeOpenAi::start(KEY).await;
    let host = host_for(&fake, "").await;
    let audio = audio(64);

    fake.push_script(vec![Scripted::Status500]);
    match transcribe(&host, request(&audio)).await {
        Err(ProviderError::Transient(message)) => assert!(message.contains("The server had an error"), "{message}"),
        other => panic!("500: expected transient, got {other:?}"),
    }

    let cases: &[(u16, &str)] = &[
        (400, "invalid-input"),
        (404, "invalid-input"),
        (413, "invalid-input"),
        (415, "invalid-input"),
        (422, "invalid-input"),
        (401, "unauthorized"),
        (403, "unauthorized"),
        (408, "transient"),
        (409, "transient"),
        (502, "transient"),
        (503, "transient"),
        (402, "fatal"),
        (418, "fatal"),
    ];
    fake.push_script(cases.iter().map(|(status, _)| Scripted::Status(*status)).collect());
    for (status, kind) in cases {
        let (got, message) = match transcribe(&host, request(&audio)).await {
            Err(ProviderError::InvalidInput(m)) => ("invalid-input", m),
            Err(ProviderError::Unauthorized(m)) => ("unauthorized", m),
            Err(ProviderError::Transient(m)) => ("transient", m),
            Err(ProviderError::Fatal(m)) => ("fatal", m),
            other => panic!("{status}: expected {kind}, got {other:?}"),
        };
        assert_eq!(got, *kind, "{status}: {message}");
        assert!(message.contains(&format!("Scripted status {status}")), "{status}: {message}");
    }
    assert_eq!(fake.calls(), 1 + cases.len() as u64);
}

#[tokio::test]
async fn openais_own_refusals_reach_the_job_owner() {
    let fake = FakeOpenAi::start(KEY).await;
    let host = host_for(&fake, "").await;
    // A format OpenAI does not take: its 400 names the supported ones.
    let refused = TranscribeRequest { audio_format: "aiff".into(), ..request(&audio(64)) };
    match transcribe(&host, refused).await {
        Err(ProviderError::InvalidInput(message)) => assert!(message.contains("Invalid file format. Supported formats"), "{message}"),
        other => panic!("expected invalid-input, got {other:?}"),
    }
    assert_eq!(fake.requests()[0].answered, Some(400));
}

#[tokio::test]
async fn a_wrong_key_is_unauthorized() {
    let fake = FakeOpenAi::start(KEY).await;
    let base_url = fake.base_url();
    let host = TestHost::start("", &[("OPENAI_API_KEY", "sk-wrong-key-000000"), ("OPENAI_BASE_URL", &base_url)]).await;
    match transcribe(&host, request(&audio(64))).await {
        Err(ProviderError::Unauthorized(message)) => {
            assert!(message.contains("Incorrect API key provided"), "{message}");
            assert!(!message.contains("sk-wrong-key-000000"), "the key must not be echoed: {message}");
        }
        other => panic!("expected unauthorized, got {other:?}"),
    }
    assert_eq!(fake.requests()[0].answered, Some(401));
}

#[tokio::test]
async fn a_missing_key_is_unauthorized_without_a_call() {
    let fake = FakeOpenAi::start(KEY).await;
    let base_url = fake.base_url();
    let host = TestHost::start("", &[("OPENAI_BASE_URL", &base_url)]).await;
    assert_eq!(
        transcribe(&host, request(&audio(64))).await,
        Err(ProviderError::Unauthorized("no API key: set OPENAI_API_KEY".into()))
    );
    assert_eq!(fake.calls(), 0);
}

#[tokio::test]
async fn a_base_url_whose_host_is_not_granted_is_fatal_and_says_so() {
    let fake = FakeOpenAi::start(KEY).await;
    // base_url from the config file grants nothing; only OPENAI_BASE_URL or
    // allowed_hosts do.
    let toml = format!("[plugins.openai-whisper.config]\nbase_url = \"{}\"\n", fake.base_url());
    let host = TestHost::start(&toml, &[("OPENAI_API_KEY", KEY)]).await;
    match transcribe(&host, request(&audio(64))).await {
        Err(ProviderError::Fatal(message)) => {
            assert!(message.contains("denied by the host"), "{message}");
            assert!(message.contains("grant"), "{message}");
        }
        other => panic!("expected fatal, got {other:?}"),
    }
    assert_eq!(fake.calls(), 0);
}

#[tokio::test]
async fn a_refused_connection_is_transient() {
    // A port that was free a moment ago and has no listener now.
    let closed: SocketAddr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let base_url = format!("http://{closed}");
    let host = TestHost::start("", &[("OPENAI_API_KEY", KEY), ("OPENAI_BASE_URL", &base_url)]).await;
    match transcribe(&host, request(&audio(64))).await {
        Err(ProviderError::Transient(message)) => assert!(message.contains("request to OpenAI failed"), "{message}"),
        other => panic!("expected transient, got {other:?}"),
    }
}

#[tokio::test]
async fn a_service_that_never_answers_is_transient_before_the_hosts_deadline() {
    let fake = FakeOpenAi::start(KEY).await;
    let host = host_for(&fake, "[plugins.openai-whisper]\ndeadline_ms = 1000\n").await;
    fake.push_script(vec![Scripted::Hang]);
    let started = Instant::now();
    match transcribe(&host, request(&audio(64))).await {
        Err(ProviderError::Transient(message)) => assert!(message.contains("no answer from OpenAI in time"), "{message}"),
        other => panic!("expected transient, got {other:?}"),
    }
    // The plugin gave up on its own, before the host's deadline.
    assert!(started.elapsed() < Duration::from_millis(1000), "{:?}", started.elapsed());
    assert_eq!(fake.requests()[0].answered, None);
}
