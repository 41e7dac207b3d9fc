//! `audio_url` submits: the host downloads the audio, under the upload
//! limit and a deadline, and never from an internal address unless the
//! operator allows it.

use reqwest::StatusCode;
use scribe_tests::api::{serve, wav, Env};
use scribe_tests::problem;
use serde_json::Value;

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

/// Submits `url` as `env`'s first user, with a language.
async fn submit_url(env: &Env, url: &str) -> reqwest::Response {
    env.client
        .post(format!("{}/v1/jobs", env.base))
        .bearer_auth(&env.ann)
        .json(&serde_json::json!({ "audio_url": url, "language": "de" }))
        .send()
        .await
        .expect("POST")
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
        let detail = problem(submit_url(&env, &url).await, StatusCode::BAD_REQUEST).await;
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

    let response = submit_url(&env, &url("/a.wav")).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let job: Value = response.json().await.unwrap();
    assert_eq!(job["audio_bytes"], wav(400).len() as u64);
    assert_eq!(job["language"], "de");
    let hop = submit_url(&env, &url("/hop")).await;
    assert_eq!(hop.status(), StatusCode::ACCEPTED, "a redirect is followed");
    assert_eq!(hop.json::<Value>().await.unwrap()["audio_bytes"], job["audio_bytes"]);

    let detail = problem(submit_url(&env, &url("/big.wav")).await, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert!(detail.contains("SCRIBE_MAX_UPLOAD_BYTES"), "{detail}");
    let detail = problem(submit_url(&env, &url("/announced.wav")).await, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert!(detail.contains("announced"), "{detail}");
    let detail = problem(submit_url(&env, &url("/note.txt")).await, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    assert!(detail.contains("not audio"), "{detail}");
    let detail = problem(submit_url(&env, &url("/gone.wav")).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(detail.contains("404"), "{detail}");
    let silent = scribe_tests::hanging_server().await;
    let detail =
        problem(submit_url(&env, &format!("http://127.0.0.1:{}/a.wav", silent.port())).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(detail.contains("500 ms"), "{detail}");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 7);
    env.still_serving_with(&job).await;
}
