//! Group commit: every write of the SQLite store goes through one writer
//! thread, which runs the writes that are waiting together in one
//! transaction and answers each only after that transaction committed.
//!
//! A durable commit costs a flush (95 to 300 us on the disks this runs
//! on), and SQLite has one writer at a time anyway; so concurrent submits,
//! claims and finishes that each paid their own flush were capped near
//! 3,000 writes/s, while sharing a flush among up to [`MAX_BATCH`] writes
//! lifts that cap without weakening durability: nothing is acknowledged
//! before its commit is on disk (design.md, "Storage"; a claim, which only
//! the scheduler hears of, is the one exception: see below). Each
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
//!
//! A write may also be sent without waiting for its commit
//! ([`Writer::send`]), and a later write made to commit only with it
//! ([`Writer::write_after`]): a submit's audio row and its job then share
//! one commit instead of waiting for two in a row, and the job can never
//! commit without its audio. The writer runs writes in the order they were
//! sent, and settles a group's fate in SQLite (committed, or failed and
//! answered) before it starts the next, so when the later write runs, the
//! earlier one has either failed, or committed in an earlier transaction,
//! or ran in the same one (and commits or fails with it).
//!
//! The writer's COMMIT does not wait for the disk (but for its occasional
//! checkpoint): the group's answers go to the [`Flusher`](super::flush),
//! which flushes the log and then answers them, while the writer runs the
//! next group. A write is answered (and a sent write counts as committed)
//! only once flushed; a group may commit on top of one still flushing,
//! since a later commit is durable only with every earlier one. A write
//! whose loss in an operating-system crash costs nothing (a claim: its job
//! is then still queued) may be answered at its COMMIT instead
//! ([`Answered::Committed`]), so the scheduler's next round, which reads
//! the claims, does not wait for the disk.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::flush::{Answer, Flush, Flusher, WalFile};
use super::{StoreError, StoreResult};

/// The most writes sharing one transaction.
pub const MAX_BATCH: usize = 64;

/// WAL pages past which a commit checkpoints (SQLite's default is 1,000),
/// and so about the largest the log grows while readers let a checkpoint
/// copy it whole (it is then written again from its start): 16 MB at 4 KB
/// a page. A read transaction held open across checkpoints (a long
/// listing) can make it grow past that until one completes.
///
/// A job's writes dirty the same index and count pages over and over, and a
/// checkpoint copies each page once however often it changed, with two
/// fsyncs; so four times fewer of them cost the writer less (throughput
/// 3-4 % up in the bench), for a longer pause at each.
pub const WAL_CHECKPOINT_PAGES: u32 = 4_000;

/// One write: run inside the writer's open transaction, it returns how to
/// answer it once its transaction's fate is known; answered once that is
/// durable, or (see [`Answered`]) as soon as it committed.
struct Op {
    run: Box<dyn FnOnce(&rusqlite::Connection) -> Answer + Send>,
    answered: Answered,
}

/// When a write's caller hears it committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    /// Once its commit is on disk: what every write that is acknowledged
    /// to a client, or that records something done, needs.
    Flushed,
    /// Once it committed (other connections read it), before the flush: for
    /// a write whose loss in an operating-system crash costs nothing, as a
    /// claim's (the job is then simply still queued). Every later write
    /// commits after it, so none can outlive it on disk.
    Committed,
}

/// Numbers the writers of this process, so a [`PendingWrite`] knows whose
/// it is.
static WRITERS: AtomicU64 = AtomicU64::new(0);

/// The handle writes are sent through; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    ops: mpsc::UnboundedSender<Op>,
    id: u64,
}

/// What became of a write sent with [`Writer::send`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fate {
    /// Not run yet (or dropped unrun, when its sender is gone).
    Waiting,
    /// Ran without error in the writer's transaction, which is open or
    /// committed but not yet flushed.
    Ran,
    /// Its transaction committed and is on disk.
    Committed,
    /// The statement or its transaction failed (the write did not
    /// happen), or its flush did (it may not have).
    Failed(String),
}

