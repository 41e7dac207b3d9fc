//! Audio kept in PostgreSQL (a fleet's default audio store), in a database
//! of its own per test: chunked on the way in, whole on the way out, one
//! copy per content, nothing kept of a refused upload, and retention's
//! removals guarded on when the audio was last stored.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use scribe_host::audio::{AudioError, AudioStore, DatabaseAudioStore, CHUNK_BYTES};
use scribe_host::store::PostgresStore;
use scribe_tests::postgres::TestDatabase;
use scribe_tests::{upload, wav};

struct Rig {
    audio: DatabaseAudioStore,
    pool: sqlx::PgPool,
    _database: TestDatabase,
}

async fn rig() -> Rig {
    let database = TestDatabase::create().await;
    let store = PostgresStore::open(&database.url, 4, Duration::from_secs(5)).await.expect("the store opens");
    let pool = store.pool().clone();
    Rig { audio: DatabaseAudioStore::new(pool.clone()), pool, _database: database }
}

impl Rig {
    async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(&self.pool).await.expect("count")
    }
}


/// `bytes` as an upload in 100,000-byte parts; before part `i` is read,
/// `before(i, pool)` runs (what happens in the database meanwhile).
fn upload_with<F, Fut>(bytes: &[u8], pool: sqlx::PgPool, before: F) -> BoxStream<'static, Result<Bytes, std::io::Error>>
where
    F: Fn(usize, sqlx::PgPool) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let parts: Vec<Bytes> = bytes.chunks(100_000).map(Bytes::copy_from_slice).collect();
    futures_util::stream::iter(parts.into_iter().enumerate())
        .then(move |(i, part)| {
            let hook = before(i, pool.clone());
            async move {
                hook.await;
                Ok(part)
            }
        })
        .boxed()
}

#[tokio::test]
async fn audio_over_several_chunks_comes_back_whole_and_is_stored_once() {
    let rig = rig().await;
    let audio = wav(1, 400_000);
    assert!(audio.len() > 2 * CHUNK_BYTES, "the test audio spans several chunks");
    let stored = rig.audio.put(upload(&audio, 10_000), 1 << 30).await.expect("stored");
    assert_eq!(stored.bytes, audio.len() as u64);
    assert_eq!(rig.audio.get(&stored.sha256).await.expect("read"), audio);
    assert!(rig.audio.exists(&stored.sha256).await.unwrap());
    assert_eq!(rig.count("audio_chunks").await, audio.len().div_ceil(CHUNK_BYTES) as i64);

    let again = rig.audio.put(upload(&audio, 64_000), 1 << 30).await.expect("stored again");
    assert_eq!(again.sha256, stored.sha256);
    let chunks = audio.len().div_ceil(CHUNK_BYTES) as i64;
    assert_eq!((rig.count("audio_blobs").await, rig.count("audio_chunks").await), (1, chunks), "one copy per content");
}

#[tokio::test]
async fn a_refused_upload_keeps_nothing() {
    let rig = rig().await;
    let audio = wav(2, 200_000);
    let too_large = rig.audio.put(upload(&audio, 50_000), 100_000).await;
    assert!(matches!(too_large, Err(AudioError::TooLarge { limit: 100_000 })), "{too_large:?}");
    assert!(matches!(rig.audio.put(upload(&[], 1), 1000).await, Err(AudioError::Empty)));
    let not_audio = rig.audio.put(upload(&[b'x'; 5000], 1000), 1 << 20).await;
    assert!(matches!(not_audio, Err(AudioError::NotAudio { .. })), "{not_audio:?}");
    assert_eq!((rig.count("audio_blobs").await, rig.count("audio_chunks").await), (0, 0));
}

#[tokio::test]
async fn missing_audio_is_not_found_and_a_bad_hash_is_refused() {
    let rig = rig().await;
    let missing = rig.audio.get(&"a".repeat(64)).await.expect_err("nothing stored");
    assert!(missing.is_not_found(), "{missing}");
    assert!(rig.audio.delete(&"a".repeat(64)).await.is_ok(), "removing what is not there succeeds");
    assert!(rig.audio.get("../etc/passwd").await.is_err());
}

