//! Rows into values, for every backend: both schemas use the same column
//! names and value kinds (text, 64-bit integers, a double), so one decoder
//! per row shape serves SQLite and PostgreSQL alike.

use sqlx::{ColumnIndex, Decode, Row, Type};

use super::{Head, Job, JobError, JobSpec, JobStatus, OpenJobs, StoreError, StoreResult, User};
use crate::plugins::types::Priority;

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

fn status<R>(row: &R, column: &str) -> StoreResult<JobStatus>
where
    R: Row,
    for<'r> &'r str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    let status: String = row.try_get(column)?;
    JobStatus::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("status {status:?}")))
}

fn count<R>(row: &R, column: &str) -> StoreResult<u64>
where
    R: Row,
    for<'r> &'r str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(row.try_get::<i64, _>(column)?.max(0) as u64)
}

/// A job from a row of [`JOB_COLUMNS`].
pub fn job_from_row<R>(row: &R) -> StoreResult<Job>
where
    R: Row,
    for<'r> &'r str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> f64: Decode<'r, R::Database> + Type<R::Database>,
{
    let error_kind: Option<String> = row.try_get("error_kind")?;
    Ok(Job {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        status: status(row, "status")?,
        spec: JobSpec {
            provider: row.try_get("provider")?,
            priority: priority_from_int(row.try_get("priority")?)?,
            audio_sha256: row.try_get("audio_sha256")?,
            audio_format: row.try_get("audio_format")?,
            audio_bytes: count(row, "audio_bytes")?,
            language: row.try_get("language")?,
            prompt: row.try_get("prompt")?,
            temperature: row.try_get::<Option<f64>, _>("temperature")?.map(|t| t as f32),
            model: row.try_get("model")?,
            response_format: row.try_get("response_format")?,
        },
        attempts: count(row, "attempts")? as u32,
        run_at_ms: row.try_get("run_at")?,
        created_at_ms: row.try_get("created_at")?,
        started_at_ms: row.try_get("started_at")?,
        finished_at_ms: row.try_get("finished_at")?,
        error: match error_kind {
            Some(kind) => Some(JobError { kind, message: row.try_get::<Option<String>, _>("error_message")?.unwrap_or_default() }),
            None => None,
        },
        lease_owner: row.try_get("lease_owner")?,
        lease_until_ms: row.try_get("lease_until")?,
    })
}

/// A user from a row of `id, name, created_at`.
pub fn user_from_row<R>(row: &R) -> StoreResult<User>
where
    R: Row,
    for<'r> &'r str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(User { id: row.try_get("id")?, name: row.try_get("name")?, created_at_ms: row.try_get("created_at")? })
}

/// A line's head from a row of `id, user_id, priority, created_at, queued, running`.
pub fn head_from_row<R>(row: &R) -> StoreResult<Head>
where
    R: Row,
    for<'r> &'r str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<i64>: Decode<'r, R::Database>,
{
    Ok(Head {
        job_id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        priority: priority_from_int(row.try_get("priority")?)?,
        created_at_ms: row.try_get("created_at")?,
        user_queued: count(row, "queued")? as u32,
        user_running: count(row, "running")? as u32,
        user_last_dispatch_ms: row.try_get("last_dispatch")?,
    })
}

/// Open jobs of one provider and status from a row of `provider, status, n`.
pub fn open_jobs_from_row<R>(row: &R) -> StoreResult<OpenJobs>
where
    R: Row,
    for<'r> &'r str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(OpenJobs { provider: row.try_get("provider")?, status: status(row, "status")?, count: count(row, "n")? })
}

/// One user's jobs in one status from a row of `name, status, n`.
pub fn user_jobs_from_row<R>(row: &R) -> StoreResult<(String, JobStatus, u64)>
where
    R: Row,
    for<'r> &'r str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok((row.try_get("name")?, status(row, "status")?, count(row, "n")?))
}
