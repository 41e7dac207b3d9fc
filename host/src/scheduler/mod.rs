//! The scheduler: the only caller of provider plugins and policies.
//!
//! A job is dispatched only when a concurrency slot and a rate-limit token
//! of its provider are both free ([`crate::admission`], which holds them
//! in-process or, for a fleet, in PostgreSQL); among the users with a ready job, the priority policy picks who
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
use crate::admission::{provider_limits, Admission, Admit, Lease, ProviderLimits};
use crate::plugins::types::Candidate;
use crate::plugins::Plugins;
use crate::store::{Head, Store, StoreError};

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
    /// Concurrency caps and rate limits.
    pub admission: Arc<dyn Admission>,
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
    /// This instance's name. Each claim's lease owner is this name, `#`
    /// and a number of its own, so a late write from an earlier claim of a
    /// job (retried through an outage, or answered after its lease expired
    /// and the job was claimed again, even by this instance) can never land
    /// on a later one.
    pub owner: String,
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
    /// Per provider, the next rate token's time when admission last said
    /// to wait for one: until then a round (woken by any finished call or
    /// submit, here or, in a fleet, anywhere) skips the provider instead of
    /// asking again. Only short waits are kept (see [`TOKEN_WAIT_KEPT`]).
    token_wait: Mutex<HashMap<String, Instant>>,
    /// Claims made, numbering each claim's lease owner.
    claims: std::sync::atomic::AtomicU64,
}

/// The longest wait for a token a round spends in place (then claims the
/// same job), rather than ending and starting again at the token's time.
const WAIT_IN_PLACE: Duration = Duration::from_millis(50);

/// The longest wait for a token a scheduler keeps without asking again:
/// the spacing of a rate, not an operator's hold or a long retry-after
/// (which a resume may end at any moment).
const TOKEN_WAIT_KEPT: Duration = Duration::from_secs(1);

