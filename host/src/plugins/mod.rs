//! The plugin runtime: loads, sandboxes and calls WebAssembly components.
//!
//! It knows nothing of jobs, users or the database. Its public face is
//! [`Plugins`]: the scheduler calls [`Plugins::transcribe`],
//! [`Plugins::decide_retry`] and [`Plugins::rank`]; the admin routes call
//! [`Plugins::list`] and [`Plugins::upload`]; the watcher calls
//! [`Plugins::install`].
//!
//! Layout: `engine` (engines, pools, compile cache), `sandbox` (what a call
//! may reach), `bindings` (WIT <-> host types), `registry` (serving
//! versions), `install` (validation and publishing), `call` (one bounded
//! call), `policy` (the policies with their built-in fallback), `watch`
//! (the plugin directory), `builtin` (shipped components).

mod bindings;
mod builtin;
mod call;
mod engine;
mod error;
mod install;
mod outbound;
mod policy;
mod registry;
mod sandbox;
pub mod types;
mod warm;
mod watch;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::Semaphore;
use wasmtime::component::Linker;

pub use engine::{Kind, KindLimits, EPOCH_TICK};
pub use error::{CallError, InstallError, PluginError, PluginErrorKind, ProviderError};
pub use install::{content_hash, Installed};
pub use registry::{Loaded, PluginSummary, Source, World};
pub use sandbox::{FirstRequestWait, MAX_LOG_LINES_PER_CALL, MAX_LOG_LINE_BYTES};
pub use watch::DirWatcher;

use crate::config::Config;
use crate::metrics::Metrics;
use engine::Engines;
use registry::{Registry, Resolved};
use sandbox::StoreState;
use types::{ProviderInfo, TranscribeRequest, Transcript};

/// The plugin runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Wasmtime refused the engine configuration.
    #[error("cannot create the wasm engine: {0}")]
    Engine(String),
    /// A shipped plugin did not load (its settings are refused, or the
    /// build is broken).
    #[error("built-in plugin {name} did not load: {source}")]
    BuiltIn {
        /// The plugin.
        name: String,
        /// Why.
        source: InstallError,
    },
    /// The plugin directory cannot be created or read.
    #[error("plugin directory {dir}: {source}")]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// One linker per kind, built once.
pub(crate) struct Linkers {
    provider: Linker<StoreState>,
    policy: Linker<StoreState>,
}

/// The plugin runtime.
pub struct Plugins {
    engines: Arc<Engines>,
    linkers: Arc<Linkers>,
    registry: Registry,
    metrics: Metrics,
    /// The settings it started with (plugin tables, active policies, the
    /// plugin directory and size limit).
    config: Config,
    provider_slots: Semaphore,
    policy_slots: Semaphore,
    /// The connections providers' requests go out over.
    outbound: outbound::Outbound,
}

impl Plugins {
    /// Starts the runtime: engines, the built-in plugins, then every
    /// `NAME.wasm` already in the plugin directory (a file that fails is
    /// logged and skipped). Watching the directory is [`Plugins::watch`].
    pub async fn start(config: &Config, metrics: Metrics) -> Result<Arc<Self>, StartError> {
        let engine_err = |e: wasmtime::Error| StartError::Engine(format!("{e:#}"));
        let engines = Engines::new(&config.data_dir.join("cache").join("components")).map_err(engine_err)?;
        let linkers = Linkers {
            provider: sandbox::provider_linker(engines.engine(Kind::Provider)).map_err(engine_err)?,
            policy: sandbox::policy_linker(engines.engine(Kind::Policy)).map_err(engine_err)?,
        };
        let plugins = Arc::new(Self {
            engines: Arc::new(engines),
            linkers: Arc::new(linkers),
            registry: Registry::default(),
            metrics,
            config: config.clone(),
            provider_slots: Semaphore::new(Kind::Provider.limits().pool_instances as usize - 1),
            policy_slots: Semaphore::new(Kind::Policy.limits().pool_instances as usize - 1),
            outbound: outbound::Outbound::new(),
        });
        for &(name, bytes) in builtin::all() {
            plugins
                .install(name, bytes.to_vec(), Source::BuiltIn)
                .await
                .map_err(|source| StartError::BuiltIn { name: name.to_string(), source })?;
        }
        let dir_err = |source| StartError::Dir { dir: config.plugin_dir.clone(), source };
        std::fs::create_dir_all(&config.plugin_dir).map_err(dir_err)?;
        for path in watch::plugin_files(&config.plugin_dir).map_err(dir_err)? {
            watch::load_file(&plugins, &path).await;
        }
        Ok(plugins)
    }

