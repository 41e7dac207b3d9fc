//! The SQLite store's read connections.
//!
//! A read runs on the calling task's thread, on a plain (rusqlite)
//! connection taken from here. It is a few B-tree seeks in pages the OS
//! holds, and in WAL mode a reader never waits for the writer; handing it
//! to another thread instead (sqlx runs each connection on a thread of its
//! own) cost two thread wake-ups per read, which on two busy cores was more
//! than the read. At most `size` connections are open; a read waits for
//! one up to the timeout, and that wait is what the acquire observer is
//! told.

use std::ops::Deref;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::rows::{query_rows, NamedRow};
use super::{AcquireObserver, PoolUsage, StoreError, StoreResult};

/// Read connections to one database; cheap to clone (clones share them).
#[derive(Clone)]
pub struct ReadPool {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// Told how long each read waited for its connection.
    observer: OnceLock<AcquireObserver>,
    idle: Mutex<Vec<rusqlite::Connection>>,
    permits: Arc<Semaphore>,
    size: u32,
    timeout: Duration,
}

/// A read connection, back to its pool when dropped.
pub struct ReadConnection {
    connection: Option<rusqlite::Connection>,
    inner: Arc<Inner>,
    _permit: OwnedSemaphorePermit,
}

impl ReadPool {
    /// Up to `size` connections to the database file at `path`, opened as
    /// reads need them; a read waits at most `timeout` for one, and as long
    /// again for a lock.
    pub fn new(path: PathBuf, size: u32, timeout: Duration) -> Self {
        let size = size.max(1);
        let permits = Arc::new(Semaphore::new(size as usize));
        let inner = Inner { path, observer: OnceLock::new(), idle: Mutex::default(), permits, size, timeout };
        Self { inner: Arc::new(inner) }
    }

    /// Sets the function told how long each read waited for a connection
    /// (whichever module reads); the first one set stays.
    pub fn observe_acquires(&self, observer: AcquireObserver) {
        let _ = self.inner.observer.set(observer);
    }

    /// A connection, its wait told to the observer.
    async fn acquire(&self) -> StoreResult<ReadConnection> {
        let started = Instant::now();
        let permit = tokio::time::timeout(self.inner.timeout, self.inner.permits.clone().acquire_owned())
            .await
            .map_err(|_| StoreError::Database(sqlx::Error::PoolTimedOut))?
            .map_err(|_| StoreError::Database(sqlx::Error::PoolClosed))?;
        let idle = self.inner.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let connection = match idle {
            Some(connection) => connection,
            // Opening waits for a lock like the writer does (it is rare:
            // at most `size` times); its reads then do not (see `rows`).
            None => {
                let connection = super::connect::connect(&self.inner.path, self.inner.timeout)?;
                connection.busy_timeout(Duration::ZERO)?;
                connection
            }
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
    type Target = rusqlite::Connection;

    fn deref(&self) -> &rusqlite::Connection {
        self.connection.as_ref().expect("present until dropped")
    }
}

impl Drop for ReadConnection {
    /// Back to the pool, unless a transaction is still open on it (its end
    /// failed): that connection would keep its old snapshot, so it is
    /// closed instead.
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take().filter(|c| c.is_autocommit()) {
            self.inner.idle.lock().unwrap_or_else(|p| p.into_inner()).push(connection);
        }
    }
}

impl ReadPool {
    /// The rows `sql` selects with `params`, each decoded by `decode`: a
    /// short read (a lookup by key, the scheduler's reads), run on the
    /// calling task's thread. If the database is locked (rare in WAL: a
    /// reader waits only while another connection recovers or resets the
    /// log) the task sleeps and tries again, up to the timeout, so no
    /// runtime thread is held waiting.
    pub async fn rows<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params + Clone + Send,
        decode: impl Fn(&NamedRow<'_, '_>) -> StoreResult<T> + Send,
    ) -> StoreResult<Vec<T>> {
        let connection = self.acquire().await?;
        self.retrying(connection, move |c| query_rows(c, sql, params.clone(), &decode)).await
    }

    /// Runs `read`, several statements, on one connection in one read
    /// transaction, on the calling task's thread (retried as
    /// [`ReadPool::rows`] is): its statements see one snapshot, and the
    /// pages they share are read once (SQLite empties a connection's page
    /// cache when a read transaction begins after a write, so each
    /// statement on its own would read them again).
    pub async fn snapshot<T>(&self, read: impl Fn(&rusqlite::Connection) -> StoreResult<T> + Send) -> StoreResult<T> {
        let connection = self.acquire().await?;
        self.retrying(connection, move |c| in_read_transaction(c, &read)).await
    }

