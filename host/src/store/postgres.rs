//! The PostgreSQL backend, for several instances on one database.
//!
//! The same contract as SQLite (every transition one guarded statement),
//! in PostgreSQL's dialect. Writes go straight to the pool: PostgreSQL
//! runs them concurrently, where SQLite needs the group-commit writer. A
//! claim locks its row with `FOR UPDATE SKIP LOCKED`, so two instances
//! racing for one job never wait on each other: the loser sees no row and
//! moves on.

use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{PgConnection, Postgres};

use super::rows::{claimed_from_row, head_from_row, job_from_row, succeeded_twin, open_jobs_from_row, priority_to_int, user_from_row, user_jobs_from_row, JOB_COLUMNS};
use super::{AcquireObserver, Claimed, Head, Inserted, Job, JobStatus, LeaseEnd, NewJob, OpenJobs, PoolUsage, Store, StoreError, StoreResult, User};

/// Jobs and users in a PostgreSQL database.
pub struct PostgresStore {
    pool: PgPool,
    /// Told how long each statement waited for a pooled connection.
    acquire_observer: OnceLock<AcquireObserver>,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://...`) with at most `pool_size`
    /// connections and `timeout` to get one, and runs the migrations.
    pub async fn open(url: &str, pool_size: u32, timeout: Duration) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url)?.application_name("scribe");
        let pool = PgPoolOptions::new().max_connections(pool_size).acquire_timeout(timeout).connect_with(options).await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self { pool, acquire_observer: OnceLock::new() })
    }

    /// The connection pool (the fleet's limits and audio share it).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// [`Store::claim`] on `connection` (in a caller's transaction, for a
    /// claim under the fleet's limits): also notes the time on the user's
    /// row, which every instance's priority policy reads as the user's last
    /// dispatch, so fairness holds across the fleet.
    pub(crate) async fn claim_on(
        connection: &mut PgConnection,
        job_id: &str,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> StoreResult<Option<Claimed>> {
        let sql = format!(
            "WITH claimed AS ( \
               UPDATE jobs SET status = 'running', lease_owner = $1, lease_until = $2, attempts = attempts + 1, \
               started_at = COALESCE(started_at, $3) \
               WHERE id = (SELECT id FROM jobs WHERE id = $4 AND status = 'queued' AND run_at <= $3 FOR UPDATE SKIP LOCKED) \
                 AND status = 'queued' \
               RETURNING {JOB_COLUMNS}, cache_key), \
             noted AS (UPDATE users SET last_dispatch = $3 WHERE id = (SELECT user_id FROM claimed)) \
             SELECT {JOB_COLUMNS}, {} AS twin_transcript FROM claimed",
            succeeded_twin("claimed.audio_sha256", "claimed.cache_key")
        );
        let row = sqlx::query(&sql).bind(owner).bind(lease_until_ms).bind(now_ms).bind(job_id).fetch_optional(connection).await?;
        row.as_ref().map(claimed_from_row).transpose()
    }

    /// A pooled connection, its wait reported to the acquire observer.
    async fn connection(&self) -> StoreResult<PoolConnection<Postgres>> {
        let started = std::time::Instant::now();
        let connection = self.pool.acquire().await?;
        if let Some(observe) = self.acquire_observer.get() {
            observe(started.elapsed());
        }
        Ok(connection)
    }

    async fn fetch_job(&self, sql: &str, binds: &[&str]) -> StoreResult<Option<Job>> {
        let mut query = sqlx::query(sql);
        for bind in binds {
            query = query.bind(*bind);
        }
        query.fetch_optional(&mut *self.connection().await?).await?.as_ref().map(job_from_row).transpose()
    }

    async fn fetch_all(&self, query: sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments>) -> StoreResult<Vec<PgRow>> {
        Ok(query.fetch_all(&mut *self.connection().await?).await?)
    }

}


