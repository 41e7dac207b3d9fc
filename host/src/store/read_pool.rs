//! The SQLite store's read connections.
//!
//! sqlx's pool tests every connection when it is given back (a `ping`: a
//! round trip to the connection's worker thread, in a task of its own), so
//! a read cost two trips between threads instead of one; at thousands of
//! reads a second on two cores that was a tenth of a job's cost. A
//! connection to a local file does not go stale, and a read connection
//! holds no transaction to roll back, so these are handed back as they
//! are. At most `size` are open; a read waits for one up to the timeout.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::ConnectOptions;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{AcquireObserver, PoolUsage, StoreError, StoreResult};

/// Read connections to one database; cheap to clone (clones share them).
#[derive(Clone)]
pub struct ReadPool {
    inner: Arc<Inner>,
}

struct Inner {
    options: SqliteConnectOptions,
    /// Told how long each read waited for its connection.
    observer: OnceLock<AcquireObserver>,
    idle: Mutex<Vec<SqliteConnection>>,
    permits: Arc<Semaphore>,
    size: u32,
    timeout: Duration,
}

/// A read connection, back to its pool when dropped.
pub struct ReadConnection {
    connection: Option<SqliteConnection>,
    inner: Arc<Inner>,
    _permit: OwnedSemaphorePermit,
}

impl ReadPool {
    /// Up to `size` connections opened with `options` as reads need them;
    /// a read waits at most `timeout` for one.
    pub fn new(options: SqliteConnectOptions, size: u32, timeout: Duration) -> Self {
        let size = size.max(1);
        let permits = Arc::new(Semaphore::new(size as usize));
        let inner = Inner { options, observer: OnceLock::new(), idle: Mutex::default(), permits, size, timeout };
        Self { inner: Arc::new(inner) }
    }

    /// Sets the function told how long each read waited for a connection
    /// (whichever module reads); the first one set stays.
    pub fn observe_acquires(&self, observer: AcquireObserver) {
        let _ = self.inner.observer.set(observer);
    }

    /// A connection, its wait told to the observer.
    pub async fn acquire(&self) -> StoreResult<ReadConnection> {
        let started = Instant::now();
        let permit = tokio::time::timeout(self.inner.timeout, self.inner.permits.clone().acquire_owned())
            .await
            .map_err(|_| StoreError::Database(sqlx::Error::PoolTimedOut))?
            .map_err(|_| StoreError::Database(sqlx::Error::PoolClosed))?;
        let idle = self.inner.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let connection = match idle {
            Some(connection) => connection,
            None => self.inner.options.connect().await?,
        };
        if let Some(observe) = self.inner.observer.get() {
            observe(started.elapsed());
        }
        Ok(ReadConnection { connection: Some(connection), inner: self.inner.clone(), _permit: permit })
    }

    /// Connections in use, idle, and the most there may be.
    pub fn usage(&self) -> PoolUsage {
        let idle = self.inner.idle.lock().unwrap_or_else(|p| p.into_inner()).len() as u32;
        let in_use = self.inner.size - self.inner.permits.available_permits() as u32;
        PoolUsage { in_use, idle, max: self.inner.size }
    }
}

impl Deref for ReadConnection {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        self.connection.as_ref().expect("present until dropped")
    }
}

impl DerefMut for ReadConnection {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        self.connection.as_mut().expect("present until dropped")
    }
}

impl Drop for ReadConnection {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            self.inner.idle.lock().unwrap_or_else(|p| p.into_inner()).push(connection);
        }
    }
}
