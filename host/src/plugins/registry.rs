//! The loaded plugin versions and how a new version gets published.
//!
//! A version is published only after it compiled, was checked against the
//! world of the version it replaces, linked against its kind's grants and
//! answered a smoke call. Publishing swaps one pointer (`ArcSwap`): a call
//! holds an `Arc` of the version it started on, so calls in flight finish
//! on the old version while the next call gets the new one. Installs are
//! serialized; a version that fails any step never becomes visible.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use serde::Serialize;

use super::bindings::{priority, provider, retry};
use super::engine::Kind;
use super::error::InstallError;
use super::sandbox::{Identity, StoreState};
use super::types::ProviderInfo;

/// The WIT world a plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum World {
    /// `provider`
    Provider,
    /// `retry-policy`
    RetryPolicy,
    /// `priority-policy`
    PriorityPolicy,
}

impl World {
    /// The world's WIT name.
    pub fn as_str(self) -> &'static str {
        match self {
            World::Provider => "provider",
            World::RetryPolicy => "retry-policy",
            World::PriorityPolicy => "priority-policy",
        }
    }

    /// The engine this world runs in.
    pub fn kind(self) -> Kind {
        match self {
            World::Provider => Kind::Provider,
            World::RetryPolicy | World::PriorityPolicy => Kind::Policy,
        }
    }

    /// The interface a component of this world exports (version prefix).
    fn export_prefix(self) -> &'static str {
        match self {
            World::Provider => "scribe:plugin/transcriber@0.1.",
            World::RetryPolicy => "scribe:plugin/retry@0.1.",
            World::PriorityPolicy => "scribe:plugin/prioritizer@0.1.",
        }
    }

    /// Which world a component implements, from the names of its
    /// top-level exports, read without compiling it (so it is compiled once,
    /// by the engine of its kind). `Ok(None)` when it exports none of the
    /// plugin interfaces; an error when it is not a component at all.
    pub fn of(bytes: &[u8]) -> Result<Option<World>, wasmparser::BinaryReaderError> {
        let names = top_level_exports(bytes)?;
        Ok([World::Provider, World::RetryPolicy, World::PriorityPolicy]
            .into_iter()
            .find(|w| names.iter().any(|n| n.starts_with(w.export_prefix()))))
    }
}

