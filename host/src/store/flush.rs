//! Flushing the write-ahead log behind the writer: a group's commit is
//! made durable on a thread of its own, and the group's writes are
//! answered only after that, so the writer can run the next group while
//! the disk flushes the last one.
//!
//! With `synchronous = FULL`, SQLite flushes the WAL inside every COMMIT,
//! and the writer (the store's one serial part) sat idle for the flush:
//! about a fifth of its time at full load. The writer's connection now
//! commits with `synchronous = NORMAL` (its frames reach the file, not yet
//! the disk) and hands the group's answers here; this thread flushes the
//! WAL file (`fdatasync`) and then answers them. Flushes coalesce: the
//! groups that committed while one flush ran share the next.
//!
//! What stays true: no write is answered (a 202, an outcome) before its
//! commit is on disk, but a claim, which the writer answers at its COMMIT
//! ([`super::group_commit::Answered::Committed`]: one lost leaves its job
//! queued). The WAL is a log read back as a prefix
//! (each frame's checksum chains on the one before), so a commit that is
//! on disk has every earlier commit on disk with it; a later group may
//! therefore run on top of one still flushing. What changes: another
//! connection may read a commit up to one flush before it is durable. A
//! process that dies loses nothing written (the frames are in the kernel's
//! page cache); only an operating-system crash or a power cut inside that
//! window can take back a commit, and never one answered as durable.
//!
//! A failed flush poisons the writer: after an `fdatasync` error the
//! kernel may have dropped the pages it could not write, and a later flush
//! can report success without them, so no later write is answered as
//! durable either. Writes fail until Scribe restarts (SQLite then recovers
//! the WAL's valid prefix). The writes of a failed flush waiting here are
//! answered with an error although SQLite committed them: they may or may
//! not survive, as with a COMMIT whose own sync fails.
//!
//! The writer's checkpoints (every 4,000 WAL pages, inside a COMMIT, as
//! SQLite runs them) still flush on the writer thread: a checkpoint syncs
//! the WAL before copying it and the database after. Run elsewhere, a
//! checkpoint racing a busy writer rarely backfills the whole WAL, and the
//! WAL is only restarted from its start after one that did.

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, OnceLock};

/// Makes what the writer committed so far durable.
pub trait Flush: Send + 'static {
    /// Flushes; an error means some of it may not be on disk.
    fn flush(&mut self) -> std::io::Result<()>;
}

/// The WAL file of a SQLite database, flushed with `fdatasync`.
///
/// Opened once, while the writer's connection holds the file in place
/// (SQLite deletes it only when its last connection closes), and kept: on
/// Linux a descriptor learns of a write-back error only if it was open when
/// the error happened, so a descriptor opened per flush could miss an error
/// that one of SQLite's own syncs (a checkpoint's) had already reported.
pub struct WalFile {
    file: std::fs::File,
}

impl WalFile {
    /// Opens the WAL of the database file at `database` (it must exist: a
    /// connection in WAL mode has read the database) and flushes its
    /// directory once, so the entry of a newly made WAL is on disk too.
    pub fn open(database: &Path) -> std::io::Result<Self> {
        let mut path = database.as_os_str().to_owned();
        path.push("-wal");
        let file = std::fs::File::open(PathBuf::from(path))?;
        let directory = database.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::File::open(directory)?.sync_all()?;
        Ok(Self { file })
    }
}

impl Flush for WalFile {
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.sync_data()
    }
}

/// Answers one write: `Ok` once its commit is durable (or, for a write
/// answered at its COMMIT, committed), or why it is not.
pub type Answer = Box<dyn FnOnce(Result<(), &str>) + Send>;

/// The handle the writer hands committed groups to.
pub struct Flusher {
    groups: mpsc::Sender<Vec<Answer>>,
    failed: Arc<OnceLock<String>>,
}

impl Flusher {
    /// Starts the flushing thread on `flush`.
    pub fn start(mut flush: impl Flush) -> std::io::Result<Self> {
        let (groups, committed) = mpsc::channel::<Vec<Answer>>();
        let failed = Arc::new(OnceLock::new());
        let poison = failed.clone();
        std::thread::Builder::new().name("scribe-flusher".into()).spawn(move || {
            while let Ok(first) = committed.recv() {
                let mut answers = first;
                answers.extend(committed.try_iter().flatten());
                let outcome = flush_unless_poisoned(&mut flush, &poison);
                for answer in answers {
                    answer(outcome.as_ref().map(|_| ()).map_err(String::as_str));
                }
            }
        })?;
        Ok(Self { groups, failed })
    }

    /// Why an earlier flush failed, if one did: from then on nothing the
    /// writer commits can be answered as durable.
    pub fn failure(&self) -> Option<&str> {
        self.failed.get().map(String::as_str)
    }

    /// Hands over the answers of a group whose COMMIT returned.
    pub fn committed(&self, answers: Vec<Answer>) {
        if let Err(unsent) = self.groups.send(answers) {
            // The thread stopped (an answer panicked): nothing can be
            // flushed from now on. The answers are dropped unanswered, and
            // their callers get an error.
            let why = "the store's flusher thread stopped; writes are refused until Scribe restarts";
            tracing::error!(writes = unsent.0.len(), "{why}");
            let _ = self.failed.set(why.to_string());
        }
    }
}

fn flush_unless_poisoned(flush: &mut impl Flush, poison: &OnceLock<String>) -> Result<(), String> {
    if let Some(why) = poison.get() {
        return Err(why.clone());
    }
    flush.flush().map_err(|error| {
        let why = format!("flushing the database's log to disk failed ({error}); writes are refused until Scribe restarts");
        tracing::error!(%error, "the store could not flush its write-ahead log: writes are refused until restart");
        poison.get_or_init(|| why).clone()
    })
}
