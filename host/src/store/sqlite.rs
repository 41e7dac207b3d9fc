//! The embedded SQLite backend (WAL; a write is answered only once its
//! commit is flushed to disk, so an acknowledged submit survives a power
//! cut: [`super::flush`]).

use std::str::FromStr;
use std::time::Duration;


use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};

use super::group_commit::{Answered, PendingWrite, Writer};
use super::read_pool::ReadPool;
use super::{AcquireObserver, Claimed, Head, Inserted, Job, JobStatus, LeaseEnd, NewJob, OpenJobs, PoolUsage, Store, StoreError, StoreResult, User};
use super::rows::{claimed_from_row, head_from_row, job_from_row, succeeded_twin, open_jobs_from_row, priority_to_int, query_rows, user_from_row, user_jobs_from_row, JOB_COLUMNS};

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
        if url.contains(":memory:") || url.contains("mode=memory") {
            return Err(StoreError::InMemory);
        }
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(timeout);
        let mut connection = options.connect().await?;
        sqlx::migrate!("./migrations/sqlite").run(&mut connection).await?;
        connection.close().await?;
        let writer = Writer::start(options.get_filename(), timeout)?;
        let pool = ReadPool::new(options.get_filename().to_path_buf(), pool_size, timeout);
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

    async fn fetch_job(&self, sql: &str, params: impl rusqlite::Params + Clone + Send) -> StoreResult<Option<Job>> {
        Ok(self.pool.rows(sql, params, |row| job_from_row(row)).await?.pop())
    }
}

/// A value bound to a write's statement (writes run on the writer thread,
/// so they own their arguments).
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

impl rusqlite::ToSql for Arg {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Arg::Int(v) => v.to_sql(),
            Arg::Text(v) => v.to_sql(),
            Arg::OptInt(v) => v.to_sql(),
            Arg::OptText(v) => v.to_sql(),
            Arg::OptReal(v) => v.to_sql(),
        }
    }
}

impl SqliteStore {
    /// Runs one write statement through the group-commit writer; the
    /// number of rows it changed, once committed.
    async fn write(&self, sql: &'static str, args: Vec<Arg>) -> StoreResult<u64> {
        self.writer
            .write(move |c| Ok(c.prepare_cached(sql)?.execute(rusqlite::params_from_iter(&args))? as u64))
            .await
    }

    /// Runs one write statement `RETURNING` [`JOB_COLUMNS`] through the
    /// writer, committing only with `after` (if given); the jobs it
    /// returned, once committed.
    async fn write_returning_jobs(&self, after: Option<&PendingWrite>, sql: String, args: Vec<Arg>) -> StoreResult<Vec<Job>> {
        self.writer
            .write_after(after, move |c| query_rows(c, &sql, rusqlite::params_from_iter(&args), &|row| job_from_row(row)))
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
        self.pool.rows_aside("SELECT id, name, created_at FROM users ORDER BY name", [], |row| user_from_row(row)).await
    }

    async fn user_by_key_hash(&self, key_hash: &str) -> StoreResult<Option<User>> {
        let sql = "SELECT id, name, created_at FROM users WHERE key_hash = ?1";
        Ok(self.pool.rows(sql, [key_hash], |row| user_from_row(row)).await?.pop())
    }

    async fn insert_job(&self, job: NewJob) -> StoreResult<Inserted> {
        let spec = &job.spec;
        // The new row comes back from the insert itself: no read after it.
        // A succeeded twin is looked for here, on the writer's connection,
        // whose pages are warm (a read connection starts cold after every
        // commit); `WHERE true` tells SQLite's parser the ON CONFLICT is
        // the upsert's, not a join's.
        let inserted = self
            .write_returning_jobs(
                job.audio_write.as_ref(),
                format!("WITH hit (t) AS (SELECT COALESCE(?16, {})) \
                 INSERT INTO jobs (id, user_id, status, provider, priority, audio_sha256, audio_format, audio_bytes, \
                 language, prompt, temperature, model, response_format, attempts, run_at, created_at, idempotency_key, \
                 cache_key, transcript, started_at, finished_at) \
                 SELECT ?1, ?2, CASE WHEN t IS NULL THEN 'queued' ELSE 'succeeded' END, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, \
                 ?11, ?12, 0, ?13, ?13, ?14, ?15, t, CASE WHEN t IS NULL THEN NULL ELSE ?13 END, \
                 CASE WHEN t IS NULL THEN NULL ELSE ?13 END FROM hit WHERE true \
                 ON CONFLICT (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING {JOB_COLUMNS}",
                 succeeded_twin("?5", "?15")),
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
        if let Some(job) = inserted.into_iter().next() {
            return Ok(Inserted::Created(job));
        }
        let key = job.idempotency_key.as_deref().unwrap_or_default();
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE user_id = ?1 AND idempotency_key = ?2");
        let existing = self.fetch_job(&sql, [job.user_id.as_str(), key]).await?;
        existing.map(Inserted::Existing).ok_or_else(|| StoreError::Corrupt("idempotent insert found no job".into()))
    }

    async fn job(&self, user_id: &str, job_id: &str) -> StoreResult<Option<Job>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1 AND user_id = ?2");
        self.fetch_job(&sql, [job_id, user_id]).await
    }

