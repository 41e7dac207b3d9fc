//! What a fake provider saw, measured the same way by every test that
//! checks the limits: the busiest window, and calls that started during a
//! 429's retry-after.

use std::time::{Duration, Instant};

use crate::fake_openai::RecordedRequest;

/// The most of `arrivals` in any window of `window` (the rate a provider
/// saw).
pub fn max_per_window(arrivals: &[Instant], window: Duration) -> usize {
    arrivals.iter().map(|&a| arrivals.iter().filter(|&&b| b >= a && b < a + window).count()).max().unwrap_or(0)
}

/// The calls (as offsets from the 429's arrival) that started after some
/// request was answered 429 with `retry_after` and before that retry-after
/// passed. A call the host dispatched before it read the 429 (its request
/// can reach the fake up to one `latency` plus the time a debug build
/// takes to instantiate the plugin and connect) is not a new one.
pub fn calls_during_retry_after(requests: &[RecordedRequest], latency: Duration, retry_after: Duration) -> Vec<Duration> {
    let in_flight_slack = latency + Duration::from_millis(200);
    let limited = requests.iter().filter(|r| r.answered == Some(429)).map(|r| r.arrived);
    limited
        .flat_map(|at| {
            requests
                .iter()
                .filter(move |r| r.arrived > at + in_flight_slack && r.arrived < at + latency + retry_after)
                .map(move |r| r.arrived - at)
        })
        .collect()
}
