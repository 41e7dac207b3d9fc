//! Group commit: every write of the SQLite store goes through one writer
//! thread, which runs the writes that are waiting together in one
//! transaction and answers each only after that transaction committed.
//!
//! A commit with `synchronous = FULL` costs a flush (95 to 230 us on the
//! disks this runs on), and SQLite has one writer at a time anyway; so
//! concurrent submits, claims and finishes that each paid their own flush
//! were capped near 3,000 writes/s, while sharing a flush among up to
//! [`MAX_BATCH`] writes lifts that cap without weakening durability:
//! nothing is acknowledged before its commit (design.md, "Storage"). Each
//! write is still its own guarded statement; a statement that fails (a
//! constraint) fails alone, and a commit that fails fails every write in
//! it.
//!
//! The writer is a thread of its own with a plain (rusqlite) connection,
//! not an async sqlx connection: the writes of a group run one after
//! another, and with sqlx each statement was a round trip between the
//! writer task and the connection's worker thread. On two busy cores those
//! trips, not SQLite, were most of the writer's time (about 180 us per
//! statement, measured), and the writer is the one serial part of the
//! store.

use std::path::Path;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{StoreError, StoreResult};

/// The most writes sharing one transaction.
pub const MAX_BATCH: usize = 64;

/// Sends one write's answer once its transaction's fate is known.
type Deliver = Box<dyn FnOnce(Result<(), &rusqlite::Error>) + Send>;
/// One write, run inside the writer's open transaction.
type Op = Box<dyn FnOnce(&rusqlite::Connection) -> Deliver + Send>;

/// The handle writes are sent through; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    ops: mpsc::UnboundedSender<Op>,
}

impl Writer {
    /// Opens the database file at `path` (its schema already migrated) and
    /// starts the writer thread on that connection; it stops when every
    /// handle is gone.
    pub fn start(path: &Path, busy_timeout: Duration) -> StoreResult<Self> {
        let connection = super::connect::connect(path, busy_timeout)?;
        let (ops, queue) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("scribe-writer".into())
            .spawn(move || run(connection, queue))
            .map_err(|e| StoreError::Commit(format!("the store's writer thread did not start: {e}")))?;
        Ok(Self { ops })
    }

    /// Runs `statement` in the next group transaction (on the writer
    /// thread: it must not block on anything but the database); its answer
    /// once that transaction committed.
    pub async fn write<T, F>(&self, statement: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection) -> StoreResult<T> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel::<StoreResult<T>>();
        let op: Op = Box::new(move |connection| {
            let result = statement(connection);
            Box::new(move |commit: Result<(), &rusqlite::Error>| {
                let outcome = match (result, commit) {
                    (Err(e), _) => Err(e),
                    (Ok(_), Err(e)) => Err(StoreError::Commit(e.to_string())),
                    (Ok(value), Ok(())) => Ok(value),
                };
                let _ = answer.send(outcome);
            })
        });
        self.ops.send(op).map_err(|_| StoreError::Commit("the store's writer has stopped".into()))?;
        answered.await.map_err(|_| StoreError::Commit("the write was not run: the store could not start a transaction, or its writer stopped".into()))?
    }
}

/// Takes the waiting writes (up to [`MAX_BATCH`]), runs them in one
/// transaction, commits, then answers them; until every handle is gone.
fn run(connection: rusqlite::Connection, mut queue: mpsc::UnboundedReceiver<Op>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        if let Err(error) = connection.execute_batch("BEGIN IMMEDIATE") {
            // Nothing runs outside a transaction: the writes are dropped
            // unrun, and their callers get an error.
            tracing::error!(%error, writes = batch.len(), "the store could not start a transaction");
            batch.clear();
            continue;
        }
        let delivers: Vec<Deliver> = batch.drain(..).map(|op| op(&connection)).collect();
        let commit = connection.execute_batch("COMMIT");
        if commit.is_err() {
            let _ = connection.execute_batch("ROLLBACK");
        }
        for deliver in delivers {
            deliver(commit.as_ref().map(|_| ()));
        }
    }
}
