-- The operator's per-user progress (queue status, dashboard) counts the
-- jobs that finished in the last hour: found by their finish time.
CREATE INDEX jobs_finished ON jobs (finished_at);
