//! Provider rate limits: a GCRA (generic cell rate algorithm) per provider,
//! so calls are spaced evenly (30/min means one every 2 s, not 30 at the
//! top of the minute), with a burst allowance, and an adaptive pause when a
//! provider answers 429 with a retry-after.
//!
//! A call that comes a little late (less than half an interval, e.g. a
//! timer firing a millisecond after the slot) keeps the schedule: the next
//! slot is counted from the slot, not from the late call, so timer jitter
//! does not slowly lower the rate below the limit. Any window of the
//! interval's length still sees at most one call more than the rate.
//!
//! A token is taken when a job is claimed, and the claim is some work away
//! from the provider: the worker's start, reading the audio, a plugin
//! instance, the guest building its request. On a loaded machine that work
//! takes longer for one job than for the next, which bunches the requests
//! the provider sees. So the requests are spaced a second time, as they
//! leave ([`RateLimiter::reserve_send`]), strictly: a late request does not
//! let the next one come sooner. What that costs is a wait of at most the
//! spread of those delays; the rate is still the tokens'.
//!
//! The in-process limiter serves one instance (and in-process providers in
//! a fleet) through [`crate::admission::LocalAdmission`]; a fleet's
//! database-held budget lives in [`crate::admission`] and decides with the
//! same [`Cell`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A rate: `per_minute` calls, of which `burst` may come back to back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Calls per minute (at least 1).
    pub per_minute: u32,
    /// Calls allowed back to back (at least 1).
    pub burst: u32,
}

impl Rate {
    /// The spacing between calls at this rate.
    pub fn interval(self) -> Duration {
        Duration::from_secs(60) / self.per_minute.max(1)
    }
}

/// Decides when a provider may be called next.
pub trait RateLimiter: Send + Sync {
    /// Takes a token of `provider` at `now` if one is free; otherwise
    /// returns the instant the next one frees up. `None` as the rate means
    /// unlimited (only pauses apply).
    fn try_take(&self, provider: &str, rate: Option<Rate>, now: Instant) -> Result<(), Instant>;
    /// Whether [`RateLimiter::try_take`] would take a token now, taking
    /// none: the instant one frees up otherwise.
    fn ready(&self, provider: &str, rate: Option<Rate>, now: Instant) -> Result<(), Instant>;
    /// How many calls of `provider` in a row, up to `at_most`, would each
    /// take a token at `now`, taking none.
    fn ready_count(&self, provider: &str, rate: Option<Rate>, now: Instant, at_most: u32) -> u32;
    /// Lets no call of `provider` through before `until` (a 429's
    /// retry-after); an earlier pause is extended, never shortened.
    fn pause_until(&self, provider: &str, until: Instant);
    /// Until when `provider` is paused, if it is at `now`.
    fn paused_until(&self, provider: &str, now: Instant) -> Option<Instant>;
    /// Lets no call of `provider` through until [`RateLimiter::release`]
    /// (an operator's pause; its jobs wait in the queue).
    fn hold(&self, provider: &str);
    /// Ends an operator's pause of `provider` and any retry-after pause.
    fn release(&self, provider: &str);
    /// Whether an operator paused `provider`.
    fn is_held(&self, provider: &str) -> bool;
    /// Reserves the instant, `now` or later, at which the next request of
    /// `provider` may leave: no sooner than the rate's interval after the
    /// previous one (a burst's worth sooner at most, as for tokens), and
    /// not while a retry-after pause lasts. Unlike a token's, the schedule
    /// is not kept: requests are spaced by when they leave.
    fn reserve_send(&self, provider: &str, rate: Option<Rate>, now: Instant) -> Instant;
}

/// How far ahead a held provider's next token is reported: the scheduler
/// sleeps until then unless woken (a release wakes it).
pub const HELD_RECHECK: Duration = Duration::from_secs(3600);

/// A point in time the GCRA computes with: a local [`Instant`] for one
/// instance, or the database's clock ([`Micros`]) for a fleet, whose
/// instances must share one clock.
pub trait Moment: Copy + Ord + std::ops::Add<Duration, Output = Self> {
    /// `self - duration`, if representable.
    fn checked_sub(self, duration: Duration) -> Option<Self>;
}

impl Moment for Instant {
    fn checked_sub(self, duration: Duration) -> Option<Self> {
        Instant::checked_sub(&self, duration)
    }
}

/// Microseconds since the Unix epoch (the database's clock in a fleet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Micros(pub i64);

