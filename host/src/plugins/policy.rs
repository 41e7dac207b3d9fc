//! The active retry and priority policies, with the built-in fallback.
//!
//! A policy decision must always come back: a missing, trapping, looping or
//! misbehaving policy plugin is logged and counted, and the built-in
//! default (the same code as the shipped `retry-backoff` and
//! `priority-fair`, from `policy-core`) answers instead, so jobs keep moving.

use policy_core::{decide_backoff, rank_fair, BackoffSettings};

use super::engine::Kind;
use super::error::PluginError;
use super::registry::World;
use super::types::{Candidate, RetryDecision, RetryInput};
use super::Plugins;

impl Plugins {
    /// Asks the active retry policy (`SCRIBE_RETRY_POLICY`) about a failed
    /// attempt; falls back to the built-in backoff if it fails.
    pub async fn decide_retry(&self, input: &RetryInput) -> RetryDecision {
        let name = &self.config.retry_policy;
        let _slot = self.slot(Kind::Policy).await;
        let answer = match self.loaded(name, World::RetryPolicy) {
            Ok(loaded) => self.decide_on(&loaded, input).await,
            Err(e) => Err(e),
        };
        answer.unwrap_or_else(|e| {
            self.fall_back("retry", &e);
            let settings = BackoffSettings::from_config(&self.config.plugin(name).config.into_iter().collect::<Vec<_>>());
            decide_backoff(&settings, input.attempt, input.error.kind(), rand::random())
        })
    }

    /// Asks the active priority policy (`SCRIBE_PRIORITY_POLICY`) to order
    /// the candidates, as indices into `candidates`; falls back to the
    /// built-in fair ranking if it fails.
    pub async fn rank(&self, candidates: &[Candidate]) -> Vec<usize> {
        if candidates.is_empty() {
            return Vec::new();
        }
        let _slot = self.slot(Kind::Policy).await;
        let answer = match self.loaded(&self.config.priority_policy, World::PriorityPolicy) {
            Ok(loaded) => self.rank_on(&loaded, candidates).await,
            Err(e) => Err(e),
        };
        answer.unwrap_or_else(|e| {
            self.fall_back("priority", &e);
            let core: Vec<_> = candidates.iter().map(Candidate::core).collect();
            rank_fair(&core).into_iter().map(|i| i as usize).collect()
        })
    }

    fn fall_back(&self, policy: &str, error: &PluginError) {
        tracing::warn!(policy, "{error}; the built-in default decides instead");
        self.metrics.policy_fallbacks.with_label_values(&[policy]).inc();
    }
}