#[tokio::test]
async fn retention_removes_only_audio_not_stored_since_its_cutoff_and_abandoned_uploads() {
    let rig = rig().await;
    let stored = rig.audio.put(upload(&wav(3, 1000), 4096), 1 << 20).await.expect("stored");
    let before_put = SystemTime::now() - Duration::from_secs(60);
    assert!(rig.audio.stored_before(before_put).await.unwrap().is_empty());
    assert!(!rig.audio.delete_if_stored_before(&stored.sha256, before_put).await.unwrap(), "stored since the cutoff: kept");
    let later = SystemTime::now() + Duration::from_secs(60);
    assert_eq!(rig.audio.stored_before(later).await.unwrap(), vec![stored.sha256.clone()]);
    assert!(rig.audio.delete_if_stored_before(&stored.sha256, later).await.unwrap());
    assert!(!rig.audio.exists(&stored.sha256).await.unwrap());

    // An upload whose process died: a row without a hash, and its chunks.
    let blob: i64 = sqlx::query_scalar("INSERT INTO audio_blobs (stored_at) VALUES (0) RETURNING id").fetch_one(&rig.pool).await.unwrap();
    sqlx::query("INSERT INTO audio_chunks (blob_id, seq, data) VALUES ($1, 0, '\\x00')").bind(blob).execute(&rig.pool).await.unwrap();
    assert_eq!(rig.audio.remove_abandoned_uploads(SystemTime::now()).await.unwrap(), 1);
    assert_eq!((rig.count("audio_blobs").await, rig.count("audio_chunks").await), (0, 0));
}

#[tokio::test]
async fn an_upload_removed_as_abandoned_while_it_arrives_is_refused_not_half_stored() {
    let rig = rig().await;
    let audio = wav(4, 400_000);
    let pool = rig.pool.clone();
    let audio_store = DatabaseAudioStore::new(pool.clone());
    // Halfway through (a chunk is in the database by then), retention
    // takes the upload for abandoned: a cutoff in the future stands for an
    // upload that has been arriving for longer than 10 minutes.
    let stream = upload_with(&audio, pool, |i, pool| async move {
        if i == 4 {
            let later = SystemTime::now() + Duration::from_secs(3600);
            let removed = DatabaseAudioStore::new(pool).remove_abandoned_uploads(later).await.expect("sweep");
            assert_eq!(removed, 1, "the upload in progress was taken for abandoned");
        }
    });
    let refused = audio_store.put(stream, 1 << 30).await;
    assert!(refused.is_err(), "the upload fails rather than storing part of the audio: {refused:?}");
    assert_eq!((rig.count("audio_blobs").await, rig.count("audio_chunks").await), (0, 0));
}

#[tokio::test]
async fn a_slow_upload_is_restamped_as_it_arrives_so_retention_leaves_it_alone() {
    let rig = rig().await;
    let audio = wav(5, 400_000);
    let pool = rig.pool.clone();
    // Chunks are written after the 3rd and the 6th part.
    let stream = upload_with(&audio, pool, |i, pool| async move {
        if i == 3 {
            // As if the upload had begun long ago.
            sqlx::query("UPDATE audio_blobs SET stored_at = 0 WHERE sha256 IS NULL").execute(&pool).await.expect("age");
        }
        if i == 7 {
            let cutoff = SystemTime::now() - Duration::from_secs(600);
            let removed = DatabaseAudioStore::new(pool).remove_abandoned_uploads(cutoff).await.expect("sweep");
            assert_eq!(removed, 0, "a chunk arrived since: the upload is not abandoned");
        }
    });
    let stored = rig.audio.put(stream, 1 << 30).await.expect("stored");
    assert_eq!(rig.audio.get(&stored.sha256).await.expect("read"), audio);
}
