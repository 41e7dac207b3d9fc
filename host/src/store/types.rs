//! The values the store takes and returns.

use serde::Serialize;

use crate::plugins::types::Priority;

/// A user of the jobs API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// Stable id.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Creation time, ms since the Unix epoch.
    pub created_at_ms: i64,
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Waiting (possibly until `run_at`, for a retry).
    Queued,
    /// A worker holds its lease and calls the provider.
    Running,
    /// Finished with a transcript.
    Succeeded,
    /// Finished without one.
    Failed,
    /// Canceled by its owner before it ran.
    Canceled,
}

impl JobStatus {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "canceled" => Self::Canceled,
            _ => return None,
        })
    }

    /// Whether the job will change no more.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Canceled)
    }
}

/// What to transcribe and how.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    /// Provider plugin name.
    pub provider: String,
    /// Priority class.
    pub priority: Priority,
    /// sha256 of the audio, hex (its name in the audio store).
    pub audio_sha256: String,
    /// Audio format, recognised from the content (`wav`, `mp3`, ...).
    pub audio_format: String,
    /// Audio size.
    pub audio_bytes: u64,
    /// Language, when given.
    pub language: Option<String>,
    /// Prompt, when given.
    pub prompt: Option<String>,
    /// Temperature, when given.
    pub temperature: Option<f32>,
    /// Model, when given.
    pub model: Option<String>,
    /// The transcript format the submitter asked for.
    pub response_format: String,
}

impl JobSpec {
    /// A job of the audio `audio_sha256` (`audio_format`, `audio_bytes`)
    /// for `provider`, every option at its default: normal priority, a
    /// `json` transcript, no language, prompt, temperature or model.
    pub fn with_default_options(provider: &str, audio_sha256: String, audio_format: &str, audio_bytes: u64) -> Self {
        Self {
            provider: provider.into(),
            priority: Priority::Normal,
            audio_sha256,
            audio_format: audio_format.into(),
            audio_bytes,
            language: None,
            prompt: None,
            temperature: None,
            model: None,
            response_format: "json".into(),
        }
    }
}

/// Why a job failed (or its last attempt did).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct JobError {
    /// `rate_limited`, `transient`, `invalid_input`, `unauthorized`,
    /// `fatal` or `plugin`.
    pub kind: String,
    /// For the job's owner.
    pub message: String,
}

/// What ending a lease writes besides the status (see `Store::end_lease`).
#[derive(Debug, Clone, Default)]
pub struct LeaseEnd {
    /// When a retried job may run again.
    pub run_at: Option<i64>,
    /// When a job finished for good.
    pub finished_at: Option<i64>,
    /// A succeeded job's transcript (JSON).
    pub transcript: Option<String>,
    /// Why the attempt failed.
    pub error: Option<JobError>,
}

/// A stored job.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// Id.
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// State.
    pub status: JobStatus,
    /// What to do.
    pub spec: JobSpec,
    /// Attempts started so far.
    pub attempts: u32,
    /// Not to be claimed before (ms).
    pub run_at_ms: i64,
    /// Submitted (ms).
    pub created_at_ms: i64,
    /// First claimed (ms).
    pub started_at_ms: Option<i64>,
    /// Reached a terminal state (ms).
    pub finished_at_ms: Option<i64>,
    /// The last error.
    pub error: Option<JobError>,
    /// Lease holder while running.
    pub lease_owner: Option<String>,
    /// Lease expiry while running (ms).
    pub lease_until_ms: Option<i64>,
}

impl Job {
    /// Seconds from its submit to `now_ms`.
    pub fn age_seconds(&self, now_ms: i64) -> f64 {
        (now_ms - self.created_at_ms) as f64 / 1000.0
    }
}

/// A job to insert.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Id to give it.
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// What to do.
    pub spec: JobSpec,
    /// The submit's `Idempotency-Key`, if any.
    pub idempotency_key: Option<String>,
    /// Now (ms).
    pub now_ms: i64,
    /// The transcript cache key (see `crate::cache`).
    pub cache_key: String,
    /// A cached transcript (JSON) for this key, if the caller holds one;
    /// else the store looks for a succeeded job with the same audio and
    /// key itself, in the insert. With either, the job is inserted already
    /// succeeded, with that transcript, and never runs.
    pub cached_transcript: Option<String>,
    /// The write storing the job's audio, if the audio store answered
    /// before it committed ([`crate::audio::AudioStore::put_deferred`]):
    /// the job commits only if that write does (else the insert fails with
    /// [`super::StoreError::DependencyFailed`]), so no job ever names audio
    /// that was never stored.
    pub audio_write: Option<super::PendingWrite>,
}

/// A job just claimed, with what the worker needs before it calls the
/// provider.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    /// The job, now `running` under the claimer's lease.
    pub job: Job,
    /// The transcript of a succeeded job with the same audio and cache key
    /// (one that finished after this job was queued), found by the claim
    /// itself: the job then needs no provider call.
    pub twin_transcript: Option<String>,
}

/// The outcome of an insert.
#[derive(Debug, Clone, PartialEq)]
pub enum Inserted {
    /// A new job.
    Created(Job),
    /// The job an earlier submit with the same idempotency key created.
    Existing(Job),
}

/// One user's next ready job, with what the priority policy needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    /// The job.
    pub job_id: String,
    /// Its owner.
    pub user_id: String,
    /// Its priority class.
    pub priority: Priority,
    /// Submitted (ms).
    pub created_at_ms: i64,
    /// The owner's running jobs of this provider.
    pub user_running: u32,
    /// The owner's ready jobs of this provider.
    pub user_queued: u32,
    /// When any instance last dispatched a job of the owner's (ms), where
    /// the store keeps it (PostgreSQL, for fairness across a fleet).
    pub user_last_dispatch_ms: Option<i64>,
}