    /// Starts watching the plugin directory; stops when the guard drops.
    pub fn watch(self: &Arc<Self>) -> Result<DirWatcher, notify::Error> {
        watch::spawn(self.clone(), self.config.plugin_dir.clone())
    }

    /// Every serving version, by name.
    pub fn list(&self) -> Vec<PluginSummary> {
        self.registry.all().iter().map(|l| l.summary()).collect()
    }

    /// The serving version of `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Loaded>> {
        self.registry.get(name)
    }

    /// What the serving provider `name` says of itself.
    pub fn provider_info(&self, name: &str) -> Option<ProviderInfo> {
        self.registry.get(name).and_then(|l| l.provider_info.clone())
    }

    /// Installs an uploaded component; once validated it is written to the
    /// plugin directory (then published), so it survives a restart.
    pub async fn upload(&self, name: &str, bytes: Vec<u8>) -> Result<Installed, InstallError> {
        let path = self.config.plugin_dir.join(format!("{name}.wasm"));
        self.install_persisted(name, bytes, Source::Upload, &path).await
    }

    /// Transcribes with the serving version of provider `name`. The call
    /// finishes on that version even if a new one is published meanwhile.
    pub async fn transcribe(&self, name: &str, request: TranscribeRequest) -> Result<Transcript, CallError> {
        self.transcribe_paced(name, request, None).await
    }

    /// [`Plugins::transcribe`], with the call's first outbound request held
    /// until `first_request_wait` completes (the scheduler's spacing of
    /// requests as they leave). The wait counts against the call's
    /// deadline and holds the call's pool slot; a wait near the deadline
    /// ends the call as the host's hard stop (a plugin failure the retry
    /// policy retries), not as the guest's own timeout. A call that sends
    /// no request never waits.
    pub async fn transcribe_paced(
        &self,
        name: &str,
        request: TranscribeRequest,
        first_request_wait: Option<FirstRequestWait>,
    ) -> Result<Transcript, CallError> {
        let _slot = self.slot(Kind::Provider).await;
        let loaded = self.loaded(name, World::Provider)?;
        self.transcribe_on(&loaded, request, first_request_wait).await
    }

    /// The limits of plugin `name` of `kind`: its settings over the kind's
    /// defaults. Policies get no outbound hosts whatever the settings say.
    fn resolve(&self, name: &str, kind: Kind) -> Result<Resolved, InstallError> {
        let settings = self.config.plugin(name);
        let defaults = kind.limits();
        let memory_mb = settings.memory_mb.unwrap_or(defaults.default_memory_mb);
        if memory_mb > defaults.max_memory_mb {
            return Err(InstallError::Settings(format!(
                "[plugins.{name}] memory_mb = {memory_mb} is over the {kind:?} maximum of {} MiB",
                defaults.max_memory_mb
            )));
        }
        Ok(Resolved {
            deadline_ms: settings.deadline_ms.unwrap_or(defaults.default_deadline_ms),
            memory_mb,
            fuel: defaults.default_fuel.map(|d| settings.fuel.unwrap_or(d)),
            max_output_bytes: settings.max_output_bytes.unwrap_or(defaults.default_max_output_bytes),
            allowed_hosts: match kind {
                Kind::Provider => settings.allowed_hosts.clone().into(),
                Kind::Policy => Arc::from([]),
            },
            warm_instances: settings
                .warm_instances
                .unwrap_or_else(crate::process::cores),
            read_only_dir: match kind {
                Kind::Provider => settings.read_only_dir.map(Arc::from),
                Kind::Policy => None,
            },
            config: Arc::new(settings.config),
        })
    }
}

impl Plugins {
    /// Instantiates the serving version of provider `name` in a fresh store
    /// and calls `info()`: the smoke call, for readiness checks and the
    /// instantiation benchmark.
    pub async fn probe_provider(&self, name: &str) -> Result<ProviderInfo, PluginError> {
        let _slot = self.slot(Kind::Provider).await;
        let loaded = self.loaded(name, World::Provider)?;
        self.provider_info_of(&loaded).await
    }

    /// The metrics this runtime records into.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

/// The bytes of the built-in plugin `name`, if one is shipped.
pub fn builtin_bytes(name: &str) -> Option<&'static [u8]> {
    builtin::all().iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}
