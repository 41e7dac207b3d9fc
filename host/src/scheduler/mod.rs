//! The scheduler: the only caller of provider plugins and policies.
//!
//! A job is dispatched only when a concurrency slot of its provider
//! ([`crate::gate`]) and a rate-limit token ([`crate::limiter`]) are both
//! free; among the users with a ready job, the priority policy picks who
//! goes next. Wake-ups are events, not a polling interval: a submit, a
//! finished call, or a timer for the next instant something can change (a
//! token freeing up, a pause ending, a retry coming due, a lease to check).
//! Retries wait in the store (`run_at`), not in sleeping tasks, so a
//! restart loses none.

mod lines;
mod worker;

use lines::Lines;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::audio::AudioStore;
use crate::cache::TranscriptCache;
use crate::config::Config;
use crate::gate::ConcurrencyGate;
use crate::limiter::{Rate, RateLimiter};
use crate::plugins::types::Candidate;
use crate::plugins::Plugins;
use crate::store::{Head, Job, Store, StoreError};

/// What the scheduler works with; every piece is shared with the rest of
/// the server.
pub struct Parts {
    /// The configuration (limits, lease length).
    pub config: Arc<Config>,
    /// Jobs.
    pub store: Arc<dyn Store>,
    /// Audio.
    pub audio: Arc<dyn AudioStore>,
    /// Providers and policies.
    pub plugins: Arc<Plugins>,
    /// Rate limits.
    pub limiter: Arc<dyn RateLimiter>,
    /// Concurrency caps.
    pub gate: Arc<dyn ConcurrencyGate>,
    /// Transcripts by cache key: one provider call per key at a time.
    pub cache: Arc<TranscriptCache>,
    /// Woken on every event that may allow a dispatch.
    pub wake: Arc<crate::wakeup::Wakeup>,
    /// Jobs finished and retried are counted here.
    pub metrics: crate::metrics::Metrics,
    /// Provider calls noted for the queue-status figures.
    pub activity: Arc<crate::activity::Activity>,
    /// Told the id of each job whose attempt ended.
    pub job_events: tokio::sync::broadcast::Sender<String>,
    /// This instance's name in leases.
    pub owner: String,
}

/// The limits one provider runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderLimits {
    /// Calls in flight at most.
    pub max_concurrent: u32,
    /// Calls per minute, `None` for unlimited.
    pub rate: Option<Rate>,
}

/// The limits of `provider`: `[plugins.NAME]` settings, else the defaults
/// the plugin's kind implies (an in-process provider: one call per core, no
/// rate limit), else the environment's.
pub fn provider_limits(config: &Config, plugins: &Plugins, provider: &str) -> ProviderLimits {
    let settings = config.plugin(provider);
    let in_process = plugins.provider_info(provider).is_some_and(|i| i.in_process);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let max_concurrent =
        settings.max_concurrent.unwrap_or(if in_process { cores } else { config.max_concurrent_transcriptions });
    let per_minute = match (settings.rate_limit_per_minute, in_process) {
        (Some(per_minute), _) => Some(per_minute),
        (None, true) => None,
        (None, false) => Some(config.rate_limit_per_minute),
    };
    let rate = per_minute.map(|per_minute| Rate { per_minute, burst: config.rate_limit_burst });
    ProviderLimits { max_concurrent, rate }
}

/// The job scheduler.
pub struct Scheduler {
    parts: Parts,
    /// When each user last had a job dispatched (ms), for fairness.
    last_dispatch: Mutex<HashMap<String, i64>>,
    /// Running calls, so a drain can wait for them.
    workers: TaskTracker,
    /// When expired leases are next looked for (every half lease, not
    /// every round: rounds come with every submit and every finished call).
    next_lease_check: Mutex<Instant>,
}

impl Scheduler {
    /// A scheduler over `parts`; [`Scheduler::run`] drives it.
    pub fn new(parts: Parts) -> Arc<Self> {
        Arc::new(Self {
            parts,
            last_dispatch: Mutex::default(),
            workers: TaskTracker::new(),
            next_lease_check: Mutex::new(Instant::now()),
        })
    }

    /// The limits of `provider` (see [`provider_limits`]).
    pub fn limits_for(&self, provider: &str) -> ProviderLimits {
        provider_limits(&self.parts.config, &self.parts.plugins, provider)
    }

    /// Dispatches until `stop` is notified, then stops claiming and waits up
    /// to `drain` for running calls to finish (the rest keep their lease
    /// and are taken over when it expires).
    pub async fn run(self: Arc<Self>, stop: Arc<Notify>, drain: Duration) {
        loop {
            let next = match self.dispatch_round().await {
                Ok(next) => next,
                Err(e) => {
                    tracing::error!("scheduler: {e}; retrying in 1 s");
                    Some(Instant::now() + Duration::from_secs(1))
                }
            };
            let idle = Instant::now() + self.parts.wake.poll_interval().unwrap_or(Duration::from_secs(3600));
            let sleep = tokio::time::sleep_until(next.map_or(idle, |at| at.min(idle)));
            tokio::select! {
                () = self.parts.wake.notified() => {}
                () = sleep => {}
                () = stop.notified() => break,
            }
        }
        self.workers.close();
        if tokio::time::timeout(drain, self.workers.wait()).await.is_err() {
            tracing::warn!("drain timed out; unfinished jobs keep their lease and will run again");
        }
    }

