//! The jobs API over real HTTP: submit (multipart), show, list, cancel,
//! idempotency, per-user isolation, and every refusal as problem JSON,
//! after which the server still serves and the accepted job is unchanged.

use reqwest::StatusCode;
use scribe_host::clock::now_ms;
use scribe_host::server::{self, Running};
use scribe_host::users;
use scribe_tests::test_config;
use scribe_tests::problem;
use serde_json::Value;

/// An API-only server (`SCRIBE_DISPATCH=false`: jobs stay as submitted, so
/// the API's answers can be checked state by state) with
/// `OPENAI_API_KEY=sk-test` (so `openai-whisper` is the default provider)
/// plus `env`, and two users' keys.
struct Env {
    server: Running,
    base: String,
    ann: String,
    bob: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn serve(env: &[(&str, &str)]) -> Env {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut vars = env.to_vec();
    if !vars.iter().any(|(k, _)| *k == "OPENAI_API_KEY") {
        vars.push(("OPENAI_API_KEY", "sk-test"));
    }
    if !vars.iter().any(|(k, _)| *k == "SCRIBE_DISPATCH") {
        vars.push(("SCRIBE_DISPATCH", "false"));
    }
    // An empty value here means "unset".
    vars.retain(|(_, v)| !v.is_empty());
    let config = test_config(dir.path(), "", &vars);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let server = server::start_on(config, listener).await.expect("server starts");
    let (_, ann) = users::add(&*server.store, "ann", now_ms()).await.expect("ann");
    let (_, bob) = users::add(&*server.store, "bob", now_ms()).await.expect("bob");
    let base = format!("http://{}", server.addr);
    Env { server, base, ann, bob, client: reqwest::Client::new(), _dir: dir }
}

fn wav(samples: usize) -> Vec<u8> {
    scribe_tests::wav(0, samples)
}

const BOUNDARY: &str = "scribe-test-boundary-7f3a";

/// A multipart body: `file` (if given) first, then the text fields.
fn form(file: Option<&[u8]>, fields: &[(&str, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    if let Some(bytes) = file {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

impl Env {
    fn submit(&self, key: &str, body: Vec<u8>) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}/v1/jobs", self.base))
            .bearer_auth(key)
            .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
            .body(body)
    }

    async fn get(&self, key: &str, path: &str) -> reqwest::Response {
        self.client.get(format!("{}{path}", self.base)).bearer_auth(key).send().await.expect("GET")
    }

    async fn delete(&self, key: &str, id: &str) -> reqwest::Response {
        self.client.delete(format!("{}/v1/jobs/{id}", self.base)).bearer_auth(key).send().await.expect("DELETE")
    }

    /// The server still serves, and `job` is as it was.
    async fn still_serving_with(&self, job: &Value) {
        let health = self.client.get(format!("{}/healthz", self.base)).send().await.expect("healthz");
        assert_eq!(health.status(), StatusCode::OK);
        let id = job["id"].as_str().unwrap();
        let now: Value = self.get(&self.ann, &format!("/v1/jobs/{id}")).await.json().await.unwrap();
        assert_eq!(&now, job, "the accepted job is unchanged");
    }
}


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
    let base_url = fake.base_url();
    let env = serve(&[
        ("SCRIBE_DISPATCH", "true"),
        ("OPENAI_BASE_URL", &base_url),
        ("TRANSCRIPTION_RATE_LIMIT_PER_MINUTE", "6000"),
    ])
    .await;
    let mut ids = Vec::new();
    for seed in 1..=3 {
        let audio = scribe_tests::wav(seed, 400);
        let response = env.submit(&env.ann, form(Some(&audio), &[("language", "en")])).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        ids.push(response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        let path = format!("/v1/jobs/{id}");
        scribe_tests::wait_until("the job to succeed", std::time::Duration::from_secs(30), || async {
            env.get(&env.ann, &path).await.json::<Value>().await.unwrap()["status"] == "succeeded"
        })
        .await;
        let job: Value = env.get(&env.ann, &path).await.json().await.unwrap();
        assert_eq!(job["attempts"], 1);
        assert!(job["finished_at"].is_string(), "{job}");
    }
    assert_eq!(fake.calls(), 3, "one provider call per job");
    assert!(fake.requests().iter().all(|r| r.field("language") == Some("en")), "the job's options reach the provider");
}

/// A server on 127.0.0.1 handing out audio by URL, counting the requests
/// it received: `/a.wav` (audio), `/big.wav` (300,000 bytes, no
/// `Content-Length`), `/announced.wav` (`Content-Length` of 300,000),
/// `/note.txt` (text), `/hop` (a redirect to `/a.wav`); anything else 404.
async fn audio_server() -> (std::net::SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use axum::body::Body;
    use axum::http::header;
    use axum::response::{IntoResponse, Redirect};
    use axum::routing::get;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let hits = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let app = axum::Router::new()
        .route("/a.wav", get(|| async { wav(400) }))
        .route(
            "/big.wav",
            get(|| async {
                let chunks = wav(150_000).chunks(10_000).map(|c| Ok::<_, std::io::Error>(c.to_vec())).collect::<Vec<_>>();
                Body::from_stream(futures_util::stream::iter(chunks))
            }),
        )
        .route(
            "/announced.wav",
            get(|| async { ([(header::CONTENT_TYPE, "audio/wav")], wav(150_000)).into_response() }),
        )
        .route("/note.txt", get(|| async { "this is not audio, only a note about audio".repeat(10) }))
        .route("/hop", get(|| async { Redirect::temporary("/a.wav") }))
        .layer(axum::middleware::from_fn(move |request, next: axum::middleware::Next| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move { next.run(request).await }
        }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (addr, hits)
}

impl Env {
    async fn submit_url(&self, url: &str) -> reqwest::Response {
        self.client
            .post(format!("{}/v1/jobs", self.base))
            .bearer_auth(&self.ann)
            .json(&serde_json::json!({ "audio_url": url, "language": "de" }))
            .send()
            .await
            .expect("POST")
    }
}

#[tokio::test]
async fn audio_urls_to_internal_addresses_are_refused_without_a_request() {
    let (addr, hits) = audio_server().await;
    let env = serve(&[]).await;
    let port = addr.port();
    for url in [
        format!("http://127.0.0.1:{port}/a.wav"),
        format!("http://localhost:{port}/a.wav"),
        format!("http://[::1]:{port}/a.wav"),
        "http://169.254.169.254/latest/meta-data".to_string(),
        "http://10.0.0.1/a.wav".to_string(),
    ] {
        let detail = problem(env.submit_url(&url).await, StatusCode::BAD_REQUEST).await;
        assert!(detail.contains("audio_url") && detail.contains("SCRIBE_AUDIO_URL_ALLOW_PRIVATE"), "{url}: {detail}");
    }
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0, "no refused URL was requested");
    let page: Value = env.get(&env.ann, "/v1/jobs").await.json().await.unwrap();
    assert!(page["jobs"].as_array().unwrap().is_empty(), "no refused submit left a job");
}

#[tokio::test]
async fn an_allowed_audio_url_is_fetched_checked_and_queued() {
    let (addr, hits) = audio_server().await;
    let env = serve(&[
        ("SCRIBE_AUDIO_URL_ALLOW_PRIVATE", "true"),
        ("SCRIBE_MAX_UPLOAD_BYTES", "100000"),
        ("SCRIBE_AUDIO_URL_TIMEOUT_MS", "500"),
    ])
    .await;
    let url = |path: &str| format!("http://localhost:{}{path}", addr.port());

    let response = env.submit_url(&url("/a.wav")).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let job: Value = response.json().await.unwrap();
    assert_eq!(job["audio_bytes"], wav(400).len() as u64);
    assert_eq!(job["language"], "de");
    let hop = env.submit_url(&url("/hop")).await;
    assert_eq!(hop.status(), StatusCode::ACCEPTED, "a redirect is followed");
    assert_eq!(hop.json::<Value>().await.unwrap()["audio_bytes"], job["audio_bytes"]);

    let detail = problem(env.submit_url(&url("/big.wav")).await, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert!(detail.contains("SCRIBE_MAX_UPLOAD_BYTES"), "{detail}");
    let detail = problem(env.submit_url(&url("/announced.wav")).await, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert!(detail.contains("announced"), "{detail}");
    let detail = problem(env.submit_url(&url("/note.txt")).await, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    assert!(detail.contains("not audio"), "{detail}");
    let detail = problem(env.submit_url(&url("/gone.wav")).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(detail.contains("404"), "{detail}");
    let silent = scribe_tests::hanging_server().await;
    let detail =
        problem(env.submit_url(&format!("http://127.0.0.1:{}/a.wav", silent.port())).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(detail.contains("500 ms"), "{detail}");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 7);
    env.still_serving_with(&job).await;
}
