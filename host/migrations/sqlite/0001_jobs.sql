-- Users authenticate with an API key; only its sha256 is stored.
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    key_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

-- One row per job. Times are milliseconds since the Unix epoch.
-- status: queued | running | succeeded | failed | canceled
CREATE TABLE jobs (
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
    UNIQUE (user_id, idempotency_key)
);

CREATE INDEX jobs_ready ON jobs (provider, status, run_at);
CREATE INDEX jobs_user ON jobs (user_id, created_at);
CREATE INDEX jobs_lease ON jobs (status, lease_until);
