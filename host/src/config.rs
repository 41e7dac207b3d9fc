//! Scribe's one typed configuration, read once at start-up and passed down.
//!
//! Every setting has an environment variable (the names in design.md; the
//! brief's names kept as they are) and, optionally, a key in the TOML file
//! named by `SCRIBE_CONFIG`: the variable's name in lowercase without the
//! `SCRIBE_` prefix (`SCRIBE_LISTEN` -> `listen`,
//! `MAX_CONCURRENT_TRANSCRIPTIONS` -> `max_concurrent_transcriptions`).
//! The environment wins over the file. Per-plugin settings live only in the
//! file, under `[plugins.NAME]`. A value that does not parse stops start-up
//! with an error naming the variable (or the file key).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use serde::Deserialize;

/// A configuration that cannot be used, naming the setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value did not parse.
    #[error("{name}: cannot use {value:?}: {reason}")]
    Invalid {
        /// The variable or file key.
        name: String,
        /// The value given.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// The config file could not be read or parsed.
    #[error("SCRIBE_CONFIG ({path}): {reason}")]
    File {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// One plugin's settings: `[plugins.NAME]` in the config file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PluginSettings {
    /// Hosts this plugin may send HTTP requests to (`host` or `host:port`).
    /// Empty: none (deny by default).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// CPU deadline of one call, in ms (default per kind).
    pub deadline_ms: Option<u64>,
    /// Memory cap of one call, in MiB (default per kind).
    pub memory_mb: Option<u64>,
    /// Fuel budget of one policy call (policies only; default per kind).
    pub fuel: Option<u64>,
    /// Concurrent calls of this provider (overrides
    /// `MAX_CONCURRENT_TRANSCRIPTIONS`).
    pub max_concurrent: Option<u32>,
    /// Calls per minute of this provider (overrides
    /// `TRANSCRIPTION_RATE_LIMIT_PER_MINUTE`).
    pub rate_limit_per_minute: Option<u32>,
    /// Cap on the size of what one call returns, in bytes (default per kind).
    pub max_output_bytes: Option<u64>,
    /// Entries handed to the plugin (`config-get`, or the policy's input).
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// A directory this provider may read, preopened read-only at
    /// [`READ_ONLY_DIR_GUEST_PATH`] (providers only; `local-whisper`'s
    /// default: `SCRIBE_MODEL_DIR`).
    pub read_only_dir: Option<PathBuf>,
    /// Idle instances kept between calls, for an in-process provider only
    /// (default: the machine's cores; 0: a fresh instance every call).
    pub warm_instances: Option<usize>,
}

/// Where a provider sees its `read_only_dir`.
pub const READ_ONLY_DIR_GUEST_PATH: &str = "/ro";

/// The provider that runs a model in the sandbox, reading it from
/// `SCRIBE_MODEL_DIR`.
pub const LOCAL_PROVIDER: &str = "local-whisper";

/// `local-whisper`'s default memory cap: the base model's weights as f32
/// (~290 MiB), the file read to build them (~140 MiB) and the network's
/// activations, with room to spare.
pub const LOCAL_PROVIDER_MEMORY_MB: u64 = 1536;

/// Scribe's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `SCRIBE_LISTEN`: the HTTP listen address.
    pub listen: SocketAddr,
    /// `SCRIBE_DATA_DIR`: database, audio, compiled plugins.
    pub data_dir: PathBuf,
    /// `DATABASE_URL`: unset means SQLite in the data dir.
    pub database_url: Option<String>,
    /// `SCRIBE_PLUGIN_DIR`: the watched plugin directory.
    pub plugin_dir: PathBuf,
    /// `SCRIBE_AUDIO_STORE` (`directory` or `database`) and
    /// `SCRIBE_AUDIO_DIR`: where uploaded audio is kept.
    pub audio_store: AudioStoreKind,
    /// `ADMIN_API_KEY`: unset means admin routes refuse everything.
    pub admin_api_key: Option<String>,
    /// `SCRIBE_MAX_UPLOAD_BYTES`: the largest audio upload.
    pub max_upload_bytes: u64,
    /// `SCRIBE_AUDIO_INLINE_MAX_BYTES`: on SQLite with audio in a
    /// directory, uploads up to this size are kept in the database instead
    /// (committed with the writes they share a commit with, rather than a
    /// file and two fsyncs each); 0 keeps every upload in a file.
    pub audio_inline_max_bytes: u64,
    /// `SCRIBE_AUDIO_URL_ALLOW_PRIVATE`: whether a submit's `audio_url` may
    /// point at loopback, private or link-local addresses.
    pub audio_url_allow_private: bool,
    /// `SCRIBE_AUDIO_URL_TIMEOUT_MS`: the deadline of one `audio_url` download.
    pub audio_url_timeout_ms: u64,
    /// `SCRIBE_MAX_PLUGIN_BYTES`: the largest plugin component accepted.
    pub max_plugin_bytes: u64,
    /// `SCRIBE_MAX_QUEUE_LENGTH`: queued jobs before submits get 429.
    pub max_queue_length: u64,
    /// `SCRIBE_AUDIO_RETENTION_HOURS`: how long audio outlives its jobs.
    pub audio_retention_hours: u64,
    /// `SCRIBE_LEASE_SECONDS`: a running job's lease.
    pub lease_seconds: u64,
    /// `SCRIBE_FLEET_POLL_SECONDS`: on PostgreSQL, the longest a scheduler
    /// sleeps without a wake-up (covers a lost notification).
    pub fleet_poll_seconds: u64,
    /// `SCRIBE_MODEL_DIR`: where local models live, one folder per model
    /// (default: the user's cache dir, `~/.cache/scribe/models`).
    pub model_dir: PathBuf,
    /// `SCRIBE_MEMORY_LIMIT_MB`: the memory limit reported to operators.
    pub memory_limit_mb: Option<u64>,
    /// `SCRIBE_DISPATCH`: whether this instance runs jobs (`false`: it only
    /// accepts and serves them, an API-only instance).
    pub dispatch: bool,
    /// `SCRIBE_RETRY_POLICY`: the active retry policy plugin.
    pub retry_policy: String,
    /// `SCRIBE_PRIORITY_POLICY`: the active priority policy plugin.
    pub priority_policy: String,
    /// `MAX_CONCURRENT_TRANSCRIPTIONS`: concurrent calls per provider.
    pub max_concurrent_transcriptions: u32,
    /// `TRANSCRIPTION_RATE_LIMIT_PER_MINUTE`: calls per minute per provider.
    pub rate_limit_per_minute: u32,
    /// `TRANSCRIPTION_RATE_LIMIT_BURST`: calls allowed back to back.
    pub rate_limit_burst: u32,
    /// `CACHE_MAX_SIZE`: transcripts kept in memory.
    pub cache_max_size: u64,
    /// `CACHE_DEFAULT_TTL`: how long (ms) a cached transcript stays in memory.
    pub cache_default_ttl_ms: u64,
    /// `DB_POOL_SIZE`: database connections.
    pub db_pool_size: u32,
    /// `DB_TIMEOUT`: ms to wait for a database connection.
    pub db_timeout_ms: u64,
    /// `[plugins.NAME]` tables, with secrets mapped in from the environment.
    pub plugins: BTreeMap<String, PluginSettings>,
    /// `[models]` in the config file: OpenAI model name -> provider plugin,
    /// for `POST /v1/audio/transcriptions` (`whisper-1` defaults to the
    /// default provider).
    pub models: BTreeMap<String, String>,
}