    /// `read` on `connection`, again after [`BUSY_PAUSE`] while the
    /// database is locked, up to the timeout.
    async fn retrying<T>(
        &self,
        connection: ReadConnection,
        read: impl Fn(&rusqlite::Connection) -> StoreResult<T> + Send,
    ) -> StoreResult<T> {
        let deadline = Instant::now() + self.inner.timeout;
        loop {
            match read(&connection) {
                Err(e) if is_busy(&e) && Instant::now() < deadline => tokio::time::sleep(BUSY_PAUSE).await,
                done => return done,
            }
        }
    }

    /// [`ReadPool::rows`] for a read whose cost grows with the table (a
    /// count, a page of a listing, the operator's views): run on tokio's
    /// blocking threads, so a long one holds no runtime thread.
    pub async fn rows_aside<T: Send + 'static>(
        &self,
        sql: impl AsRef<str> + Send + 'static,
        params: impl rusqlite::Params + Clone + Send + 'static,
        decode: impl Fn(&NamedRow<'_, '_>) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<Vec<T>> {
        let connection = self.acquire().await?;
        let deadline = Instant::now() + self.inner.timeout;
        let read = move || loop {
            match query_rows(&connection, sql.as_ref(), params.clone(), &decode) {
                Err(e) if is_busy(&e) && Instant::now() < deadline => std::thread::sleep(BUSY_PAUSE),
                done => return done,
            }
        };
        tokio::task::spawn_blocking(read).await.map_err(|_| StoreError::Database(sqlx::Error::WorkerCrashed))?
    }

    /// The first column of the rows `sql` selects with `params`.
    pub async fn column<T: rusqlite::types::FromSql>(
        &self,
        sql: &str,
        params: impl rusqlite::Params + Clone + Send,
    ) -> StoreResult<Vec<T>> {
        self.rows(sql, params, |row| Ok(row.get(0)?)).await
    }

    /// The first column of the first row `sql` selects with `params`, if
    /// there is one.
    pub async fn scalar<T: rusqlite::types::FromSql>(
        &self,
        sql: &str,
        params: impl rusqlite::Params + Clone + Send,
    ) -> StoreResult<Option<T>> {
        Ok(self.column(sql, params).await?.into_iter().next())
    }
}

/// `read` between `BEGIN` and its end: `COMMIT` when it succeeded,
/// `ROLLBACK` otherwise (a read transaction changes nothing either way).
fn in_read_transaction<T>(
    connection: &rusqlite::Connection,
    read: &impl Fn(&rusqlite::Connection) -> StoreResult<T>,
) -> StoreResult<T> {
    connection.prepare_cached("BEGIN")?.execute([])?;
    let result = read(connection);
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    let ended = connection.prepare_cached(end).and_then(|mut statement| statement.execute([]));
    match (result, ended) {
        (Ok(_), Err(e)) => Err(e.into()),
        (result, _) => result,
    }
}

/// How long a read waits before trying a locked database again.
const BUSY_PAUSE: Duration = Duration::from_millis(2);

/// Whether `error` is SQLite saying the database is locked for now.
fn is_busy(error: &StoreError) -> bool {
    use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked};
    matches!(error, StoreError::Sqlite(e) if matches!(e.sqlite_error_code(), Some(DatabaseBusy | DatabaseLocked)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_left_inside_a_transaction_is_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reads.db");
        rusqlite::Connection::open(&path).unwrap().execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        let pool = ReadPool::new(path, 2, Duration::from_secs(1));
        drop(pool.acquire().await.unwrap());
        assert_eq!(pool.usage().idle, 1, "a clean connection goes back");
        let stuck = pool.acquire().await.unwrap();
        stuck.execute_batch("BEGIN; SELECT COUNT(*) FROM t;").unwrap();
        drop(stuck);
        assert_eq!(pool.usage().idle, 0, "one still in a transaction is closed");
        assert_eq!(pool.scalar::<i64>("SELECT COUNT(*) FROM t", []).await.unwrap(), Some(0), "and the next read opens a new one");
    }
}
