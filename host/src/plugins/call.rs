//! One bounded call into a plugin: a fresh `Store`, a pooled instance, a
//! deadline, a memory cap, fuel for policies, and the failure turned into a
//! typed [`PluginError`] that is logged and counted.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use wasmtime::{Store, Trap, UpdateDeadline};

use super::bindings;
use super::engine::Kind;
use super::error::{CallError, PluginError, PluginErrorKind, ProviderError};
use super::registry::{Loaded, Pre, World};
use super::sandbox::StoreState;
use super::types::{Candidate, RetryDecision, RetryInput, TranscribeRequest, Transcript};
use super::Plugins;

/// How much later than the plugin's `deadline-ms` the host stops a provider
/// call that waits on I/O, so the plugin can cancel remote work first.
pub const PROVIDER_GRACE: Duration = Duration::from_secs(1);

/// Longest provider error message kept; the rest is cut.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 4096;

impl Plugins {
    /// A fresh store for one call of `loaded`, with its caps and deadline.
    fn new_store(&self, loaded: &Loaded) -> Store<StoreState> {
        let kind = loaded.world.kind();
        let limits = &loaded.limits;
        let deadline = Instant::now() + Duration::from_millis(limits.deadline_ms);
        let state = StoreState::new(
            loaded.identity.clone(),
            limits.allowed_hosts.clone(),
            limits.config.clone(),
            limits.memory_mb,
            deadline,
        );
        let mut store = Store::new(self.engines.engine(kind), state);
        store.limiter(|s| &mut s.memory);
        if let Some(fuel) = limits.fuel {
            store.set_fuel(fuel).expect("fuel is enabled on the policy engine");
        }
        store.set_epoch_deadline(1);
        let on_tick = match kind {
            Kind::Provider => UpdateDeadline::Yield as fn(u64) -> UpdateDeadline,
            Kind::Policy => UpdateDeadline::Continue,
        };
        store.epoch_deadline_callback(move |ctx| {
            Ok(if Instant::now() >= ctx.data().deadline { UpdateDeadline::Interrupt } else { on_tick(1) })
        });
        store
    }

