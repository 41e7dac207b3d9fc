//! Host bindings generated from `wit/`, and the conversions between them and
//! the host's own types.
//!
//! Generated types stay inside this module: the rest of the host speaks
//! [`super::types`], so a change of the WIT shows up here and nowhere else.

use super::error::ProviderError;
use super::types::{Candidate, ProviderInfo, RetryInput, Segment, TranscribeRequest, Transcript};

/// The `provider` world.
pub mod provider {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "provider",
        exports: { default: async },
        with: {
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
        },
    });
}

/// The `retry-policy` world.
pub mod retry {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "retry-policy",
        exports: { default: async },
        with: { "scribe:plugin/types": super::provider::scribe::plugin::types },
    });
}

/// The `priority-policy` world.
pub mod priority {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "priority-policy",
        exports: { default: async },
        with: { "scribe:plugin/types": super::provider::scribe::plugin::types },
    });
}

use provider::exports::scribe::plugin::transcriber as wit_provider;
use provider::scribe::plugin::types as wit;
use retry::exports::scribe::plugin::retry as wit_retry;
use priority::exports::scribe::plugin::prioritizer as wit_priority;

pub(crate) use provider::scribe::plugin::host::LogLevel;

impl From<wit::ProviderError> for ProviderError {
    fn from(e: wit::ProviderError) -> Self {
        match e {
            wit::ProviderError::RateLimited(ms) => Self::RateLimited(ms),
            wit::ProviderError::Transient(m) => Self::Transient(m),
            wit::ProviderError::InvalidInput(m) => Self::InvalidInput(m),
            wit::ProviderError::Unauthorized(m) => Self::Unauthorized(m),
            wit::ProviderError::Fatal(m) => Self::Fatal(m),
        }
    }
}

impl From<&ProviderError> for wit::ProviderError {
    fn from(e: &ProviderError) -> Self {
        match e.clone() {
            ProviderError::RateLimited(ms) => Self::RateLimited(ms),
            ProviderError::Transient(m) => Self::Transient(m),
            ProviderError::InvalidInput(m) => Self::InvalidInput(m),
            ProviderError::Unauthorized(m) => Self::Unauthorized(m),
            ProviderError::Fatal(m) => Self::Fatal(m),
        }
    }
}

impl From<wit::Transcript> for Transcript {
    fn from(t: wit::Transcript) -> Self {
        Self {
            text: t.text,
            language: t.language,
            duration: t.duration,
            segments: t
                .segments
                .into_iter()
                .map(|s| Segment { start: s.start, end: s.end, text: s.text })
                .collect(),
        }
    }
}

impl From<wit_provider::ProviderInfo> for ProviderInfo {
    fn from(i: wit_provider::ProviderInfo) -> Self {
        Self {
            name: i.name,
            version: i.version,
            accepted_formats: i.accepted_formats,
            max_audio_bytes: i.max_audio_bytes,
            in_process: i.in_process,
        }
    }
}

pub(crate) fn transcribe_request(r: TranscribeRequest, deadline_ms: u64) -> wit_provider::TranscribeRequest {
    wit_provider::TranscribeRequest {
        audio: r.audio,
        audio_format: r.audio_format,
        language: r.language,
        prompt: r.prompt,
        temperature: r.temperature,
        model: r.model,
        deadline_ms,
    }
}

pub(crate) fn retry_input(i: &RetryInput, config: Vec<(String, String)>, random: u64) -> wit_retry::RetryInput {
    wit_retry::RetryInput {
        attempt: i.attempt,
        error: wit::ProviderError::from(&i.error),
        elapsed_ms: i.elapsed_ms,
        config,
        random,
    }
}

pub(crate) fn retry_decision(d: wit_retry::RetryDecision) -> policy_core::RetryDecision {
    match d {
        wit_retry::RetryDecision::RetryIn(ms) => policy_core::RetryDecision::RetryIn(ms),
        wit_retry::RetryDecision::GiveUp => policy_core::RetryDecision::GiveUp,
    }
}

pub(crate) fn rank_input(
    candidates: &[Candidate],
    now_ms: u64,
    config: Vec<(String, String)>,
    random: u64,
) -> wit_priority::RankInput {
    wit_priority::RankInput {
        candidates: candidates
            .iter()
            .map(|c| wit_priority::Candidate {
                job_id: c.job_id.clone(),
                user: c.user.clone(),
                priority: match c.priority {
                    policy_core::Priority::Low => wit::Priority::Low,
                    policy_core::Priority::Normal => wit::Priority::Normal,
                    policy_core::Priority::High => wit::Priority::High,
                },
                submitted_at_ms: c.submitted_at_ms,
                user_running: c.user_running,
                user_queued: c.user_queued,
                user_last_dispatch_ms: c.user_last_dispatch_ms,
            })
            .collect(),
        now_ms,
        config,
        random,
    }
}
