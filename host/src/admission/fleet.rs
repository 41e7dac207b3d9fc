//! Limits held in PostgreSQL, for a fleet of instances on one database.
//!
//! A remote provider's limits hold for the whole fleet: one row per
//! provider in `provider_limits` holds its GCRA state (the theoretical
//! arrival time), its retry-after pause and an operator's hold, and the
//! concurrency cap counts the provider's `running` jobs. Both a claim and
//! the taking of a token lock the provider's row (`FOR UPDATE`), so they
//! are serialised across the fleet; under the lock each reads the
//! database's clock (and a claim the running count) in a statement of its
//! own, whose snapshot is taken after the lock, so a claim or a token
//! another instance just committed is seen. A claim decides with the one
//! GCRA ([`crate::limiter::Cell`]), claims the job and stores the new
//! arrival time in one transaction; the worker starts the call
//! [`CALL_OFFSET`] after the token's slot ([`Token::CallAt`]). Two
//! instances racing cannot both take the last slot or the same token.
//!
//! Times are the database's clock (microseconds), the one clock every
//! instance shares. A slot is the running job itself: it frees when the job
//! leaves `running` (its outcome recorded, or its lease expired and the
//! job put back), so a killed instance's slots come back with its leases.
//! In-process providers keep per-instance limits ([`LocalAdmission`]).

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgPool;
use sqlx::Row;
use tokio::time::Instant;

use super::{Admission, Admit, Admitted, Lease, LocalAdmission, ProviderLimits, Token};
use crate::gate::{ConcurrencyGate, LocalGate};
use crate::limiter::{Cell, Micros, Moment};
use crate::store::{Claimed, PostgresStore, Store, StoreResult};

/// How long after its token's slot a call starts. Between a claim's commit
/// and its call lie the worker's start, the audio read from the database
/// and the plugin's instantiation, which vary by tens of milliseconds
/// (more on a loaded machine): starting every call this fixed offset after
/// its slot keeps the spacing the provider sees the spacing granted, at the
/// cost of this much latency per call.
pub const CALL_OFFSET: Duration = Duration::from_millis(50);

/// The database's clock, in microseconds since the epoch.
const NOW_US: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT";

/// Fleet-wide limits for remote providers; per-instance ones for the rest.
pub struct FleetAdmission {
    pool: PgPool,
    /// In-process providers.
    local: LocalAdmission,
    /// This instance's calls of fleet-wide providers (counted, not capped:
    /// the cap is the database's).
    calls: LocalGate,
}

impl FleetAdmission {
    /// Admission to the jobs of `store`, with the fleet's limits in its
    /// database.
    pub fn new(store: Arc<PostgresStore>) -> Self {
        let pool = store.pool().clone();
        Self { pool, local: LocalAdmission::new(store as Arc<dyn Store>), calls: LocalGate::default() }
    }

    async fn running(&self, provider: &str) -> StoreResult<u32> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE provider = $1 AND status = 'running'")
            .bind(provider)
            .fetch_one(&self.pool)
            .await?;
        Ok(n.clamp(0, i64::from(u32::MAX)) as u32)
    }
}

/// Locks `provider`'s row (creating it the first time) and reads its state
/// and the database's clock; the clock is read in a statement after the
/// lock, so it is the time the decision is made at.
async fn lock_cell(tx: &mut sqlx::PgConnection, provider: &str) -> StoreResult<(Cell<Micros>, Micros)> {
    sqlx::query("INSERT INTO provider_limits (provider) VALUES ($1) ON CONFLICT (provider) DO NOTHING")
        .bind(provider)
        .execute(&mut *tx)
        .await?;
    let row = sqlx::query("SELECT tat_us, paused_until_us, held FROM provider_limits WHERE provider = $1 FOR UPDATE")
        .bind(provider)
        .fetch_one(&mut *tx)
        .await?;
    let cell = Cell {
        tat: row.try_get::<Option<i64>, _>("tat_us")?.map(Micros),
        paused_until: row.try_get::<Option<i64>, _>("paused_until_us")?.map(Micros),
        held: row.try_get("held")?,
    };
    let now_us: i64 = sqlx::query_scalar(&format!("SELECT {NOW_US}")).fetch_one(&mut *tx).await?;
    Ok((cell, Micros(now_us)))
}

#[async_trait::async_trait]
impl Admission for FleetAdmission {
    async fn free_slots(&self, provider: &str, limits: ProviderLimits) -> StoreResult<u32> {
        if !limits.fleet_wide {
            return self.local.free_slots(provider, limits).await;
        }
        Ok(limits.max_concurrent.saturating_sub(self.running(provider).await?))
    }

    /// One for a fleet-wide provider: its claims take its row in turn
    /// anyway, and each must see the token the one before took.
    async fn startable_together(&self, provider: &str, limits: ProviderLimits, free: u32) -> StoreResult<u32> {
        if !limits.fleet_wide {
            return self.local.startable_together(provider, limits, free).await;
        }
        Ok(free.min(1))
    }