/// Environment secrets and endpoints handed to shipped providers:
/// (variable, plugin, config key, also grants the URL's host).
const PLUGIN_ENV: &[(&str, &str, &str, bool)] = &[
    ("OPENAI_API_KEY", "openai-whisper", "api_key", false),
    ("OPENAI_BASE_URL", "openai-whisper", "base_url", true),
    ("REPLICATE_API_TOKEN", "replicate", "api_token", false),
    ("REPLICATE_BASE_URL", "replicate", "base_url", true),
];

impl Config {
    /// Reads the process environment (and `SCRIBE_CONFIG`, if set).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars().collect())
    }

    /// Reads the given variables (and the file one of them names).
    pub fn from_vars(env: HashMap<String, String>) -> Result<Self, ConfigError> {
        let file = match env.get("SCRIBE_CONFIG") {
            Some(path) => read_file(path)?,
            None => toml::Table::new(),
        };
        let src = Source { env: &env, file: &file };
        let data_dir: PathBuf = src.get("SCRIBE_DATA_DIR", PathBuf::from("./data"))?;
        let plugin_dir = src.get("SCRIBE_PLUGIN_DIR", data_dir.join("plugins"))?;
        let mut plugins = plugin_tables(&file, env.get("SCRIBE_CONFIG"))?;
        let models = model_table(&file, env.get("SCRIBE_CONFIG"))?;
        map_plugin_env(&env, &mut plugins)?;
        let model_dir = src.opt("SCRIBE_MODEL_DIR")?.unwrap_or_else(crate::models::default_model_dir);
        let local = plugins.entry(LOCAL_PROVIDER.to_string()).or_default();
        local.read_only_dir.get_or_insert_with(|| model_dir.clone());
        local.memory_mb.get_or_insert(LOCAL_PROVIDER_MEMORY_MB);
        let database_url = check_database_url(src.raw("DATABASE_URL"))?;
        let audio_store = audio_store_kind(&src, &data_dir, database_url.as_deref())?;
        let config = Self {
            audio_store,
            listen: src.get("SCRIBE_LISTEN", SocketAddr::from(([127, 0, 0, 1], 8080)))?,
            database_url,
            plugin_dir,
            admin_api_key: src.opt::<String>("ADMIN_API_KEY")?.filter(|k| !k.is_empty()),
            max_upload_bytes: src.get("SCRIBE_MAX_UPLOAD_BYTES", 25 * 1024 * 1024)?,
            audio_inline_max_bytes: src.get("SCRIBE_AUDIO_INLINE_MAX_BYTES", 256 * 1024)?,
            audio_url_allow_private: src.get("SCRIBE_AUDIO_URL_ALLOW_PRIVATE", false)?,
            audio_url_timeout_ms: src.positive("SCRIBE_AUDIO_URL_TIMEOUT_MS", 30_000)?,
            max_plugin_bytes: src.get("SCRIBE_MAX_PLUGIN_BYTES", 64 * 1024 * 1024)?,
            max_queue_length: src.get("SCRIBE_MAX_QUEUE_LENGTH", 10_000)?,
            audio_retention_hours: src.get("SCRIBE_AUDIO_RETENTION_HOURS", 24)?,
            lease_seconds: src.positive("SCRIBE_LEASE_SECONDS", 30)?,
            fleet_poll_seconds: src.positive("SCRIBE_FLEET_POLL_SECONDS", 10)?,
            model_dir,
            memory_limit_mb: src.opt("SCRIBE_MEMORY_LIMIT_MB")?,
            dispatch: src.get("SCRIBE_DISPATCH", true)?,
            retry_policy: src.get("SCRIBE_RETRY_POLICY", "retry-backoff".to_string())?,
            priority_policy: src.get("SCRIBE_PRIORITY_POLICY", "priority-fair".to_string())?,
            max_concurrent_transcriptions: src.positive("MAX_CONCURRENT_TRANSCRIPTIONS", 5)?,
            rate_limit_per_minute: src.positive("TRANSCRIPTION_RATE_LIMIT_PER_MINUTE", 30)?,
            rate_limit_burst: src.positive("TRANSCRIPTION_RATE_LIMIT_BURST", 1)?,
            cache_max_size: src.get("CACHE_MAX_SIZE", 1000)?,
            cache_default_ttl_ms: src.get("CACHE_DEFAULT_TTL", 300_000)?,
            db_pool_size: src.positive("DB_POOL_SIZE", 20)?,
            db_timeout_ms: src.positive("DB_TIMEOUT", 30_000)?,
            data_dir,
            plugins,
            models,
        };
        Ok(config)
    }

    /// Whether `plugin`'s config has a non-empty `key` (a mapped secret).
    pub fn has_setting(&self, plugin: &str, key: &str) -> bool {
        self.plugins.get(plugin).and_then(|s| s.config.get(key)).is_some_and(|v| !v.is_empty())
    }

    /// The provider a job gets when it names none (design.md):
    /// `openai-whisper` if `OPENAI_API_KEY` is set, else `replicate` if
    /// `REPLICATE_API_TOKEN` is set, else the offline `local-whisper`.
    pub fn default_provider(&self) -> &'static str {
        if self.has_setting("openai-whisper", "api_key") {
            "openai-whisper"
        } else if self.has_setting("replicate", "api_token") {
            "replicate"
        } else {
            LOCAL_PROVIDER
        }
    }

    /// The settings of one plugin (empty defaults when the file has none).
    pub fn plugin(&self, name: &str) -> PluginSettings {
        self.plugins.get(name).cloned().unwrap_or_default()
    }
}

