//! The embedded SQLite backend (WAL, `synchronous = FULL`: an acknowledged
//! submit survives a power cut).

use std::str::FromStr;
use std::time::Duration;


use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteRow, SqliteSynchronous};
use sqlx::ConnectOptions;

use super::group_commit::Writer;
use super::read_pool::{ReadConnection, ReadPool};
use super::{AcquireObserver, Head, Inserted, Job, JobStatus, LeaseEnd, NewJob, OpenJobs, PoolUsage, Store, StoreError, StoreResult, User};
use super::rows::{head_from_row, job_from_row, open_jobs_from_row, priority_to_int, user_from_row, user_jobs_from_row, JOB_COLUMNS};

/// Jobs and users in one SQLite file.
pub struct SqliteStore {
    /// Reads (WAL lets them run beside the writer).
    pool: ReadPool,
    /// Every write, group-committed.
    writer: Writer,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url`
    /// (`sqlite://PATH`), with `pool_size` connections and `timeout` to
    /// get one, and runs the migrations.
    pub async fn open(url: &str, pool_size: u32, timeout: Duration) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(timeout);
        let mut connection = options.connect().await?;
        sqlx::migrate!("./migrations/sqlite").run(&mut connection).await?;
        let writer = Writer::start(connection);
        let pool = ReadPool::new(options, pool_size, timeout);
        Ok(Self { pool, writer })
    }

    /// The connections reads go through, for tables other modules keep in
    /// this database (small audio: [`crate::audio::InlineAudioStore`]).
    pub fn read_pool(&self) -> &ReadPool {
        &self.pool
    }

    /// The group-commit writer every write of this database goes through.
    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    /// A pooled connection, its wait reported to the acquire observer.
    async fn connection(&self) -> StoreResult<ReadConnection> {
        self.pool.acquire().await
    }

    async fn fetch_job(&self, sql: &str, binds: &[&str]) -> StoreResult<Option<Job>> {
        let mut query = sqlx::query(sql);
        for bind in binds {
            query = query.bind(*bind);
        }
        query.fetch_optional(&mut *self.connection().await?).await?.map(|row| job_from_row(&row)).transpose()
    }
}

/// A value bound to a write's statement (writes run on the writer task, so
/// they own their arguments).
enum Arg {
    Int(i64),
    Text(String),
    OptInt(Option<i64>),
    OptText(Option<String>),
    OptReal(Option<f64>),
}

impl From<&str> for Arg {
    fn from(text: &str) -> Self {
        Arg::Text(text.to_string())
    }
}

impl From<i64> for Arg {
    fn from(value: i64) -> Self {
        Arg::Int(value)
    }
}

fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    args: Vec<Arg>,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    for arg in args {
        query = match arg {
            Arg::Int(v) => query.bind(v),
            Arg::Text(v) => query.bind(v),
            Arg::OptInt(v) => query.bind(v),
            Arg::OptText(v) => query.bind(v),
            Arg::OptReal(v) => query.bind(v),
        };
    }
    query
}

impl SqliteStore {
    /// Runs one write statement through the group-commit writer; the
    /// number of rows it changed, once committed.
    async fn write(&self, sql: &'static str, args: Vec<Arg>) -> StoreResult<u64> {
        let done = self
            .writer
            .write(move |c| Box::pin(async move { bind_all(sqlx::query(sql), args).execute(&mut *c).await }))
            .await?;
        Ok(done.rows_affected())
    }

    /// Runs one write statement with `RETURNING` through the writer; the
    /// row it returned, once committed.
    async fn write_returning(&self, sql: String, args: Vec<Arg>) -> StoreResult<Option<SqliteRow>> {
        self.writer
            .write(move |c| Box::pin(async move { bind_all(sqlx::query(&sql), args).fetch_optional(&mut *c).await }))
            .await
    }
}