    async fn job_by_id(&self, job_id: &str) -> StoreResult<Option<Job>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1");
        self.fetch_job(&sql, [job_id]).await
    }

    async fn list_jobs(&self, user_id: &str, limit: u32, offset: u32) -> StoreResult<Vec<Job>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE user_id = ?1 ORDER BY created_at DESC, id DESC LIMIT ?2 OFFSET ?3");
        self.pool.rows_aside(sql, (user_id.to_string(), limit, offset), |row| job_from_row(row)).await
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
        let n: Option<i64> = self.pool.scalar("SELECT COALESCE(SUM(n), 0) FROM open_job_counts", []).await?;
        Ok(n.unwrap_or(0).max(0) as u64)
    }

    async fn open_jobs(&self) -> StoreResult<Vec<OpenJobs>> {
        let sql = "SELECT provider, status, SUM(n) AS n FROM open_job_counts GROUP BY provider, status";
        self.pool.rows(sql, [], |row| open_jobs_from_row(row)).await
    }

    async fn users_with_open_jobs(&self) -> StoreResult<Vec<String>> {
        self.pool.column("SELECT DISTINCT user_id FROM open_job_counts", []).await
    }

    async fn jobs_by_user(&self, finished_since_ms: i64) -> StoreResult<Vec<(String, JobStatus, u64)>> {
        // Open jobs from their counts, recently finished ones through
        // `jobs_finished` (open jobs have no finished_at).
        let sql = "SELECT u.name AS name, j.status AS status, SUM(j.n) AS n FROM ( \
               SELECT user_id, status, n FROM open_job_counts \
               UNION ALL SELECT user_id, status, 1 AS n FROM jobs WHERE finished_at >= ?1 AND status NOT IN ('queued', 'running')) j \
             JOIN users u ON u.id = j.user_id GROUP BY u.name, j.status";
        self.pool.rows_aside(sql, [finished_since_ms], |row| user_jobs_from_row(row)).await
    }

    fn observe_acquires(&self, observer: AcquireObserver) {
        self.pool.observe_acquires(observer);
    }

    fn pool_usage(&self) -> PoolUsage {
        self.pool.usage()
    }

    async fn audio_in_use(&self, sha256: &str, finished_since_ms: i64) -> StoreResult<bool> {
        let sql = "SELECT EXISTS (SELECT 1 FROM jobs WHERE audio_sha256 = ?1 \
               AND (status IN ('queued', 'running') OR finished_at >= ?2))";
        let used: Option<bool> = self.pool.scalar(sql, (sha256, finished_since_ms)).await?;
        Ok(used.unwrap_or(false))
    }

    async fn heads(&self, provider: &str, now_ms: i64, depth: u32) -> StoreResult<Vec<Head>> {
        // Users with queued jobs and their counts from `open_job_counts`
        // (one row each), less the jobs not due yet (`jobs_queued_due`: the
        // unary `+` keeps SQLite on that index, so only waiting retries are
        // walked); then each user's line from its start, answered by
        // `jobs_queued` alone. One snapshot; the cost grows with active
        // users and `depth`, not with the queue.
        const USERS: &str = "SELECT q.user_id, \
               q.n - (SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND run_at > ?2 \
                      AND +provider = ?1 AND +user_id = q.user_id) AS queued, \
               COALESCE((SELECT r.n FROM open_job_counts r \
                         WHERE r.provider = ?1 AND r.status = 'running' AND r.user_id = q.user_id), 0) AS running \
             FROM open_job_counts q WHERE q.provider = ?1 AND q.status = 'queued' ORDER BY q.user_id";
        const LINE: &str = "SELECT id, user_id, priority, created_at, ?5 AS queued, ?6 AS running, NULL AS last_dispatch \
             FROM jobs WHERE provider = ?1 AND status = 'queued' AND user_id = ?2 AND run_at <= ?3 \
             ORDER BY priority DESC, created_at, id LIMIT ?4";
        self.pool
            .snapshot(move |c| {
                let users = query_rows(c, USERS, (provider, now_ms), &|row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?, row.get::<_, i64>(2)?)))?;
                let mut heads = Vec::new();
                for (user, queued, running) in users.into_iter().filter(|(_, queued, _)| *queued > 0) {
                    let line = (provider, user.as_str(), now_ms, i64::from(depth), queued, running);
                    heads.extend(query_rows(c, LINE, line, &|row| head_from_row(row))?);
                }
                Ok(heads)
            })
            .await
    }

    async fn ready_providers(&self, now_ms: i64) -> StoreResult<Vec<String>> {
        // Per user with queued jobs (`open_job_counts`), whether their line
        // in `jobs_queued` holds a ready job (walked from its front, so
        // only retries not due yet are passed over).
        let sql = "SELECT DISTINCT c.provider FROM open_job_counts c WHERE c.status = 'queued' AND EXISTS ( \
               SELECT 1 FROM jobs WHERE provider = c.provider AND status = 'queued' AND user_id = c.user_id AND run_at <= ?1)";
        self.pool.column(sql, [now_ms]).await
    }

    async fn next_run_at(&self, now_ms: i64) -> StoreResult<Option<i64>> {
        let next: Option<Option<i64>> =
            self.pool.scalar("SELECT MIN(run_at) FROM jobs WHERE status = 'queued' AND run_at > ?1", [now_ms]).await?;
        Ok(next.flatten())
    }

    /// A claim of one: the one claiming statement is [`Store::claim_many`]'s.
    async fn claim(&self, job_id: &str, owner: &str, now_ms: i64, lease_until_ms: i64) -> StoreResult<Option<Job>> {
        Ok(self.claim_many(&[(job_id.to_string(), owner.to_string())], now_ms, lease_until_ms).await?.pop().map(|c| c.job))
    }

    /// One statement for all of them, so a round's claims cost the writer
    /// one trip to the database's thread rather than one each.
    async fn claim_many(&self, claims: &[(String, String)], now_ms: i64, lease_until_ms: i64) -> StoreResult<Vec<Claimed>> {
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        let values: Vec<String> = (0..claims.len()).map(|i| format!("(?{}, ?{})", 3 + 2 * i, 4 + 2 * i)).collect();
        let sql = format!(
            "WITH wanted (claim_id, claim_owner) AS (VALUES {}) \
             UPDATE jobs SET status = 'running', lease_owner = wanted.claim_owner, lease_until = ?1, \
             attempts = attempts + 1, started_at = COALESCE(started_at, ?2) \
             FROM wanted WHERE jobs.id = wanted.claim_id AND status = 'queued' AND run_at <= ?2 \
             RETURNING {JOB_COLUMNS}, {} AS twin_transcript",
            values.join(", "),
            succeeded_twin("jobs.audio_sha256", "jobs.cache_key")
        );
        let mut args: Vec<Arg> = vec![lease_until_ms.into(), now_ms.into()];
        for (job_id, owner) in claims {
            args.push(job_id.as_str().into());
            args.push(owner.as_str().into());
        }
        // Answered once committed, not flushed: a claim lost to an
        // operating-system crash leaves its job queued, to be claimed again
        // (its attempt not counted; its outcome commits after it, so is
        // lost with it), and the provider may be called for it again, as
        // after any crash mid-call. The call may begin before the submit of
        // its job was answered (the insert's flush under way); a crash then
        // loses that unanswered job too.
        let claim = move |c: &rusqlite::Connection| query_rows(c, &sql, rusqlite::params_from_iter(&args), &|row| claimed_from_row(row));
        self.writer.write_answered(Answered::Committed, claim).await
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

    async fn transcript(&self, job_id: &str) -> StoreResult<Option<String>> {
        let sql = "SELECT transcript FROM jobs WHERE id = ?1 AND status = 'succeeded'";
        let transcript: Option<Option<String>> = self.pool.scalar(sql, [job_id]).await?;
        Ok(transcript.flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_in_memory_database_is_refused_with_a_reason() {
        for url in ["sqlite::memory:", "sqlite://:memory:", "sqlite://file:jobs?mode=memory"] {
            let refused = SqliteStore::open(url, 1, Duration::from_secs(1)).await.err();
            assert!(matches!(refused, Some(StoreError::InMemory)), "{url}: {refused:?}");
            assert!(refused.unwrap().to_string().contains("sqlite://PATH"));
        }
    }

    fn job_of(user_id: &str, id: &str) -> NewJob {
        let spec = super::super::JobSpec {
            provider: "openai-whisper".into(),
            priority: crate::plugins::types::Priority::Normal,
            audio_sha256: "ab".repeat(32),
            audio_format: "wav".into(),
            audio_bytes: 10,
            language: None,
            prompt: None,
            temperature: Some(0.5),
            model: None,
            response_format: "json".into(),
        };
        NewJob { id: id.into(), user_id: user_id.into(), spec, idempotency_key: None, now_ms: 7, cache_key: format!("key-{id}"), cached_transcript: None, audio_write: None }
    }

    #[tokio::test]
    async fn a_write_that_breaks_a_constraint_fails_alone_and_the_others_commit() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("scribe.db").display());
        let store = SqliteStore::open(&url, 2, Duration::from_secs(5)).await.unwrap();
        let ada = store.create_user("ada", "hash-a", 1).await.unwrap();
        // Sent together, so they may share a transaction; each is answered
        // on its own.
        let (kept, orphan) = tokio::join!(store.insert_job(job_of(&ada.id, "j1")), store.insert_job(job_of("nobody", "j2")));
        let Ok(Inserted::Created(job)) = kept else { panic!("the valid insert failed: {kept:?}") };
        assert_eq!((job.id.as_str(), job.status, job.spec.temperature), ("j1", JobStatus::Queued, Some(0.5)));
        assert!(matches!(orphan, Err(StoreError::Sqlite(_))), "a job of no user is refused (foreign keys on): {orphan:?}");
        assert_eq!(store.job_by_id("j1").await.unwrap().map(|j| j.user_id), Some(ada.id));
        assert_eq!(store.job_by_id("j2").await.unwrap(), None);
    }
}
