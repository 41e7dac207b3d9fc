//! Typed failures of the plugin runtime.
//!
//! Two families, kept apart because callers act on them differently:
//! a [`PluginError`] says the sandbox or the component failed (a trap, a
//! deadline, a cap), which the host counts against the plugin; a
//! [`ProviderError`] is an answer the provider chose to give, mirroring the
//! WIT `provider-error`, which the retry policy decides about.

use std::fmt;

use super::registry::World;

/// A plugin call or load that failed in the sandbox, naming the plugin and
/// the version that failed.
#[derive(Debug, thiserror::Error)]
#[error("plugin {plugin} {version}: {kind}")]
pub struct PluginError {
    /// The plugin's name (`retry-backoff`, `openai-whisper`, ...).
    pub plugin: String,
    /// The version that failed: its declared version and content hash prefix.
    pub version: String,
    /// What went wrong.
    pub kind: PluginErrorKind,
}

/// What went wrong in a [`PluginError`].
#[derive(Debug, thiserror::Error)]
pub enum PluginErrorKind {
    /// No plugin of that name is loaded.
    #[error("not loaded")]
    NotLoaded,
    /// The plugin is loaded but implements another world.
    #[error("is a {actual} plugin, not a {expected} plugin")]
    WrongWorld {
        /// The world the caller needed.
        expected: World,
        /// The world the plugin implements.
        actual: World,
    },
    /// The call ran past its CPU deadline and was stopped.
    #[error("stopped at its deadline of {deadline_ms} ms")]
    Timeout {
        /// The deadline that was exceeded.
        deadline_ms: u64,
    },
    /// The call waited on the host (I/O, a sleep) past its deadline and the
    /// grace after it, and was stopped.
    #[error("stopped after waiting {waited_ms} ms (its deadline and the grace after it)")]
    Hung {
        /// How long it ran before it was stopped.
        waited_ms: u64,
    },
    /// A policy used up its fuel budget.
    #[error("used up its fuel budget of {fuel} units")]
    FuelExhausted {
        /// The budget.
        fuel: u64,
    },
    /// The guest tried to grow its memory past its cap.
    #[error("went over its memory cap of {memory_mb} MiB")]
    MemoryExceeded {
        /// The cap.
        memory_mb: u64,
    },
    /// The guest trapped (a panic, an unreachable, a bad memory access).
    #[error("trapped: {0}")]
    Trap(String),
    /// The guest returned something the host refuses (too large, or not a
    /// valid answer for its world).
    #[error("returned an invalid answer: {0}")]
    InvalidOutput(String),
    /// The component could not be instantiated (e.g. it imports something
    /// its world does not grant) or the pool has no free slot.
    #[error("could not be instantiated: {0}")]
    Instantiate(String),
}

impl PluginErrorKind {
    /// A short, stable label for metrics (`timeout`, `trap`, ...).
    pub fn label(&self) -> &'static str {
        match self {
            Self::NotLoaded => "not_loaded",
            Self::WrongWorld { .. } => "wrong_world",
            Self::Timeout { .. } => "timeout",
            Self::Hung { .. } => "hung",
            Self::FuelExhausted { .. } => "fuel",
            Self::MemoryExceeded { .. } => "memory",
            Self::Trap(_) => "trap",
            Self::InvalidOutput(_) => "invalid_output",
            Self::Instantiate(_) => "instantiate",
        }
    }
}

/// Why a new plugin version was refused. The version it would have replaced
/// (if any) keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The plugin name is not usable as a file name and metric label.
    #[error("invalid plugin name {0:?}: use lowercase letters, digits and '-'")]
    InvalidName(String),
    /// The bytes are not a valid component for this runtime.
    #[error("not a valid WebAssembly component: {0}")]
    Compile(String),
    /// The component exports none of the three worlds.
    #[error("exports none of the plugin worlds (provider, retry-policy, priority-policy)")]
    UnknownWorld,
    /// The component implements another world than the version it replaces.
    #[error("implements {actual}, but {name} is a {expected} plugin")]
    WorldMismatch {
        /// The plugin name.
        name: String,
        /// The world of the version being replaced.
        expected: World,
        /// The world of the new file.
        actual: World,
    },
    /// The component imports something its world does not grant.
    #[error("cannot be linked: {0}")]
    Link(String),
    /// The smoke call failed.
    #[error("smoke call failed: {0}")]
    Smoke(PluginError),
    /// The plugin's settings in the config file cannot be used for it.
    #[error("settings refused: {0}")]
    Settings(String),
    /// The file is larger than the upload limit.
    #[error("is {size} bytes, over the {limit}-byte plugin size limit (SCRIBE_MAX_PLUGIN_BYTES)")]
    TooLarge {
        /// The file's size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Reading the file or writing it into the plugin directory failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// A provider's own account of a failed transcription; mirrors the WIT
/// `provider-error` variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// Slow down; wait this long (ms) when given.
    #[error("rate limited{}", retry_after_text(*.0))]
    RateLimited(Option<u64>),
    /// May go away by itself.
    #[error("transient: {0}")]
    Transient(String),
    /// The input was refused.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The credentials were refused.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// Waiting does not fix it.
    #[error("fatal: {0}")]
    Fatal(String),
}

fn retry_after_text(ms: Option<u64>) -> String {
    ms.map(|ms| format!(" (retry after {ms} ms)")).unwrap_or_default()
}

impl ProviderError {
    /// The kind, as the policies see it.
    pub fn kind(&self) -> policy_core::ErrorKind {
        use policy_core::ErrorKind as K;
        match self {
            Self::RateLimited(ms) => K::RateLimited { retry_after_ms: *ms },
            Self::Transient(_) => K::Transient,
            Self::InvalidInput(_) => K::InvalidInput,
            Self::Unauthorized(_) => K::Unauthorized,
            Self::Fatal(_) => K::Fatal,
        }
    }
}

/// Why a transcription call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The provider answered with an error.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The sandbox stopped the call or the component misbehaved.
    #[error(transparent)]
    Plugin(#[from] PluginError),
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
