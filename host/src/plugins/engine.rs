//! Wasmtime engines, one per plugin kind, and the on-disk cache of compiled
//! components.
//!
//! Providers and policies get separate engines because they are bounded
//! differently: policies are metered with fuel (a deterministic budget for
//! code that should take microseconds), which instruments every loop and
//! would slow providers, so the provider engine has fuel off and relies on
//! the epoch deadline alone. Each engine uses the pooling allocator, sized
//! for its kind, so a fresh instance per call costs microseconds.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::error::InstallError;

/// How often the epoch advances; deadlines are checked at this grain.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// How much of a freed memory or table slot is reset in place rather than
/// given back to the kernel (see [`build_engine`]).
const KEEP_RESIDENT_BYTES: usize = 2 * 1024 * 1024;

/// Slots given back to the kernel together.
const DECOMMIT_BATCH: usize = 8;

/// Which engine (and which pool) a component runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Provider plugins: network access, large memories, no fuel.
    Provider,
    /// Retry and priority policies: small memories, fuel-metered.
    Policy,
}

/// Per-kind sizing and the defaults a plugin's settings override.
#[derive(Debug, Clone, Copy)]
pub struct KindLimits {
    /// Instances that can exist at once; further calls wait for a slot.
    pub pool_instances: u32,
    /// The largest memory any plugin of this kind may be granted.
    pub max_memory_mb: u64,
    /// Default memory cap of one call.
    pub default_memory_mb: u64,
    /// Default CPU deadline of one call.
    pub default_deadline_ms: u64,
    /// Default fuel budget of one call (policies only).
    pub default_fuel: Option<u64>,
    /// Default cap on the size of what one call returns.
    pub default_max_output_bytes: u64,
}

impl Kind {
    /// The sizing of this kind.
    pub fn limits(self) -> KindLimits {
        match self {
            Kind::Provider => KindLimits {
                pool_instances: 64,
                max_memory_mb: 2048,
                default_memory_mb: 256,
                default_deadline_ms: 300_000,
                default_fuel: None,
                default_max_output_bytes: 4 * 1024 * 1024,
            },
            Kind::Policy => KindLimits {
                pool_instances: 64,
                max_memory_mb: 64,
                default_memory_mb: 16,
                default_deadline_ms: 100,
                default_fuel: Some(20_000_000),
                default_max_output_bytes: 1024 * 1024,
            },
        }
    }

    fn label(self) -> &'static str {
        match self {
            Kind::Provider => "provider",
            Kind::Policy => "policy",
        }
    }
}

/// The two engines, their epoch ticker and the compiled-component cache.
pub struct Engines {
    provider: Engine,
    policy: Engine,
    cache_dir: PathBuf,
    ticker_stop: Arc<AtomicBool>,
}

impl Engines {
    /// Builds both engines and starts the epoch ticker. Compiled components
    /// are cached under `cache_dir`.
    pub fn new(cache_dir: &Path) -> wasmtime::Result<Self> {
        let provider = build_engine(Kind::Provider)?;
        let policy = build_engine(Kind::Policy)?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_ticker(vec![provider.clone(), policy.clone()], ticker_stop.clone());
        Ok(Self { provider, policy, cache_dir: cache_dir.to_path_buf(), ticker_stop })
    }

    /// The engine of a kind.
    pub fn engine(&self, kind: Kind) -> &Engine {
        match kind {
            Kind::Provider => &self.provider,
            Kind::Policy => &self.policy,
        }
    }

    /// Compiles `bytes` for `kind`, or loads the artifact compiled earlier
    /// for the same content, wasmtime version and engine settings.
    pub fn compile(&self, kind: Kind, bytes: &[u8], content_hash: &str) -> Result<Component, InstallError> {
        let engine = self.engine(kind);
        let path = self.cache_dir.join(format!(
            "{content_hash}-{}-{}.cwasm",
            kind.label(),
            engine_fingerprint(engine)
        ));
        // Read into memory, not mapped from the file: a mapped artifact
        // backs the instances' memory images too, so a cache file changed
        // in place under a running host (damaged, or cleaned by hand)
        // would crash it with SIGBUS when a pooled slot is reset.
        if let Ok(cached) = std::fs::read(&path) {
            // SAFETY: the cache directory is written only by this function,
            // with artifacts produced by `precompile_component` on an engine
            // with the same fingerprint (version and settings). It must be
            // as trusted as the binary itself: it holds native code.
            match unsafe { Component::deserialize(engine, &cached) } {
                Ok(component) => return Ok(component),
                Err(e) => tracing::warn!(path = %path.display(), "discarding unusable compiled plugin: {e}"),
            }
        }
        let artifact = engine
            .precompile_component(bytes)
            .map_err(|e| InstallError::Compile(format!("{e:#}")))?;
        if let Err(e) = crate::files::write_atomically(&path, &artifact) {
            tracing::warn!(path = %path.display(), "cannot cache compiled plugin: {e}");
        }
        // SAFETY: `artifact` was produced just now by this engine.
        unsafe { Component::deserialize(engine, &artifact) }.map_err(|e| InstallError::Compile(format!("{e:#}")))
    }
}

impl Drop for Engines {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

fn build_engine(kind: Kind) -> wasmtime::Result<Engine> {
    let limits = kind.limits();
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(limits.pool_instances)
        .total_core_instances(limits.pool_instances * 8)
        .total_memories(limits.pool_instances * 2)
        .total_tables(limits.pool_instances * 8)
        .total_stacks(limits.pool_instances)
        .total_gc_heaps(0)
        .max_memory_size((limits.max_memory_mb * 1024 * 1024) as usize)
        // A slot given back is reset by rewriting the pages the call
        // touched (found with PAGEMAP_SCAN where the kernel has it), up to
        // this much, rather than by `madvise`: each `madvise` flushes the
        // TLB of every core and the next call faults every page back in,
        // which at thousands of calls a second cost more than the calls.
        .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
        .table_keep_resident(KEEP_RESIDENT_BYTES)
        .pagemap_scan(wasmtime::Enabled::Auto)
        // What is still decommitted goes in batches, one flush each.
        .decommit_batch_size(DECOMMIT_BATCH);
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .consume_fuel(limits.default_fuel.is_some())
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config)
}

/// Advances every engine's epoch each [`EPOCH_TICK`] until told to stop.
fn spawn_ticker(engines: Vec<Engine>, stop: Arc<AtomicBool>) {
    std::thread::Builder::new()
        .name("scribe-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                engines.iter().for_each(Engine::increment_epoch);
            }
        })
        .expect("spawning the epoch thread");
}

/// A short name for the engine's wasmtime version and settings (its
/// precompile compatibility hash), so a cached artifact is never loaded
/// into an engine it was not compiled for. (`DefaultHasher` may change with
/// the Rust toolchain; that only costs a recompile.)
fn engine_fingerprint(engine: &Engine) -> String {
    let mut hasher = std::hash::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}
