//! `SCRIBE_MAX_QUEUE_LENGTH` at every submit, without counting the queue
//! at every submit: counting is a scan of the open jobs, which at a few
//! thousand queued cost more than the rest of a submit.
//!
//! The count is read from the store at most every [`RECOUNT_EVERY`]; in
//! between, each submit this instance lets through adds one to it, so one
//! instance never lets more than the limit in, and each job canceled here
//! takes one off. Jobs that finish in between are seen at the next count
//! (the limit errs towards a 429, which carries `Retry-After`); in a fleet,
//! other instances' submits are seen at the next count too, so the fleet
//! may pass the limit by what the others accept within one interval.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::store::{Store, StoreResult};

/// How old the queue's count may get before a submit counts again.
pub const RECOUNT_EVERY: Duration = Duration::from_millis(100);

/// The queue's length as last counted, plus the submits let in since.
pub struct QueueLimit {
    max: u64,
    seen: Mutex<Option<Seen>>,
}

#[derive(Clone, Copy)]
struct Seen {
    count: u64,
    at: Instant,
}

impl QueueLimit {
    /// A limit of `max` jobs queued or running.
    pub fn new(max: u64) -> Self {
        Self { max, seen: Mutex::new(None) }
    }

    /// Lets one more job in (`Ok`) unless the queue holds `max` already
    /// (`Err` with how many it holds). A submit let in that then fails
    /// gives its place back with [`QueueLimit::release`].
    pub async fn reserve(&self, store: &dyn Store) -> StoreResult<Result<(), u64>> {
        if !self.counted_lately() {
            let count = store.queue_length().await?;
            *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(Seen { count, at: Instant::now() });
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let seen = seen.as_mut().expect("counted above");
        if seen.count >= self.max {
            return Ok(Err(seen.count));
        }
        seen.count += 1;
        Ok(Ok(()))
    }

    /// Gives back a place: one [`QueueLimit::reserve`] took for a submit
    /// that queued nothing, or a queued job's that was canceled.
    pub fn release(&self) {
        if let Some(seen) = self.seen.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            seen.count = seen.count.saturating_sub(1);
        }
    }

    /// Whether the last count is younger than [`RECOUNT_EVERY`].
    fn counted_lately(&self) -> bool {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).is_some_and(|seen| seen.at.elapsed() < RECOUNT_EVERY)
    }
}
