//! The way a component becomes a serving version: compile (or load the
//! cached artifact), find its world, check it against the version it
//! replaces, link it against its kind's grants, smoke-call it, publish.

use std::sync::Arc;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use super::bindings::{priority, provider, retry};
use super::engine::Engines;
use super::error::{InstallError, ProviderError};
use super::registry::{check_world, Loaded, PluginStats, Pre, Source, World};
use super::sandbox::Identity;
use super::types::{Candidate, Priority, RetryInput};
use super::{Linkers, Plugins};
use crate::config::is_valid_plugin_name as is_valid_name;

/// What an install did.
#[derive(Clone)]
pub enum Installed {
    /// A new version now serves.
    Published(Arc<Loaded>),
    /// The same content already serves; nothing changed.
    Unchanged(Arc<Loaded>),
}

impl Installed {
    /// The version serving after the install.
    pub fn loaded(&self) -> &Arc<Loaded> {
        match self {
            Installed::Published(l) | Installed::Unchanged(l) => l,
        }
    }
}

/// sha256 of `bytes`, as lowercase hex.
pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Plugins {
    /// Validates `bytes` as a new version of `name` and publishes it.
    /// On any failure the serving version (if any) stays.
    pub async fn install(&self, name: &str, bytes: Vec<u8>, source: Source) -> Result<Installed, InstallError> {
        let result = self.try_install(name, bytes, source, None).await;
        self.log_install(name, source, &result);
        result
    }

    /// Like [`Plugins::install`], and writes the component to `persist_to`
    /// before publishing it, so what serves is what a restart loads.
    pub(crate) async fn install_persisted(
        &self,
        name: &str,
        bytes: Vec<u8>,
        source: Source,
        persist_to: &std::path::Path,
    ) -> Result<Installed, InstallError> {
        let result = self.try_install(name, bytes, source, Some(persist_to)).await;
        self.log_install(name, source, &result);
        result
    }

    fn log_install(&self, name: &str, source: Source, result: &Result<Installed, InstallError>) {
        match &result {
            Ok(Installed::Published(l)) => {
                tracing::info!(plugin = name, version = %l.identity.version, world = %l.world, source = ?source, "plugin published");
                self.metrics.plugin_loads.with_label_values(&[name, "published"]).inc();
            }
            Ok(Installed::Unchanged(_)) => tracing::debug!(plugin = name, "plugin unchanged (same content hash)"),
            Err(e) => {
                tracing::warn!(plugin = name, source = ?source, "plugin refused, the serving version stays: {e}");
                if is_valid_name(name) {
                    self.metrics.plugin_loads.with_label_values(&[name, "refused"]).inc();
                }
            }
        }
    }

    async fn try_install(
        &self,
        name: &str,
        bytes: Vec<u8>,
        source: Source,
        persist_to: Option<&std::path::Path>,
    ) -> Result<Installed, InstallError> {
        if !is_valid_name(name) {
            return Err(InstallError::InvalidName(name.to_string()));
        }
        // The limit guards what operators drop in or upload; the built-ins
        // are part of this binary (the local model's component is ~1.5 MB).
        if source != Source::BuiltIn && bytes.len() as u64 > self.config.max_plugin_bytes {
            return Err(InstallError::TooLarge { size: bytes.len() as u64, limit: self.config.max_plugin_bytes });
        }
        let hash = content_hash(&bytes);
        let _serialized = self.registry.install_lock.lock().await;
        let current = self.registry.get(name);
        if let Some(current) = current.as_ref().filter(|c| c.content_hash == hash) {
            return Ok(Installed::Unchanged(current.clone()));
        }
        let started = std::time::Instant::now();
        let (engines, linkers, hash_for_compile) = (self.engines.clone(), self.linkers.clone(), hash.clone());
        let (world, pre, bytes) = tokio::task::spawn_blocking(move || {
            prepare(&engines, &linkers, &bytes, &hash_for_compile).map(|(world, pre)| (world, pre, bytes))
        })
        .await
        .map_err(|e| InstallError::Compile(format!("compile task failed: {e}")))??;
        let compiled = started.elapsed();
        check_world(current.as_deref(), name, world)?;
        let mut loaded = Loaded {
            name: name.to_string(),
            world,
            version: String::new(),
            identity: Identity { plugin: name.into(), version: hash[..12].into() },
            content_hash: hash,
            source,
            loaded_at: SystemTime::now(),
            provider_info: None,
            pre,
            limits: self.resolve(name, world.kind())?,
            stats: Arc::new(PluginStats::default()),
            warm: Default::default(),
        };
        self.smoke(&mut loaded).await.map_err(InstallError::Smoke)?;
        let smoked = started.elapsed();
        loaded.identity.version = format!("{} ({})", loaded.version, &loaded.content_hash[..12]).into();
        loaded.stats = self.registry.stats(name);
        if let Some(path) = persist_to {
            crate::files::write_atomically(path, &bytes)?;
        }
        let loaded = Arc::new(loaded);
        self.announce(current.as_deref(), &loaded);
        self.registry.publish(loaded.clone());
        tracing::debug!(plugin = name, ?compiled, ?smoked, published = ?started.elapsed(), "install stages");
        Ok(Installed::Published(loaded))
    }

    /// Calls the new version the way the host will, off the request path
    /// (on the slot kept for smoke calls).
    async fn smoke(&self, loaded: &mut Loaded) -> Result<(), super::PluginError> {
        match loaded.world {
            World::Provider => {
                let info = self.provider_info_of(loaded).await?;
                loaded.version = info.version.clone();
                loaded.provider_info = Some(info);
            }
            World::RetryPolicy => {
                loaded.version = self.policy_version_of(loaded).await?;
                let sample = RetryInput { attempt: 1, error: ProviderError::Transient("smoke call".into()), elapsed_ms: 0 };
                self.decide_on(loaded, &sample).await?;
            }
            World::PriorityPolicy => {
                loaded.version = self.policy_version_of(loaded).await?;
                self.rank_on(loaded, &sample_candidates()).await?;
            }
        }
        Ok(())
    }

    fn announce(&self, old: Option<&Loaded>, new: &Loaded) {
        if let Some(old) = old {
            let _ = self.metrics.plugin_loaded.remove_label_values(&[&old.name, &old.version, &old.content_hash]);
        }
        self.metrics.plugin_loaded.with_label_values(&[&new.name, &new.version, &new.content_hash]).set(1);
    }
}