#[async_trait::async_trait]
impl Store for PostgresStore {
    async fn end_lease(&self, job_id: &str, owner: &str, status: JobStatus, ending: LeaseEnd) -> StoreResult<bool> {
        let (error_kind, error_message) = match ending.error {
            Some(e) => (Some(e.kind), Some(e.message)),
            None => (None, None),
        };
        let done = sqlx::query(
            "UPDATE jobs SET status = $1, run_at = COALESCE($2, run_at), finished_at = $3, \
             transcript = COALESCE($4, transcript), error_kind = $5, error_message = $6, \
             lease_owner = NULL, lease_until = NULL \
             WHERE id = $7 AND status = 'running' AND lease_owner = $8",
        )
        .bind(status.as_str())
        .bind(ending.run_at)
        .bind(ending.finished_at)
        .bind(ending.transcript)
        .bind(error_kind)
        .bind(error_message)
        .bind(job_id)
        .bind(owner)
        .execute(&mut *self.connection().await?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn create_user(&self, name: &str, key_hash: &str, now_ms: i64) -> StoreResult<User> {
        let id = uuid::Uuid::now_v7().to_string();
        let done = sqlx::query("INSERT INTO users (id, name, key_hash, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING")
            .bind(&id)
            .bind(name)
            .bind(key_hash)
            .bind(now_ms)
            .execute(&mut *self.connection().await?)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::UserExists(name.to_string()));
        }
        Ok(User { id, name: name.to_string(), created_at_ms: now_ms })
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        let rows = self.fetch_all(sqlx::query("SELECT id, name, created_at FROM users ORDER BY name")).await?;
        rows.iter().map(user_from_row).collect()
    }

    async fn user_by_key_hash(&self, key_hash: &str) -> StoreResult<Option<User>> {
        let row = sqlx::query("SELECT id, name, created_at FROM users WHERE key_hash = $1")
            .bind(key_hash)
            .fetch_optional(&mut *self.connection().await?)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn insert_job(&self, job: NewJob) -> StoreResult<Inserted> {
        // The audio's write is not this database's: it must have committed
        // before the job may.
        if let Some(audio_write) = &job.audio_write {
            audio_write.committed().await?;
        }
        let spec = &job.spec;
        let sql = format!(
            "WITH hit (t) AS (SELECT COALESCE($16::text, {})) \
             INSERT INTO jobs (id, user_id, status, provider, priority, audio_sha256, audio_format, audio_bytes, \
             language, prompt, temperature, model, response_format, attempts, run_at, created_at, idempotency_key, \
             cache_key, transcript, started_at, finished_at) \
             SELECT $1, $2, CASE WHEN t IS NULL THEN 'queued' ELSE 'succeeded' END, $3, $4, $5, $6, $7, $8, $9, \
             $10, $11, $12, 0, $13, $13, $14, $15, t, CASE WHEN t IS NULL THEN NULL ELSE $13::bigint END, \
             CASE WHEN t IS NULL THEN NULL ELSE $13::bigint END FROM hit \
             ON CONFLICT (user_id, idempotency_key) DO NOTHING RETURNING {JOB_COLUMNS}",
            succeeded_twin("$5", "$15")
        );
        // The new row comes back from the insert itself: no read after it.
        let inserted = sqlx::query(&sql)
            .bind(&job.id)
            .bind(&job.user_id)
            .bind(&spec.provider)
            .bind(priority_to_int(spec.priority))
            .bind(&spec.audio_sha256)
            .bind(&spec.audio_format)
            .bind(spec.audio_bytes as i64)
            .bind(&spec.language)
            .bind(&spec.prompt)
            .bind(spec.temperature.map(f64::from))
            .bind(&spec.model)
            .bind(&spec.response_format)
            .bind(job.now_ms)
            .bind(&job.idempotency_key)
            .bind(&job.cache_key)
            .bind(&job.cached_transcript)
            .fetch_optional(&mut *self.connection().await?)
            .await?;
        if let Some(row) = inserted {
            return Ok(Inserted::Created(job_from_row(&row)?));
        }
        let key = job.idempotency_key.as_deref().unwrap_or_default();
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE user_id = $1 AND idempotency_key = $2");
        let existing = self.fetch_job(&sql, &[&job.user_id, key]).await?;
        existing.map(Inserted::Existing).ok_or_else(|| StoreError::Corrupt("idempotent insert found no job".into()))
    }

    async fn job(&self, user_id: &str, job_id: &str) -> StoreResult<Option<Job>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 AND user_id = $2");
        self.fetch_job(&sql, &[job_id, user_id]).await
    }

