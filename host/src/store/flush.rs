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
//! What stays true: no write is answered (a 202, a claim, an outcome)
//! before its commit is on disk. The WAL is a log read back as a prefix
//! (each frame's checksum chains on the one before), so a commit that is
//! on disk has every earlier commit on disk with it; a later group may
//! therefore run on top of one still flushing. What changes: another
//! connection may read a commit up to one flush before it is durable. A
//! process that dies loses nothing written (the frames are in the kernel's
//! page cache); only an operating-system crash or a power cut inside that
//! window can take back a commit, and never one that was answered.
//!
//! A failed flush poisons the writer: after an `fdatasync` error the
//! kernel may have dropped the pages it could not write, and a later flush
//! can report success without them, so no later write is answered as
//! durable either. Writes fail until Scribe restarts (SQLite then recovers
//! the WAL's valid prefix).

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, OnceLock};

/// Makes what the writer committed so far durable.
pub trait Flush: Send + 'static {
    /// Flushes; an error means some of it may not be on disk.
    fn flush(&mut self) -> std::io::Result<()>;
}

/// The WAL file of a SQLite database, flushed with `fdatasync`.
///
/// It is opened by path at each flush, so it is always the file SQLite
/// writes (the writer's connection keeps it in place while it is open).
pub struct WalFile {
    path: PathBuf,
}

impl WalFile {
    /// The WAL of the database file at `database`.
    pub fn of(database: &Path) -> Self {
        let mut path = database.as_os_str().to_owned();
        path.push("-wal");
        Self { path: PathBuf::from(path) }
    }
}

impl Flush for WalFile {
    fn flush(&mut self) -> std::io::Result<()> {
        std::fs::File::open(&self.path)?.sync_data()
    }
}

/// Answers one write: `Ok` once its commit is durable, or why it is not.
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
        // The thread only stops when this handle is gone.
        let _ = self.groups.send(answers);
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
