//! `priority-fair`: Scribe's shipped priority policy, as a component of
//! world `scribe:plugin/priority-policy`.
//!
//! Higher priority class first; within a class, the user with the fewest
//! running jobs, then the user served least recently (never served first),
//! then the older job. Every candidate is ranked; the policy takes no
//! config and ignores `random`.
//!
//! This crate is thin glue on purpose: it only converts between the WIT
//! types and [`policy_core`], where the logic lives. The host runs the same
//! `policy_core` code as its built-in fallback when this plugin is missing or
//! broken, so the fallback ranks exactly as the shipped plugin does.

use exports::scribe::plugin::prioritizer::{Candidate, Guest, PolicyInfo, Priority, RankInput};

wit_bindgen::generate!({
    path: "../../wit",
    world: "priority-policy",
});

/// The component's implementation of the `prioritizer` interface.
pub struct PriorityFair;

impl Guest for PriorityFair {
    fn info() -> PolicyInfo {
        PolicyInfo {
            name: "priority-fair".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    fn rank(input: RankInput) -> Vec<u32> {
        let candidates: Vec<policy_core::Candidate> = input.candidates.iter().map(candidate).collect();
        policy_core::rank_fair(&candidates)
    }
}

/// Keeps the figures `rank_fair` orders by.
fn candidate(c: &Candidate) -> policy_core::Candidate {
    policy_core::Candidate {
        priority: match c.priority {
            Priority::Low => policy_core::Priority::Low,
            Priority::Normal => policy_core::Priority::Normal,
            Priority::High => policy_core::Priority::High,
        },
        submitted_at_ms: c.submitted_at_ms,
        user_running: c.user_running,
        user_last_dispatch_ms: c.user_last_dispatch_ms,
    }
}

export!(PriorityFair);
