//! Rows into values, for every backend: both schemas use the same column
//! names and value kinds (text, 64-bit integers, a double), so one decoder
//! per row shape serves SQLite (rusqlite rows, as [`NamedRow`]s) and
//! PostgreSQL (sqlx rows) alike, through [`Columns`].

use sqlx::postgres::PgRow;
use sqlx::Row;

use super::{Claimed, Head, Job, JobError, JobSpec, JobStatus, OpenJobs, StoreError, StoreResult, User};
use crate::plugins::types::Priority;

/// A row whose columns are read by name, whichever library fetched it
/// (sqlx's rows, or SQLite's as [`NamedRow`]s).
pub trait Columns {
    /// A text column.
    fn text(&self, column: &str) -> StoreResult<String>;
    /// A nullable text column.
    fn opt_text(&self, column: &str) -> StoreResult<Option<String>>;
    /// A 64-bit integer column.
    fn int(&self, column: &str) -> StoreResult<i64>;
    /// A nullable 64-bit integer column.
    fn opt_int(&self, column: &str) -> StoreResult<Option<i64>>;
    /// A nullable double column.
    fn opt_real(&self, column: &str) -> StoreResult<Option<f64>>;
}

/// [`Columns`] for a row type whose `$get(column)` reads a typed value
/// (sqlx's `try_get`, [`NamedRow`]'s `at`).
macro_rules! columns_by {
    ($row:ty, $get:ident) => {
        impl Columns for $row {
            fn text(&self, column: &str) -> StoreResult<String> {
                Ok(self.$get(column)?)
            }
            fn opt_text(&self, column: &str) -> StoreResult<Option<String>> {
                Ok(self.$get(column)?)
            }
            fn int(&self, column: &str) -> StoreResult<i64> {
                Ok(self.$get(column)?)
            }
            fn opt_int(&self, column: &str) -> StoreResult<Option<i64>> {
                Ok(self.$get(column)?)
            }
            fn opt_real(&self, column: &str) -> StoreResult<Option<f64>> {
                Ok(self.$get(column)?)
            }
        }
    };
}

columns_by!(PgRow, try_get);

/// A SQLite row whose columns are found by name among its statement's
/// column names, read once per statement. rusqlite's own lookup by name
/// asks SQLite for each column's name until it finds the one wanted, on
/// every read: a job's 22 columns cost some 250 such calls per row, a
/// measurable share of the writer's time (every claim and insert returns
/// its jobs). Derefs to the row, for reads by position.
pub struct NamedRow<'r, 's> {
    row: &'r rusqlite::Row<'s>,
    names: &'r [String],
}

impl<'s> std::ops::Deref for NamedRow<'_, 's> {
    type Target = rusqlite::Row<'s>;

    fn deref(&self) -> &Self::Target {
        self.row
    }
}

impl NamedRow<'_, '_> {
    fn at<T: rusqlite::types::FromSql>(&self, column: &str) -> StoreResult<T> {
        let index = self
            .names
            .iter()
            .position(|name| name.eq_ignore_ascii_case(column))
            .ok_or_else(|| rusqlite::Error::InvalidColumnName(column.to_string()))?;
        Ok(self.row.get(index)?)
    }
}

columns_by!(NamedRow<'_, '_>, at);

/// Runs `sql` with `params` on a SQLite connection (a read's or the
/// writer's) and decodes every row with `decode`.
pub fn query_rows<T>(
    connection: &rusqlite::Connection,
    sql: &str,
    params: impl rusqlite::Params,
    decode: &impl Fn(&NamedRow<'_, '_>) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    let mut statement = connection.prepare_cached(sql)?;
    let names: Vec<String> = statement.column_names().into_iter().map(str::to_string).collect();
    let mut rows = statement.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(decode(&NamedRow { row, names: &names })?);
    }
    Ok(out)
}

/// The columns [`job_from_row`] reads, in `SELECT` order.
pub const JOB_COLUMNS: &str = "id, user_id, status, provider, priority, audio_sha256, audio_format, audio_bytes, \
     language, prompt, temperature, model, response_format, attempts, run_at, lease_owner, lease_until, \
     created_at, started_at, finished_at, error_kind, error_message";

/// Priorities as stored (higher runs first).
pub fn priority_to_int(p: Priority) -> i64 {
    match p {
        Priority::Low => 0,
        Priority::Normal => 1,
        Priority::High => 2,
    }
}

