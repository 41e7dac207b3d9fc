-- The audio and cache-key lookups find a handful of rows per key and check
-- their status in the row. With `status` in these indexes, every claim and
-- every finish moved two entries at random places in two large indexes (a
-- page each to write); keyed by the hash alone, an entry is written once,
-- when its job is inserted.
DROP INDEX jobs_audio;
CREATE INDEX jobs_audio ON jobs (audio_sha256);
DROP INDEX jobs_cache;
CREATE INDEX jobs_cache ON jobs (cache_key);