/// The names a component exports at its top level (nested modules and
/// components are skipped).
fn top_level_exports(bytes: &[u8]) -> Result<Vec<String>, wasmparser::BinaryReaderError> {
    use wasmparser::{Parser, Payload};
    let mut depth = 0usize;
    let mut names = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        match payload? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentExportSection(exports) if depth == 0 => {
                for export in exports {
                    names.push(export?.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    Ok(names)
}

/// Where a version came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// Embedded in the binary at build time.
    BuiltIn,
    /// Dropped into `SCRIBE_PLUGIN_DIR`.
    File,
    /// Uploaded through `PUT /admin/plugins/{name}`.
    Upload,
}

/// A plugin's instantiation recipe, typed by world.
pub(crate) enum Pre {
    Provider(provider::ProviderPre<StoreState>),
    Retry(retry::RetryPolicyPre<StoreState>),
    Priority(priority::PriorityPolicyPre<StoreState>),
}

/// Call and error counts of one plugin name, kept across its versions.
#[derive(Debug, Default)]
pub struct PluginStats {
    /// Calls made.
    pub calls: AtomicU64,
    /// Calls that failed (in the sandbox, or with a provider error).
    pub errors: AtomicU64,
}

/// Limits and grants of one plugin, resolved from its settings and its
/// kind's defaults.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// CPU deadline of one call.
    pub deadline_ms: u64,
    /// Memory cap of one call.
    pub memory_mb: u64,
    /// Fuel budget of one call (policies).
    pub fuel: Option<u64>,
    /// Cap on what one call returns.
    pub max_output_bytes: u64,
    /// Hosts it may call.
    pub allowed_hosts: Arc<[String]>,
    /// Its config entries.
    pub config: Arc<BTreeMap<String, String>>,
    /// The directory it may read (providers only), preopened read-only.
    pub read_only_dir: Option<Arc<std::path::Path>>,
    /// Idle instances kept per version if it is an in-process provider.
    pub warm_instances: usize,
}

impl Resolved {
    /// The CPU deadline of one call.
    pub fn deadline(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.deadline_ms)
    }

    /// The config entries as the policies' input carries them.
    pub fn config_entries(&self) -> Vec<(String, String)> {
        self.config.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// One published plugin version.
pub struct Loaded {
    /// Plugin name.
    pub name: String,
    /// Its world.
    pub world: World,
    /// Declared version (`info().version`).
    pub version: String,
    /// sha256 of the component bytes, hex.
    pub content_hash: String,
    /// Where it came from.
    pub source: Source,
    /// When it was published.
    pub loaded_at: SystemTime,
    /// For providers, what `info()` said.
    pub provider_info: Option<ProviderInfo>,
    pub(crate) pre: Pre,
    pub(crate) identity: Identity,
    pub(crate) limits: Resolved,
    pub(crate) stats: Arc<PluginStats>,
    /// Idle instances kept for the next call (in-process providers only).
    pub(crate) warm: super::warm::WarmPool,
}

/// What `GET /admin/plugins` shows of a plugin.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PluginSummary {
    /// Plugin name.
    pub name: String,
    /// Its world.
    pub world: World,
    /// Declared version.
    pub version: String,
    /// sha256 of the component, hex.
    pub content_hash: String,
    /// Where it came from.
    pub source: Source,
    /// When it was published (RFC 3339).
    pub loaded_at: String,
    /// Calls made, across versions.
    pub calls: u64,
    /// Failed calls, across versions.
    pub errors: u64,
}

impl Loaded {
    /// How many idle instances of this version may be kept: its
    /// `warm_instances` if it is an in-process provider, else none.
    pub(crate) fn warm_bound(&self) -> usize {
        match &self.provider_info {
            Some(info) if info.in_process => self.limits.warm_instances,
            _ => 0,
        }
    }

    /// Idle instances kept now.
    pub fn warm_idle(&self) -> usize {
        self.warm.idle()
    }

    /// The admin view of this version.
    pub fn summary(&self) -> PluginSummary {
        PluginSummary {
            name: self.name.clone(),
            world: self.world,
            version: self.version.clone(),
            content_hash: self.content_hash.clone(),
            source: self.source,
            loaded_at: humantime::format_rfc3339_millis(self.loaded_at).to_string(),
            calls: self.stats.calls.load(Ordering::Relaxed),
            errors: self.stats.errors.load(Ordering::Relaxed),
        }
    }
}

/// The published versions, by name.
#[derive(Default)]
pub struct Registry {
    current: ArcSwap<BTreeMap<String, Arc<Loaded>>>,
    stats: std::sync::Mutex<BTreeMap<String, Arc<PluginStats>>>,
    /// Held for the whole of an install, so two versions of one name can
    /// never race to publish.
    pub(crate) install_lock: tokio::sync::Mutex<()>,
}

impl Registry {
    /// The version serving `name` now.
    pub fn get(&self, name: &str) -> Option<Arc<Loaded>> {
        self.current.load().get(name).cloned()
    }

    /// Every serving version, by name.
    pub fn all(&self) -> Vec<Arc<Loaded>> {
        self.current.load().values().cloned().collect()
    }

    /// The counters of a name, created on first use.
    pub(crate) fn stats(&self, name: &str) -> Arc<PluginStats> {
        let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        stats.entry(name.to_string()).or_default().clone()
    }

    /// Makes `loaded` the serving version of its name.
    pub(crate) fn publish(&self, loaded: Arc<Loaded>) {
        self.current.rcu(|map| {
            let mut map = BTreeMap::clone(map);
            map.insert(loaded.name.clone(), loaded.clone());
            map
        });
    }
}

/// Refuses a component whose world differs from the serving version's.
pub(crate) fn check_world(current: Option<&Loaded>, name: &str, world: World) -> Result<(), InstallError> {
    match current {
        Some(old) if old.world != world => {
            Err(InstallError::WorldMismatch { name: name.to_string(), expected: old.world, actual: world })
        }
        _ => Ok(()),
    }
}
