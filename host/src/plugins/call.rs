//! One bounded call into a plugin: a fresh `Store`, a pooled instance, a
//! deadline, a memory cap, fuel for policies, and any failure turned into a
//! typed [`PluginError`] that is logged and counted.
//!
//! Every call, whatever its world and whoever makes it (the scheduler, a
//! smoke call, a probe), goes through [`Plugins::run`], so no path escapes
//! the bounds. Two clocks stop a call: the epoch callback stops a guest
//! that computes past its deadline, and a tokio timeout a little later
//! stops one that waits on the host (I/O, sleeps) past it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{Store, Trap, UpdateDeadline};

use super::bindings::{self, priority, provider, retry};
use super::engine::Kind;
use super::error::{CallError, PluginError, PluginErrorKind, ProviderError};
use super::registry::{Loaded, Pre, World};
use super::sandbox::{truncate_utf8, FirstRequestWait, StoreState};
use super::warm::WarmInstance;
use super::types::{Candidate, ProviderInfo, RetryDecision, RetryInput, TranscribeRequest, Transcript};
use super::Plugins;

/// The longest a call may wait on the host past its deadline before the
/// host stops it (`min(this, deadline)`), so a provider can cancel remote
/// work first.
pub const HOST_STOP_GRACE: Duration = Duration::from_secs(1);

/// The longest a smoke call or probe may take (`info()` must be cheap and
/// do no I/O), so a bad file cannot hold up installs for long.
pub const SMOKE_DEADLINE: Duration = Duration::from_secs(5);

/// Longest provider error message kept; the rest is cut.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 4096;

/// An instance of a plugin, typed by world.
pub(crate) enum Instance {
    Provider(provider::Provider),
    Retry(retry::RetryPolicy),
    Priority(priority::PriorityPolicy),
}

impl Plugins {
    /// Runs `call` on a fresh instance of `loaded` (or, for an in-process
    /// provider, a warm one: [`super::warm`]), under its limits and
    /// `deadline`.
    pub(crate) async fn run<R>(
        &self,
        loaded: &Loaded,
        deadline: Duration,
        call: impl AsyncFnOnce(&mut Store<StoreState>, &Instance) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        let hard_stop = deadline + HOST_STOP_GRACE.min(deadline);
        let keep = loaded.warm_bound();
        let (mut store, warm) = match loaded.warm.take().filter(|_| keep > 0) {
            Some(WarmInstance { mut store, instance }) => {
                store.data_mut().begin_call(deadline);
                store.set_epoch_deadline(1);
                (store, Some(instance))
            }
            None => (self.new_store(loaded, deadline), None),
        };
        let work = async {
            let instance = match warm {
                Some(instance) => instance,
                None => instantiate(&loaded.pre, &mut store).await.map_err(|e| (true, e))?,
            };
            call(&mut store, &instance).await.map(|answer| (answer, instance)).map_err(|e| (false, e))
        };
        match tokio::time::timeout(hard_stop, work).await {
            Ok(Ok((answer, instance))) => {
                if keep > 0 {
                    loaded.warm.put_back(WarmInstance { store, instance }, keep);
                }
                Ok(answer)
            }
            Ok(Err((instantiating, err))) => Err(self.classify(loaded, &store, instantiating, err)),
            Err(_elapsed) => {
                let kind = PluginErrorKind::Hung { waited_ms: hard_stop.as_millis() as u64 };
                Err(self.failure(loaded, kind))
            }
        }
    }

