//! One instance's audio store on SQLite: uploads up to
//! `SCRIBE_AUDIO_INLINE_MAX_BYTES` are rows of the database, larger ones
//! files in the audio directory; both read back whole, one copy per
//! content, nothing kept of a refused upload, and retention's removals
//! guarded on when the audio was last stored.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use scribe_host::audio::{AudioError, AudioStore, InlineAudioStore, LocalAudioStore, StoredAudio};
use scribe_host::store::{Inserted, JobSpec, JobStatus, NewJob, SqliteStore, Store, StoreError};
use scribe_tests::{test_config, upload, wav};

/// The largest upload kept as a row in these tests.
const INLINE_MAX: u64 = 4_096;

struct Rig {
    audio: InlineAudioStore,
    database: SqliteStore,
    dir: tempfile::TempDir,
}

async fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("scribe.db").display());
    let database = SqliteStore::open(&url, 2, Duration::from_secs(5)).await.expect("the store opens");
    let files = LocalAudioStore::new(dir.path().join("audio"));
    Rig { audio: InlineAudioStore::new(&database, files, INLINE_MAX), database, dir }
}

impl Rig {
    async fn rows(&self) -> i64 {
        self.database.read_pool().scalar("SELECT COUNT(*) FROM audio_inline", []).await.unwrap().unwrap()
    }

    /// The names of the files in the audio directory.
    fn files(&self) -> Vec<String> {
        match std::fs::read_dir(self.dir.path().join("audio")) {
            Ok(entries) => entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
            Err(_) => Vec::new(),
        }
    }
}


#[tokio::test]
async fn small_audio_is_a_row_and_large_audio_a_file_and_both_read_back_whole() {
    let rig = rig().await;
    let small = wav(1, 1_000);
    let large = wav(2, 10_000);
    assert!(small.len() as u64 <= INLINE_MAX && large.len() as u64 > INLINE_MAX);

    let kept = rig.audio.put(upload(&small, 700), 1 << 20).await.expect("small stored");
    assert_eq!((rig.rows().await, rig.files()), (1, Vec::<String>::new()), "a row, no file");
    let filed = rig.audio.put(upload(&large, 700), 1 << 20).await.expect("large stored");
    assert_eq!((rig.rows().await, rig.files()), (1, vec![filed.sha256.clone()]), "a file under its hash");

    assert_eq!(rig.audio.get(&kept.sha256).await.unwrap(), small);
    assert_eq!(rig.audio.get(&filed.sha256).await.unwrap(), large);
    assert!(rig.audio.exists(&kept.sha256).await.unwrap() && rig.audio.exists(&filed.sha256).await.unwrap());
    assert_eq!(kept.bytes, small.len() as u64);

    let again = rig.audio.put(upload(&small, 300), 1 << 20).await.expect("stored again");
    assert_eq!((again.sha256, rig.rows().await), (kept.sha256.clone(), 1), "one copy per content");

    rig.audio.delete(&kept.sha256).await.unwrap();
    let gone = rig.audio.get(&kept.sha256).await.expect_err("deleted");
    assert!(gone.is_not_found(), "{gone}");
    assert!(!rig.audio.exists(&kept.sha256).await.unwrap());
}

#[tokio::test]
async fn a_refused_upload_keeps_nothing() {
    let rig = rig().await;
    let empty = rig.audio.put(upload(&[], 1), 1 << 20).await.expect_err("empty");
    assert!(matches!(empty, AudioError::Empty), "{empty}");
    let text = rig.audio.put(upload(b"not audio at all, just text", 5), 1 << 20).await.expect_err("text");
    assert!(matches!(text, AudioError::NotAudio { .. }), "{text}");
    let over = rig.audio.put(upload(&wav(3, 1_000), 100), 1_000).await.expect_err("over the limit");
    assert!(matches!(over, AudioError::TooLarge { limit: 1_000 }), "{over}");
    let over_file = rig.audio.put(upload(&wav(4, 20_000), 1_000), 10_000).await.expect_err("over, past inline");
    assert!(matches!(over_file, AudioError::TooLarge { limit: 10_000 }), "{over_file}");
    assert_eq!((rig.rows().await, rig.files()), (0, Vec::<String>::new()));
}