/// Compiles, finds the world and links: the CPU-heavy part, run on a
/// blocking thread.
fn prepare(engines: &Engines, linkers: &Linkers, bytes: &[u8], hash: &str) -> Result<(World, Pre), InstallError> {
    let world = World::of(bytes)
        .map_err(|e| InstallError::Compile(e.to_string()))?
        .ok_or(InstallError::UnknownWorld)?;
    let component = engines.compile(world.kind(), bytes, hash)?;
    let link = |e: wasmtime::Error| InstallError::Link(format!("{e:#}"));
    let pre = match world {
        World::Provider => {
            Pre::Provider(provider::ProviderPre::new(linkers.provider.instantiate_pre(&component).map_err(link)?).map_err(link)?)
        }
        World::RetryPolicy => {
            Pre::Retry(retry::RetryPolicyPre::new(linkers.policy.instantiate_pre(&component).map_err(link)?).map_err(link)?)
        }
        World::PriorityPolicy => Pre::Priority(
            priority::PriorityPolicyPre::new(linkers.policy.instantiate_pre(&component).map_err(link)?).map_err(link)?,
        ),
    };
    Ok((world, pre))
}

fn sample_candidates() -> Vec<Candidate> {
    let candidate = |user: &str, priority| Candidate {
        job_id: format!("smoke-{user}"),
        user: user.to_string(),
        priority,
        submitted_at_ms: 1,
        user_running: 0,
        user_queued: 1,
        user_last_dispatch_ms: None,
    };
    vec![candidate("a", Priority::Normal), candidate("b", Priority::High)]
}