#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn end_lease(&self, job_id: &str, owner: &str, status: JobStatus, ending: LeaseEnd) -> StoreResult<bool> {
        let (error_kind, error_message) = match ending.error {
            Some(e) => (Some(e.kind), Some(e.message)),
            None => (None, None),
        };
        let changed = self
            .write(
                "UPDATE jobs SET status = ?1, run_at = COALESCE(?2, run_at), finished_at = ?3, \
                 transcript = COALESCE(?4, transcript), error_kind = ?5, error_message = ?6, \
                 lease_owner = NULL, lease_until = NULL \
                 WHERE id = ?7 AND status = 'running' AND lease_owner = ?8",
                vec![
                    status.as_str().into(),
                    Arg::OptInt(ending.run_at),
                    Arg::OptInt(ending.finished_at),
                    Arg::OptText(ending.transcript),
                    Arg::OptText(error_kind),
                    Arg::OptText(error_message),
                    job_id.into(),
                    owner.into(),
                ],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn create_user(&self, name: &str, key_hash: &str, now_ms: i64) -> StoreResult<User> {
        let id = uuid::Uuid::now_v7().to_string();
        let inserted = self
            .write(
                "INSERT INTO users (id, name, key_hash, created_at) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (name) DO NOTHING",
                vec![id.as_str().into(), name.into(), key_hash.into(), now_ms.into()],
            )
            .await?;
        if inserted == 0 {
            return Err(StoreError::UserExists(name.to_string()));
        }
        Ok(User { id, name: name.to_string(), created_at_ms: now_ms })
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        let rows = sqlx::query("SELECT id, name, created_at FROM users ORDER BY name").fetch_all(&mut *self.connection().await?).await?;
        rows.iter().map(user_from_row).collect()
    }

    async fn user_by_key_hash(&self, key_hash: &str) -> StoreResult<Option<User>> {
        let row = sqlx::query("SELECT id, name, created_at FROM users WHERE key_hash = ?1")
            .bind(key_hash)
            .fetch_optional(&mut *self.connection().await?)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn insert_job(&self, job: NewJob) -> StoreResult<Inserted> {
        let spec = &job.spec;
        // The new row comes back from the insert itself: no read after it.
        let inserted = self
            .write_returning(
                format!("INSERT INTO jobs (id, user_id, status, provider, priority, audio_sha256, audio_format, audio_bytes, \
                 language, prompt, temperature, model, response_format, attempts, run_at, created_at, idempotency_key, \
                 cache_key, transcript, started_at, finished_at) \
                 VALUES (?1, ?2, CASE WHEN ?16 IS NULL THEN 'queued' ELSE 'succeeded' END, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, \
                 ?11, ?12, 0, ?13, ?13, ?14, ?15, ?16, CASE WHEN ?16 IS NULL THEN NULL ELSE ?13 END, \
                 CASE WHEN ?16 IS NULL THEN NULL ELSE ?13 END) \
                 ON CONFLICT (user_id, idempotency_key) DO NOTHING RETURNING {JOB_COLUMNS}"),
                vec![
                    job.id.as_str().into(),
                    job.user_id.as_str().into(),
                    spec.provider.as_str().into(),
                    priority_to_int(spec.priority).into(),
                    spec.audio_sha256.as_str().into(),
                    spec.audio_format.as_str().into(),
                    (spec.audio_bytes as i64).into(),
                    Arg::OptText(spec.language.clone()),
                    Arg::OptText(spec.prompt.clone()),
                    Arg::OptReal(spec.temperature.map(f64::from)),
                    Arg::OptText(spec.model.clone()),
                    spec.response_format.as_str().into(),
                    job.now_ms.into(),
                    Arg::OptText(job.idempotency_key.clone()),
                    job.cache_key.as_str().into(),
                    Arg::OptText(job.cached_transcript.clone()),
                ],
            )
            .await?;
        if let Some(row) = inserted {
            return Ok(Inserted::Created(job_from_row(&row)?));
        }
        let key = job.idempotency_key.as_deref().unwrap_or_default();
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE user_id = ?1 AND idempotency_key = ?2");
        let existing = self.fetch_job(&sql, &[&job.user_id, key]).await?;
        existing.map(Inserted::Existing).ok_or_else(|| StoreError::Corrupt("idempotent insert found no job".into()))
    }

    async fn job(&self, user_id: &str, job_id: &str) -> StoreResult<Option<Job>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1 AND user_id = ?2");
        self.fetch_job(&sql, &[job_id, user_id]).await
    }

    async fn job_by_id(&self, job_id: &str) -> StoreResult<Option<Job>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1");
        self.fetch_job(&sql, &[job_id]).await
    }

    async fn list_jobs(&self, user_id: &str, limit: u32, offset: u32) -> StoreResult<Vec<Job>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE user_id = ?1 ORDER BY created_at DESC, id DESC LIMIT ?2 OFFSET ?3");
        let rows = sqlx::query(&sql).bind(user_id).bind(limit).bind(offset).fetch_all(&mut *self.connection().await?).await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn cancel_job(&self, user_id: &str, job_id: &str, now_ms: i64) -> StoreResult<Option<(Job, bool)>> {
        let changed = self
            .write(
                "UPDATE jobs SET status = 'canceled', finished_at = ?1 WHERE id = ?2 AND user_id = ?3 AND status = 'queued'",
                vec![now_ms.into(), job_id.into(), user_id.into()],
            )
            .await?;
        Ok(self.job(user_id, job_id).await?.map(|job| (job, changed == 1)))
    }

    async fn queue_length(&self) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running')")
            .fetch_one(&mut *self.connection().await?)
            .await?;
        Ok(n as u64)
    }

    async fn open_jobs(&self) -> StoreResult<Vec<OpenJobs>> {
        let rows = sqlx::query(
            "SELECT provider, status, COUNT(*) AS n FROM jobs WHERE status IN ('queued', 'running') GROUP BY provider, status",
        )
        .fetch_all(&mut *self.connection().await?)
        .await?;
        rows.iter().map(open_jobs_from_row).collect()
    }

    async fn users_with_open_jobs(&self) -> StoreResult<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT DISTINCT user_id FROM jobs WHERE status IN ('queued', 'running')").fetch_all(&mut *self.connection().await?).await?)
    }

    async fn jobs_by_user(&self, finished_since_ms: i64) -> StoreResult<Vec<(String, JobStatus, u64)>> {
        let rows = sqlx::query(
            "SELECT u.name AS name, j.status AS status, COUNT(*) AS n FROM jobs j JOIN users u ON u.id = j.user_id \
             WHERE j.status IN ('queued', 'running') OR j.finished_at >= ? GROUP BY u.name, j.status",
        )
        .bind(finished_since_ms)
        .fetch_all(&mut *self.connection().await?)
        .await?;
        rows.iter().map(user_jobs_from_row).collect()
    }

    fn observe_acquires(&self, observer: AcquireObserver) {
        self.pool.observe_acquires(observer);
    }

    fn pool_usage(&self) -> PoolUsage {
        self.pool.usage()
    }

    async fn audio_in_use(&self, sha256: &str, finished_since_ms: i64) -> StoreResult<bool> {
        let used: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM jobs WHERE audio_sha256 = ? \
               AND (status IN ('queued', 'running') OR finished_at >= ?))",
        )
        .bind(sha256)
        .bind(finished_since_ms)
        .fetch_one(&mut *self.connection().await?)
        .await?;
        Ok(used)
    }

    async fn heads(&self, provider: &str, now_ms: i64, depth: u32) -> StoreResult<Vec<Head>> {
        // Users with queued jobs are enumerated by skip-scan over
        // `jobs_line` (one index seek per user), their counts taken once
        // per user, and each user's line read from its start: the cost
        // grows with active users and `depth`, not with the queue.
        let rows = sqlx::query(
            "WITH RECURSIVE users(u) AS ( \
               SELECT (SELECT MIN(user_id) FROM jobs WHERE provider = ?1 AND status = 'queued') \
               UNION ALL \
               SELECT (SELECT MIN(user_id) FROM jobs WHERE provider = ?1 AND status = 'queued' AND user_id > users.u) \
               FROM users WHERE users.u IS NOT NULL), \
             counts AS MATERIALIZED ( \
               SELECT u, \
                 (SELECT COUNT(*) FROM jobs WHERE provider = ?1 AND status = 'queued' AND user_id = u AND run_at <= ?2) AS queued, \
                 (SELECT COUNT(*) FROM jobs WHERE provider = ?1 AND status = 'running' AND user_id = u) AS running \
               FROM users WHERE u IS NOT NULL) \
             SELECT j.id, j.user_id, j.priority, j.created_at, c.queued, c.running, NULL AS last_dispatch \
             FROM counts c JOIN jobs j ON j.id IN ( \
               SELECT id FROM jobs WHERE provider = ?1 AND status = 'queued' AND user_id = c.u AND run_at <= ?2 \
               ORDER BY priority DESC, created_at, id LIMIT ?3) \
             ORDER BY j.user_id, j.priority DESC, j.created_at, j.id",
        )
        .bind(provider)
        .bind(now_ms)
        .bind(i64::from(depth))
        .fetch_all(&mut *self.connection().await?)
        .await?;
        rows.iter().map(head_from_row).collect()
    }

    async fn ready_providers(&self, now_ms: i64) -> StoreResult<Vec<String>> {
        // Distinct providers by skip-scan (a few seeks), each kept if it
        // has a ready job (one seek).
        let providers = sqlx::query_scalar(
            "WITH RECURSIVE p(name) AS ( \
               SELECT (SELECT MIN(provider) FROM jobs) \
               UNION ALL \
               SELECT (SELECT MIN(provider) FROM jobs WHERE provider > p.name) FROM p WHERE p.name IS NOT NULL) \
             SELECT name FROM p WHERE name IS NOT NULL AND EXISTS ( \
               SELECT 1 FROM jobs WHERE provider = p.name AND status = 'queued' AND run_at <= ?1)",
        )
        .bind(now_ms)
        .fetch_all(&mut *self.connection().await?)
        .await?;
        Ok(providers)
    }

    async fn next_run_at(&self, now_ms: i64) -> StoreResult<Option<i64>> {
        let next = sqlx::query_scalar("SELECT MIN(run_at) FROM jobs WHERE status = 'queued' AND run_at > ?1")
            .bind(now_ms)
            .fetch_one(&mut *self.connection().await?)
            .await?;
        Ok(next)
    }

    /// A claim of one: the one claiming statement is [`Store::claim_many`]'s.
    async fn claim(&self, job_id: &str, owner: &str, now_ms: i64, lease_until_ms: i64) -> StoreResult<Option<Job>> {
        Ok(self.claim_many(&[(job_id.to_string(), owner.to_string())], now_ms, lease_until_ms).await?.pop())
    }

    /// One statement for all of them, so a round's claims cost the writer
    /// one trip to the database's thread rather than one each.
    async fn claim_many(&self, claims: &[(String, String)], now_ms: i64, lease_until_ms: i64) -> StoreResult<Vec<Job>> {
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        let values: Vec<String> = (0..claims.len()).map(|i| format!("(?{}, ?{})", 3 + 2 * i, 4 + 2 * i)).collect();
        let sql = format!(
            "WITH wanted (claim_id, claim_owner) AS (VALUES {}) \
             UPDATE jobs SET status = 'running', lease_owner = wanted.claim_owner, lease_until = ?1, \
             attempts = attempts + 1, started_at = COALESCE(started_at, ?2) \
             FROM wanted WHERE jobs.id = wanted.claim_id AND status = 'queued' AND run_at <= ?2 RETURNING {JOB_COLUMNS}",
            values.join(", ")
        );
        let mut args: Vec<Arg> = vec![lease_until_ms.into(), now_ms.into()];
        for (job_id, owner) in claims {
            args.push(job_id.as_str().into());
            args.push(owner.as_str().into());
        }
        let rows = self
            .writer
            .write(move |c| Box::pin(async move { bind_all(sqlx::query(&sql), args).fetch_all(&mut *c).await }))
            .await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn renew_lease(&self, job_id: &str, owner: &str, lease_until_ms: i64) -> StoreResult<bool> {
        let changed = self
            .write(
                "UPDATE jobs SET lease_until = ?1 WHERE id = ?2 AND status = 'running' AND lease_owner = ?3",
                vec![lease_until_ms.into(), job_id.into(), owner.into()],
            )
            .await?;
        Ok(changed == 1)
    }




    async fn requeue_expired(&self, now_ms: i64) -> StoreResult<u64> {
        self.write(
            "UPDATE jobs SET status = 'queued', run_at = ?1, lease_owner = NULL, lease_until = NULL \
             WHERE status = 'running' AND lease_until < ?1",
            vec![now_ms.into()],
        )
        .await
    }

    async fn cached_transcript(&self, cache_key: &str) -> StoreResult<Option<String>> {
        self.succeeded_transcript("SELECT transcript FROM jobs WHERE cache_key = ?1 AND status = 'succeeded' LIMIT 1", cache_key)
            .await
    }

    async fn transcript(&self, job_id: &str) -> StoreResult<Option<String>> {
        self.succeeded_transcript("SELECT transcript FROM jobs WHERE id = ?1 AND status = 'succeeded'", job_id).await
    }
}

impl SqliteStore {
    /// The transcript column of the one row `sql` selects by `key`.
    async fn succeeded_transcript(&self, sql: &'static str, key: &str) -> StoreResult<Option<String>> {
        let transcript: Option<Option<String>> = sqlx::query_scalar(sql).bind(key).fetch_optional(&mut *self.connection().await?).await?;
        Ok(transcript.flatten())
    }
}
