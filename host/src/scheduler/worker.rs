//! One claimed job: fetch its audio, call its provider (through the
//! transcript cache, so a twin's call is shared) while renewing the lease, then record the outcome with a guarded statement. A worker that
//! lost its lease (the job was taken over) records nothing.

use std::sync::Arc;
use std::time::Duration;

use super::Scheduler;
use crate::admission::{Admitted, ProviderLimits};
use crate::plugins::types::{RetryDecision, RetryInput, TranscribeRequest};
use crate::plugins::{CallError, FirstRequestWait, ProviderError};
use crate::store::{Job, JobError};

impl Scheduler {
    /// Runs a claimed job, holding its slot until the call is over; the
    /// call starts only once the job holds its rate token (see
    /// [`crate::admission::Token`]), taken or waited for just before it,
    /// and its first request leaves only when paced.
    pub(super) async fn execute(self: Arc<Self>, admitted: Admitted) {
        let Admitted { job, slot, token, twin_transcript } = admitted;
        let owner = job.lease_owner.clone().unwrap_or_default();
        let renewal = self.clone().renew_lease_while_running(job.id.clone(), owner.clone());
        let limits = self.limits_for(&job.spec.provider);
        let key = crate::cache::key(&job.spec);
        let outcome = self
            .parts
            .cache
            .get_or_call(&key, twin_transcript, || async {
                let request = self.request_for(&job).await?;
                self.parts.admission.take_token(&job.spec.provider, limits, token).await;
                let call = self.parts.activity.call_started(&job.spec.provider);
                let outcome = self.call_provider(&job.spec.provider, limits, request).await;
                let took = self.parts.activity.call_finished(&job.spec.provider, call, outcome.is_ok());
                self.parts.metrics.provider_call_seconds.with_label_values(&[&job.spec.provider]).observe(took.as_secs_f64());
                outcome
            })
            .await
            .map(|transcript| transcript.as_ref().clone())
            .map_err(|shared| shared.as_ref().clone());
        renewal.abort();
        if let Err(ProviderError::RateLimited(Some(ms))) = outcome {
            // Before the slot frees, so no call of this provider slips in.
            if let Err(e) = self.parts.admission.pause(&job.spec.provider, limits, Duration::from_millis(ms)).await {
                tracing::error!(provider = %job.spec.provider, "the retry-after pause was not recorded: {e}");
            }
        }
        drop(slot);
        // The slot is free now, not once the outcome has committed.
        self.parts.wake.wake_here();
        let recorded = match outcome {
            Ok(transcript_json) => {
                let store = &self.parts.store;
                let done = self
                    .until_recorded(&job.id, || store.succeed(&job.id, &owner, &transcript_json, crate::clock::now_ms()))
                    .await;
                if matches!(done, Ok(true)) {
                    self.parts.metrics.job_finished(&job.spec.provider, "succeeded", job.age_seconds(crate::clock::now_ms()));
                }
                done
            }
            Err(error) => self.after_failure(&job, &owner, error).await,
        };
        match recorded {
            Ok(true) => {}
            Ok(false) => tracing::warn!(job = %job.id, "the job's lease was lost; its outcome was not recorded"),
            Err(e) => tracing::error!(job = %job.id, "recording the outcome failed: {e}"),
        }
        // No one listening is fine.
        let _ = self.parts.job_events.send(job.id.clone());
        self.parts.wake.wake();
    }

    /// The provider request of `job`: its audio, read whole, and settings.
    async fn request_for(&self, job: &Job) -> Result<TranscribeRequest, ProviderError> {
        let audio = self
            .parts
            .audio
            .get(&job.spec.audio_sha256)
            .await
            .map_err(|e| {
                // Gone for good, or a storage hiccup (the database restarting)
                // that the retry policy's next attempt may not see.
                let message = format!("the job's audio cannot be read: {e}");
                if e.is_not_found() { ProviderError::Fatal(message) } else { ProviderError::Transient(message) }
            })?;
        Ok(TranscribeRequest {
            audio,
            audio_format: job.spec.audio_format.clone(),
            language: job.spec.language.clone(),
            prompt: job.spec.prompt.clone(),
            temperature: job.spec.temperature,
            model: job.spec.model.clone(),
        })
    }

