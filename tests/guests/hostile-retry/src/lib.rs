//! A retry policy that misbehaves on purpose, so the host's tests can prove
//! that a broken policy is stopped and the host's built-in policy answers
//! instead.
//!
//! The misbehaviour is chosen by the `mode` entry of the policy's config
//! (handed in with every input): `panic` panics, `loop` spins forever (the
//! fuel budget or the deadline must stop it), `sleep` sleeps for an hour
//! (waiting on the host, where neither fuel nor the epoch deadline runs:
//! the host's timeout must stop it), anything else gives up. The
//! first attempt (the host's smoke call asks about attempt 1) always gives
//! up, so the policy is published and breaks only on later attempts, the
//! way a buggy policy would.

wit_bindgen::generate!({
    world: "retry-policy",
    // Relative to this crate's manifest: the host's own contract.
    path: "../../../wit",
});

use exports::scribe::plugin::retry::{Guest, PolicyInfo, RetryDecision, RetryInput};

/// The exported component; the host sees it through the `retry` interface.
struct HostileRetry;

impl Guest for HostileRetry {
    fn info() -> PolicyInfo {
        PolicyInfo {
            name: "hostile-retry".into(),
            version: "1.0.0".into(),
        }
    }

    fn decide(input: RetryInput) -> RetryDecision {
        let mode = input
            .config
            .iter()
            .find(|(key, _)| key == "mode")
            .map(|(_, value)| value.as_str());
        if input.attempt < 2 {
            return RetryDecision::GiveUp;
        }
        match mode {
            Some("panic") => panic!("hostile-retry: panic mode"),
            Some("loop") => {
                // `black_box` keeps the optimiser from removing the loop.
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            Some("sleep") => {
                std::thread::sleep(std::time::Duration::from_secs(3600));
                RetryDecision::GiveUp
            }
            _ => RetryDecision::GiveUp,
        }
    }
}

export!(HostileRetry);