    /// A fresh store for one call of `loaded`, with its caps and deadline.
    fn new_store(&self, loaded: &Loaded, deadline: Duration) -> Store<StoreState> {
        let limits = &loaded.limits;
        let state = StoreState::new(loaded.identity.clone(), limits, deadline, self.outbound.clone());
        let mut store = Store::new(self.engines.engine(loaded.world.kind()), state);
        store.limiter(|s| &mut s.memory);
        if let Some(fuel) = limits.fuel {
            store.set_fuel(fuel).expect("fuel is enabled on the policy engine");
        }
        // Each tick past the deadline check yields to the executor, so a
        // computing guest never holds a runtime thread for long.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |ctx| {
            Ok(if Instant::now() >= ctx.data().deadline { UpdateDeadline::Interrupt } else { UpdateDeadline::Yield(1) })
        });
        store
    }

    /// Turns a wasmtime error into what it means, from the store's view.
    fn classify(&self, loaded: &Loaded, store: &Store<StoreState>, instantiating: bool, err: wasmtime::Error) -> PluginError {
        let limits = &loaded.limits;
        let kind = if store.data().memory.hit {
            PluginErrorKind::MemoryExceeded { memory_mb: limits.memory_mb }
        } else {
            match err.downcast_ref::<Trap>() {
                Some(Trap::Interrupt) => PluginErrorKind::Timeout { deadline_ms: store.data().deadline_ms },
                Some(Trap::OutOfFuel) => PluginErrorKind::FuelExhausted { fuel: limits.fuel.unwrap_or(0) },
                Some(_) => PluginErrorKind::Trap(format!("{err:#}")),
                None if instantiating => PluginErrorKind::Instantiate(format!("{err:#}")),
                None => PluginErrorKind::Trap(format!("{err:#}")),
            }
        };
        self.failure(loaded, kind)
    }

    /// Logs, counts and builds the error for a failed call.
    pub(crate) fn failure(&self, loaded: &Loaded, kind: PluginErrorKind) -> PluginError {
        let error = PluginError { plugin: loaded.name.clone(), version: loaded.identity.version.to_string(), kind };
        tracing::warn!(plugin = %loaded.name, version = %error.version, "plugin call failed: {}", error.kind);
        self.metrics.plugin_failures.with_label_values(&[&loaded.name, error.kind.label()]).inc();
        self.record(loaded, "failed");
        error
    }

    fn record(&self, loaded: &Loaded, outcome: &str) {
        if outcome != "ok" {
            loaded.stats.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.metrics.plugin_calls.with_label_values(&[&loaded.name, outcome]).inc();
    }

    /// The serving version of `name`, if it implements `world`. Taken
    /// after the caller holds a slot, so a call waiting for one still gets
    /// the version serving when it starts.
    pub(crate) fn loaded(&self, name: &str, world: World) -> Result<Arc<Loaded>, PluginError> {
        let not = |kind| PluginError { plugin: name.to_string(), version: "-".into(), kind };
        let loaded = self.registry.get(name).ok_or_else(|| not(PluginErrorKind::NotLoaded))?;
        if loaded.world != world {
            return Err(not(PluginErrorKind::WrongWorld { expected: world, actual: loaded.world }));
        }
        Ok(loaded)
    }

    /// Calls `transcribe` on `loaded`, its first outbound request held
    /// until `first_request_wait` completes, capping what comes back.
    pub(crate) async fn transcribe_on(
        &self,
        loaded: &Loaded,
        request: TranscribeRequest,
        first_request_wait: Option<FirstRequestWait>,
    ) -> Result<Transcript, CallError> {
        loaded.stats.calls.fetch_add(1, Ordering::Relaxed);
        let request = bindings::transcribe_request(request, loaded.limits.deadline_ms);
        let answer = self
            .run(loaded, loaded.limits.deadline(), async |store, instance| {
                let Instance::Provider(p) = instance else { unreachable!("checked by loaded()") };
                // Every call sets its own (a kept instance's last one, if
                // unused, is replaced here, and `info` sends nothing).
                store.data_mut().hold_first_request(first_request_wait);
                p.scribe_plugin_transcriber().call_transcribe(store, &request).await
            })
            .await?;
        match answer {
            Ok(transcript) => {
                let transcript = Transcript::from(transcript);
                let size = transcript.size_bytes() as u64;
                if size > loaded.limits.max_output_bytes {
                    let cap = loaded.limits.max_output_bytes;
                    let message = format!("transcript of {size} bytes is over the {cap}-byte cap (max_output_bytes)");
                    return Err(self.failure(loaded, PluginErrorKind::InvalidOutput(message)).into());
                }
                self.record(loaded, "ok");
                Ok(transcript)
            }
            Err(error) => {
                self.record(loaded, "provider_error");
                Err(CallError::Provider(cut_message(ProviderError::from(error))))
            }
        }
    }

    /// Calls a provider's `info` (the smoke call and the probe).
    pub(crate) async fn provider_info_of(&self, loaded: &Loaded) -> Result<ProviderInfo, PluginError> {
        let info = self
            .run(loaded, loaded.limits.deadline().min(SMOKE_DEADLINE), async |store, instance| {
                let Instance::Provider(p) = instance else { unreachable!("provider world") };
                p.scribe_plugin_transcriber().call_info(store).await
            })
            .await?;
        Ok(info.into())
    }

    /// Calls a policy's `info` and returns its declared version.
    pub(crate) async fn policy_version_of(&self, loaded: &Loaded) -> Result<String, PluginError> {
        let info = self
            .run(loaded, loaded.limits.deadline().min(SMOKE_DEADLINE), async |store, instance| match instance {
                Instance::Retry(p) => p.scribe_plugin_retry().call_info(store).await,
                Instance::Priority(p) => p.scribe_plugin_prioritizer().call_info(store).await,
                Instance::Provider(_) => unreachable!("policy world"),
            })
            .await?;
        Ok(info.version)
    }

    /// Calls a retry policy's `decide`.
    pub(crate) async fn decide_on(&self, loaded: &Loaded, input: &RetryInput) -> Result<RetryDecision, PluginError> {
        loaded.stats.calls.fetch_add(1, Ordering::Relaxed);
        let input = bindings::retry_input(input, loaded.limits.config_entries(), rand::random());
        let decision = self
            .run(loaded, loaded.limits.deadline(), async |store, instance| {
                let Instance::Retry(p) = instance else { unreachable!("checked by loaded()") };
                p.scribe_plugin_retry().call_decide(store, &input).await
            })
            .await?;
        self.record(loaded, "ok");
        Ok(bindings::retry_decision(decision))
    }

    /// Calls a priority policy's `rank`, checking that the answer is a
    /// list of distinct indices into `candidates`.
    pub(crate) async fn rank_on(&self, loaded: &Loaded, candidates: &[Candidate]) -> Result<Vec<usize>, PluginError> {
        loaded.stats.calls.fetch_add(1, Ordering::Relaxed);
        let now = crate::clock::now_ms() as u64;
        let input = bindings::rank_input(candidates, now, loaded.limits.config_entries(), rand::random());
        let order = self
            .run(loaded, loaded.limits.deadline(), async |store, instance| {
                let Instance::Priority(p) = instance else { unreachable!("checked by loaded()") };
                p.scribe_plugin_prioritizer().call_rank(store, &input).await
            })
            .await?;
        match check_order(&order, candidates.len()) {
            Ok(order) => {
                self.record(loaded, "ok");
                Ok(order)
            }
            Err(message) => Err(self.failure(loaded, PluginErrorKind::InvalidOutput(message))),
        }
    }

    /// A slot in `kind`'s pool for a regular call. One slot of each pool is
    /// kept for smoke calls (installs are serialized, so one suffices), so
    /// busy or hung calls never block a hot swap.
    pub(crate) async fn slot(&self, kind: Kind) -> tokio::sync::SemaphorePermit<'_> {
        let slots = match kind {
            Kind::Provider => &self.provider_slots,
            Kind::Policy => &self.policy_slots,
        };
        slots.acquire().await.expect("the slot semaphore is never closed")
    }
}