/// Where uploaded audio is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioStoreKind {
    /// Files in a directory (`SCRIBE_AUDIO_DIR`, default
    /// `$SCRIBE_DATA_DIR/audio`): one instance's own, or one every instance
    /// of a fleet mounts.
    Directory(PathBuf),
    /// In the PostgreSQL database (a fleet's default).
    Database,
    /// In an S3-compatible bucket: `SCRIBE_AUDIO_BUCKET_URL`
    /// (`s3://BUCKET[/PREFIX]`), configured by the `AWS_*` variables
    /// (`AWS_ENDPOINT`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_REGION`, `AWS_ALLOW_HTTP`, ...).
    Bucket {
        /// `s3://BUCKET[/PREFIX]`.
        url: String,
        /// The `AWS_*` variables, as given.
        options: Vec<(String, String)>,
    },
}

/// `SCRIBE_AUDIO_STORE`: `directory` (the default on SQLite) or `database`
/// (the default on PostgreSQL, where every instance can read it; refused
/// on SQLite, whose instance has the directory to itself anyway).
fn audio_store_kind(src: &Source<'_>, data_dir: &std::path::Path, database_url: Option<&str>) -> Result<AudioStoreKind, ConfigError> {
    let on_postgres = database_url.is_some_and(crate::store::is_postgres_url);
    let dir = src.get("SCRIBE_AUDIO_DIR", data_dir.join("audio"))?;
    let chosen = src.opt::<String>("SCRIBE_AUDIO_STORE")?.map(|v| v.trim().to_ascii_lowercase());
    match chosen.as_deref() {
        None | Some("") if on_postgres => Ok(AudioStoreKind::Database),
        None | Some("") | Some("directory") => Ok(AudioStoreKind::Directory(dir)),
        Some("database") if on_postgres => Ok(AudioStoreKind::Database),
        Some("bucket") => {
            let url: String = src.opt("SCRIBE_AUDIO_BUCKET_URL")?.unwrap_or_default();
            if !url.starts_with("s3://") || url.len() <= "s3://".len() {
                return Err(ConfigError::Invalid {
                    name: "SCRIBE_AUDIO_BUCKET_URL".into(),
                    value: url,
                    reason: "SCRIBE_AUDIO_STORE=bucket needs s3://BUCKET[/PREFIX]".into(),
                });
            }
            let mut options: Vec<(String, String)> =
                src.env.iter().filter(|(k, _)| k.starts_with("AWS_")).map(|(k, v)| (k.clone(), v.clone())).collect();
            options.sort();
            Ok(AudioStoreKind::Bucket { url, options })
        }
        Some(other) => Err(ConfigError::Invalid {
            name: "SCRIBE_AUDIO_STORE".into(),
            value: other.to_string(),
            reason: if other == "database" {
                "audio in the database needs DATABASE_URL=postgres://...; on SQLite use directory".into()
            } else {
                "expected directory, database or bucket".into()
            },
        }),
    }
}

