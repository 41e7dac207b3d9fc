-- Retention asks, per stored audio file, whether a job still needs it.
CREATE INDEX jobs_audio ON jobs (audio_sha256, status, finished_at);
