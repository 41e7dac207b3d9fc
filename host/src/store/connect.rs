//! How every connection to the SQLite file is opened, the writer's and the
//! readers' alike, so they all run with the same settings (but one: the
//! writer's commits do not flush, see [`super::flush`]).

use std::path::Path;
use std::time::Duration;

use super::StoreResult;

/// Prepared statements a connection keeps (claims of 1..=N jobs are
/// distinct statements, so this is more than the store's statement count).
const STATEMENT_CACHE: usize = 128;

/// Opens the database file at `path` (created and migrated already):
/// WAL (the file's own mode, set when it was created), `synchronous =
/// FULL` (an acknowledged write survives a power cut), foreign keys on,
/// temporary tables (a claim's list of wanted jobs, a materialised
/// subquery) in memory, and `busy_timeout` to wait on a lock.
pub fn connect(path: &Path, busy_timeout: Duration) -> StoreResult<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = rusqlite::Connection::open_with_flags(path, flags)?;
    connection.busy_timeout(busy_timeout)?;
    connection.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;",
    )?;
    connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(connection)
}
