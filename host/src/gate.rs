//! The concurrency cap per provider: at most `max` calls of a provider in
//! flight. A slot is held by a [`Slot`] and given back when it drops, so a
//! call that panics or is cancelled cannot leak one.
//!
//! Used through [`crate::admission::LocalAdmission`]; a fleet's cap is the
//! count of running jobs in the database ([`crate::admission`]), and the
//! fleet's admission uses an uncapped gate only to count this instance's
//! calls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Hands out call slots per provider.
pub trait ConcurrencyGate: Send + Sync {
    /// A slot of `provider` if fewer than `max` are held.
    fn try_acquire(&self, provider: &str, max: u32) -> Option<Slot>;
    /// Slots of `provider` held now.
    fn in_flight(&self, provider: &str) -> u32;
}

/// A held slot; dropping it frees the slot.
pub struct Slot {
    release: Option<Box<dyn FnOnce() + Send>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
    }
}

/// The in-process gate: exact for one instance.
#[derive(Debug, Default, Clone)]
pub struct LocalGate {
    held: Arc<Mutex<HashMap<String, u32>>>,
}

impl ConcurrencyGate for LocalGate {
    fn try_acquire(&self, provider: &str, max: u32) -> Option<Slot> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let count = held.entry(provider.to_string()).or_default();
        if *count >= max {
            return None;
        }
        *count += 1;
        let (held, provider) = (self.held.clone(), provider.to_string());
        Some(Slot {
            release: Some(Box::new(move || {
                let mut held = held.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(count) = held.get_mut(&provider) {
                    *count = count.saturating_sub(1);
                }
            })),
        })
    }

    fn in_flight(&self, provider: &str) -> u32 {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).get(provider).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_max_slots_are_held_and_dropping_frees_one() {
        let gate = LocalGate::default();
        let a = gate.try_acquire("p", 2).expect("first");
        let _b = gate.try_acquire("p", 2).expect("second");
        assert!(gate.try_acquire("p", 2).is_none());
        assert!(gate.try_acquire("q", 2).is_some(), "providers are capped apart");
        assert_eq!(gate.in_flight("p"), 2);
        drop(a);
        assert_eq!(gate.in_flight("p"), 1);
        assert!(gate.try_acquire("p", 2).is_some());
    }
}