impl std::ops::Add<Duration> for Micros {
    type Output = Self;
    fn add(self, duration: Duration) -> Self {
        Micros(self.0.saturating_add(duration.as_micros().min(i64::MAX as u128) as i64))
    }
}

impl Moment for Micros {
    fn checked_sub(self, duration: Duration) -> Option<Self> {
        i64::try_from(duration.as_micros()).ok().and_then(|d| self.0.checked_sub(d)).map(Micros)
    }
}

impl Micros {
    /// How long from `self` until `later` (zero if it has passed).
    pub fn until(self, later: Micros) -> Duration {
        Duration::from_micros(later.0.saturating_sub(self.0).max(0) as u64)
    }
}

/// One provider's limiter state: the one GCRA both the in-process limiter
/// and the fleet's database-held one ([`crate::admission`]) decide with.
#[derive(Debug, Clone, Copy)]
pub struct Cell<T> {
    /// The theoretical arrival time of the next call.
    pub tat: Option<T>,
    /// A 429's retry-after pause.
    pub paused_until: Option<T>,
    /// An operator's pause.
    pub held: bool,
}

impl<T> Default for Cell<T> {
    fn default() -> Self {
        Self { tat: None, paused_until: None, held: false }
    }
}

/// The in-process limiter: exact for one instance.
#[derive(Debug, Default)]
pub struct LocalRateLimiter {
    /// Per provider, the tokens (taken at a claim) and the pauses.
    cells: Mutex<HashMap<String, Cell<Instant>>>,
    /// Per provider, the requests as they leave ([`RateLimiter::reserve_send`]).
    sends: Mutex<HashMap<String, Cell<Instant>>>,
}

impl<T: Moment> Cell<T> {
    /// The slot a call at `now` would take (`Ok`: the new theoretical
    /// arrival time to store), or when the next one frees up.
    pub fn next_slot(&self, rate: Option<Rate>, now: T) -> Result<Option<T>, T> {
        if self.held {
            return Err(now + HELD_RECHECK);
        }
        if let Some(until) = self.paused_until.filter(|&until| until > now) {
            return Err(until);
        }
        let Some(rate) = rate else { return Ok(None) };
        // Late by less than half an interval: keep the schedule; later than
        // that, the provider was idle and the schedule restarts now.
        self.spaced(rate, now, rate.interval() / 2)
    }

    /// The GCRA's own test of a call at `now`, with no pause or hold: a
    /// call up to `kept` late still counts from its slot.
    fn spaced(&self, rate: Rate, now: T, kept: Duration) -> Result<Option<T>, T> {
        let interval = rate.interval();
        let tolerance = interval * (rate.burst.max(1) - 1);
        let tat = match self.tat {
            Some(tat) if now < tat + kept => tat,
            _ => now,
        };
        let allowed_at = tat.checked_sub(tolerance).unwrap_or(now);
        if now < allowed_at {
            return Err(allowed_at);
        }
        Ok(Some(tat + interval))
    }

    /// How many calls in a row, up to `at_most`, would each find a token
    /// at `now`.
    pub fn ready_count(&self, rate: Option<Rate>, now: T, at_most: u32) -> u32 {
        let mut cell = *self;
        let mut count = 0;
        while count < at_most {
            match cell.next_slot(rate, now) {
                Ok(tat) => {
                    cell.tat = tat.or(cell.tat);
                    count += 1;
                }
                Err(_) => break,
            }
            if rate.is_none() {
                // Unlimited: past the first, every call finds one.
                return at_most;
            }
        }
        count
    }
}

impl RateLimiter for LocalRateLimiter {
    fn try_take(&self, provider: &str, rate: Option<Rate>, now: Instant) -> Result<(), Instant> {
        let mut cells = self.cells.lock().unwrap_or_else(|p| p.into_inner());
        let cell = cells.entry(provider.to_string()).or_default();
        if let Some(tat) = cell.next_slot(rate, now)? {
            cell.tat = Some(tat);
        }
        Ok(())
    }

    fn ready(&self, provider: &str, rate: Option<Rate>, now: Instant) -> Result<(), Instant> {
        let cells = self.cells.lock().unwrap_or_else(|p| p.into_inner());
        match cells.get(provider) {
            Some(cell) => cell.next_slot(rate, now).map(|_| ()),
            None => Ok(()),
        }
    }

    fn ready_count(&self, provider: &str, rate: Option<Rate>, now: Instant, at_most: u32) -> u32 {
        let cells = self.cells.lock().unwrap_or_else(|p| p.into_inner());
        cells.get(provider).copied().unwrap_or_default().ready_count(rate, now, at_most)
    }

