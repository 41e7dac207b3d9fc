-- The indexes the scheduler reads by status hold only the jobs that are
-- still open. Keyed on every job, each claim and each finish moved an
-- entry in five of them, and they grew with the history: finished jobs
-- stayed in indexes nothing reads them through. Partial indexes keep the
-- open jobs only (small, so their pages stay hot), a claim moves a job
-- between two of them and a finish takes it out; `status` is repeated in
-- each so the scheduler's reads are answered from the index alone.
-- Queries must name the status with `=` (not `IN`) for SQLite to use them.
DROP INDEX jobs_ready;
DROP INDEX jobs_lease;
DROP INDEX jobs_line;
DROP INDEX jobs_due;
DROP INDEX jobs_finished;
-- Users' lines (heads), providers with ready jobs.
CREATE INDEX jobs_queued ON jobs (provider, user_id, priority DESC, created_at, id, run_at, status) WHERE status = 'queued';
-- The next retry coming due; the jobs not due yet, per user.
CREATE INDEX jobs_queued_due ON jobs (run_at, provider, user_id, status) WHERE status = 'queued';
-- Expired leases.
CREATE INDEX jobs_running ON jobs (lease_until, status) WHERE status = 'running';
-- Recently finished jobs (queue status, audio retention); open jobs have none.
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