    /// Dispatches every job that can go now; returns when to look again.
    async fn dispatch_round(self: &Arc<Self>) -> Result<Option<Instant>, StoreError> {
        let store = &self.parts.store;
        let now_ms = crate::clock::now_ms();
        let lease = Duration::from_secs(self.parts.config.lease_seconds);
        let (lease_check_due, lease_check) = {
            let mut at = self.next_lease_check.lock().unwrap_or_else(|p| p.into_inner());
            let due = Instant::now() >= *at;
            if due {
                *at = Instant::now() + lease / 2;
            }
            (due, *at)
        };
        if lease_check_due {
            let requeued = store.requeue_expired(now_ms).await?;
            if requeued > 0 {
                tracing::warn!(requeued, "jobs whose lease expired were put back in the queue");
            }
        }
        let mut next = Some(lease_check);
        for provider in store.ready_providers(now_ms).await? {
            if let Some(at) = self.dispatch_provider(&provider).await? {
                next = earliest(next, Some(at));
            }
        }
        if let Some(run_at) = store.next_run_at(crate::clock::now_ms()).await? {
            let wait = Duration::from_millis((run_at - crate::clock::now_ms()).max(0) as u64);
            next = earliest(next, Some(Instant::now() + wait));
        }
        Ok(next)
    }

    /// Dispatches `provider`'s ready jobs while a slot and a token are
    /// free, from one read of the users' lines as deep as the free slots;
    /// returns when a token frees up or a pause ends, if that is what
    /// stopped it.
    ///
    /// The token is taken after the claim (a store write, whose latency
    /// varies with what shares its commit) and just before the worker
    /// starts, so the spacing the limiter grants is the spacing the
    /// provider sees, give or take the worker's start.
    async fn dispatch_provider(self: &Arc<Self>, provider: &str) -> Result<Option<Instant>, StoreError> {
        let limits = self.limits_for(provider);
        let free = limits.max_concurrent.saturating_sub(self.parts.gate.in_flight(provider));
        if free == 0 {
            return Ok(None);
        }
        let mut lines = Lines::new(self.parts.store.heads(provider, crate::clock::now_ms(), free).await?);
        while !lines.is_empty() {
            if let Err(at) = self.parts.limiter.ready(provider, limits.rate, Instant::now()) {
                return Ok(Some(at));
            }
            let Some(slot) = self.parts.gate.try_acquire(provider, limits.max_concurrent) else { return Ok(None) };
            let Some(job) = self.claim_best(&mut lines).await? else { return Ok(None) };
            // Only this loop takes this provider's tokens, so the one seen
            // ready is still there, unless a 429 paused the provider since:
            // then the worker waits for the pause to end.
            let token = self.parts.limiter.try_take(provider, limits.rate, Instant::now());
            let this = self.clone();
            self.workers.spawn(async move { this.execute(job, slot, token.err()).await });
        }
        Ok(None)
    }

    /// Ranks the users' fronts with the priority policy and claims the
    /// first one still queued (a front someone else claimed is dropped and
    /// the next in the ranking tried). `None` if every line ran out first.
    async fn claim_best(self: &Arc<Self>, lines: &mut Lines) -> Result<Option<Job>, StoreError> {
        while !lines.is_empty() {
            let candidates = self.candidates(&lines.fronts());
            let order = self.parts.plugins.rank(&candidates).await;
            let now_ms = crate::clock::now_ms();
            let lease_until = now_ms + (self.parts.config.lease_seconds * 1000) as i64;
            for index in order {
                let job_id = &candidates[index].job_id;
                let Some(job) = self.parts.store.claim(job_id, &self.parts.owner, now_ms, lease_until).await? else {
                    lines.take_front(index, false);
                    continue;
                };
                lines.take_front(index, true);
                lines.prune();
                self.last_dispatch.lock().unwrap_or_else(|p| p.into_inner()).insert(job.user_id.clone(), now_ms);
                return Ok(Some(job));
            }
            lines.prune();
        }
        Ok(None)
    }

    fn candidates(&self, heads: &[&Head]) -> Vec<Candidate> {
        let last = self.last_dispatch.lock().unwrap_or_else(|p| p.into_inner());
        heads
            .iter()
            .map(|h| Candidate {
                job_id: h.job_id.clone(),
                user: h.user_id.clone(),
                priority: h.priority,
                submitted_at_ms: h.created_at_ms.max(0) as u64,
                user_running: h.user_running,
                user_queued: h.user_queued,
                user_last_dispatch_ms: last.get(&h.user_id).map(|&t| t.max(0) as u64),
            })
            .collect()
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