/// A write sent to the writer whose commit was not awaited
/// ([`Writer::send`]). A later write can be made to commit only with it
/// ([`Writer::write_after`]), and its commit can be awaited.
#[derive(Debug, Clone)]
pub struct PendingWrite {
    writer: u64,
    fate: watch::Receiver<Fate>,
}

impl PendingWrite {
    /// Returns once the write committed; an error if it did not.
    pub async fn committed(&self) -> StoreResult<()> {
        let mut fate = self.fate.clone();
        let settled = fate.wait_for(|f| matches!(f, Fate::Committed | Fate::Failed(_))).await.map(|f| f.clone());
        match settled {
            Ok(Fate::Committed) => Ok(()),
            Ok(Fate::Failed(why)) => Err(StoreError::DependencyFailed(why)),
            _ => Err(StoreError::DependencyFailed("the store's writer dropped it unrun".into())),
        }
    }

    /// On the writer thread, just before a write that must commit only
    /// with this one: whether this one has committed, or ran in the same
    /// or an earlier transaction (a later commit is durable only with
    /// every earlier one: see [`super::flush`]); otherwise why not.
    fn check_before_follower(&self) -> StoreResult<()> {
        match &*self.fate.borrow() {
            Fate::Ran | Fate::Committed => Ok(()),
            Fate::Failed(why) => Err(StoreError::DependencyFailed(why.clone())),
            Fate::Waiting => Err(StoreError::DependencyFailed("it has not run (dropped unrun, or sent after)".into())),
        }
    }
}

impl Writer {
    /// Opens the database file at `path` (its schema already migrated) and
    /// starts the writer thread on that connection, its commits flushed
    /// by a [`Flusher`] of the file's WAL; it stops when every handle is
    /// gone.
    pub fn start(path: &Path, busy_timeout: Duration) -> StoreResult<Self> {
        Self::start_flushed_by(path, busy_timeout, WalFile::open)
    }

