-- The SQLite schema (migrations/sqlite, 0001-0005) in PostgreSQL's types:
-- the same tables, columns and indexes, so one row decoder serves both.
-- Times are milliseconds since the Unix epoch (BIGINT). Identifiers and
-- names compare byte-wise (COLLATE "C"), as in SQLite, so lines and lists
-- come out in the same order on both.

-- Users authenticate with an API key; only its sha256 is stored.
CREATE TABLE users (
    id TEXT COLLATE "C" PRIMARY KEY,
    name TEXT COLLATE "C" NOT NULL UNIQUE,
    key_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

-- One row per job. status: queued | running | succeeded | failed | canceled
CREATE TABLE jobs (
    id TEXT COLLATE "C" PRIMARY KEY,
    user_id TEXT COLLATE "C" NOT NULL REFERENCES users(id),
    status TEXT NOT NULL,
    provider TEXT COLLATE "C" NOT NULL,
    priority BIGINT NOT NULL,
    audio_sha256 TEXT NOT NULL,
    audio_format TEXT NOT NULL,
    audio_bytes BIGINT NOT NULL,
    language TEXT,
    prompt TEXT,
    temperature DOUBLE PRECISION,
    model TEXT,
    response_format TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    run_at BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    error_kind TEXT,
    error_message TEXT,
    idempotency_key TEXT,
    transcript TEXT,
    cache_key TEXT,
    UNIQUE (user_id, idempotency_key)
);

CREATE INDEX jobs_ready ON jobs (provider, status, run_at);
CREATE INDEX jobs_user ON jobs (user_id, created_at);
CREATE INDEX jobs_lease ON jobs (status, lease_until);
-- Retention asks, per stored audio file, whether a job still needs it.
CREATE INDEX jobs_audio ON jobs (audio_sha256, status, finished_at);
-- Dispatch reads each user's line in order: users enumerated by skip-scan,
-- each line read from its start.
CREATE INDEX jobs_line ON jobs (provider, status, user_id, priority DESC, created_at, id);
-- The next retry coming due.
CREATE INDEX jobs_due ON jobs (status, run_at);
-- A new job finds a finished twin's transcript by its cache key.
CREATE INDEX jobs_cache ON jobs (cache_key, status);
-- The operator's per-user progress counts the last hour's finished jobs.
CREATE INDEX jobs_finished ON jobs (finished_at);