#[tokio::test]
async fn retention_removes_a_row_only_if_no_put_stored_it_since() {
    let rig = rig().await;
    let audio = wav(5, 1_000);
    let first = rig.audio.put(upload(&audio, 4_096), 1 << 20).await.unwrap();
    let cutoff = SystemTime::now() + Duration::from_millis(5);
    wait_past(cutoff).await;
    assert_eq!(rig.audio.stored_before(cutoff).await.unwrap(), vec![first.sha256.clone()]);

    // Stored again after the cutoff: re-stamped, so kept.
    rig.audio.put(upload(&audio, 4_096), 1 << 20).await.unwrap();
    assert!(rig.audio.stored_before(cutoff).await.unwrap().is_empty());
    assert!(!rig.audio.delete_if_stored_before(&first.sha256, cutoff).await.unwrap());
    assert_eq!(rig.audio.get(&first.sha256).await.unwrap(), audio);

    let later = SystemTime::now() + Duration::from_millis(5);
    wait_past(later).await;
    assert!(rig.audio.delete_if_stored_before(&first.sha256, later).await.unwrap());
    assert!(!rig.audio.exists(&first.sha256).await.unwrap());
    assert!(rig.audio.get(&first.sha256).await.unwrap_err().is_not_found(), "not served from memory either");
}

/// A job naming `audio`, inserted to commit only with its audio's write.
fn job_of(user_id: &str, id: &str, audio: &StoredAudio) -> NewJob {
    let spec = JobSpec::with_default_options("openai-whisper", audio.sha256.clone(), audio.format.extension(), audio.bytes);
    NewJob {
        id: id.into(),
        user_id: user_id.into(),
        spec,
        idempotency_key: None,
        now_ms: 1,
        cache_key: id.into(),
        cached_transcript: None,
        audio_write: audio.pending.clone(),
    }
}

/// A submit does not wait for its audio row's commit on its own: the job's
/// insert commits with it, and a job whose audio row failed is refused.
#[tokio::test]
async fn a_job_commits_only_with_its_audio_row() {
    let rig = rig().await;
    let store = &rig.database;
    let ann = store.create_user("ann", "hash", 1).await.unwrap();

    let stored = rig.audio.put_deferred(upload(&wav(7, 1_000), 700), 1 << 20).await.expect("stored");
    let row_write = stored.pending.clone().expect("a row's write is not awaited");
    let Inserted::Created(job) = store.insert_job(job_of(&ann.id, "j1", &stored)).await.expect("the job commits") else {
        panic!("a new job")
    };
    assert_eq!(job.status, JobStatus::Queued);
    row_write.committed().await.expect("its audio committed with it, or before");
    assert_eq!(rig.rows().await, 1);

    let filed = rig.audio.put_deferred(upload(&wav(8, 10_000), 700), 1 << 20).await.expect("stored");
    assert!(filed.pending.is_none(), "a file is durable when put answers");
    assert!(rig.audio.exists(&filed.sha256).await.unwrap());

    // A row whose write failed (here: a statement the database refuses).
    let failed = store.writer().send(|c| Ok(c.execute("INSERT INTO missing (x) VALUES (1)", []).map(|_| ())?)).unwrap();
    let lost = StoredAudio { pending: Some(failed), ..rig.audio.put(upload(&wav(9, 1_000), 700), 1 << 20).await.unwrap() };
    let refused = store.insert_job(job_of(&ann.id, "j2", &lost)).await.expect_err("no job without its audio");
    assert!(matches!(refused, StoreError::DependencyFailed(_)), "{refused}");
    assert_eq!(store.job_by_id("j2").await.unwrap(), None);
    assert_eq!(store.queue_length().await.unwrap(), 1, "the first job only");
}

/// Returns once the wall clock is past `at` (stamps are wall-clock ms).
async fn wait_past(at: SystemTime) {
    while SystemTime::now() <= at {
        tokio::task::yield_now().await;
    }
}

/// The setting, through a running server: by default a submit's small
/// audio leaves no file; at 0 every upload is a file.
#[tokio::test]
async fn the_inline_limit_decides_where_a_submits_audio_goes() {
    for (setting, files_expected) in [(None, 0), (Some("0"), 1)] {
        let dir = tempfile::tempdir().unwrap();
        let mut env = vec![("OPENAI_API_KEY", "sk-test"), ("SCRIBE_DISPATCH", "false")];
        if let Some(value) = setting {
            env.push(("SCRIBE_AUDIO_INLINE_MAX_BYTES", value));
        }
        let config = test_config(dir.path(), "", &env);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = scribe_host::server::start_on(config, listener).await.unwrap();
        let (_, key) = scribe_host::users::add(&*server.store, "ann", scribe_host::clock::now_ms()).await.unwrap();
        let audio = wav(6, 1_000);
        let form = reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(audio.clone()).file_name("a.wav"));
        let response = reqwest::Client::new()
            .post(format!("http://{}/v1/jobs", server.addr))
            .bearer_auth(&key)
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED, "{setting:?}");
        let files = std::fs::read_dir(dir.path().join("audio")).map_or(0, |entries| entries.count());
        assert_eq!(files, files_expected, "SCRIBE_AUDIO_INLINE_MAX_BYTES={setting:?}");
        let sha = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(&audio))
        };
        assert_eq!(server.audio.get(&sha).await.unwrap(), audio);
    }
}
