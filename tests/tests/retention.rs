//! Audio retention: audio goes once no job needs it (every job using it
//! terminal for `SCRIBE_AUDIO_RETENTION_HOURS`), orphaned audio and
//! interrupted uploads go too, and transcripts and job rows stay.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use scribe_host::clock::now_ms;
use scribe_host::retention::{self, Swept};
use scribe_host::server;
use scribe_host::users;
use scribe_tests::{test_config, wav};
use serde_json::Value;

const DAY: Duration = Duration::from_secs(24 * 3600);

/// Submits `audio` as multipart with `fields`; the response.
async fn submit(client: &reqwest::Client, base: &str, key: &str, audio: Vec<u8>, fields: &[(&str, &str)]) -> reqwest::Response {
    let mut form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(audio).file_name("a.wav"));
    for (name, value) in fields {
        form = form.text(name.to_string(), value.to_string());
    }
    client.post(format!("{base}/v1/jobs")).bearer_auth(key).multipart(form).send().await.expect("POST")
}

#[tokio::test]
async fn audio_is_removed_once_no_job_needs_it_and_transcripts_stay() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path(), "", &[("OPENAI_API_KEY", "sk-test"), ("SCRIBE_DISPATCH", "false")]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = server::start_on(config, listener).await.unwrap();
    let (_, key) = users::add(&*server.store, "ann", now_ms()).await.unwrap();
    let base = format!("http://{}", server.addr);
    let client = reqwest::Client::new();
    let job = |response: reqwest::Response| async move {
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string()
    };
    let sha = |seed: u32| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(wav(seed, 300)))
    };

    // 1: canceled. 2: succeeded (finished through the store, as a worker
    // would). 4: refused after its audio was stored. 3: still queued.
    let canceled = job(submit(&client, &base, &key, wav(1, 300), &[]).await).await;
    let response = client.delete(format!("{base}/v1/jobs/{canceled}")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let succeeded = job(submit(&client, &base, &key, wav(2, 300), &[]).await).await;
    let claimed = server.store.claim(&succeeded, "test-worker", now_ms(), now_ms() + 30_000).await.unwrap();
    assert!(claimed.is_some());
    assert!(server.store.succeed(&succeeded, "test-worker", r#"{"text":"kept"}"#, now_ms()).await.unwrap());
    let refused = submit(&client, &base, &key, wav(4, 300), &[("priority", "urgent")]).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    // A refused submit does not wait for its audio row's commit; the
    // store's writer commits in order, so the next accepted submit's
    // answer means that row is in too.
    let queued = job(submit(&client, &base, &key, wav(3, 300), &[]).await).await;
    // Small uploads are rows in the database; only an interrupted file
    // upload (of audio over SCRIBE_AUDIO_INLINE_MAX_BYTES) leaves a file.
    let audio_dir = dir.path().join("audio");
    std::fs::create_dir_all(&audio_dir).unwrap();
    std::fs::write(audio_dir.join(".upload-crashed.tmp"), b"half an upload").unwrap();
    for seed in 1..=4 {
        assert!(server.audio.exists(&sha(seed)).await.unwrap(), "audio {seed} is stored");
    }

    // Within the retention, and before the minimum age: nothing goes.
    let now = SystemTime::now();
    assert_eq!(retention::sweep(&*server.store, &*server.audio, DAY, now).await.unwrap(), Swept::default());
    let hour_later = now + Duration::from_secs(3600);
    let swept = retention::sweep(&*server.store, &*server.audio, DAY, hour_later).await.unwrap();
    assert_eq!(swept, Swept { audio: 0, abandoned_uploads: 1 }, "only the interrupted upload is old enough");
    assert!(!audio_dir.join(".upload-crashed.tmp").exists());

    // A day and an hour later: all but the queued job's audio goes.
    let later = now + DAY + Duration::from_secs(3600);
    let swept = retention::sweep(&*server.store, &*server.audio, DAY, later).await.unwrap();
    assert_eq!(swept, Swept { audio: 3, abandoned_uploads: 0 });
    for (seed, kept) in [(1, false), (2, false), (3, true), (4, false)] {
        assert_eq!(server.audio.exists(&sha(seed)).await.unwrap(), kept, "audio {seed}");
    }
    assert_eq!(server.store.transcript(&succeeded).await.unwrap().as_deref(), Some(r#"{"text":"kept"}"#));
    for id in [&canceled, &succeeded, &queued] {
        let response = client.get(format!("{base}/v1/jobs/{id}")).bearer_auth(&key).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "job {id} is still shown");
    }

    // A retention of 0 still spares audio stored within the minimum age.
    let fresh = job(submit(&client, &base, &key, wav(5, 300), &[]).await).await;
    let response = client.delete(format!("{base}/v1/jobs/{fresh}")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let swept = retention::sweep(&*server.store, &*server.audio, Duration::ZERO, SystemTime::now()).await.unwrap();
    assert_eq!(swept.audio, 0);
    assert!(server.audio.exists(&sha(5)).await.unwrap());
    let swept = retention::sweep(&*server.store, &*server.audio, Duration::ZERO, later).await.unwrap();
    assert_eq!(swept.audio, 1, "the canceled job's audio, now past the minimum age");
    assert!(server.audio.exists(&sha(3)).await.unwrap(), "the queued job's audio stays");
}
