-- Open jobs counted per (provider, status, user), kept by triggers in the
-- transaction that changes a job. Counting them in the jobs indexes cost
-- each scheduling round a walk over every queued job of every user with
-- one (rounds come with every submit and every finished call, so a deep
-- queue made the scheduler quadratic); read from here, a round costs one
-- row per active user. A row goes when its count reaches zero. Jobs are
-- never deleted, and their provider and user never change.
CREATE TABLE open_job_counts (
    provider TEXT NOT NULL,
    status TEXT NOT NULL,
    user_id TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (provider, status, user_id)
) WITHOUT ROWID;

INSERT INTO open_job_counts (provider, status, user_id, n)
SELECT provider, status, user_id, COUNT(*) FROM jobs WHERE status IN ('queued', 'running') GROUP BY provider, status, user_id;

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