    /// Calls `provider`, its first request paced as it leaves
    /// ([`crate::admission::Admission::pace_request`]).
    async fn call_provider(&self, provider: &str, limits: ProviderLimits, request: TranscribeRequest) -> Result<String, ProviderError> {
        let admission = self.parts.admission.clone();
        let paced = provider.to_string();
        let wait: FirstRequestWait = Box::pin(async move { admission.pace_request(&paced, limits).await });
        match self.parts.plugins.transcribe_paced(provider, request, Some(wait)).await {
            Ok(transcript) => serde_json::to_string(&transcript).map_err(|e| ProviderError::Fatal(e.to_string())),
            Err(CallError::Provider(error)) => Err(error),
            // The sandbox stopped the call: worth another attempt, which the
            // retry policy bounds.
            Err(CallError::Plugin(error)) => Err(ProviderError::Transient(error.to_string())),
        }
    }

    /// Asks the retry policy, and requeues or fails the job.
    async fn after_failure(&self, job: &Job, owner: &str, error: ProviderError) -> Result<bool, crate::store::StoreError> {
        let now_ms = crate::clock::now_ms();
        let input = RetryInput { attempt: job.attempts, error: error.clone(), elapsed_ms: (now_ms - job.created_at_ms).max(0) as u64 };
        let job_error = job_error(&error);
        let store = &self.parts.store;
        let provider = job.spec.provider.as_str();
        match self.parts.plugins.decide_retry(&input).await {
            RetryDecision::RetryIn(ms) => {
                let done = self.until_recorded(&job.id, || store.retry_later(&job.id, owner, now_ms + ms as i64, &job_error)).await;
                if matches!(done, Ok(true)) {
                    self.parts.metrics.job_retries.with_label_values(&[provider]).inc();
                }
                done
            }
            RetryDecision::GiveUp => {
                let done = self.until_recorded(&job.id, || store.fail(&job.id, owner, &job_error, now_ms)).await;
                if matches!(done, Ok(true)) {
                    self.parts.metrics.job_finished(provider, "failed", job.age_seconds(crate::clock::now_ms()));
                }
                done
            }
        }
    }

    /// Runs `write` (one guarded write of the job's outcome) until the
    /// database answers, for up to a lease: an outcome lost to a database
    /// restart would make the job run again. Retrying is safe: the write is
    /// guarded on this instance's lease, so a retry after the write did
    /// commit, or after the job was taken over, changes nothing.
    async fn until_recorded<F, Fut>(&self, job_id: &str, mut write: F) -> Result<bool, crate::store::StoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<bool, crate::store::StoreError>>,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(self.parts.config.lease_seconds);
        let mut pause = Duration::from_millis(100);
        loop {
            match write().await {
                Err(e) if tokio::time::Instant::now() + pause < deadline => {
                    tracing::warn!(job = %job_id, "recording the outcome failed ({e}); trying again in {pause:?}");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                done => return done,
            }
        }
    }

    /// Renews the lease every third of its length until aborted or lost.
    fn renew_lease_while_running(self: Arc<Self>, job_id: String, owner: String) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let lease = Duration::from_secs(self.parts.config.lease_seconds);
            loop {
                tokio::time::sleep(lease / 3).await;
                let until = crate::clock::now_ms() + lease.as_millis() as i64;
                match self.parts.store.renew_lease(&job_id, &owner, until).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => tracing::warn!(job = %job_id, "renewing the lease failed: {e}"),
                }
            }
        })
    }
}

fn job_error(error: &ProviderError) -> JobError {
    let kind = match error {
        ProviderError::RateLimited(_) => "rate_limited",
        ProviderError::Transient(_) => "transient",
        ProviderError::InvalidInput(_) => "invalid_input",
        ProviderError::Unauthorized(_) => "unauthorized",
        ProviderError::Fatal(_) => "fatal",
    };
    JobError { kind: kind.into(), message: error.to_string() }
}
