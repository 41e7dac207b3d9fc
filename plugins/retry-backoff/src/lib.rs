//! `retry-backoff`: Scribe's shipped retry policy, as a component of world
//! `scribe:plugin/retry-policy`.
//!
//! Exponential backoff with full jitter: give up at once on errors that
//! waiting cannot fix and after `max_attempts` attempts; otherwise wait a
//! random time up to `min(cap_ms, base_ms * 2^(attempt-1))`, or the
//! provider's retry-after when that is longer. Config keys: `max_attempts`
//! (default 8), `base_ms` (500), `cap_ms` (30000).
//!
//! This crate is thin glue on purpose: it only converts between the WIT
//! types and [`policy_core`], where the logic lives. The host runs the same
//! `policy_core` code as its built-in fallback when this plugin is missing or
//! broken, so the fallback decides exactly as the shipped plugin does.

use exports::scribe::plugin::retry::{Guest, PolicyInfo, ProviderError, RetryDecision, RetryInput};
use policy_core::{BackoffSettings, ErrorKind};

wit_bindgen::generate!({
    path: "../../wit",
    world: "retry-policy",
});

/// The component's implementation of the `retry` interface.
pub struct RetryBackoff;

impl Guest for RetryBackoff {
    fn info() -> PolicyInfo {
        PolicyInfo {
            name: "retry-backoff".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    fn decide(input: RetryInput) -> RetryDecision {
        let settings = BackoffSettings::from_config(&input.config);
        match policy_core::decide_backoff(&settings, input.attempt, error_kind(&input.error), input.random) {
            policy_core::RetryDecision::RetryIn(ms) => RetryDecision::RetryIn(ms),
            policy_core::RetryDecision::GiveUp => RetryDecision::GiveUp,
        }
    }
}

/// Drops the error's message: only its kind matters to the decision.
fn error_kind(error: &ProviderError) -> ErrorKind {
    match error {
        ProviderError::RateLimited(retry_after_ms) => ErrorKind::RateLimited { retry_after_ms: *retry_after_ms },
        ProviderError::Transient(_) => ErrorKind::Transient,
        ProviderError::InvalidInput(_) => ErrorKind::InvalidInput,
        ProviderError::Unauthorized(_) => ErrorKind::Unauthorized,
        ProviderError::Fatal(_) => ErrorKind::Fatal,
    }
}

export!(RetryBackoff);
