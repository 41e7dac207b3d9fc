-- The transcript cache key of a job (sha256 of audio hash, provider, model,
-- language, prompt, temperature): after a restart or an eviction, a new job
-- finds a finished twin's transcript through it.
ALTER TABLE jobs ADD COLUMN cache_key TEXT;
CREATE INDEX jobs_cache ON jobs (cache_key, status);