impl Scheduler {
    /// A scheduler over `parts`; [`Scheduler::run`] drives it.
    pub fn new(parts: Parts) -> Arc<Self> {
        Arc::new(Self {
            parts,
            last_dispatch: Mutex::default(),
            workers: TaskTracker::new(),
            next_lease_check: Mutex::new(Instant::now()),
            token_wait: Mutex::default(),
            claims: std::sync::atomic::AtomicU64::new(0),
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
    async fn dispatch_provider(self: &Arc<Self>, provider: &str) -> Result<Option<Instant>, StoreError> {
        let kept = self.token_wait.lock().unwrap_or_else(|p| p.into_inner()).get(provider).copied();
        if let Some(at) = kept.filter(|&at| Instant::now() < at) {
            return Ok(Some(at));
        }
        let limits = self.limits_for(provider);
        let free = self.parts.admission.free_slots(provider, limits).await?;
        if free == 0 {
            return Ok(None);
        }
        let mut lines = Lines::new(self.parts.store.heads(provider, crate::clock::now_ms(), free).await?);
        let together = self.parts.admission.startable_together(provider, limits, free).await?;
        if together > 1 {
            return self.claim_together(provider, limits, &mut lines, together).await;
        }
        while !lines.is_empty() {
            match self.claim_best(provider, limits, &mut lines).await? {
                Some(Admit::Admitted(admitted)) => {
                    let this = self.clone();
                    self.workers.spawn(async move { this.execute(admitted).await });
                }
                Some(Admit::Wait(at)) => {
                    if at <= Instant::now() + TOKEN_WAIT_KEPT {
                        self.token_wait.lock().unwrap_or_else(|p| p.into_inner()).insert(provider.to_string(), at);
                    }
                    return Ok(Some(at));
                }
                Some(Admit::Full) | Some(Admit::Taken) | None => return Ok(None),
            }
        }
        Ok(None)
    }

    /// Picks up to `count` jobs from the lines as the priority policy
    /// ranks them (each pick counted as dispatched before the next), then
    /// claims them all at once ([`Admission::claim_together`]: one store
    /// write instead of one commit each in turn). Admission said a token
    /// is there for each; one it refuses after all (a 429 paused the
    /// provider meanwhile) stays queued. Returns when to look again: at
    /// once if someone else took a pick (a slot is still free), or when
    /// a token frees up.
    async fn claim_together(
        self: &Arc<Self>,
        provider: &str,
        limits: ProviderLimits,
        lines: &mut Lines,
        count: u32,
    ) -> Result<Option<Instant>, StoreError> {
        let mut picks = Vec::with_capacity(count as usize);
        while picks.len() < count as usize && !lines.is_empty() {
            let candidates = self.candidates(&lines.fronts());
            let Some(&best) = self.rank(&candidates).await.first() else { break };
            if let Some(head) = lines.take_front(best, true) {
                self.note_dispatch(&head.user_id);
                picks.push(head);
            }
            lines.prune();
        }
        let lease_until = self.lease_until();
        let owners: Vec<String> = picks.iter().map(|_| self.next_owner()).collect();
        let jobs: Vec<(&str, Lease<'_>)> = picks
            .iter()
            .zip(&owners)
            .map(|(head, owner)| (head.job_id.as_str(), Lease { owner, until_ms: lease_until }))
            .collect();
        let mut next = None;
        for admit in self.parts.admission.claim_together(provider, limits, &jobs).await? {
            match admit {
                Admit::Admitted(admitted) => {
                    let this = self.clone();
                    self.workers.spawn(async move { this.execute(admitted).await });
                }
                Admit::Taken => next = Some(Instant::now()),
                Admit::Wait(at) => next = earliest(next, Some(at)),
                Admit::Full => {}
            }
        }
        Ok(next)
    }

    /// The candidates' order of preference: the priority policy's, which
    /// is not asked when there is no choice to make.
    async fn rank(&self, candidates: &[Candidate]) -> Vec<usize> {
        if candidates.len() == 1 {
            return vec![0];
        }
        self.parts.plugins.rank(candidates).await
    }

    /// When a lease taken now ends unless renewed (ms since the epoch).
    fn lease_until(&self) -> i64 {
        crate::clock::now_ms() + (self.parts.config.lease_seconds * 1000) as i64
    }

    /// The lease owner of the next claim: this instance's name and the
    /// claim's number.
    fn next_owner(&self) -> String {
        let claim = self.claims.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{}#{claim}", self.parts.owner)
    }

    /// Notes that a job of `user` was just dispatched, for fairness.
    fn note_dispatch(&self, user: &str) {
        self.last_dispatch.lock().unwrap_or_else(|p| p.into_inner()).insert(user.to_string(), crate::clock::now_ms());
    }

    /// Ranks the users' fronts with the priority policy and claims the
    /// first one still queued within the provider's limits (a front someone
    /// else claimed is dropped and the next in the ranking tried). `None`
    /// if every line ran out first; a wait or a full cap otherwise.
    async fn claim_best(
        self: &Arc<Self>,
        provider: &str,
        limits: ProviderLimits,
        lines: &mut Lines,
    ) -> Result<Option<Admit>, StoreError> {
        while !lines.is_empty() {
            let candidates = self.candidates(&lines.fronts());
            let order = self.rank(&candidates).await;
            for index in order {
                match self.claim_when_due(provider, limits, &candidates[index].job_id).await? {
                    Admit::Taken => {
                        lines.take_front(index, false);
                    }
                    Admit::Admitted(admitted) => {
                        lines.take_front(index, true);
                        lines.prune();
                        self.note_dispatch(&admitted.job.user_id);
                        return Ok(Some(Admit::Admitted(admitted)));
                    }
                    stop @ (Admit::Wait(_) | Admit::Full) => return Ok(Some(stop)),
                }
            }
            lines.prune();
        }
        Ok(None)
    }

    /// Asks admission for `job_id`; a token due within [`WAIT_IN_PLACE`]
    /// is waited for here and asked again, so a fast rate's cadence costs
    /// one claim per token rather than a whole round (reading the lines,
    /// ranking) started late by a timer.
    async fn claim_when_due(
        &self,
        provider: &str,
        limits: ProviderLimits,
        job_id: &str,
    ) -> Result<Admit, StoreError> {
        loop {
            let lease_until = self.lease_until();
            let owner = self.next_owner();
            let lease = Lease { owner: &owner, until_ms: lease_until };
            match self.parts.admission.claim(provider, limits, job_id, lease).await? {
                Admit::Wait(at) if at <= Instant::now() + WAIT_IN_PLACE => tokio::time::sleep_until(at).await,
                admit => return Ok(admit),
            }
        }
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
                // The fleet's record (PostgreSQL) or this instance's.
                user_last_dispatch_ms: h.user_last_dispatch_ms.max(last.get(&h.user_id).copied()).map(|t| t.max(0) as u64),
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
