//! `scribe bench store`: the embedded store on its own, with no HTTP, no
//! plugin and no scheduler, so what it measures is the SQLite writer (the
//! store's one serial part) and the disk under it.
//!
//! Each of `clients` tasks takes its share of the jobs one after another
//! and makes each job's writes in the order a real job makes them: its
//! audio row and its job (one commit, as a submit does), its claim, its
//! outcome. So at most `clients` writes wait at once, as with that many
//! submitters and workers, and group commit shares each flush among them.
//! The clients' own work (a WAV made and hashed per job) shares the cores;
//! the database is in a temporary directory (where `TMPDIR` says: on a
//! tmpfs a flush costs nothing, so measure on a disk).

use std::time::{Duration, Instant};

use futures_util::StreamExt;

use super::{BenchError, Summary};
use crate::audio::{AudioStore, InlineAudioStore, LocalAudioStore};
use crate::clock::now_ms;
use crate::store::{Inserted, JobSpec, JobStatus, LeaseEnd, NewJob, SqliteStore, Store};

/// Settings of `scribe bench store`.
#[derive(Debug, Clone)]
pub struct StoreBench {
    /// Jobs written.
    pub jobs: u32,
    /// Tasks writing at once.
    pub clients: u32,
}

/// The largest upload kept as a row (the bench's audio is far smaller).
const INLINE_MAX: u64 = 256 * 1024;

/// Runs the store bench and prints its figures.
pub async fn run_store(settings: &StoreBench) -> Result<(), BenchError> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("scribe.db").display());
    let store = std::sync::Arc::new(SqliteStore::open(&url, 8, Duration::from_secs(30)).await?);
    let files = LocalAudioStore::new(dir.path().join("audio"));
    let audio = std::sync::Arc::new(InlineAudioStore::new(&store, files, INLINE_MAX));
    let user = store.create_user("bench", "not-a-key", now_ms()).await?.id;
    let start = Instant::now();
    let mut clients = Vec::new();
    for c in 0..settings.clients {
        let (store, audio, user) = (store.clone(), audio.clone(), user.clone());
        let share: Vec<u32> = (0..settings.jobs).filter(|j| j % settings.clients == c).collect();
        clients.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(share.len());
            for j in share {
                latencies.push(one_job(&*store, &*audio, &user, j).await?);
            }
            Ok::<_, BenchError>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for client in clients {
        latencies.extend(client.await.map_err(|e| BenchError::Measure(e.to_string()))??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let job = Summary::of(latencies);
    println!(
        "store (SQLite in {}): {} jobs from {} clients, 3 awaited writes each (audio and job, claim, outcome)",
        dir.path().display(),
        settings.jobs,
        settings.clients
    );
    println!(
        "{:.0} jobs/s ({:.0} awaited writes/s, {:.2} s); one job's writes p50 {:.2} ms, p99 {:.2} ms",
        f64::from(settings.jobs) / elapsed,
        3.0 * f64::from(settings.jobs) / elapsed,
        elapsed,
        job.median.as_secs_f64() * 1e3,
        job.p99.as_secs_f64() * 1e3
    );
    Ok(())
}

/// A job's writes, as a real one makes them; how long they took.
async fn one_job(store: &dyn Store, audio: &dyn AudioStore, user: &str, seed: u32) -> Result<Duration, BenchError> {
    let started = Instant::now();
    let wav = bytes::Bytes::from(scribe_fakes::wav(seed, 400));
    let stored = audio.put_deferred(futures_util::stream::iter([Ok(wav)]).boxed(), INLINE_MAX).await?;
    let now = now_ms();
    let spec = JobSpec::with_default_options("openai-whisper", stored.sha256.clone(), stored.format.extension(), stored.bytes);
    let job = NewJob {
        id: uuid::Uuid::now_v7().to_string(),
        user_id: user.into(),
        cache_key: crate::cache::key(&spec).digest,
        spec,
        idempotency_key: None,
        now_ms: now,
        cached_transcript: None,
        audio_write: stored.pending,
    };
    let Inserted::Created(job) = store.insert_job(job).await? else {
        return Err(BenchError::Measure("a new job was found already stored".into()));
    };
    let owner = "bench-worker";
    if store.claim(&job.id, owner, now, now + 30_000).await?.is_none() {
        return Err(BenchError::Measure(format!("job {} could not be claimed", job.id)));
    }
    let transcript = Some(format!("{{\"text\":\"job {seed}\"}}"));
    let ending = LeaseEnd { run_at: None, finished_at: Some(now_ms()), transcript, error: None };
    if !store.end_lease(&job.id, owner, JobStatus::Succeeded, ending).await? {
        return Err(BenchError::Measure(format!("job {} lost its lease", job.id)));
    }
    Ok(started.elapsed())
}
