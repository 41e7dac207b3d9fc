//! Limits held in this process: exact for one instance, and the per-instance
//! limits of in-process providers in a fleet.
//!
//! The token is taken after the claim (a store write, whose latency varies
//! with what shares its commit) and just before the worker starts; the
//! request itself is spaced again as it leaves ([`Admission::pace_request`]),
//! so the spacing the limiter grants is the spacing the provider sees,
//! whatever the worker's start and the plugin's preparing took. Only one
//! scheduler takes a provider's tokens here, so a token seen ready before
//! the claim is still there after it, unless a 429 paused the provider
//! since.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{Admission, Admit, Admitted, Lease, ProviderLimits, Token};
use crate::gate::{ConcurrencyGate, LocalGate, Slot};
use crate::limiter::{LocalRateLimiter, RateLimiter};
use crate::store::{Claimed, Store, StoreResult};

/// Slots and tokens in this process; jobs claimed in `store`.
pub struct LocalAdmission {
    limiter: LocalRateLimiter,
    gate: LocalGate,
    store: Arc<dyn Store>,
}

impl LocalAdmission {
    /// Admission to jobs of `store`, with fresh limits.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { limiter: LocalRateLimiter::default(), gate: LocalGate::default(), store }
    }
}

#[async_trait::async_trait]
impl Admission for LocalAdmission {
    async fn free_slots(&self, provider: &str, limits: ProviderLimits) -> StoreResult<u32> {
        Ok(limits.max_concurrent.saturating_sub(self.gate.in_flight(provider)))
    }

    async fn startable_together(&self, provider: &str, limits: ProviderLimits, free: u32) -> StoreResult<u32> {
        Ok(self.limiter.ready_count(provider, limits.rate, Instant::now(), free))
    }

    /// A claim of one (see [`Admission::claim_together`]).
    async fn claim(&self, provider: &str, limits: ProviderLimits, job_id: &str, lease: Lease<'_>) -> StoreResult<Admit> {
        let mut answers = self.claim_together(provider, limits, &[(job_id, lease)]).await?;
        Ok(answers.pop().expect("one answer per job"))
    }

    /// Takes a slot for each job a token is ready for, then claims those
    /// in one store call; the rest are told to wait for a token, or that
    /// the slots are full.
    async fn claim_together(&self, provider: &str, limits: ProviderLimits, jobs: &[(&str, Lease<'_>)]) -> StoreResult<Vec<Admit>> {
        let ready = self.limiter.ready_count(provider, limits.rate, Instant::now(), jobs.len() as u32) as usize;
        let slots: Vec<Slot> =
            (0..ready).map_while(|_| self.gate.try_acquire(provider, limits.max_concurrent)).collect();
        // Why the jobs past the slots taken cannot start: no token yet, or
        // no slot.
        let no_token = if slots.len() == ready { self.limiter.ready(provider, limits.rate, Instant::now()).err() } else { None };
        let wanted: Vec<(String, String)> =
            jobs.iter().take(slots.len()).map(|(id, lease)| (id.to_string(), lease.owner.to_string())).collect();
        let until_ms = jobs.first().map_or(0, |(_, lease)| lease.until_ms);
        let mut claimed: HashMap<String, Claimed> =
            self.store.claim_many(&wanted, crate::clock::now_ms(), until_ms).await?.into_iter().map(|c| (c.job.id.clone(), c)).collect();
        let mut answers: Vec<Admit> = Vec::with_capacity(jobs.len());
        for ((job_id, _), slot) in jobs.iter().zip(slots) {
            answers.push(match claimed.remove(*job_id) {
                Some(Claimed { job, twin_transcript }) => {
                    // Taken now that the job is claimed; only a 429 pause
                    // since the count above leaves it to be waited for.
                    let token = match self.limiter.try_take(provider, limits.rate, Instant::now()) {
                        Ok(()) => Token::Held,
                        Err(at) => Token::DueAt(at),
                    };
                    Admit::Admitted(Admitted { job, slot, token, twin_transcript })
                }
                None => Admit::Taken,
            });
        }
        while answers.len() < jobs.len() {
            answers.push(no_token.map_or(Admit::Full, Admit::Wait));
        }
        Ok(answers)
    }

    async fn take_token(&self, provider: &str, limits: ProviderLimits, token: Token) {
        let mut at = match token {
            Token::Held => return,
            Token::DueAt(at) => at,
            Token::CallAt(at) => return tokio::time::sleep_until(at).await,
        };
        loop {
            tokio::time::sleep_until(at).await;
            match self.limiter.try_take(provider, limits.rate, Instant::now()) {
                Ok(()) => return,
                Err(next) => at = next,
            }
        }
    }

    async fn pace_request(&self, provider: &str, limits: ProviderLimits) {
        loop {
            let at = self.limiter.reserve_send(provider, limits.rate, Instant::now());
            if at > Instant::now() {
                tokio::time::sleep_until(at).await;
            }
            // A 429 recorded while this request waited holds it too.
            if self.limiter.paused_until(provider, Instant::now()).is_none() {
                return;
            }
        }
    }

    async fn pause(&self, provider: &str, _limits: ProviderLimits, pause: Duration) -> StoreResult<()> {
        self.limiter.pause_until(provider, Instant::now() + pause);
        Ok(())
    }

    async fn set_held(&self, provider: &str, _limits: ProviderLimits, held: bool) -> StoreResult<()> {
        if held {
            self.limiter.hold(provider);
        } else {
            self.limiter.release(provider);
        }
        Ok(())
    }

    async fn is_held(&self, provider: &str, _limits: ProviderLimits) -> StoreResult<bool> {
        Ok(self.limiter.is_held(provider))
    }

    fn in_flight(&self, provider: &str) -> u32 {
        self.gate.in_flight(provider)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;

    use crate::limiter::Rate;
    use crate::store::SqliteStore;

    /// A request already waiting for its send instant when a 429's pause
    /// is recorded does not leave before the pause ends.
    #[tokio::test]
    async fn a_request_waiting_to_leave_is_held_by_a_pause_recorded_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("scribe.db").display());
        let store = SqliteStore::open(&url, 1, Duration::from_secs(5)).await.unwrap();
        let admission = LocalAdmission::new(Arc::new(store));
        // 600/min: one request every 100 ms. The first takes now; the
        // second waits for its instant, 100 ms on.
        let limits = ProviderLimits { max_concurrent: 5, rate: Some(Rate { per_minute: 600, burst: 1 }), fleet_wide: false };
        admission.pace_request("p", limits).await;
        let mut waiting = Box::pin(admission.pace_request("p", limits));
        let pending = std::future::poll_fn(|cx| std::task::Poll::Ready(waiting.as_mut().poll(cx).is_pending())).await;
        assert!(pending, "the second request waits for its instant");
        let paused_at = Instant::now();
        admission.pause("p", limits, Duration::from_millis(300)).await.unwrap();
        waiting.await;
        assert!(paused_at.elapsed() >= Duration::from_millis(300), "left {:?} into a 300 ms pause", paused_at.elapsed());
    }
}