fn priority_from_int(p: i64) -> StoreResult<Priority> {
    match p {
        0 => Ok(Priority::Low),
        1 => Ok(Priority::Normal),
        2 => Ok(Priority::High),
        other => Err(StoreError::Corrupt(format!("priority {other}"))),
    }
}

fn status<R: Columns + ?Sized>(row: &R, column: &str) -> StoreResult<JobStatus> {
    let status = row.text(column)?;
    JobStatus::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("status {status:?}")))
}

fn count<R: Columns + ?Sized>(row: &R, column: &str) -> StoreResult<u64> {
    Ok(row.int(column)?.max(0) as u64)
}

/// A job from a row of [`JOB_COLUMNS`].
pub fn job_from_row<R: Columns + ?Sized>(row: &R) -> StoreResult<Job> {
    let error_kind = row.opt_text("error_kind")?;
    Ok(Job {
        id: row.text("id")?,
        user_id: row.text("user_id")?,
        status: status(row, "status")?,
        spec: JobSpec {
            provider: row.text("provider")?,
            priority: priority_from_int(row.int("priority")?)?,
            audio_sha256: row.text("audio_sha256")?,
            audio_format: row.text("audio_format")?,
            audio_bytes: count(row, "audio_bytes")?,
            language: row.opt_text("language")?,
            prompt: row.opt_text("prompt")?,
            temperature: row.opt_real("temperature")?.map(|t| t as f32),
            model: row.opt_text("model")?,
            response_format: row.text("response_format")?,
        },
        attempts: count(row, "attempts")? as u32,
        run_at_ms: row.int("run_at")?,
        created_at_ms: row.int("created_at")?,
        started_at_ms: row.opt_int("started_at")?,
        finished_at_ms: row.opt_int("finished_at")?,
        error: match error_kind {
            Some(kind) => Some(JobError { kind, message: row.opt_text("error_message")?.unwrap_or_default() }),
            None => None,
        },
        lease_owner: row.opt_text("lease_owner")?,
        lease_until_ms: row.opt_int("lease_until")?,
    })
}

/// A claimed job from a row of [`JOB_COLUMNS`] and `twin_transcript`
/// ([`succeeded_twin`]).
pub fn claimed_from_row<R: Columns + ?Sized>(row: &R) -> StoreResult<Claimed> {
    Ok(Claimed { job: job_from_row(row)?, twin_transcript: row.opt_text("twin_transcript")? })
}

/// The transcript of a succeeded twin of a job whose audio and cache key
/// are the SQL expressions `audio_sha256` and `cache_key` (parameters for
/// an insert, a row's columns for a claim): the one definition of a twin,
/// for every backend. In SQLite's `RETURNING` it reads the table being
/// changed, whose rows may be seen changed or not; a claim only turns
/// `queued` rows `running`, which are no `succeeded` twins either way.
pub fn succeeded_twin(audio_sha256: &str, cache_key: &str) -> String {
    format!(
        "(SELECT twin.transcript FROM jobs AS twin WHERE twin.audio_sha256 = {audio_sha256} \
         AND twin.cache_key = {cache_key} AND twin.status = 'succeeded' LIMIT 1)"
    )
}

/// A user from a row of `id, name, created_at`.
pub fn user_from_row<R: Columns + ?Sized>(row: &R) -> StoreResult<User> {
    Ok(User { id: row.text("id")?, name: row.text("name")?, created_at_ms: row.int("created_at")? })
}

/// A line's head from a row of `id, user_id, priority, created_at, queued, running`.
pub fn head_from_row<R: Columns + ?Sized>(row: &R) -> StoreResult<Head> {
    Ok(Head {
        job_id: row.text("id")?,
        user_id: row.text("user_id")?,
        priority: priority_from_int(row.int("priority")?)?,
        created_at_ms: row.int("created_at")?,
        user_queued: count(row, "queued")? as u32,
        user_running: count(row, "running")? as u32,
        user_last_dispatch_ms: row.opt_int("last_dispatch")?,
    })
}

/// Open jobs of one provider and status from a row of `provider, status, n`.
pub fn open_jobs_from_row<R: Columns + ?Sized>(row: &R) -> StoreResult<OpenJobs> {
    Ok(OpenJobs { provider: row.text("provider")?, status: status(row, "status")?, count: count(row, "n")? })
}

/// One user's jobs in one status from a row of `name, status, n`.
pub fn user_jobs_from_row<R: Columns + ?Sized>(row: &R) -> StoreResult<(String, JobStatus, u64)> {
    Ok((row.text("name")?, status(row, "status")?, count(row, "n")?))
}
