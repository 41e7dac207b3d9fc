//! Admission: whether a job of a provider may start now, and claiming it
//! if so. A job starts only with a concurrency slot and a rate-limit token
//! of its provider, and neither may be over-granted when several
//! schedulers race, so taking them and claiming the job is one step
//! behind one trait.
//!
//! Two homes for the limits, as design.md puts them: [`LocalAdmission`]
//! keeps them in this process (one instance, and in-process providers in a
//! fleet, whose limits are per instance); [`FleetAdmission`] keeps those of
//! remote providers in PostgreSQL, so a fleet of instances shares one
//! concurrency cap, one rate and one retry-after pause. Both decide the
//! rate with the one GCRA in [`crate::limiter`].

pub mod fleet;
mod local;

pub use fleet::FleetAdmission;
pub use local::LocalAdmission;

use std::time::Duration;

use tokio::time::Instant;

use crate::config::Config;
use crate::gate::Slot;
use crate::limiter::Rate;
use crate::plugins::Plugins;
use crate::store::{Job, StoreResult};

/// The limits one provider runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderLimits {
    /// Calls in flight at most.
    pub max_concurrent: u32,
    /// Calls per minute, `None` for unlimited.
    pub rate: Option<Rate>,
    /// Whether the limits hold for a whole fleet (a remote provider) rather
    /// than per instance (an in-process one).
    pub fleet_wide: bool,
}

/// The limits of `provider`: `[plugins.NAME]` settings, else the defaults
/// the plugin's kind implies (an in-process provider: one call per core, no
/// rate limit, per instance), else the environment's.
pub fn provider_limits(config: &Config, plugins: &Plugins, provider: &str) -> ProviderLimits {
    let settings = config.plugin(provider);
    let in_process = plugins.provider_info(provider).is_some_and(|i| i.in_process);
    let cores = crate::process::cores() as u32;
    let max_concurrent =
        settings.max_concurrent.unwrap_or(if in_process { cores } else { config.max_concurrent_transcriptions });
    let per_minute = match (settings.rate_limit_per_minute, in_process) {
        (Some(per_minute), _) => Some(per_minute),
        (None, true) => None,
        (None, false) => Some(config.rate_limit_per_minute),
    };
    let rate = per_minute.map(|per_minute| Rate { per_minute, burst: config.rate_limit_burst });
    ProviderLimits { max_concurrent, rate, fleet_wide: !in_process }
}

/// The lease a claim gives its owner.
#[derive(Debug, Clone, Copy)]
pub struct Lease<'a> {
    /// The claiming instance.
    pub owner: &'a str,
    /// When the lease ends unless renewed (ms since the epoch).
    pub until_ms: i64,
}

/// A claimed job, ready to run.
pub struct Admitted {
    /// The job, now `running` under the claimer's lease.
    pub job: Job,
    /// This instance's slot, held until the call ends.
    pub slot: Slot,
    /// The job's rate token: what the worker does about it just before the
    /// provider call ([`Admission::take_token`]).
    pub token: Token,
    /// A succeeded twin's transcript, found by the claim
    /// ([`crate::store::Claimed`]).
    pub twin_transcript: Option<String>,
}

/// A claimed job's rate token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// Taken with the claim (in-process limits).
    Held,
    /// Could not be taken after the claim (a 429 paused the provider in
    /// between): wait for one from then on.
    DueAt(Instant),
    /// Taken with the claim (a fleet's limits), for a call that starts at
    /// this instant (see [`fleet::CALL_OFFSET`]).
    CallAt(Instant),
}

/// What an attempt to start a job came to.
pub enum Admit {
    /// Claimed: run it.
    Admitted(Admitted),
    /// Someone else claimed the job first (or it was canceled): try the
    /// next candidate.
    Taken,
    /// No token until then (rate, a retry-after pause, an operator's hold).
    Wait(Instant),
    /// Every slot is held; a finished call will wake the scheduler.
    Full,
}

/// Starts jobs within their provider's limits.
#[async_trait::async_trait]
pub trait Admission: Send + Sync {
    /// How many more calls of `provider` may start now, by the concurrency
    /// cap alone (how deep the scheduler reads the users' lines).
    async fn free_slots(&self, provider: &str, limits: ProviderLimits) -> StoreResult<u32>;
    /// How many of `free` claims of `provider` in a row would all find a
    /// token now. Claims counted here may be made together, so that their
    /// store writes share one commit; past one, they are made one by one.
    async fn startable_together(&self, provider: &str, limits: ProviderLimits, free: u32) -> StoreResult<u32>;
    /// Claims `job_id` for `lease` if a slot and a token of `provider` are
    /// free, taking both; otherwise claims nothing and says why.
    async fn claim(&self, provider: &str, limits: ProviderLimits, job_id: &str, lease: Lease<'_>) -> StoreResult<Admit>;
    /// Claims each of `jobs` (in order) as [`Admission::claim`] would; the
    /// answers in the same order. Claims made together may share their
    /// store writes (see [`Admission::startable_together`]).
    async fn claim_together(&self, provider: &str, limits: ProviderLimits, jobs: &[(&str, Lease<'_>)]) -> StoreResult<Vec<Admit>> {
        claim_each(self, provider, limits, jobs).await
    }
    /// Returns once the job holds its `token` (see [`Token`]), waiting for
    /// one if it must. A database error is logged and retried: a call
    /// never starts without its token.
    async fn take_token(&self, provider: &str, limits: ProviderLimits, token: Token);
    /// Returns once a call's first request to `provider` may leave: at the
    /// rate's spacing counted from when requests leave, not from their
    /// tokens, and not during a retry-after pause
    /// ([`crate::limiter::RateLimiter::reserve_send`]). Awaited by the
    /// plugin runtime just before the request goes out, so what delays one
    /// job more than the next between its claim and its request cannot
    /// bunch the calls the provider sees.
    async fn pace_request(&self, provider: &str, limits: ProviderLimits);
    /// Lets no call of `provider` start for `pause` (a 429's retry-after);
    /// an earlier pause is extended, never shortened.
    async fn pause(&self, provider: &str, limits: ProviderLimits, pause: Duration) -> StoreResult<()>;
    /// An operator's pause of `provider` (`held`) or its end (which also
    /// ends a retry-after pause).
    async fn set_held(&self, provider: &str, limits: ProviderLimits, held: bool) -> StoreResult<()>;
    /// Whether an operator paused `provider`.
    async fn is_held(&self, provider: &str, limits: ProviderLimits) -> StoreResult<bool>;
    /// Calls of `provider` this instance has in flight.
    fn in_flight(&self, provider: &str) -> u32;
}

/// [`Admission::claim_together`] one claim after another.
pub(crate) async fn claim_each<A: Admission + ?Sized>(
    admission: &A,
    provider: &str,
    limits: ProviderLimits,
    jobs: &[(&str, Lease<'_>)],
) -> StoreResult<Vec<Admit>> {
    let mut answers = Vec::with_capacity(jobs.len());
    for (job_id, lease) in jobs {
        answers.push(admission.claim(provider, limits, job_id, *lease).await?);
    }
    Ok(answers)
}
