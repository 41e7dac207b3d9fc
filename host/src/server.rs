//! Wiring: builds the runtime and the router from a [`Config`] and serves
//! until shut down. Nothing here decides anything; it only connects.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use std::time::Duration;

use tokio::sync::{oneshot, Notify};

use crate::wakeup::Wakeup;

use crate::api::{self, AppState};
use crate::admission::{Admission, FleetAdmission, LocalAdmission};
use crate::audio::{AudioError, AudioStore, BucketAudioStore, DatabaseAudioStore, InlineAudioStore, LocalAudioStore, UrlFetcher};
use crate::cache::TranscriptCache;
use crate::config::{AudioStoreKind, Config};
use crate::metrics::Metrics;
use crate::plugins::{DirWatcher, Plugins, StartError};
use crate::scheduler::{Parts, Scheduler};
use crate::retention;
use crate::store::{self, Store, StoreError};

/// How long a shutdown waits for running provider calls to finish; the
/// rest keep their lease and run again after it expires.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Finished-attempt events buffered per listener; a listener that falls
/// further behind rereads its job from the store.
const JOB_EVENTS_CAPACITY: usize = 4096;

/// The server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The plugin runtime could not start.
    #[error(transparent)]
    Plugins(#[from] StartError),
    /// The store could not be opened (or migrated).
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    /// The plugin directory cannot be watched.
    #[error("cannot watch the plugin directory: {0}")]
    Watch(#[from] notify::Error),
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr} (SCRIBE_LISTEN): {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The audio store could not be set up (a bucket's settings).
    #[error("audio store (SCRIBE_AUDIO_STORE): {0}")]
    Audio(#[from] AudioError),
    /// The fleet's heartbeat or wake-ups could not start.
    #[error("cannot join the fleet on PostgreSQL: {0}")]
    Fleet(#[from] sqlx::Error),
    /// Serving failed.
    #[error("serving failed: {0}")]
    Serve(std::io::Error),
}

/// A started server: its address, its runtime, and the means to stop it.
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The plugin runtime it serves.
    pub plugins: Arc<Plugins>,
    /// Its metrics.
    pub metrics: Metrics,
    /// Its store (tests create users and read jobs through it).
    pub store: Arc<dyn Store>,
    /// Its audio store.
    pub audio: Arc<dyn AudioStore>,
    /// The schedulers' wake-up, after each accepted submit.
    pub wake: Arc<Wakeup>,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), ServerError>>,
    stop_dispatch: Arc<Notify>,
    scheduler: Option<tokio::task::JoinHandle<()>>,
    retention: tokio::task::JoinHandle<()>,
    presence: Option<Arc<crate::instances::Presence>>,
    _watcher: DirWatcher,
}

impl Running {
    /// Stops claiming jobs and lets running calls finish (up to
    /// [`DRAIN_TIMEOUT`]), stops accepting requests, finishes open ones, and
    /// returns. Queued jobs stay queued for the next start.
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        self.retention.abort();
        self.stop_dispatch.notify_one();
        if let Some(scheduler) = self.scheduler.take() {
            let _ = scheduler.await;
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let served = (&mut self.task).await.unwrap_or(Ok(()));
        if let Some(presence) = self.presence.take().and_then(|p| Arc::try_unwrap(p).ok()) {
            presence.leave().await;
        }
        served
    }
}

/// Starts the runtime, binds `config.listen` and serves in the background.
pub async fn start(config: Config) -> Result<Running, ServerError> {
    let listener = TcpListener::bind(config.listen).await.map_err(|source| ServerError::Bind { addr: config.listen, source })?;
    start_on(config, listener).await
}

/// Like [`start`], on a listener the caller bound (tests bind port 0).
pub async fn start_on(config: Config, listener: TcpListener) -> Result<Running, ServerError> {
    let addr = listener.local_addr().map_err(|source| ServerError::Bind { addr: config.listen, source })?;
    let metrics = Metrics::new();
    let plugins = Plugins::start(&config, metrics.clone()).await?;
    let watcher = plugins.watch()?;
    let store::Opened { store, postgres, sqlite } = store::open_backend(&config).await?;
    let acquire_seconds = metrics.db_pool_acquire_seconds.clone();
    store.observe_acquires(Arc::new(move |waited| acquire_seconds.observe(waited.as_secs_f64())));
    let audio: Arc<dyn AudioStore> = match (&config.audio_store, &postgres) {
        (AudioStoreKind::Database, Some(pg)) => Arc::new(DatabaseAudioStore::new(pg.pool().clone())),
        (AudioStoreKind::Directory(dir), _) => {
            let files = LocalAudioStore::new(dir.clone());
            match &sqlite {
                Some(db) if config.audio_inline_max_bytes > 0 => {
                    Arc::new(InlineAudioStore::new(db, files, config.audio_inline_max_bytes))
                }
                _ => Arc::new(files),
            }
        }
        (AudioStoreKind::Bucket { url, options }, _) => Arc::new(BucketAudioStore::from_url(url, options)?),
        (AudioStoreKind::Database, None) => unreachable!("the config refuses audio in SQLite"),
    };
    let instance = format!("scribe-{}-{}", std::process::id(), uuid::Uuid::now_v7());
    let (admission, presence): (Arc<dyn Admission>, _) = match &postgres {
        Some(pg) => {
            let presence = crate::instances::Presence::start(pg.pool().clone(), instance.clone()).await?;
            (Arc::new(FleetAdmission::new(pg.clone())), Some(Arc::new(presence)))
        }
        None => (Arc::new(LocalAdmission::new(store.clone())), None),
    };
    metrics.instance_info.with_label_values(&[instance.as_str()]).set(1);
    let wake = match (&postgres, config.database_url.as_deref()) {
        (Some(_), Some(url)) => Wakeup::postgres(url, Duration::from_secs(config.fleet_poll_seconds)).await?,
        _ => Wakeup::local(),
    };
    let cache = Arc::new(TranscriptCache::new(&config, metrics.clone()));
    let (job_events, _) = tokio::sync::broadcast::channel(JOB_EVENTS_CAPACITY);
    let activity = Arc::new(crate::activity::Activity::default());
    let state = Arc::new(AppState {
        cache: cache.clone(),
        plugins: plugins.clone(),
        metrics: metrics.clone(),
        store: store.clone(),
        users: Arc::new(crate::users::Authenticator::new(store.clone())),
        queue_limit: crate::api::QueueLimit::new(config.max_queue_length),
        audio: audio.clone(),
        fetcher: UrlFetcher::new(config.audio_url_allow_private, config.audio_url_timeout_ms),
        wake: wake.clone(),
        job_events: job_events.clone(),
        admission: admission.clone(),
        presence: presence.clone(),
        activity: activity.clone(),
        config: Arc::new(config),
        instance,
    });
    let retention = retention::spawn(
        store.clone(),
        audio.clone(),
        Duration::from_secs(state.config.audio_retention_hours.saturating_mul(3600)),
    );
    let stop_dispatch = Arc::new(Notify::new());
    let scheduler = state.config.dispatch.then(|| {
        let scheduler = Scheduler::new(Parts {
            config: state.config.clone(),
            store: store.clone(),
            audio: audio.clone(),
            plugins: plugins.clone(),
            admission,
            cache,
            wake: wake.clone(),
            job_events,
            metrics: metrics.clone(),
            activity,
            owner: state.instance.clone(),
        });
        tokio::spawn(scheduler.run(stop_dispatch.clone(), DRAIN_TIMEOUT))
    });
    let (tx, rx) = oneshot::channel::<()>();
    let app = api::router(state);
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await
            .map_err(ServerError::Serve)
    });
    tracing::info!(%addr, "scribe is listening");
    Ok(Running {
        addr,
        plugins,
        metrics,
        store,
        audio,
        wake,
        shutdown: Some(tx),
        task,
        stop_dispatch,
        scheduler,
        retention,
        presence,
        _watcher: watcher,
    })
}
