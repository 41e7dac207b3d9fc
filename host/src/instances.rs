//! Instances of a fleet: each one's heartbeat in the database, so
//! operators (queue status, metrics) see which instances are alive.
//!
//! Heartbeats inform; they do not decide who runs what. A dead instance's
//! jobs come back through their leases (`SCRIBE_LEASE_SECONDS`), which the
//! store guards, so a slow heartbeat can never make a job run twice.

use std::time::Duration;

use sqlx::postgres::PgPool;

/// How often an instance writes its heartbeat.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);

/// An instance whose last heartbeat is older than this many intervals is
/// no longer counted as alive (and its row is removed after an hour).
const MISSED_BEATS: i64 = 3;

/// This instance's heartbeat, written until dropped.
pub struct Presence {
    pool: PgPool,
    id: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Presence {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Presence {
    /// Announces instance `id` and keeps its heartbeat going.
    pub async fn start(pool: PgPool, id: String) -> Result<Self, sqlx::Error> {
        beat(&pool, &id).await?;
        let task = tokio::spawn({
            let (pool, id) = (pool.clone(), id.clone());
            async move {
                loop {
                    tokio::time::sleep(HEARTBEAT_INTERVAL).await;
                    if let Err(e) = beat(&pool, &id).await {
                        tracing::warn!("heartbeat not written: {e}");
                    }
                }
            }
        });
        Ok(Self { pool, id, task })
    }

    /// The instances whose heartbeat is recent, by id.
    pub async fn alive(&self) -> Result<Vec<String>, sqlx::Error> {
        let since = crate::clock::now_ms() - MISSED_BEATS * HEARTBEAT_INTERVAL.as_millis() as i64;
        sqlx::query_scalar("SELECT id FROM instances WHERE heartbeat_at >= $1 ORDER BY id").bind(since).fetch_all(&self.pool).await
    }

    /// Leaves the fleet (a clean shutdown): the row goes at once.
    pub async fn leave(self) {
        self.task.abort();
        if let Err(e) = sqlx::query("DELETE FROM instances WHERE id = $1").bind(&self.id).execute(&self.pool).await {
            tracing::warn!("could not remove this instance's heartbeat: {e}");
        }
    }
}

async fn beat(pool: &PgPool, id: &str) -> Result<(), sqlx::Error> {
    let now = crate::clock::now_ms();
    sqlx::query(
        "INSERT INTO instances (id, started_at, heartbeat_at) VALUES ($1, $2, $2) \
         ON CONFLICT (id) DO UPDATE SET heartbeat_at = $2",
    )
    .bind(id)
    .bind(now)
    .execute(pool)
    .await?;
    sqlx::query("DELETE FROM instances WHERE heartbeat_at < $1").bind(now - 3_600_000).execute(pool).await?;
    Ok(())
}
