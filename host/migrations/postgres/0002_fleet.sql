-- What a fleet of instances shares besides the jobs.

-- A remote provider's limits, held for the whole fleet: the GCRA's
-- theoretical arrival time of the next call, a 429's retry-after pause
-- (both microseconds on the database's clock) and an operator's hold.
CREATE TABLE provider_limits (
    provider TEXT COLLATE "C" PRIMARY KEY,
    tat_us BIGINT,
    paused_until_us BIGINT,
    held BOOLEAN NOT NULL DEFAULT FALSE
);

-- When any instance last dispatched a job of the user's (ms): the priority
-- policy's round robin between users, the same on every instance.
ALTER TABLE users ADD COLUMN last_dispatch BIGINT;

-- Instances alive: each one's heartbeat (ms), for operators and status.
CREATE TABLE instances (
    id TEXT COLLATE "C" PRIMARY KEY,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);

-- Audio in the database (a fleet's default audio store): one row per
-- stored content (no hash while its upload is in progress), its bytes in
-- chunks. stored_at (ms): when the content was last stored (retention).
CREATE TABLE audio_blobs (
    id BIGSERIAL PRIMARY KEY,
    sha256 TEXT COLLATE "C" UNIQUE,
    bytes BIGINT NOT NULL DEFAULT 0,
    stored_at BIGINT NOT NULL
);
CREATE INDEX audio_blobs_stored ON audio_blobs (stored_at);

CREATE TABLE audio_chunks (
    blob_id BIGINT NOT NULL REFERENCES audio_blobs(id) ON DELETE CASCADE,
    seq INT NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (blob_id, seq)
);