    fn pause_until(&self, provider: &str, until: Instant) {
        let mut cells = self.cells.lock().unwrap_or_else(|p| p.into_inner());
        let cell = cells.entry(provider.to_string()).or_default();
        cell.paused_until = Some(cell.paused_until.map_or(until, |old| old.max(until)));
    }

    fn paused_until(&self, provider: &str, now: Instant) -> Option<Instant> {
        let cells = self.cells.lock().unwrap_or_else(|p| p.into_inner());
        cells.get(provider).and_then(|c| c.paused_until).filter(|&until| until > now)
    }

    fn hold(&self, provider: &str) {
        let mut cells = self.cells.lock().unwrap_or_else(|p| p.into_inner());
        cells.entry(provider.to_string()).or_default().held = true;
    }

    fn release(&self, provider: &str) {
        let mut cells = self.cells.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(cell) = cells.get_mut(provider) {
            cell.held = false;
            cell.paused_until = None;
        }
    }

    fn is_held(&self, provider: &str) -> bool {
        let cells = self.cells.lock().unwrap_or_else(|p| p.into_inner());
        cells.get(provider).is_some_and(|c| c.held)
    }

    fn reserve_send(&self, provider: &str, rate: Option<Rate>, now: Instant) -> Instant {
        let start = self.paused_until(provider, now).unwrap_or(now);
        let Some(rate) = rate else { return start };
        let mut sends = self.sends.lock().unwrap_or_else(|p| p.into_inner());
        // Not `entry`: that would allocate the key on every request.
        if !sends.contains_key(provider) {
            sends.insert(provider.to_string(), Cell::default());
        }
        let cell = sends.get_mut(provider).expect("inserted above");
        let at = cell.spaced(rate, start, Duration::ZERO).err().unwrap_or(start);
        // Always `Ok`: `at` is when the cell allows the next request.
        if let Ok(tat) = cell.spaced(rate, at, Duration::ZERO) {
            cell.tat = tat;
        }
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(per_minute: u32, burst: u32) -> Option<Rate> {
        Some(Rate { per_minute, burst })
    }

    #[test]
    fn calls_are_spaced_evenly_with_burst_one() {
        let limiter = LocalRateLimiter::default();
        let t0 = Instant::now();
        assert_eq!(limiter.try_take("p", rate(30, 1), t0), Ok(()));
        assert_eq!(limiter.try_take("p", rate(30, 1), t0), Err(t0 + Duration::from_secs(2)));
        let almost = t0 + Duration::from_millis(1999);
        assert_eq!(limiter.try_take("p", rate(30, 1), almost), Err(t0 + Duration::from_secs(2)));
        assert_eq!(limiter.try_take("p", rate(30, 1), t0 + Duration::from_secs(2)), Ok(()));
        assert!(limiter.try_take("other", rate(30, 1), t0).is_ok(), "providers are limited apart");
    }

    #[test]
    fn a_minute_admits_exactly_the_rate() {
        let limiter = LocalRateLimiter::default();
        let t0 = Instant::now();
        let mut admitted = Vec::new();
        let mut now = t0;
        while now < t0 + Duration::from_secs(60) {
            if limiter.try_take("p", rate(1800, 1), now).is_ok() {
                admitted.push(now);
            }
            now += Duration::from_millis(1);
        }
        assert_eq!(admitted.len(), 1800, "polling jitter does not lower the rate");
        let busiest = admitted
            .iter()
            .map(|&start| admitted.iter().filter(|&&t| t >= start && t < start + Duration::from_secs(1)).count())
            .max()
            .unwrap_or(0);
        assert!(busiest <= 31, "any 1 s window sees at most the rate + 1: {busiest}");
    }

    #[test]
    fn ready_answers_like_try_take_without_taking() {
        let limiter = LocalRateLimiter::default();
        let t0 = Instant::now();
        assert_eq!(limiter.ready("p", rate(30, 1), t0), Ok(()));
        assert_eq!(limiter.ready("p", rate(30, 1), t0), Ok(()), "nothing was taken");
        assert_eq!(limiter.try_take("p", rate(30, 1), t0), Ok(()));
        assert_eq!(limiter.ready("p", rate(30, 1), t0), Err(t0 + Duration::from_secs(2)));
        limiter.pause_until("q", t0 + Duration::from_secs(3));
        assert_eq!(limiter.ready("q", None, t0), Err(t0 + Duration::from_secs(3)));
    }

    #[test]
    fn ready_count_counts_the_burst_left_without_taking() {
        let limiter = LocalRateLimiter::default();
        let t0 = Instant::now();
        assert_eq!(limiter.ready_count("p", rate(60, 3), t0, 10), 3);
        assert_eq!(limiter.ready_count("p", rate(60, 3), t0, 2), 2, "never more than asked");
        assert_eq!(limiter.try_take("p", rate(60, 3), t0), Ok(()));
        assert_eq!(limiter.ready_count("p", rate(60, 3), t0, 10), 2, "one was taken");
        assert_eq!(limiter.ready_count("p", rate(60, 1), t0, 10), 0, "burst 1: spaced");
        assert_eq!(limiter.ready_count("q", None, t0, 10), 10, "unlimited");
        limiter.pause_until("q", t0 + Duration::from_secs(1));
        assert_eq!(limiter.ready_count("q", None, t0, 10), 0, "paused");
    }

    #[test]
    fn a_held_provider_takes_no_call_until_released() {
        let limiter = LocalRateLimiter::default();
        let t0 = Instant::now();
        limiter.hold("p");
        limiter.pause_until("p", t0 + Duration::from_secs(5));
        assert!(limiter.is_held("p"));
        assert!(limiter.try_take("p", None, t0 + Duration::from_secs(10)).is_err(), "held outlasts the pause");
        limiter.release("p");
        assert!(!limiter.is_held("p"));
        assert_eq!(limiter.try_take("p", None, t0), Ok(()), "release also ends a retry-after pause");
    }

    #[test]
    fn burst_allows_back_to_back_calls_then_spacing() {
        let limiter = LocalRateLimiter::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.try_take("p", rate(60, 3), t0), Ok(()));
        }
        assert_eq!(limiter.try_take("p", rate(60, 3), t0), Err(t0 + Duration::from_secs(1)));
    }

    #[test]
    fn requests_leave_spaced_by_when_they_leave_not_by_their_tokens() {
        let limiter = LocalRateLimiter::default();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // 600/min: 100 ms apart. The first goes at once; one asked for
        // 10 ms later is held to 100 ms; one asked for at 190 ms (a token
        // taken late would count from 200 ms) is held to 200 ms.
        assert_eq!(limiter.reserve_send("p", rate(600, 1), t0), t0);
        assert_eq!(limiter.reserve_send("p", rate(600, 1), t0 + ms(10)), t0 + ms(100));
        assert_eq!(limiter.reserve_send("p", rate(600, 1), t0 + ms(190)), t0 + ms(200));
        // Late: a request at 340 ms does not let the next leave before 440.
        assert_eq!(limiter.reserve_send("p", rate(600, 1), t0 + ms(340)), t0 + ms(340));
        assert_eq!(limiter.reserve_send("p", rate(600, 1), t0 + ms(350)), t0 + ms(440));
        assert_eq!(limiter.reserve_send("other", rate(600, 1), t0 + ms(350)), t0 + ms(350), "providers are spaced apart");
        assert_eq!(limiter.reserve_send("q", None, t0), t0, "unlimited");
        assert_eq!(limiter.reserve_send("q", None, t0), t0, "unlimited");
    }

    #[test]
    fn requests_leave_in_a_burst_and_not_during_a_pause() {
        let limiter = LocalRateLimiter::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.reserve_send("p", rate(60, 3), t0), t0);
        }
        assert_eq!(limiter.reserve_send("p", rate(60, 3), t0), t0 + Duration::from_secs(1));
        let until = t0 + Duration::from_secs(5);
        limiter.pause_until("q", until);
        assert_eq!(limiter.reserve_send("q", None, t0), until, "unlimited providers pause too");
        assert_eq!(limiter.reserve_send("q", rate(60, 1), t0), until);
        assert_eq!(limiter.reserve_send("q", rate(60, 1), t0), until + Duration::from_secs(1));
        limiter.hold("r");
        assert_eq!(limiter.reserve_send("r", None, t0), t0, "a hold stops claims, not a claimed job's request");
    }

    #[test]
    fn a_pause_holds_every_call_until_it_ends_and_is_never_shortened() {
        let limiter = LocalRateLimiter::default();
        let t0 = Instant::now();
        let until = t0 + Duration::from_secs(5);
        limiter.pause_until("p", until);
        limiter.pause_until("p", t0 + Duration::from_secs(1));
        assert_eq!(limiter.try_take("p", None, t0), Err(until), "unlimited providers pause too");
        assert_eq!(limiter.paused_until("p", t0), Some(until));
        assert_eq!(limiter.try_take("p", rate(30, 1), until), Ok(()));
        assert_eq!(limiter.paused_until("p", until), None);
    }
}
