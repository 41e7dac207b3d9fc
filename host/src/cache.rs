//! The transcript cache: the same audio asked of the same provider the
//! same way is transcribed once.
//!
//! A transcript is keyed by (audio sha256, provider, model, language,
//! prompt, temperature); the response format is not part of the key, since
//! every format is rendered from the one transcript. A submit whose key is
//! known finishes at once (from memory, or after a restart or an eviction
//! from the store: any succeeded job with that key, which the store's
//! insert looks for itself). A worker gets its transcript through
//! [`TranscriptCache::get_or_call`], which lets one call per key run at a
//! time: jobs with the same key that run together wait for that call and
//! share its outcome, so simultaneous twins cost one provider call; and a
//! job whose twin succeeded after it was queued, out of this memory's sight
//! (another instance, before a restart), takes the transcript its claim
//! brought from the store. A hit is a job that finished without a provider
//! call; a miss is one that made the call. The store is asked within its
//! own writes (the insert, the claim: on SQLite, on the writer's warm
//! pages), not by reads of the cache's.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::{Job, JobSpec, JobStatus};

/// Transcripts (JSON) by cache key: in memory (moka, bounded by
/// `CACHE_MAX_SIZE` entries and `CACHE_DEFAULT_TTL`); the store's
/// succeeded jobs behind it.
pub struct TranscriptCache {
    memory: moka::future::Cache<String, Arc<String>>,
    metrics: Metrics,
}

/// A job's cache key: the digest of what decides its transcript, with the
/// audio it names (the store finds transcripts under both, so one index
/// of the jobs serves the cache and the audio's retention).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    /// The audio's sha256 (one of the digest's inputs).
    pub audio_sha256: String,
    /// The sha256 of what decides the transcript: the key proper, stored
    /// with the job.
    pub digest: String,
}

/// The cache key of a job.
pub fn key(spec: &JobSpec) -> CacheKey {
    let mut hasher = Sha256::new();
    let temperature = spec.temperature.map(|t| t.to_string());
    let parts = [
        Some(spec.audio_sha256.as_str()),
        Some(spec.provider.as_str()),
        spec.model.as_deref(),
        spec.language.as_deref(),
        spec.prompt.as_deref(),
        temperature.as_deref(),
    ];
    for part in parts {
        // A marker per part, so `None` and `Some("")` and shifted text
        // never hash alike.
        match part {
            None => hasher.update([0u8]),
            Some(text) => {
                hasher.update([1u8]);
                hasher.update((text.len() as u64).to_le_bytes());
                hasher.update(text.as_bytes());
            }
        }
    }
    CacheKey { audio_sha256: spec.audio_sha256.clone(), digest: hex::encode(hasher.finalize()) }
}

impl TranscriptCache {
    /// A cache sized and timed by `config`.
    pub fn new(config: &Config, metrics: Metrics) -> Self {
        let memory = moka::future::Cache::builder()
            .max_capacity(config.cache_max_size)
            .time_to_live(Duration::from_millis(config.cache_default_ttl_ms))
            .build();
        Self { memory, metrics }
    }

    /// At submit: the transcript for `key`, if memory holds it. The store
    /// looks for one itself as it inserts the job ([`NewJob::cached_transcript`]):
    /// in the writer's transaction, whose pages are warm, instead of a read
    /// of its own here.
    ///
    /// [`NewJob::cached_transcript`]: crate::store::NewJob::cached_transcript
    pub async fn remembered(&self, key: &CacheKey) -> Option<Arc<String>> {
        self.memory.get(&key.digest).await
    }

    /// At submit: counts a job inserted already finished as a hit (it will
    /// not run).
    pub fn count_submit(&self, job: &Job) {
        if job.status == JobStatus::Succeeded {
            self.metrics.cache_hits.inc();
        }
    }

    /// In a worker: the transcript for `key`, from memory, else `stored`
    /// (a succeeded twin's, which the claim found: [`Claimed`]), else from
    /// `call`, of which one runs per key at a time (the others with that
    /// key wait and share its outcome). Counted as a miss when this job's
    /// `call` ran, as a hit otherwise.
    ///
    /// [`Claimed`]: crate::store::Claimed
    pub async fn get_or_call<F, Fut, E>(&self, key: &CacheKey, stored: Option<String>, call: F) -> Result<Arc<String>, Arc<E>>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<String, E>>,
        E: Send + Sync + 'static,
    {
        if let Some(stored) = stored {
            // Not through the per-key call below: a call of that key under
            // way elsewhere (which could fail) is no concern of this job's.
            let stored = Arc::new(stored);
            self.memory.insert(key.digest.clone(), stored.clone()).await;
            self.metrics.cache_hits.inc();
            return Ok(stored);
        }
        let called = AtomicBool::new(false);
        let outcome = self
            .memory
            .try_get_with(key.digest.clone(), async {
                called.store(true, Ordering::Relaxed);
                call().await.map(Arc::new)
            })
            .await;
        if called.load(Ordering::Relaxed) {
            self.metrics.cache_misses.inc();
        } else if outcome.is_ok() {
            self.metrics.cache_hits.inc();
        }
        outcome
    }

}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::types::Priority;

    fn spec() -> JobSpec {
        JobSpec {
            provider: "openai-whisper".into(),
            priority: Priority::Normal,
            audio_sha256: "a".repeat(64),
            audio_format: "wav".into(),
            audio_bytes: 10,
            language: Some("en".into()),
            prompt: None,
            temperature: Some(0.2),
            model: None,
            response_format: "json".into(),
        }
    }

    #[tokio::test]
    async fn a_twins_transcript_from_the_claim_spares_the_call_and_is_kept() {
        let metrics = Metrics::new();
        let cache = TranscriptCache::new(&Config::from_vars(Default::default()).unwrap(), metrics.clone());
        let never = || async { Err::<String, String>("no call was due".into()) };
        let found = cache.get_or_call(&key(&spec()), Some("twin".into()), never).await;
        assert_eq!(found.as_deref().map(String::as_str), Ok("twin"));
        assert_eq!(cache.remembered(&key(&spec())).await.as_deref().map(String::as_str), Some("twin"), "kept in memory");
        let other = JobSpec { language: None, ..spec() };
        let called = cache.get_or_call(&key(&other), None, || async { Ok::<_, String>("called".to_string()) }).await;
        assert_eq!(called.as_deref().map(String::as_str), Ok("called"));
        assert_eq!((metrics.cache_hits.get(), metrics.cache_misses.get()), (1, 1));
    }

    #[test]
    fn the_key_ignores_format_and_priority_but_not_what_decides_the_text() {
        let base = key(&spec());
        assert_eq!(key(&JobSpec { response_format: "srt".into(), priority: Priority::High, ..spec() }), base);
        for other in [
            JobSpec { language: None, ..spec() },
            JobSpec { prompt: Some(String::new()), ..spec() },
            JobSpec { temperature: Some(0.3), ..spec() },
            JobSpec { model: Some("whisper-1".into()), ..spec() },
            JobSpec { provider: "replicate".into(), ..spec() },
            JobSpec { audio_sha256: "b".repeat(64), ..spec() },
        ] {
            assert_ne!(key(&other), base, "{other:?}");
        }
        // Text moved between fields does not collide.
        let a = JobSpec { language: Some("en".into()), prompt: Some("x".into()), ..spec() };
        let b = JobSpec { language: Some("enx".into()), prompt: Some(String::new()), ..spec() };
        assert_ne!(key(&a), key(&b));
    }
}
