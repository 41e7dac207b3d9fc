//! The durable store: users and jobs, behind one trait.
//!
//! Every state change of a job is one statement guarded on the current
//! state (and, for a running job, on the lease owner), so two workers or
//! two instances can never both finish a job, and a late answer from a
//! worker that lost its lease changes nothing. The trait speaks in plain
//! values (milliseconds, strings), free of any one database's dialect, so
//! the PostgreSQL backend can implement the same contract.

mod connect;
pub mod flush;
pub mod group_commit;
mod postgres;
pub mod read_pool;
mod rows;
mod sqlite;
mod types;

pub use group_commit::PendingWrite;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;
pub use types::{Claimed, Head, Inserted, Job, JobError, JobSpec, JobStatus, LeaseEnd, NewJob, User};

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or could not be reached.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The SQLite store's connection (the writer's or a reader's) refused a
    /// statement.
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The schema could not be brought up to date.
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// `DATABASE_URL` names an in-memory SQLite database.
    #[error("an in-memory SQLite database cannot keep jobs durably: name a file (sqlite://PATH)")]
    InMemory,
    /// A user of that name exists already.
    #[error("a user named {0:?} exists already")]
    UserExists(String),
    /// A write's transaction did not commit (the write did not happen).
    #[error("database commit: {0}")]
    Commit(String),
    /// A stored value does not parse (a bug or a foreign write).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// A write this one had to commit with did not happen (see
    /// [`group_commit::PendingWrite`]), so this one did not either.
    #[error("a write this one depends on did not happen: {0}")]
    DependencyFailed(String),
}

/// How many jobs of one provider are in one open status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenJobs {
    /// The provider.
    pub provider: String,
    /// `queued` or `running`.
    pub status: JobStatus,
    /// How many.
    pub count: u64,
}

/// The database connection pool's use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUsage {
    /// Connections in use.
    pub in_use: u32,
    /// Connections open and idle.
    pub idle: u32,
    /// The most connections (`DB_POOL_SIZE`).
    pub max: u32,
}

/// Told how long a request for a pooled connection waited.
pub type AcquireObserver = std::sync::Arc<dyn Fn(std::time::Duration) + Send + Sync>;

/// Shorthand for store results.
pub type StoreResult<T> = Result<T, StoreError>;

/// Users and jobs, durably.
#[async_trait::async_trait]
pub trait Store: Send + Sync {
    /// Adds a user whose API key hashes to `key_hash`.
    async fn create_user(&self, name: &str, key_hash: &str, now_ms: i64) -> StoreResult<User>;
    /// Every user, by name.
    async fn list_users(&self) -> StoreResult<Vec<User>>;
    /// The user whose API key hashes to `key_hash`.
    async fn user_by_key_hash(&self, key_hash: &str) -> StoreResult<Option<User>>;

    /// Inserts a job (queued, or succeeded at once when it carries a cached
    /// transcript or a job with its audio and cache key has succeeded), or
    /// returns the job an earlier submit with the same idempotency key
    /// created.
    async fn insert_job(&self, job: NewJob) -> StoreResult<Inserted>;
    /// One of `user_id`'s jobs.
    async fn job(&self, user_id: &str, job_id: &str) -> StoreResult<Option<Job>>;
    /// Any job, whoever owns it (for the scheduler and tests).
    async fn job_by_id(&self, job_id: &str) -> StoreResult<Option<Job>>;
    /// `user_id`'s jobs, newest first, `limit` after skipping `offset`.
    async fn list_jobs(&self, user_id: &str, limit: u32, offset: u32) -> StoreResult<Vec<Job>>;
    /// Cancels a queued job of `user_id`; returns the job as it is after the
    /// attempt (unchanged when it was not queued) and whether this call
    /// canceled it.
    async fn cancel_job(&self, user_id: &str, job_id: &str, now_ms: i64) -> StoreResult<Option<(Job, bool)>>;
    /// Jobs queued or running.
    async fn queue_length(&self) -> StoreResult<u64>;
    /// Jobs by status (`queued`, `running`) and provider.
    async fn open_jobs(&self) -> StoreResult<Vec<OpenJobs>>;
    /// Users with a job queued or running.
    async fn users_with_open_jobs(&self) -> StoreResult<Vec<String>>;
    /// Per user name, jobs by status: those queued or running, and those
    /// that finished at or after `finished_since_ms` (an operator's view of
    /// each user's progress).
    async fn jobs_by_user(&self, finished_since_ms: i64) -> StoreResult<Vec<(String, JobStatus, u64)>>;
    /// The connection pool: (open connections, idle ones, the maximum).
    fn pool_usage(&self) -> PoolUsage;
    /// Sets the function told how long each request for a pooled
    /// connection waited (the metrics' acquire-wait histogram); the first
    /// one set stays.
    fn observe_acquires(&self, observer: AcquireObserver);

