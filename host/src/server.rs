//! Wiring: builds the runtime and the router from a [`Config`] and serves
//! until shut down. Nothing here decides anything; it only connects.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::api::{self, AppState};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::plugins::{DirWatcher, Plugins, StartError};

/// The server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The plugin runtime could not start.
    #[error(transparent)]
    Plugins(#[from] StartError),
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
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), ServerError>>,
    _watcher: DirWatcher,
}

impl Running {
    /// Stops accepting, finishes open requests, and returns.
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        (&mut self.task).await.unwrap_or(Ok(()))
    }

    /// Waits until the server stops (on its own or through a signal).
    pub async fn wait(mut self) -> Result<(), ServerError> {
        (&mut self.task).await.unwrap_or(Ok(()))
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
    let state = Arc::new(AppState { config: Arc::new(config), plugins: plugins.clone(), metrics: metrics.clone() });
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
    Ok(Running { addr, plugins, metrics, shutdown: Some(tx), task, _watcher: watcher })
}
