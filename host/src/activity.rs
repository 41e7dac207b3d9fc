//! Recent activity: what happened in the last minutes, for the queue-status
//! document (calls started per provider, their durations and failures,
//! submits, users seen).
//!
//! Prometheus counters say how much happened since start; an operator's
//! "requests this minute" or "error rate" is about a window, so the few
//! events it needs are kept here, in memory, for [`KEPT`] and no longer.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How long events are kept (the longest window asked about: active users).
pub const KEPT: Duration = Duration::from_secs(5 * 60);

/// The window of the per-minute figures.
pub const MINUTE: Duration = Duration::from_secs(60);

struct Call {
    provider: String,
    started: Instant,
    /// `Some(ok)` once finished.
    outcome: Option<(Duration, bool)>,
}

#[derive(Default)]
struct Events {
    calls: VecDeque<Call>,
    submits: VecDeque<Instant>,
    users: HashMap<String, Instant>,
}

/// The recent events of this instance.
#[derive(Default)]
pub struct Activity {
    events: Mutex<Events>,
}

/// A provider call in progress, to be finished with [`Activity::call_finished`].
pub struct CallToken {
    started: Instant,
}

/// The figures over the last minute (users: five minutes).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recent {
    /// Provider calls started, per provider.
    pub calls_started: HashMap<String, u64>,
    /// Mean duration of the calls that finished, in ms (0 with none).
    pub average_call_ms: f64,
    /// Failed calls / finished calls (0 with none).
    pub error_rate: f64,
    /// Jobs submitted.
    pub submits: u64,
    /// Users who submitted in the last five minutes.
    pub users: HashSet<String>,
}

impl Activity {
    fn events(&self) -> std::sync::MutexGuard<'_, Events> {
        self.events.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes a provider call starting now.
    pub fn call_started(&self, provider: &str) -> CallToken {
        let started = Instant::now();
        let mut events = self.events();
        prune(&mut events, started);
        events.calls.push_back(Call { provider: provider.to_string(), started, outcome: None });
        CallToken { started }
    }

    /// Notes the end of the call `token` started, `ok` or not; how long it took.
    pub fn call_finished(&self, provider: &str, token: CallToken, ok: bool) -> Duration {
        let took = token.started.elapsed();
        let mut events = self.events();
        if let Some(call) = events.calls.iter_mut().rev().find(|c| c.started == token.started && c.provider == provider && c.outcome.is_none()) {
            call.outcome = Some((took, ok));
        }
        took
    }

    /// Notes a job submitted by `user`.
    pub fn submitted(&self, user: &str) {
        let now = Instant::now();
        let mut events = self.events();
        prune(&mut events, now);
        events.submits.push_back(now);
        events.users.insert(user.to_string(), now);
    }

    /// The figures as of `now`.
    pub fn recent(&self, now: Instant) -> Recent {
        let mut events = self.events();
        prune(&mut events, now);
        let minute_ago = now.checked_sub(MINUTE).unwrap_or(now);
        let mut recent = Recent::default();
        let (mut finished, mut failed, mut total_ms) = (0u64, 0u64, 0f64);
        for call in events.calls.iter().filter(|c| c.started >= minute_ago) {
            *recent.calls_started.entry(call.provider.clone()).or_default() += 1;
            if let Some((took, ok)) = call.outcome {
                finished += 1;
                failed += u64::from(!ok);
                total_ms += took.as_secs_f64() * 1000.0;
            }
        }
        if finished > 0 {
            recent.average_call_ms = total_ms / finished as f64;
            recent.error_rate = failed as f64 / finished as f64;
        }
        recent.submits = events.submits.iter().filter(|&&t| t >= minute_ago).count() as u64;
        recent.users = events.users.keys().cloned().collect();
        recent
    }
}

fn prune(events: &mut Events, now: Instant) {
    let Some(cutoff) = now.checked_sub(KEPT) else { return };
    while events.calls.front().is_some_and(|c| c.started < cutoff) {
        events.calls.pop_front();
    }
    while events.submits.front().is_some_and(|&t| t < cutoff) {
        events.submits.pop_front();
    }
    events.users.retain(|_, &mut seen| seen >= cutoff);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_minute_counts_calls_durations_failures_and_submits() {
        let activity = Activity::default();
        let a = activity.call_started("p");
        let b = activity.call_started("p");
        activity.call_started("q");
        activity.call_finished("p", a, true);
        activity.call_finished("p", b, false);
        activity.submitted("ann");
        activity.submitted("bob");
        activity.submitted("ann");
        let recent = activity.recent(Instant::now());
        assert_eq!(recent.calls_started["p"], 2);
        assert_eq!(recent.calls_started["q"], 1);
        assert_eq!(recent.error_rate, 0.5);
        assert_eq!(recent.submits, 3);
        assert_eq!(recent.users.len(), 2);
        let later = activity.recent(Instant::now() + KEPT + MINUTE);
        assert_eq!(later, Recent::default(), "old events are forgotten");
    }
}