    /// [`Writer::start`], with commits made durable by `flush`, made once
    /// the writer's connection is open.
    pub fn start_flushed_by<F: Flush>(
        path: &Path,
        busy_timeout: Duration,
        flush: impl FnOnce(&Path) -> std::io::Result<F>,
    ) -> StoreResult<Self> {
        let connection = super::connect::connect(path, busy_timeout)?;
        // The commit itself does not flush; the flusher does (and answers).
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        connection.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)?;
        // A read opens (or makes) the WAL, which stays while this
        // connection is open.
        connection.query_row("SELECT COUNT(*) FROM sqlite_schema", [], |_| Ok(()))?;
        let flush = flush(path).map_err(|e| StoreError::Commit(format!("the store's log could not be opened: {e}")))?;
        let not_started = |e: std::io::Error| StoreError::Commit(format!("the store's writer did not start: {e}"));
        let flusher = Flusher::start(flush).map_err(not_started)?;
        let (ops, queue) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("scribe-writer".into())
            .spawn(move || run(connection, queue, flusher))
            .map_err(not_started)?;
        Ok(Self { ops, id: WRITERS.fetch_add(1, Ordering::Relaxed) })
    }

    /// Sends `statement` to run in the next group transaction without
    /// waiting for its commit: what became of it is the returned
    /// [`PendingWrite`]'s to tell.
    pub fn send<F>(&self, statement: F) -> StoreResult<PendingWrite>
    where
        F: FnOnce(&rusqlite::Connection) -> StoreResult<()> + Send + 'static,
    {
        let (tell, fate) = watch::channel(Fate::Waiting);
        let op = Op::flushed(move |connection| {
            let ran = statement(connection);
            tell.send_replace(match &ran {
                Ok(()) => Fate::Ran,
                Err(e) => Fate::Failed(e.to_string()),
            });
            Box::new(move |commit: Result<(), &str>| {
                if ran.is_ok() {
                    tell.send_replace(match commit {
                        Ok(()) => Fate::Committed,
                        Err(e) => Fate::Failed(format!("database commit: {e}")),
                    });
                }
            })
        });
        self.ops.send(op).map_err(|_| StoreError::Commit("the store's writer has stopped".into()))?;
        Ok(PendingWrite { writer: self.id, fate })
    }

    /// [`Writer::write`], committing only if `after` (when given) commits
    /// too: it runs only if `after` has committed (flushed or not) or ran
    /// earlier in the same transaction, and fails with
    /// [`StoreError::DependencyFailed`] otherwise. A write another writer
    /// is pending on is awaited until flushed first.
    pub async fn write_after<T, F>(&self, after: Option<&PendingWrite>, statement: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection) -> StoreResult<T> + Send + 'static,
    {
        let Some(after) = after else { return self.write(statement).await };
        if after.writer != self.id {
            after.committed().await?;
            return self.write(statement).await;
        }
        let after = after.clone();
        self.write(move |connection| {
            after.check_before_follower()?;
            statement(connection)
        })
        .await
    }

    /// Runs `statement` in the next group transaction (on the writer
    /// thread: it must not block on anything but the database); its answer
    /// once that transaction committed and was flushed.
    pub async fn write<T, F>(&self, statement: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection) -> StoreResult<T> + Send + 'static,
    {
        self.write_answered(Answered::Flushed, statement).await
    }

    /// [`Writer::write`], answered when `answered` says: once flushed, or
    /// once committed.
    pub async fn write_answered<T, F>(&self, answered: Answered, statement: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection) -> StoreResult<T> + Send + 'static,
    {
        let (answer, answer_received) = oneshot::channel::<StoreResult<T>>();
        let run = Box::new(move |connection: &rusqlite::Connection| -> Answer {
            let result = statement(connection);
            Box::new(move |commit: Result<(), &str>| {
                let outcome = match (result, commit) {
                    (Err(e), _) => Err(e),
                    (Ok(_), Err(e)) => Err(StoreError::Commit(e.to_string())),
                    (Ok(value), Ok(())) => Ok(value),
                };
                let _ = answer.send(outcome);
            })
        });
        self.ops.send(Op { run, answered }).map_err(|_| StoreError::Commit("the store's writer has stopped".into()))?;
        answer_received.await.map_err(|_| {
            StoreError::Commit("the write was not run: the store could not start a transaction, an earlier flush failed, or its writer stopped".into())
        })?
    }
}

impl Op {
    /// A write answered once its commit is flushed.
    fn flushed(run: impl FnOnce(&rusqlite::Connection) -> Answer + Send + 'static) -> Self {
        Self { run: Box::new(run), answered: Answered::Flushed }
    }
}