    /// Turns a wasmtime error into what it means, from the store's view.
    fn classify(&self, loaded: &Loaded, store: &Store<StoreState>, err: wasmtime::Error) -> PluginError {
        let limits = &loaded.limits;
        let kind = if store.data().memory.hit {
            PluginErrorKind::MemoryExceeded { memory_mb: limits.memory_mb }
        } else {
            match err.downcast_ref::<Trap>() {
                Some(Trap::Interrupt) => PluginErrorKind::Timeout { deadline_ms: limits.deadline_ms },
                Some(Trap::OutOfFuel) => PluginErrorKind::FuelExhausted { fuel: limits.fuel.unwrap_or(0) },
                _ => PluginErrorKind::Trap(format!("{err:#}")),
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

    /// The serving version of `name`, if it implements `world`.
    pub(crate) fn loaded(&self, name: &str, world: World) -> Result<std::sync::Arc<Loaded>, PluginError> {
        let not = |kind| PluginError { plugin: name.to_string(), version: "-".into(), kind };
        let loaded = self.registry.get(name).ok_or_else(|| not(PluginErrorKind::NotLoaded))?;
        if loaded.world != world {
            return Err(not(PluginErrorKind::WrongWorld { expected: world, actual: loaded.world }));
        }
        Ok(loaded)
    }

    /// Calls `transcribe` on the given version.
    pub(crate) async fn call_transcribe(&self, loaded: &Loaded, request: TranscribeRequest) -> Result<Transcript, CallError> {
        let Pre::Provider(pre) = &loaded.pre else { unreachable!("checked by loaded()") };
        let _slot = self.slot(Kind::Provider).await;
        loaded.stats.calls.fetch_add(1, Ordering::Relaxed);
        let deadline_ms = loaded.limits.deadline_ms;
        let mut store = self.new_store(loaded);
        let request = bindings::transcribe_request(request, deadline_ms);
        let call = async {
            let instance = pre.instantiate_async(&mut store).await?;
            instance.scribe_plugin_transcriber().call_transcribe(&mut store, &request).await
        };
        let hard_stop = Duration::from_millis(deadline_ms) + PROVIDER_GRACE;
        let outcome = match tokio::time::timeout(hard_stop, call).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(err)) => return Err(self.classify(loaded, &store, err).into()),
            Err(_elapsed) => return Err(self.failure(loaded, PluginErrorKind::Timeout { deadline_ms }).into()),
        };
        match outcome {
            Ok(transcript) => {
                let transcript = Transcript::from(transcript);
                let size = transcript.size_bytes() as u64;
                if size > loaded.limits.max_output_bytes {
                    let message = format!("transcript of {size} bytes is over the {}-byte cap", loaded.limits.max_output_bytes);
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

    /// Calls `info` on a provider version (the smoke call).
    pub(crate) async fn call_provider_info(&self, loaded: &Loaded) -> Result<super::types::ProviderInfo, PluginError> {
        let Pre::Provider(pre) = &loaded.pre else { unreachable!("provider world") };
        let _slot = self.slot(Kind::Provider).await;
        let mut store = self.new_store(loaded);
        let call = async {
            let instance = pre.instantiate_async(&mut store).await?;
            instance.scribe_plugin_transcriber().call_info(&mut store).await
        };
        match call.await {
            Ok(info) => Ok(info.into()),
            Err(err) => Err(self.classify(loaded, &store, err)),
        }
    }

    /// Calls a policy's `info` (part of the smoke call) and returns its
    /// declared version.
    pub(crate) async fn call_policy_info(&self, loaded: &Loaded) -> Result<String, PluginError> {
        let _slot = self.slot(Kind::Policy).await;
        let mut store = self.new_store(loaded);
        let call = async {
            let info = match &loaded.pre {
                Pre::Retry(pre) => pre.instantiate_async(&mut store).await?.scribe_plugin_retry().call_info(&mut store).await?,
                Pre::Priority(pre) => {
                    pre.instantiate_async(&mut store).await?.scribe_plugin_prioritizer().call_info(&mut store).await?
                }
                Pre::Provider(_) => unreachable!("policy world"),
            };
            wasmtime::Result::<_>::Ok(info.version)
        };
        match call.await {
            Ok(version) => Ok(version),
            Err(err) => Err(self.classify(loaded, &store, err)),
        }
    }

    /// Calls a retry policy's `decide`.
    pub(crate) async fn call_decide(&self, loaded: &Loaded, input: &RetryInput) -> Result<RetryDecision, PluginError> {
        let Pre::Retry(pre) = &loaded.pre else { unreachable!("retry world") };
        let _slot = self.slot(Kind::Policy).await;
        loaded.stats.calls.fetch_add(1, Ordering::Relaxed);
        let mut store = self.new_store(loaded);
        let config = loaded.limits.config.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let input = bindings::retry_input(input, config, rand::random());
        let call = async {
            let instance = pre.instantiate_async(&mut store).await?;
            instance.scribe_plugin_retry().call_decide(&mut store, &input).await
        };
        match call.await {
            Ok(decision) => {
                self.record(loaded, "ok");
                Ok(bindings::retry_decision(decision))
            }
            Err(err) => Err(self.classify(loaded, &store, err)),
        }
    }

    /// Calls a priority policy's `rank`, checking that the answer is a
    /// list of distinct indices into `candidates`.
    pub(crate) async fn call_rank(&self, loaded: &Loaded, candidates: &[Candidate]) -> Result<Vec<usize>, PluginError> {
        let Pre::Priority(pre) = &loaded.pre else { unreachable!("priority world") };
        let _slot = self.slot(Kind::Policy).await;
        loaded.stats.calls.fetch_add(1, Ordering::Relaxed);
        let mut store = self.new_store(loaded);
        let config = loaded.limits.config.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let input = bindings::rank_input(candidates, now_ms(), config, rand::random());
        let call = async {
            let instance = pre.instantiate_async(&mut store).await?;
            instance.scribe_plugin_prioritizer().call_rank(&mut store, &input).await
        };
        let order = match call.await {
            Ok(answer) => answer,
            Err(err) => return Err(self.classify(loaded, &store, err)),
        };
        match check_order(&order, candidates.len()) {
            Ok(order) => {
                self.record(loaded, "ok");
                Ok(order)
            }
            Err(message) => Err(self.failure(loaded, PluginErrorKind::InvalidOutput(message))),
        }
    }

    async fn slot(&self, kind: Kind) -> tokio::sync::SemaphorePermit<'_> {
        let slots = match kind {
            Kind::Provider => &self.provider_slots,
            Kind::Policy => &self.policy_slots,
        };
        slots.acquire().await.expect("the slot semaphore is never closed")
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
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
    let cut = |m: String| if m.len() > MAX_ERROR_MESSAGE_BYTES { m.chars().take(MAX_ERROR_MESSAGE_BYTES / 4).collect() } else { m };
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
