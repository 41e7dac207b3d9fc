-- Every index a submit writes at a random place costs each group commit
-- one more page of the WAL per job (a leaf written whole, then again by
-- the checkpoint). The writer is the store's one serial part and its
-- commits are most of its time, so two such indexes go:
-- - The table's UNIQUE (user_id, idempotency_key) indexed every job, most
--   of which have no key. It becomes a partial unique index of the jobs
--   that have one. A table constraint cannot be dropped, so the table is
--   rebuilt (SQLite's documented way: new table, copy, drop, rename), and
--   with it its indexes and triggers.
-- - jobs_audio (audio_sha256) and jobs_cache (cache_key) were two random
--   places per job for one piece of information: a cache key names one
--   audio. One index (audio_sha256, cache_key) serves retention's
--   "is this audio in use" and the cache's lookup, which now names the
--   audio too.
CREATE TABLE jobs_rebuilt (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    status TEXT NOT NULL,
    provider TEXT NOT NULL,
    priority INTEGER NOT NULL,
    audio_sha256 TEXT NOT NULL,
    audio_format TEXT NOT NULL,
    audio_bytes INTEGER NOT NULL,
    language TEXT,
    prompt TEXT,
    temperature REAL,
    model TEXT,
    response_format TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    run_at INTEGER NOT NULL,
    lease_owner TEXT,
    lease_until INTEGER,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    error_kind TEXT,
    error_message TEXT,
    idempotency_key TEXT,
    transcript TEXT,
    cache_key TEXT
);

INSERT INTO jobs_rebuilt (id, user_id, status, provider, priority, audio_sha256, audio_format, audio_bytes, language,
    prompt, temperature, model, response_format, attempts, run_at, lease_owner, lease_until, created_at, started_at,
    finished_at, error_kind, error_message, idempotency_key, transcript, cache_key)
SELECT id, user_id, status, provider, priority, audio_sha256, audio_format, audio_bytes, language,
    prompt, temperature, model, response_format, attempts, run_at, lease_owner, lease_until, created_at, started_at,
    finished_at, error_kind, error_message, idempotency_key, transcript, cache_key
FROM jobs;

-- Dropping the table drops its indexes and triggers; open_job_counts
-- keeps its rows (the same jobs come back).
DROP TABLE jobs;
ALTER TABLE jobs_rebuilt RENAME TO jobs;

CREATE UNIQUE INDEX jobs_idempotency ON jobs (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_user ON jobs (user_id, created_at);
CREATE INDEX jobs_audio ON jobs (audio_sha256, cache_key);
CREATE INDEX jobs_queued ON jobs (provider, user_id, priority DESC, created_at, id, run_at, status) WHERE status = 'queued';
CREATE INDEX jobs_queued_due ON jobs (run_at, provider, user_id, status) WHERE status = 'queued';
CREATE INDEX jobs_running ON jobs (lease_until, status) WHERE status = 'running';
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;

CREATE TRIGGER open_job_counts_insert AFTER INSERT ON jobs
WHEN NEW.status IN ('queued', 'running')
BEGIN
    INSERT INTO open_job_counts (provider, status, user_id, n) VALUES (NEW.provider, NEW.status, NEW.user_id, 1)
    ON CONFLICT (provider, status, user_id) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER open_job_counts_leave AFTER UPDATE OF status ON jobs
WHEN OLD.status IS NOT NEW.status AND OLD.status IN ('queued', 'running')
BEGIN
    DELETE FROM open_job_counts WHERE provider = OLD.provider AND status = OLD.status AND user_id = OLD.user_id AND n = 1;
    UPDATE open_job_counts SET n = n - 1 WHERE provider = OLD.provider AND status = OLD.status AND user_id = OLD.user_id;
END;

CREATE TRIGGER open_job_counts_enter AFTER UPDATE OF status ON jobs
WHEN OLD.status IS NOT NEW.status AND NEW.status IN ('queued', 'running')
BEGIN
    INSERT INTO open_job_counts (provider, status, user_id, n) VALUES (NEW.provider, NEW.status, NEW.user_id, 1)
    ON CONFLICT (provider, status, user_id) DO UPDATE SET n = n + 1;
END;