    async fn claim_together(&self, provider: &str, limits: ProviderLimits, jobs: &[(&str, Lease<'_>)]) -> StoreResult<Vec<Admit>> {
        if !limits.fleet_wide {
            return self.local.claim_together(provider, limits, jobs).await;
        }
        super::claim_each(self, provider, limits, jobs).await
    }

    async fn claim(&self, provider: &str, limits: ProviderLimits, job_id: &str, lease: Lease<'_>) -> StoreResult<Admit> {
        if !limits.fleet_wide {
            return self.local.claim(provider, limits, job_id, lease).await;
        }
        let mut tx = self.pool.begin().await?;
        let (cell, now) = lock_cell(&mut tx, provider).await?;
        let running: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE provider = $1 AND status = 'running'")
            .bind(provider)
            .fetch_one(&mut *tx)
            .await?;
        let tat = match cell.next_slot(limits.rate, now) {
            Ok(tat) => tat,
            Err(at) => {
                let wait = Admit::Wait(Instant::now() + now.until(at));
                tx.rollback().await?;
                return Ok(wait);
            }
        };
        if running >= i64::from(limits.max_concurrent) {
            tx.rollback().await?;
            return Ok(Admit::Full);
        }
        let now_ms = crate::clock::now_ms();
        let Some(Claimed { job, twin_transcript }) = PostgresStore::claim_on(&mut tx, job_id, lease.owner, now_ms, lease.until_ms).await? else {
            tx.rollback().await?;
            return Ok(Admit::Taken);
        };
        let token = match (tat, limits.rate) {
            (Some(Micros(tat_us)), Some(rate)) => {
                sqlx::query("UPDATE provider_limits SET tat_us = $2 WHERE provider = $1")
                    .bind(provider)
                    .bind(tat_us)
                    .execute(&mut *tx)
                    .await?;
                // The slot granted: the new arrival time less one interval.
                let slot = Micros(tat_us).checked_sub(rate.interval()).unwrap_or(now);
                let local_now = Instant::now();
                let slot_here = if slot >= now {
                    local_now + now.until(slot)
                } else {
                    local_now.checked_sub(slot.until(now)).unwrap_or(local_now)
                };
                Token::CallAt(slot_here + CALL_OFFSET)
            }
            _ => Token::Held,
        };
        tx.commit().await?;
        let slot = self.calls.try_acquire(provider, u32::MAX).expect("an uncapped gate always has a slot");
        Ok(Admit::Admitted(Admitted { job, slot, token, twin_transcript }))
    }

    async fn take_token(&self, provider: &str, limits: ProviderLimits, token: Token) {
        self.local.take_token(provider, limits, token).await
    }

    /// This instance's requests, spaced as they leave, and held by the
    /// retry-after pauses this instance recorded (see [`Admission::pause`]
    /// here): the fleet's spacing between instances is the database's,
    /// granted at the claim ([`CALL_OFFSET`]).
    async fn pace_request(&self, provider: &str, limits: ProviderLimits) {
        self.local.pace_request(provider, limits).await
    }

    async fn pause(&self, provider: &str, limits: ProviderLimits, pause: Duration) -> StoreResult<()> {
        if !limits.fleet_wide {
            return self.local.pause(provider, limits, pause).await;
        }
        sqlx::query(&format!(
            "INSERT INTO provider_limits (provider, paused_until_us) VALUES ($1, {NOW_US} + $2) \
             ON CONFLICT (provider) DO UPDATE SET paused_until_us = \
               GREATEST(COALESCE(provider_limits.paused_until_us, 0), EXCLUDED.paused_until_us)"
        ))
        .bind(provider)
        .bind(i64::try_from(pause.as_micros()).unwrap_or(i64::MAX / 2))
        .execute(&self.pool)
        .await?;
        // Also here, so this instance's requests waiting to leave
        // ([`Admission::pace_request`]) are held by the 429 it just saw.
        self.local.pause(provider, limits, pause).await
    }

    async fn set_held(&self, provider: &str, limits: ProviderLimits, held: bool) -> StoreResult<()> {
        if !limits.fleet_wide {
            return self.local.set_held(provider, limits, held).await;
        }
        sqlx::query(
            "INSERT INTO provider_limits (provider, held) VALUES ($1, $2) \
             ON CONFLICT (provider) DO UPDATE SET held = $2, \
               paused_until_us = CASE WHEN $2 THEN provider_limits.paused_until_us END",
        )
        .bind(provider)
        .bind(held)
        .execute(&self.pool)
        .await?;
        if !held {
            // A resume ends this instance's record of a pause too.
            self.local.set_held(provider, limits, false).await?;
        }
        Ok(())
    }

    async fn is_held(&self, provider: &str, limits: ProviderLimits) -> StoreResult<bool> {
        if !limits.fleet_wide {
            return self.local.is_held(provider, limits).await;
        }
        let held: Option<bool> = sqlx::query_scalar("SELECT held FROM provider_limits WHERE provider = $1")
            .bind(provider)
            .fetch_optional(&self.pool)
            .await?;
        Ok(held.unwrap_or(false))
    }

    fn in_flight(&self, provider: &str) -> u32 {
        self.calls.in_flight(provider) + self.local.in_flight(provider)
    }
}