/// SQLite (`sqlite://PATH`) or PostgreSQL (`postgres://...`); any other
/// `DATABASE_URL` stops start-up instead of being mistaken for a SQLite path.
fn check_database_url(raw: Option<(String, String)>) -> Result<Option<String>, ConfigError> {
    let Some((name, value)) = raw else { return Ok(None) };
    let value = value.trim().to_string();
    if value.is_empty() {
        return Ok(None);
    }
    if value.starts_with("sqlite:") || crate::store::is_postgres_url(&value) {
        return Ok(Some(value));
    }
    Err(ConfigError::Invalid {
        name,
        value,
        reason: "expected a sqlite:// or postgres:// URL (unset it to use $SCRIBE_DATA_DIR/scribe.db)".into(),
    })
}

fn read_file(path: &str) -> Result<toml::Table, ConfigError> {
    let err = |reason: String| ConfigError::File { path: path.to_string(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    text.parse::<toml::Table>().map_err(|e| err(e.to_string()))
}

fn plugin_tables(
    file: &toml::Table,
    path: Option<&String>,
) -> Result<BTreeMap<String, PluginSettings>, ConfigError> {
    let Some(value) = file.get("plugins") else { return Ok(BTreeMap::new()) };
    let plugins: BTreeMap<String, PluginSettings> =
        value.clone().try_into().map_err(|e: toml::de::Error| ConfigError::File {
            path: path.cloned().unwrap_or_default(),
            reason: format!("[plugins]: {e}"),
        })?;
    for name in plugins.keys() {
        if !is_valid_plugin_name(name) {
            return Err(ConfigError::Invalid {
                name: format!("[plugins.{name}]"),
                value: name.clone(),
                reason: "a plugin name is lowercase letters, digits and '-'".into(),
            });
        }
    }
    for (name, settings) in &plugins {
        check_plugin_limits(name, settings)?;
    }
    Ok(plugins)
}

/// `[models]`: model name -> provider plugin name.
fn model_table(file: &toml::Table, path: Option<&String>) -> Result<BTreeMap<String, String>, ConfigError> {
    let Some(value) = file.get("models") else { return Ok(BTreeMap::new()) };
    let models: BTreeMap<String, String> = value.clone().try_into().map_err(|e: toml::de::Error| ConfigError::File {
        path: path.cloned().unwrap_or_default(),
        reason: format!("[models]: {e} (expected model = \"provider\" lines)"),
    })?;
    if let Some((model, provider)) = models.iter().find(|(_, provider)| !is_valid_plugin_name(provider)) {
        return Err(ConfigError::Invalid {
            name: format!("[models] {model}"),
            value: provider.clone(),
            reason: "not a plugin name".into(),
        });
    }
    Ok(models)
}

/// Whether `name` can name a plugin: lowercase ASCII letters, digits and
/// '-', starting with a letter, at most 64 bytes (it becomes a file name and
/// a metric label).
pub fn is_valid_plugin_name(name: &str) -> bool {
    name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Refuses limits of 0, which would make every call of the plugin fail.
fn check_plugin_limits(name: &str, settings: &PluginSettings) -> Result<(), ConfigError> {
    let limits = [
        ("deadline_ms", settings.deadline_ms),
        ("memory_mb", settings.memory_mb),
        ("fuel", settings.fuel),
        ("max_output_bytes", settings.max_output_bytes),
        ("max_concurrent", settings.max_concurrent.map(u64::from)),
        ("rate_limit_per_minute", settings.rate_limit_per_minute.map(u64::from)),
    ];
    match limits.into_iter().find(|(_, value)| *value == Some(0)) {
        Some((key, _)) => Err(ConfigError::Invalid {
            name: format!("[plugins.{name}] {key}"),
            value: "0".into(),
            reason: "must be at least 1".into(),
        }),
        None => Ok(()),
    }
}

fn map_plugin_env(
    env: &HashMap<String, String>,
    plugins: &mut BTreeMap<String, PluginSettings>,
) -> Result<(), ConfigError> {
    for &(var, plugin, key, grants_host) in PLUGIN_ENV {
        let Some(value) = env.get(var).filter(|v| !v.is_empty()) else { continue };
        let settings = plugins.entry(plugin.to_string()).or_default();
        settings.config.insert(key.to_string(), value.clone());
        if grants_host {
            settings.allowed_hosts.push(url_authority(var, value)?);
        }
    }
    Ok(())
}

/// `http://host:port/path` -> `host:port` (or `host`), refusing what is not
/// an http(s) URL.
fn url_authority(var: &str, url: &str) -> Result<String, ConfigError> {
    let invalid = |reason: &str| ConfigError::Invalid {
        name: var.to_string(),
        value: url.to_string(),
        reason: reason.to_string(),
    };
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| invalid("expected an http:// or https:// URL"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return Err(invalid("expected a URL with a host and no credentials"));
    }
    Ok(authority.to_ascii_lowercase())
}

/// Where values come from: the environment first, then the file.
struct Source<'a> {
    env: &'a HashMap<String, String>,
    file: &'a toml::Table,
}

impl Source<'_> {
    fn raw(&self, var: &str) -> Option<(String, String)> {
        if let Some(v) = self.env.get(var) {
            return Some((var.to_string(), v.clone()));
        }
        let key = var.strip_prefix("SCRIBE_").unwrap_or(var).to_ascii_lowercase();
        let value = self.file.get(&key)?;
        let text = match value {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        Some((format!("{key} (in SCRIBE_CONFIG)"), text))
    }

    fn opt<T: FromStr>(&self, var: &str) -> Result<Option<T>, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        let Some((name, value)) = self.raw(var) else { return Ok(None) };
        match value.trim().parse::<T>() {
            Ok(v) => Ok(Some(v)),
            Err(e) => Err(ConfigError::Invalid { name, value, reason: e.to_string() }),
        }
    }

    fn get<T: FromStr>(&self, var: &str, default: T) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        Ok(self.opt(var)?.unwrap_or(default))
    }

    fn positive<T: FromStr + Default + PartialEq>(&self, var: &str, default: T) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        let value = self.get(var, default)?;
        if value == T::default() {
            let (name, raw) = self.raw(var).unwrap_or_default();
            return Err(ConfigError::Invalid { name, value: raw, reason: "must be at least 1".into() });
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// The config read with `toml` as its file and no other variable.
    fn from_file(toml: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scribe.toml");
        std::fs::write(&path, toml).unwrap();
        Config::from_vars(vars(&[("SCRIBE_CONFIG", path.to_str().unwrap())]))
    }

    #[test]
    fn defaults_match_the_design() {
        let c = Config::from_vars(vars(&[])).unwrap();
        assert_eq!(c.max_concurrent_transcriptions, 5);
        assert_eq!(c.rate_limit_per_minute, 30);
        assert_eq!(c.rate_limit_burst, 1);
        assert_eq!(c.max_upload_bytes, 25 * 1024 * 1024);
        assert_eq!(c.audio_inline_max_bytes, 256 * 1024);
        assert_eq!(c.plugin_dir, PathBuf::from("./data/plugins"));
        assert_eq!(c.retry_policy, "retry-backoff");
        assert!(c.admin_api_key.is_none());
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let err = Config::from_vars(vars(&[("MAX_CONCURRENT_TRANSCRIPTIONS", "five")])).unwrap_err();
        assert!(err.to_string().starts_with("MAX_CONCURRENT_TRANSCRIPTIONS:"), "{err}");
        let err = Config::from_vars(vars(&[("DB_POOL_SIZE", "0")])).unwrap_err();
        assert!(err.to_string().contains("DB_POOL_SIZE") && err.to_string().contains("at least 1"), "{err}");
    }

    #[test]
    fn file_values_and_plugin_tables_are_read_and_env_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scribe.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9999\"\nmax_concurrent_transcriptions = 7\n\
             [plugins.openai-whisper]\nallowed_hosts = [\"api.openai.com\"]\ndeadline_ms = 1000\n\
             [plugins.openai-whisper.config]\nmodel = \"whisper-1\"\n",
        )
        .unwrap();
        let c = Config::from_vars(vars(&[
            ("SCRIBE_CONFIG", path.to_str().unwrap()),
            ("MAX_CONCURRENT_TRANSCRIPTIONS", "3"),
            ("OPENAI_API_KEY", "sk-test"),
            ("OPENAI_BASE_URL", "http://127.0.0.1:4000/v1"),
        ]))
        .unwrap();
        assert_eq!(c.listen.port(), 9999);
        assert_eq!(c.max_concurrent_transcriptions, 3);
        let p = c.plugin("openai-whisper");
        assert_eq!(p.deadline_ms, Some(1000));
        assert_eq!(p.config["model"], "whisper-1");
        assert_eq!(p.config["api_key"], "sk-test");
        assert_eq!(p.allowed_hosts, vec!["api.openai.com", "127.0.0.1:4000"]);
    }

    #[test]
    fn the_models_table_maps_model_names_to_providers() {
        let c = from_file("[models]\nwhisper-1 = \"replicate\"\nfast = \"openai-whisper\"\n").unwrap();
        assert_eq!(c.models["whisper-1"], "replicate");
        let err = from_file("[models]\nx = \"Not A Plugin\"\n").unwrap_err();
        assert!(err.to_string().contains("[models] x"), "{err}");
    }

    #[test]
    fn a_database_url_neither_sqlite_nor_postgres_stops_start_up() {
        let err = Config::from_vars(vars(&[("DATABASE_URL", "mysql://root@127.0.0.1/test")])).unwrap_err();
        assert!(err.to_string().starts_with("DATABASE_URL:") && err.to_string().contains("postgres://"), "{err}");
        let c = Config::from_vars(vars(&[("DATABASE_URL", "sqlite:///tmp/x.db")])).unwrap();
        assert_eq!(c.database_url.as_deref(), Some("sqlite:///tmp/x.db"));
        let c = Config::from_vars(vars(&[("DATABASE_URL", "postgres://postgres@127.0.0.1/test")])).unwrap();
        assert_eq!(c.database_url.as_deref(), Some("postgres://postgres@127.0.0.1/test"));
    }

    #[test]
    fn audio_goes_to_the_database_on_postgres_and_to_a_directory_otherwise() {
        let pg = ("DATABASE_URL", "postgres://postgres@127.0.0.1/test");
        let c = Config::from_vars(vars(&[("SCRIBE_DATA_DIR", "/d")])).unwrap();
        assert_eq!(c.audio_store, AudioStoreKind::Directory(PathBuf::from("/d/audio")));
        assert_eq!(Config::from_vars(vars(&[pg])).unwrap().audio_store, AudioStoreKind::Database);
        let shared = Config::from_vars(vars(&[pg, ("SCRIBE_AUDIO_STORE", "directory"), ("SCRIBE_AUDIO_DIR", "/shared")])).unwrap();
        assert_eq!(shared.audio_store, AudioStoreKind::Directory(PathBuf::from("/shared")));
        let err = Config::from_vars(vars(&[("SCRIBE_AUDIO_STORE", "database")])).unwrap_err().to_string();
        assert!(err.starts_with("SCRIBE_AUDIO_STORE:") && err.contains("postgres://"), "{err}");
        let err = Config::from_vars(vars(&[pg, ("SCRIBE_AUDIO_STORE", "s3")])).unwrap_err().to_string();
        assert!(err.starts_with("SCRIBE_AUDIO_STORE:"), "{err}");
        let err = Config::from_vars(vars(&[pg, ("SCRIBE_AUDIO_STORE", "bucket")])).unwrap_err().to_string();
        assert!(err.starts_with("SCRIBE_AUDIO_BUCKET_URL:"), "{err}");
        let bucket = vars(&[pg, ("SCRIBE_AUDIO_STORE", "bucket"), ("SCRIBE_AUDIO_BUCKET_URL", "s3://b/p"), ("AWS_REGION", "eu-west-1")]);
        let expected = AudioStoreKind::Bucket { url: "s3://b/p".into(), options: vec![("AWS_REGION".into(), "eu-west-1".into())] };
        assert_eq!(Config::from_vars(bucket).unwrap().audio_store, expected);
    }

    #[test]
    fn plugin_names_are_file_and_label_safe() {
        assert!(is_valid_plugin_name("openai-whisper"));
        assert!(is_valid_plugin_name("p2"));
        for bad in ["", "Upper", "../x", "a.b", "-lead", "a b", &"x".repeat(65)] {
            assert!(!is_valid_plugin_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_zero_plugin_limit_is_refused_naming_the_key() {
        let err = from_file("[plugins.x]\ndeadline_ms = 0\n").unwrap_err();
        assert!(err.to_string().starts_with("[plugins.x] deadline_ms"), "{err}");
    }

    #[test]
    fn unknown_plugin_keys_and_bad_urls_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scribe.toml");
        std::fs::write(&path, "[plugins.x]\nallowed_host = []\n").unwrap();
        let err = Config::from_vars(vars(&[("SCRIBE_CONFIG", path.to_str().unwrap())])).unwrap_err();
        assert!(err.to_string().contains("allowed_host"), "{err}");
        let err = Config::from_vars(vars(&[("OPENAI_BASE_URL", "ftp://x")])).unwrap_err();
        assert!(err.to_string().starts_with("OPENAI_BASE_URL"), "{err}");
    }
}
