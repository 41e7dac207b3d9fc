//! Group commit: every write of the SQLite store goes through one writer
//! task, which runs the writes that are waiting together in one
//! transaction and answers each only after that transaction committed.
//!
//! A commit with `synchronous = FULL` costs a flush (about 95 us on this
//! kind of disk), and SQLite has one writer at a time anyway; so concurrent
//! submits, claims and finishes that each paid their own flush were capped
//! near 3,000 writes/s, while sharing a flush among up to [`MAX_BATCH`]
//! writes lifts that cap without weakening durability: nothing is
//! acknowledged before its commit (design.md, "Storage"). Each write is
//! still its own guarded statement; a statement that fails (a constraint)
//! fails alone, and a commit that fails fails every write in it.

use futures_util::future::BoxFuture;
use sqlx::sqlite::SqliteConnection;
use sqlx::Connection;
use tokio::sync::{mpsc, oneshot};

use super::{StoreError, StoreResult};

/// The most writes sharing one transaction.
pub const MAX_BATCH: usize = 64;

/// Sends one write's answer once its transaction's fate is known.
type Deliver = Box<dyn FnOnce(Result<(), &sqlx::Error>) + Send>;
/// One write, run inside the writer's open transaction.
type Op = Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Deliver> + Send>;

/// The handle writes are sent through; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    ops: mpsc::UnboundedSender<Op>,
}

impl Writer {
    /// Starts the writer task on `connection` (which it owns from now on).
    pub fn start(connection: SqliteConnection) -> Self {
        let (ops, queue) = mpsc::unbounded_channel();
        tokio::spawn(run(connection, queue));
        Self { ops }
    }

    /// Runs `statement` in the next group transaction; its answer once that
    /// transaction committed.
    pub async fn write<T, F>(&self, statement: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, sqlx::Error>> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel::<StoreResult<T>>();
        let op: Op = Box::new(move |connection| {
            Box::pin(async move {
                let result = statement(connection).await;
                Box::new(move |commit: Result<(), &sqlx::Error>| {
                    let outcome = match (result, commit) {
                        (Err(e), _) => Err(StoreError::Database(e)),
                        (Ok(_), Err(e)) => Err(StoreError::Commit(e.to_string())),
                        (Ok(value), Ok(())) => Ok(value),
                    };
                    let _ = answer.send(outcome);
                }) as Deliver
            })
        });
        self.ops.send(op).map_err(|_| StoreError::Commit("the store's writer has stopped".into()))?;
        answered.await.map_err(|_| StoreError::Commit("the write was not run: the store could not start a transaction, or its writer stopped".into()))?
    }
}

/// Takes the waiting writes (up to [`MAX_BATCH`]), runs them in one
/// transaction, commits, then answers them; until every handle is gone.
async fn run(mut connection: SqliteConnection, mut queue: mpsc::UnboundedReceiver<Op>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        if let Err(error) = sqlx::query("BEGIN IMMEDIATE").execute(&mut connection).await {
            // Nothing runs outside a transaction: the writes are dropped
            // unrun, and their callers get an error.
            tracing::error!(%error, writes = batch.len(), "the store could not start a transaction");
            batch.clear();
            continue;
        }
        let mut delivers = Vec::with_capacity(batch.len());
        for op in batch.drain(..) {
            delivers.push(op(&mut connection).await);
        }
        let commit = sqlx::query("COMMIT").execute(&mut connection).await.map(|_| ());
        if commit.is_err() {
            let _ = sqlx::query("ROLLBACK").execute(&mut connection).await;
        }
        for deliver in delivers {
            deliver(commit.as_ref().map(|_| ()));
        }
    }
    let _ = connection.close().await;
}