    async fn job_by_id(&self, job_id: &str) -> StoreResult<Option<Job>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1");
        self.fetch_job(&sql, &[job_id]).await
    }

    async fn list_jobs(&self, user_id: &str, limit: u32, offset: u32) -> StoreResult<Vec<Job>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3");
        let rows = self.fetch_all(sqlx::query(&sql).bind(user_id).bind(i64::from(limit)).bind(i64::from(offset))).await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn cancel_job(&self, user_id: &str, job_id: &str, now_ms: i64) -> StoreResult<Option<(Job, bool)>> {
        let done = sqlx::query("UPDATE jobs SET status = 'canceled', finished_at = $1 WHERE id = $2 AND user_id = $3 AND status = 'queued'")
            .bind(now_ms)
            .bind(job_id)
            .bind(user_id)
            .execute(&mut *self.connection().await?)
            .await?;
        Ok(self.job(user_id, job_id).await?.map(|job| (job, done.rows_affected() == 1)))
    }

    async fn queue_length(&self) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running')")
            .fetch_one(&mut *self.connection().await?)
            .await?;
        Ok(n.max(0) as u64)
    }

    async fn open_jobs(&self) -> StoreResult<Vec<OpenJobs>> {
        let rows = self
            .fetch_all(sqlx::query(
                "SELECT provider, status, COUNT(*) AS n FROM jobs WHERE status IN ('queued', 'running') GROUP BY provider, status",
            ))
            .await?;
        rows.iter().map(open_jobs_from_row).collect()
    }

    async fn users_with_open_jobs(&self) -> StoreResult<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT DISTINCT user_id FROM jobs WHERE status IN ('queued', 'running')")
            .fetch_all(&mut *self.connection().await?)
            .await?)
    }

    async fn jobs_by_user(&self, finished_since_ms: i64) -> StoreResult<Vec<(String, JobStatus, u64)>> {
        let rows = self
            .fetch_all(
                sqlx::query(
                    "SELECT u.name AS name, j.status AS status, COUNT(*) AS n FROM jobs j JOIN users u ON u.id = j.user_id \
                     WHERE j.status IN ('queued', 'running') OR j.finished_at >= $1 GROUP BY u.name, j.status",
                )
                .bind(finished_since_ms),
            )
            .await?;
        rows.iter().map(user_jobs_from_row).collect()
    }

    fn observe_acquires(&self, observer: AcquireObserver) {
        let _ = self.acquire_observer.set(observer);
    }

    fn pool_usage(&self) -> PoolUsage {
        let (size, idle) = (self.pool.size(), self.pool.num_idle() as u32);
        PoolUsage { in_use: size.saturating_sub(idle), idle, max: self.pool.options().get_max_connections() }
    }

    async fn audio_in_use(&self, sha256: &str, finished_since_ms: i64) -> StoreResult<bool> {
        let used: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM jobs WHERE audio_sha256 = $1 \
               AND (status IN ('queued', 'running') OR finished_at >= $2))",
        )
        .bind(sha256)
        .bind(finished_since_ms)
        .fetch_one(&mut *self.connection().await?)
        .await?;
        Ok(used)
    }

    async fn heads(&self, provider: &str, now_ms: i64, depth: u32) -> StoreResult<Vec<Head>> {
        // Users with queued jobs by skip-scan over `jobs_line`, their counts
        // once per user (a walk over their open jobs; SQLite keeps these
        // counts in `open_job_counts`), each user's line read from its start.
        let rows = self
            .fetch_all(
                sqlx::query(
                    "WITH RECURSIVE line_users(u) AS ( \
                       SELECT (SELECT MIN(user_id) FROM jobs WHERE provider = $1 AND status = 'queued') \
                       UNION ALL \
                       SELECT (SELECT MIN(user_id) FROM jobs WHERE provider = $1 AND status = 'queued' AND user_id > line_users.u) \
                       FROM line_users WHERE line_users.u IS NOT NULL), \
                     counts AS MATERIALIZED ( \
                       SELECT u, \
                         (SELECT COUNT(*) FROM jobs WHERE provider = $1 AND status = 'queued' AND user_id = u AND run_at <= $2) AS queued, \
                         (SELECT COUNT(*) FROM jobs WHERE provider = $1 AND status = 'running' AND user_id = u) AS running \
                       FROM line_users WHERE u IS NOT NULL) \
                     SELECT j.id, j.user_id, j.priority, j.created_at, c.queued, c.running, \
                       (SELECT last_dispatch FROM users WHERE id = c.u) AS last_dispatch \
                     FROM counts c CROSS JOIN LATERAL ( \
                       SELECT id, user_id, priority, created_at FROM jobs \
                       WHERE provider = $1 AND status = 'queued' AND user_id = c.u AND run_at <= $2 \
                       ORDER BY priority DESC, created_at, id LIMIT $3) j \
                     ORDER BY j.user_id, j.priority DESC, j.created_at, j.id",
                )
                .bind(provider)
                .bind(now_ms)
                .bind(i64::from(depth)),
            )
            .await?;
        rows.iter().map(head_from_row).collect()
    }

    async fn ready_providers(&self, now_ms: i64) -> StoreResult<Vec<String>> {
        Ok(sqlx::query_scalar(
            "WITH RECURSIVE p(name) AS ( \
               SELECT (SELECT MIN(provider) FROM jobs) \
               UNION ALL \
               SELECT (SELECT MIN(provider) FROM jobs WHERE provider > p.name) FROM p WHERE p.name IS NOT NULL) \
             SELECT name FROM p WHERE name IS NOT NULL AND EXISTS ( \
               SELECT 1 FROM jobs WHERE provider = p.name AND status = 'queued' AND run_at <= $1)",
        )
        .bind(now_ms)
        .fetch_all(&mut *self.connection().await?)
        .await?)
    }

    async fn next_run_at(&self, now_ms: i64) -> StoreResult<Option<i64>> {
        Ok(sqlx::query_scalar("SELECT MIN(run_at) FROM jobs WHERE status = 'queued' AND run_at > $1")
            .bind(now_ms)
            .fetch_one(&mut *self.connection().await?)
            .await?)
    }

    async fn claim(&self, job_id: &str, owner: &str, now_ms: i64, lease_until_ms: i64) -> StoreResult<Option<Job>> {
        Ok(Self::claim_on(&mut *self.connection().await?, job_id, owner, now_ms, lease_until_ms).await?.map(|c| c.job))
    }

    async fn claim_many(&self, claims: &[(String, String)], now_ms: i64, lease_until_ms: i64) -> StoreResult<Vec<Claimed>> {
        let mut connection = self.connection().await?;
        let mut claimed = Vec::with_capacity(claims.len());
        for (job_id, owner) in claims {
            claimed.extend(Self::claim_on(&mut *connection, job_id, owner, now_ms, lease_until_ms).await?);
        }
        Ok(claimed)
    }

    async fn renew_lease(&self, job_id: &str, owner: &str, lease_until_ms: i64) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE jobs SET lease_until = $1 WHERE id = $2 AND status = 'running' AND lease_owner = $3")
            .bind(lease_until_ms)
            .bind(job_id)
            .bind(owner)
            .execute(&mut *self.connection().await?)
            .await?;
        Ok(done.rows_affected() == 1)
    }




    async fn requeue_expired(&self, now_ms: i64) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE jobs SET status = 'queued', run_at = $1, lease_owner = NULL, lease_until = NULL \
             WHERE status = 'running' AND lease_until < $1",
        )
        .bind(now_ms)
        .execute(&mut *self.connection().await?)
        .await?;
        Ok(done.rows_affected())
    }

    async fn transcript(&self, job_id: &str) -> StoreResult<Option<String>> {
        let query = sqlx::query_scalar("SELECT transcript FROM jobs WHERE id = $1 AND status = 'succeeded'").bind(job_id);
        let transcript: Option<Option<String>> = query.fetch_optional(&mut *self.connection().await?).await?;
        Ok(transcript.flatten())
    }
}
