//! The values that cross the plugin boundary, in the host's own terms.

use serde::{Deserialize, Serialize};

pub use policy_core::{Priority, RetryDecision};

use super::error::ProviderError;

/// A timed stretch of a transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// Start, in seconds from the start of the audio.
    pub start: f64,
    /// End, in seconds from the start of the audio.
    pub end: f64,
    /// What was said.
    pub text: String,
}

/// A provider's transcription result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transcript {
    /// The whole text.
    pub text: String,
    /// The language spoken, when known.
    pub language: Option<String>,
    /// Audio length in seconds, when known.
    pub duration: Option<f64>,
    /// Timed segments, in order.
    pub segments: Vec<Segment>,
}

impl Transcript {
    /// Bytes the transcript takes, counted the way the output cap counts them.
    pub fn size_bytes(&self) -> usize {
        self.text.len()
            + self.language.as_ref().map_or(0, String::len)
            + self.segments.iter().map(|s| s.text.len() + 16).sum::<usize>()
    }
}

/// What a provider says about itself (`info()`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderInfo {
    /// Declared name.
    pub name: String,
    /// Declared version.
    pub version: String,
    /// Accepted audio formats, as extensions.
    pub accepted_formats: Vec<String>,
    /// Largest audio one call accepts.
    pub max_audio_bytes: u64,
    /// Runs in the sandbox rather than calling a service.
    pub in_process: bool,
}

/// One transcription for a provider.
#[derive(Debug, Clone, Default)]
pub struct TranscribeRequest {
    /// The audio bytes.
    pub audio: Vec<u8>,
    /// The audio format, as an extension.
    pub audio_format: String,
    /// Language, when given.
    pub language: Option<String>,
    /// Prompt, when given.
    pub prompt: Option<String>,
    /// Temperature, when given.
    pub temperature: Option<f32>,
    /// Model, when given.
    pub model: Option<String>,
}

/// A failed attempt for the retry policy to decide about.
#[derive(Debug, Clone)]
pub struct RetryInput {
    /// Attempts so far, the failed one included.
    pub attempt: u32,
    /// How it failed.
    pub error: ProviderError,
    /// Milliseconds since the job was submitted.
    pub elapsed_ms: u64,
}

/// One user's head-of-line job, for the priority policy.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The job's id.
    pub job_id: String,
    /// The owner's user id.
    pub user: String,
    /// Priority class.
    pub priority: Priority,
    /// Submission time, ms since the Unix epoch.
    pub submitted_at_ms: u64,
    /// The user's running jobs.
    pub user_running: u32,
    /// The user's waiting jobs.
    pub user_queued: u32,
    /// When the user was last served, ms since the Unix epoch.
    pub user_last_dispatch_ms: Option<u64>,
}

impl Candidate {
    /// The figures `priority-fair` ranks by.
    pub fn core(&self) -> policy_core::Candidate {
        policy_core::Candidate {
            priority: self.priority,
            submitted_at_ms: self.submitted_at_ms,
            user_running: self.user_running,
            user_last_dispatch_ms: self.user_last_dispatch_ms,
        }
    }
}
