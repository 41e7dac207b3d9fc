//! Audio in an S3-compatible bucket (moto's server on 127.0.0.1): streamed
//! in through a multipart upload, whole on the way out, one object per
//! content, nothing kept of a refused upload, retention by last-modified
//! time; and a fleet of two instances sharing audio through the bucket.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use scribe_host::audio::{AudioError, AudioStore, BucketAudioStore};
use scribe_host::store::JobStatus;
use scribe_tests::fake_openai::FakeOpenAi;
use scribe_tests::fleet::Fleet;
use scribe_tests::moto::S3Server;
use scribe_tests::postgres::TestDatabase;
use scribe_tests::{upload, wav};

fn bucket_store(server: &S3Server, prefix: &str) -> BucketAudioStore {
    BucketAudioStore::from_url(&format!("s3://{}/{prefix}", server.bucket), &server.options()).expect("the bucket store")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_round_trips_through_a_multipart_upload_and_is_stored_once() {
    let server = S3Server::start().await;
    let audio_store = bucket_store(&server, "one");
    // Over 5 MiB: two parts.
    let audio = wav(1, 3_000_000);
    let stored = audio_store.put(upload(&audio, 64 * 1024), 1 << 30).await.expect("stored");
    assert_eq!(stored.bytes, audio.len() as u64);
    assert_eq!(audio_store.get(&stored.sha256).await.expect("read"), audio);
    assert!(audio_store.exists(&stored.sha256).await.unwrap());
    let again = audio_store.put(upload(&audio, 1 << 20), 1 << 30).await.expect("stored again");
    assert_eq!(again.sha256, stored.sha256);
    let later = SystemTime::now() + Duration::from_secs(60);
    assert_eq!(audio_store.stored_before(later).await.unwrap(), vec![stored.sha256.clone()], "one object per content");
    assert_eq!(audio_store.remove_abandoned_uploads(later).await.unwrap(), 0, "no upload left behind");

    let missing = audio_store.get(&"a".repeat(64)).await.expect_err("nothing there");
    assert!(missing.is_not_found(), "{missing}");
    assert!(audio_store.get("../../etc/passwd").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upload_keeps_nothing_and_retention_goes_by_last_stored() {
    let server = S3Server::start().await;
    let audio_store = bucket_store(&server, "two");
    let too_large = audio_store.put(upload(&wav(2, 200_000), 50_000), 100_000).await;
    assert!(matches!(too_large, Err(AudioError::TooLarge { limit: 100_000 })), "{too_large:?}");
    let not_audio = audio_store.put(upload(&[b'x'; 5000], 1000), 1 << 20).await;
    assert!(matches!(not_audio, Err(AudioError::NotAudio { .. })), "{not_audio:?}");
    let later = SystemTime::now() + Duration::from_secs(60);
    assert!(audio_store.stored_before(later).await.unwrap().is_empty());
    assert_eq!(audio_store.remove_abandoned_uploads(later).await.unwrap(), 0);

    let stored = audio_store.put(upload(&wav(3, 1000), 4096), 1 << 20).await.expect("stored");
    let earlier = SystemTime::now() - Duration::from_secs(60);
    assert!(!audio_store.delete_if_stored_before(&stored.sha256, earlier).await.unwrap(), "stored since the cutoff: kept");
    assert!(audio_store.delete_if_stored_before(&stored.sha256, later).await.unwrap());
    assert!(!audio_store.exists(&stored.sha256).await.unwrap());
}

/// Two instances with data directories of their own keep audio in one
/// bucket: a job accepted by one runs on whichever claims it, and its
/// audio is in the bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_shares_audio_through_the_bucket() {
    let server = S3Server::start().await;
    let database = TestDatabase::create().await;
    let fake = FakeOpenAi::start("sk-test").await;
    let url = format!("s3://{}/fleet", server.bucket);
    let options = server.options();
    let mut env: Vec<(&str, &str)> = options.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.extend([("SCRIBE_AUDIO_STORE", "bucket"), ("SCRIBE_AUDIO_BUCKET_URL", url.as_str())]);
    let fleet = Fleet::start(2, &database.url, &fake, &env).await;
    let keys = fleet.add_users(1).await;
    let id = fleet.submit(0, &keys[0], wav(9, 4000)).await;
    let jobs = fleet.jobs_when_idle(std::slice::from_ref(&id), Duration::from_secs(30)).await;
    assert_eq!(jobs[0].status, JobStatus::Succeeded, "{:?}", jobs[0].error);
    let in_bucket = bucket_store(&server, "fleet").exists(&jobs[0].spec.audio_sha256).await.unwrap();
    assert!(in_bucket, "the audio is in the bucket");
    let response = fleet.client.get(format!("{}/readyz", fleet.instances[1].base)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    fleet.shutdown().await;
}
