//! Warm instances: the one exception to "a fresh store per call".
//!
//! A provider that runs a model in the sandbox (`in-process` in its
//! `info()`) would otherwise load its weights on every call, which costs a
//! large part of a short job. For such a provider only, an instance whose
//! call ended normally (an answer or a provider error, never a trap, a
//! timeout or a memory failure) is kept, with its store, for the next call
//! of the same version. The bound: at most `warm_instances` idle per
//! version (default: the machine's cores), each under the plugin's memory
//! cap, so idle memory stays below `warm_instances x memory_mb`. A new
//! version starts cold; the old one's instances go when its last call ends.

use std::sync::Mutex;

use wasmtime::Store;

use super::call::Instance;
use super::sandbox::StoreState;

/// An idle instance and its store.
pub(crate) struct WarmInstance {
    pub(crate) store: Store<StoreState>,
    pub(crate) instance: Instance,
}

/// The idle instances of one version.
#[derive(Default)]
pub(crate) struct WarmPool {
    idle: Mutex<Vec<WarmInstance>>,
}

impl WarmPool {
    /// An idle instance, if one is kept.
    pub(crate) fn take(&self) -> Option<WarmInstance> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    /// Keeps `warm` for a later call unless `bound` are already idle (then
    /// it is dropped, and its memory freed).
    pub(crate) fn put_back(&self, warm: WarmInstance, bound: usize) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < bound {
            idle.push(warm);
        }
    }

    /// How many are idle.
    pub(crate) fn idle(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}