/// Takes the waiting writes (up to [`MAX_BATCH`]), runs them in one
/// transaction, commits, answers those answered at commit and hands the
/// others' answers to `flusher`; until every handle is gone.
fn run(connection: rusqlite::Connection, mut queue: mpsc::UnboundedReceiver<Op>, flusher: Flusher) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        if let Some(why) = flusher.failure() {
            // Nothing after a failed flush could be answered as durable.
            tracing::error!(why, writes = batch.len(), "a write was refused: the store's log could not be flushed");
            batch.clear();
            continue;
        }
        if let Err(error) = connection.execute_batch("BEGIN IMMEDIATE") {
            // Nothing runs outside a transaction: the writes are dropped
            // unrun, and their callers get an error.
            tracing::error!(%error, writes = batch.len(), "the store could not start a transaction");
            batch.clear();
            continue;
        }
        let mut answers: Vec<Answer> = Vec::with_capacity(batch.len());
        let mut at_commit: Vec<Answer> = Vec::new();
        for op in batch.drain(..) {
            if connection.is_autocommit() {
                // SQLite rolled the whole transaction back (it may, on a
                // full disk or an I/O error): a write run now would commit
                // on its own, ahead of the writes it follows. The rest are
                // dropped unrun (their callers get an error), and the
                // COMMIT below fails the ones that ran.
                break;
            }
            let answer = (op.run)(&connection);
            match op.answered {
                Answered::Flushed => answers.push(answer),
                Answered::Committed => at_commit.push(answer),
            }
        }
        match connection.execute_batch("COMMIT") {
            Ok(()) => {
                // A flush that failed while this group ran poisoned the
                // writer: nothing later will be written, so a claim that
                // goes on to a provider call could never record its outcome.
                let poisoned = flusher.failure();
                for answer in at_commit {
                    answer(poisoned.map_or(Ok(()), Err));
                }
                flusher.committed(answers);
            }
            Err(error) => {
                answers.append(&mut at_commit);
                let _ = connection.execute_batch("ROLLBACK");
                // Answered here, before the next group runs: a write that
                // must commit with one of these sees it failed.
                let why = error.to_string();
                for answer in answers {
                    answer(Err(&why));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer on a new database with one table `t (x)`, and a way to
    /// count its rows.
    async fn writer_on(dir: &tempfile::TempDir) -> (Writer, impl Fn() -> i64) {
        let path = dir.path().join("writes.db");
        rusqlite::Connection::open(&path).unwrap().execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        let writer = Writer::start(&path, Duration::from_secs(1)).unwrap();
        let count = move || rusqlite::Connection::open(&path).unwrap().query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)).unwrap();
        (writer, count)
    }

    fn insert(x: i64) -> impl FnOnce(&rusqlite::Connection) -> StoreResult<()> + Send + 'static {
        move |c| Ok(c.execute("INSERT INTO t (x) VALUES (?1)", [x]).map(|_| ())?)
    }

    fn failing(c: &rusqlite::Connection) -> StoreResult<()> {
        Ok(c.execute("INSERT INTO missing (x) VALUES (1)", []).map(|_| ())?)
    }

    #[tokio::test]
    async fn a_write_after_a_sent_write_commits_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, count) = writer_on(&dir).await;
        let sent = writer.send(insert(1)).unwrap();
        writer.write_after(Some(&sent), insert(2)).await.expect("the follower commits");
        sent.committed().await.expect("and the write it followed had committed");
        assert_eq!(count(), 2);
    }

    #[tokio::test]
    async fn a_write_after_a_failed_write_does_not_happen() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, count) = writer_on(&dir).await;
        let sent = writer.send(failing).unwrap();
        let refused = writer.write_after(Some(&sent), insert(2)).await.expect_err("the follower is refused");
        assert!(matches!(refused, StoreError::DependencyFailed(ref why) if why.contains("missing")), "{refused}");
        assert!(matches!(sent.committed().await, Err(StoreError::DependencyFailed(_))));
        writer.write(insert(3)).await.expect("other writes go on");
        assert_eq!(count(), 1, "only the unrelated write happened");
    }

    /// SQLite may end a transaction itself when a statement fails (a full
    /// disk, an I/O error); here a write does it with a ROLLBACK.
    #[tokio::test]
    async fn no_write_commits_alone_after_its_groups_transaction_ended() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, count) = writer_on(&dir).await;
        // Held until all three are sent, so they share one group.
        let (hold, held) = std::sync::mpsc::channel::<()>();
        writer.send(move |_| Ok(held.recv().unwrap_or(()))).unwrap();
        let audio = writer.send(insert(1)).unwrap();
        let ended = writer.send(|c| Ok(c.execute_batch("ROLLBACK")?)).unwrap();
        let mut follower = Box::pin(writer.write_after(Some(&audio), insert(2)));
        assert!(futures_util::poll!(&mut follower).is_pending(), "polled once: sent");
        let unrelated = writer.send(insert(3)).unwrap();
        hold.send(()).unwrap();
        assert!(follower.await.is_err(), "the follower did not happen");
        for write in [audio, ended, unrelated] {
            assert!(write.committed().await.is_err());
        }
        assert_eq!(count(), 0, "nothing committed on its own");
    }

    /// A flush that tells the test it started, then waits for the test to
    /// say how it ends.
    struct HeldFlush {
        started: std::sync::mpsc::Sender<()>,
        ends: std::sync::mpsc::Receiver<std::io::Result<()>>,
    }

    impl Flush for HeldFlush {
        fn flush(&mut self) -> std::io::Result<()> {
            let _ = self.started.send(());
            self.ends.recv().unwrap_or(Ok(()))
        }
    }

    /// A writer whose flushes the test holds: (writer, row count, a flush
    /// started, end the flush).
    fn held_writer(
        dir: &tempfile::TempDir,
    ) -> (Writer, impl Fn() -> i64, std::sync::mpsc::Receiver<()>, std::sync::mpsc::Sender<std::io::Result<()>>) {
        let path = dir.path().join("writes.db");
        rusqlite::Connection::open(&path).unwrap().execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER)").unwrap();
        let ((tell_started, started), (end, ends)) = (std::sync::mpsc::channel(), std::sync::mpsc::channel());
        let flush = |_: &Path| Ok(HeldFlush { started: tell_started, ends });
        let writer = Writer::start_flushed_by(&path, Duration::from_secs(1), flush).unwrap();
        let count = move || rusqlite::Connection::open(&path).unwrap().query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)).unwrap();
        (writer, count, started, end)
    }

    /// `future`, or a failure if it does not finish in 10 s (a guard
    /// against a hang, not a wait for anything).
    async fn soon<T>(future: impl std::future::Future<Output = T>, what: &str) -> T {
        tokio::time::timeout(Duration::from_secs(10), future).await.unwrap_or_else(|_| panic!("{what} did not happen"))
    }

    /// Whether a sent write's fate is `Ran`, not yet flushed.
    fn ran_unflushed(write: &PendingWrite) -> bool {
        *write.fate.borrow() == Fate::Ran
    }

    #[tokio::test]
    async fn a_write_is_answered_only_once_its_commit_is_flushed() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, count, started, end) = held_writer(&dir);
        let mut first = Box::pin(writer.write(insert(1)));
        assert!(futures_util::poll!(&mut first).is_pending(), "polled once: sent");
        started.recv().unwrap();
        assert_eq!(count(), 1, "committed (and readable) before the flush");
        assert!(futures_util::poll!(&mut first).is_pending(), "but not answered before its flush ends");
        // The writer is not waiting for that flush: the next group runs.
        let second = writer.send(insert(2)).unwrap();
        soon(second.fate.clone().wait_for(|f| *f == Fate::Ran), "the next group running during a flush").await.unwrap();
        end.send(Ok(())).unwrap();
        soon(first, "the answer after the flush").await.expect("answered once flushed");
        started.recv().unwrap();
        assert!(ran_unflushed(&second), "the second group is not committed before its own flush ends");
        end.send(Ok(())).unwrap();
        soon(second.committed(), "the second flush").await.expect("the second group's own flush");
        assert_eq!(count(), 2);
    }

    #[tokio::test]
    async fn the_log_is_checkpointed_and_written_again_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("writes.db");
        rusqlite::Connection::open(&path).unwrap().execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE b (v BLOB)").unwrap();
        let writer = Writer::start(&path, Duration::from_secs(1)).unwrap();
        // Rows of about a page each, two and a half bounds' worth.
        let rows = WAL_CHECKPOINT_PAGES * 5 / 2;
        for group in 0..rows / 50 {
            for _ in 0..49 {
                writer.send(|c| Ok(c.execute("INSERT INTO b (v) VALUES (zeroblob(4000))", []).map(|_| ())?)).unwrap();
            }
            let last = writer.write(|c| Ok(c.execute("INSERT INTO b (v) VALUES (zeroblob(4000))", [])?)).await;
            assert_eq!(last.unwrap_or_else(|e| panic!("group {group}: {e}")), 1);
        }
        let page = 4096 + 24;
        let wal = std::fs::metadata(dir.path().join("writes.db-wal")).unwrap().len();
        assert!(wal <= u64::from(WAL_CHECKPOINT_PAGES + 200) * page, "the log stays near its bound: {wal} bytes");
        assert!(wal > u64::from(WAL_CHECKPOINT_PAGES / 2) * page, "checkpoints wait for the bound: {wal} bytes");
    }

    #[tokio::test]
    async fn a_write_answered_at_commit_does_not_wait_for_the_flush() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, count, started, end) = held_writer(&dir);
        // The writer is held in a first write until both are sent, so the
        // two share a group (the held one's, or the next).
        let (hold, held) = std::sync::mpsc::channel::<()>();
        writer.send(move |_| Ok(held.recv().unwrap_or(()))).unwrap();
        let mut durable = Box::pin(writer.write(insert(1)));
        assert!(futures_util::poll!(&mut durable).is_pending(), "polled once: sent");
        let mut claim = Box::pin(writer.write_answered(Answered::Committed, insert(2)));
        assert!(futures_util::poll!(&mut claim).is_pending(), "polled once: sent");
        hold.send(()).unwrap();
        started.recv().unwrap();
        soon(claim, "the answer at commit").await.expect("answered while its group's flush is held");
        assert_eq!(count(), 2, "both committed");
        assert!(futures_util::poll!(&mut durable).is_pending(), "the group's other write still waits for the flush");
        end.send(Ok(())).unwrap();
        // Any later flush (the two may have followed the held write's
        // group) ends at once.
        drop(end);
        soon(durable, "the answer after the flush").await.expect("answered once flushed");
    }

    #[tokio::test]
    async fn a_failed_flush_fails_its_writes_and_every_later_one() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, count, started, end) = held_writer(&dir);
        let mut first = Box::pin(writer.write(insert(1)));
        assert!(futures_util::poll!(&mut first).is_pending(), "polled once: sent");
        started.recv().unwrap();
        // A group committed behind the flush that is about to fail.
        let behind = writer.send(insert(2)).unwrap();
        soon(behind.fate.clone().wait_for(|f| *f == Fate::Ran), "the group behind running").await.unwrap();
        end.send(Err(std::io::Error::other("the disk is gone"))).unwrap();
        let failed = soon(first, "the failed flush's answer").await.expect_err("a write whose flush failed is not answered as done");
        assert!(failed.to_string().contains("the disk is gone"), "{failed}");
        let behind = soon(behind.committed(), "the answer of the group behind").await;
        assert!(matches!(behind, Err(StoreError::DependencyFailed(ref why)) if why.contains("the disk is gone")), "{behind:?}");
        let later = soon(writer.write(insert(3)), "a later write's answer").await.expect_err("nothing after a failed flush is durable");
        assert!(later.to_string().contains("flush failed"), "{later}");
        assert_eq!(count(), 2, "the later write did not even run (the two before it are in SQLite, unflushed)");
    }

    #[tokio::test]
    async fn a_write_after_another_writers_write_waits_for_its_fate() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, count) = writer_on(&dir).await;
        let other = Writer::start(&dir.path().join("writes.db"), Duration::from_secs(1)).unwrap();
        let sent = other.send(insert(1)).unwrap();
        writer.write_after(Some(&sent), insert(2)).await.expect("after the other's commit");
        let failed = other.send(failing).unwrap();
        let refused = writer.write_after(Some(&failed), insert(3)).await.expect_err("the other's write failed");
        assert!(matches!(refused, StoreError::DependencyFailed(_)), "{refused}");
        assert_eq!(count(), 2);
    }
}
