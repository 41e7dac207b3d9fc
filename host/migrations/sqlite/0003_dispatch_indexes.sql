-- Dispatch reads each user's line in order (O(active users), not O(queue)):
-- users are enumerated by skip-scan and each line read from its start.
CREATE INDEX jobs_line ON jobs (provider, status, user_id, priority DESC, created_at, id);
-- The next retry coming due.
CREATE INDEX jobs_due ON jobs (status, run_at);