async fn instantiate(pre: &Pre, store: &mut Store<StoreState>) -> wasmtime::Result<Instance> {
    Ok(match pre {
        Pre::Provider(pre) => Instance::Provider(pre.instantiate_async(store).await?),
        Pre::Retry(pre) => Instance::Retry(pre.instantiate_async(store).await?),
        Pre::Priority(pre) => Instance::Priority(pre.instantiate_async(store).await?),
    })
}

fn check_order(order: &[u32], len: usize) -> Result<Vec<usize>, String> {
    let mut seen = vec![false; len];
    let mut out = Vec::with_capacity(order.len());
    for &index in order {
        let index = index as usize;
        match seen.get_mut(index) {
            None => return Err(format!("index {index} is out of range for {len} candidates")),
            Some(true) => return Err(format!("index {index} appears twice")),
            Some(slot) => *slot = true,
        }
        out.push(index);
    }
    Ok(out)
}

fn cut_message(error: ProviderError) -> ProviderError {
    let cut = |m: String| truncate_utf8(&m, MAX_ERROR_MESSAGE_BYTES).to_string();
    match error {
        ProviderError::Transient(m) => ProviderError::Transient(cut(m)),
        ProviderError::InvalidInput(m) => ProviderError::InvalidInput(cut(m)),
        ProviderError::Unauthorized(m) => ProviderError::Unauthorized(cut(m)),
        ProviderError::Fatal(m) => ProviderError::Fatal(cut(m)),
        limited @ ProviderError::RateLimited(_) => limited,
    }
}

#[cfg(test)]
mod tests {
    use super::check_order;

    #[test]
    fn rank_answers_must_be_distinct_indices_in_range() {
        assert_eq!(check_order(&[2, 0], 3), Ok(vec![2, 0]));
        assert!(check_order(&[3], 3).unwrap_err().contains("out of range"));
        assert!(check_order(&[1, 1], 3).unwrap_err().contains("twice"));
    }
}