    /// For each user with a job of `provider` ready at `now_ms`, that
    /// user's next `depth` ready jobs in line order (highest priority, then
    /// oldest), each with the user's ready and running counts; grouped by
    /// user. Costs O(active users x depth), not O(queue).
    async fn heads(&self, provider: &str, now_ms: i64, depth: u32) -> StoreResult<Vec<Head>>;
    /// Providers with a job ready at `now_ms`.
    async fn ready_providers(&self, now_ms: i64) -> StoreResult<Vec<String>>;
    /// The earliest `run_at` of a queued job still in the future, if any.
    async fn next_run_at(&self, now_ms: i64) -> StoreResult<Option<i64>>;
    /// Claims a ready queued job for `owner` until `lease_until_ms`,
    /// counting an attempt (without a twin's transcript: see
    /// [`Store::claim_many`]). `None` if someone else got it first. A claim
    /// may be answered before it is durable (SQLite answers claims at their
    /// commit): lost to an OS crash, its job is simply still queued.
    async fn claim(&self, job_id: &str, owner: &str, now_ms: i64, lease_until_ms: i64) -> StoreResult<Option<Job>>;
    /// Claims each of `claims` (a job id and its lease owner) as
    /// [`Store::claim`] would, until `lease_until_ms`; the jobs claimed,
    /// each with a succeeded twin's transcript if there is one, in no
    /// particular order (the others someone else got first). A backend may
    /// claim them all in one statement.
    async fn claim_many(&self, claims: &[(String, String)], now_ms: i64, lease_until_ms: i64) -> StoreResult<Vec<Claimed>>;
    /// Extends `owner`'s lease; false if the lease was lost.
    async fn renew_lease(&self, job_id: &str, owner: &str, lease_until_ms: i64) -> StoreResult<bool>;
    /// Ends `owner`'s lease on a running job, moving it to `status` with
    /// what `ending` writes: the one guarded statement behind `succeed`,
    /// `retry_later` and `fail`, so a job is finished at most once and only
    /// by its lease owner. False if the job is no longer `owner`'s running
    /// job.
    async fn end_lease(&self, job_id: &str, owner: &str, status: JobStatus, ending: LeaseEnd) -> StoreResult<bool>;
    /// Finishes `owner`'s running job with a transcript (JSON); false if the
    /// job is no longer `owner`'s running job.
    async fn succeed(&self, job_id: &str, owner: &str, transcript_json: &str, now_ms: i64) -> StoreResult<bool> {
        let ending = LeaseEnd { finished_at: Some(now_ms), transcript: Some(transcript_json.to_string()), ..LeaseEnd::default() };
        self.end_lease(job_id, owner, JobStatus::Succeeded, ending).await
    }
    /// Puts `owner`'s running job back in the queue until `run_at_ms`.
    async fn retry_later(&self, job_id: &str, owner: &str, run_at_ms: i64, error: &JobError) -> StoreResult<bool> {
        let ending = LeaseEnd { run_at: Some(run_at_ms), error: Some(error.clone()), ..LeaseEnd::default() };
        self.end_lease(job_id, owner, JobStatus::Queued, ending).await
    }
    /// Fails `owner`'s running job for good.
    async fn fail(&self, job_id: &str, owner: &str, error: &JobError, now_ms: i64) -> StoreResult<bool> {
        let ending = LeaseEnd { finished_at: Some(now_ms), error: Some(error.clone()), ..LeaseEnd::default() };
        self.end_lease(job_id, owner, JobStatus::Failed, ending).await
    }
    /// Puts running jobs whose lease expired before `now_ms` back in the
    /// queue (their attempt stays counted); returns how many.
    async fn requeue_expired(&self, now_ms: i64) -> StoreResult<u64>;
    /// Whether a job still needs the audio `sha256`: one that is queued or
    /// running, or that finished at or after `finished_since_ms`.
    async fn audio_in_use(&self, sha256: &str, finished_since_ms: i64) -> StoreResult<bool>;
    /// The stored transcript (JSON) of a succeeded job.
    async fn transcript(&self, job_id: &str) -> StoreResult<Option<String>>;
}

/// The opened store, and the PostgreSQL backend itself when that is what
/// it is (a fleet's limits, audio and heartbeats use its pool).
pub struct Opened {
    /// The store.
    pub store: std::sync::Arc<dyn Store>,
    /// The same store as PostgreSQL, if it is.
    pub postgres: Option<std::sync::Arc<PostgresStore>>,
    /// The same store as SQLite, if it is.
    pub sqlite: Option<std::sync::Arc<SqliteStore>>,
}

/// Opens the store the configuration names: `DATABASE_URL` if set
/// (`sqlite://...` or `postgres://...`), else SQLite at
/// `$SCRIBE_DATA_DIR/scribe.db`.
pub async fn open(config: &crate::config::Config) -> StoreResult<std::sync::Arc<dyn Store>> {
    Ok(open_backend(config).await?.store)
}

/// [`open`], telling which backend it is.
pub async fn open_backend(config: &crate::config::Config) -> StoreResult<Opened> {
    let timeout = std::time::Duration::from_millis(config.db_timeout_ms);
    let url = match &config.database_url {
        Some(url) if is_postgres_url(url) => {
            let postgres = std::sync::Arc::new(PostgresStore::open(url, config.db_pool_size, timeout).await?);
            return Ok(Opened { store: postgres.clone(), postgres: Some(postgres), sqlite: None });
        }
        Some(url) => url.clone(),
        None => {
            std::fs::create_dir_all(&config.data_dir).map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
            format!("sqlite://{}", config.data_dir.join("scribe.db").display())
        }
    };
    let store = std::sync::Arc::new(SqliteStore::open(&url, config.db_pool_size, timeout).await?);
    Ok(Opened { store: store.clone(), postgres: None, sqlite: Some(store) })
}

/// Whether `url` names a PostgreSQL database.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}
