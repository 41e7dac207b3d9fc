//! Waking the schedulers when there may be work: a submit, a resume, a
//! finished job (a free slot). Dispatch is event-driven, so a wake-up that
//! does not arrive leaves a job waiting.
//!
//! One instance needs only a [`Notify`]. Several instances on one
//! PostgreSQL database share one queue, so a submit on instance A must wake
//! the scheduler on B: each wake-up is also sent as `NOTIFY` on one channel,
//! which every instance `LISTEN`s to. Notifications are lost while a
//! listener's connection is down, so after reconnecting the instance wakes
//! itself once, and on PostgreSQL the scheduler also looks again every
//! `SCRIBE_FLEET_POLL_SECONDS` whatever happens (the slow poll that covers
//! anything missed).

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use tokio::sync::Notify;

/// The channel every instance listens on.
pub const CHANNEL: &str = "scribe_wake";

/// Wakes this instance's scheduler, and on PostgreSQL every instance's.
pub struct Wakeup {
    local: Arc<Notify>,
    /// Told to send one `NOTIFY` (wake-ups coalesce while one is in flight).
    fleet: Option<Arc<Notify>>,
    /// The slow poll on PostgreSQL.
    poll: Option<Duration>,
    /// The listener and sender tasks, stopped with this.
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Wakeup {
    fn drop(&mut self) {
        self.tasks.iter().for_each(tokio::task::JoinHandle::abort);
    }
}

impl Wakeup {
    /// Wake-ups within this process only (SQLite: one instance).
    pub fn local() -> Arc<Self> {
        Arc::new(Self { local: Arc::new(Notify::new()), fleet: None, poll: None, tasks: Vec::new() })
    }

    /// Wake-ups shared through the PostgreSQL database at `url`: starts a
    /// listener and a sender, each on its own connection. `poll` bounds how
    /// long a scheduler sleeps without a wake-up.
    pub async fn postgres(url: &str, poll: Duration) -> Result<Arc<Self>, sqlx::Error> {
        let pool = PgPoolOptions::new().max_connections(2).connect(url).await?;
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(CHANNEL).await?;
        let local = Arc::new(Notify::new());
        let send = Arc::new(Notify::new());
        let tasks = vec![tokio::spawn(listen(listener, local.clone())), tokio::spawn(notify_fleet(pool, send.clone()))];
        Ok(Arc::new(Self { local, fleet: Some(send), poll: Some(poll), tasks }))
    }

    /// There may be work: wake this scheduler and, on PostgreSQL, every
    /// other instance's. Never blocks.
    pub fn wake(&self) {
        self.local.notify_one();
        if let Some(fleet) = &self.fleet {
            fleet.notify_one();
        }
    }

    /// There may be work for this scheduler only (a slot of its own freed;
    /// the others hear of the job with the wake-up its outcome brings).
    pub fn wake_here(&self) {
        self.local.notify_one();
    }

    /// Resolves at the next wake-up (one stored if it came meanwhile).
    pub async fn notified(&self) {
        self.local.notified().await
    }

    /// The longest a scheduler may sleep without a wake-up: bounded on
    /// PostgreSQL, where a notification can be lost.
    pub fn poll_interval(&self) -> Option<Duration> {
        self.poll
    }
}

/// Passes every notification on to the local scheduler; when the
/// connection was lost (notifications may have been missed), wakes it once
/// and reconnects on the next receive.
async fn listen(mut listener: PgListener, local: Arc<Notify>) {
    loop {
        match listener.try_recv().await {
            Ok(Some(_)) => local.notify_one(),
            Ok(None) => {
                tracing::warn!("wake-up listener lost its connection; reconnecting");
                local.notify_one();
            }
            Err(e) => {
                tracing::warn!("wake-up listener: {e}; retrying in 1 s");
                local.notify_one();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Sends one `NOTIFY` per batch of wake-ups.
async fn notify_fleet(pool: PgPool, send: Arc<Notify>) {
    loop {
        send.notified().await;
        if let Err(e) = sqlx::query("SELECT pg_notify($1, '')").bind(CHANNEL).execute(&pool).await {
            tracing::warn!("could not wake the other instances: {e}");
        }
    }
}
