-- Procore syncs run as background jobs (services/mapping/sync_jobs.py): the command only queues one, so a sync
-- that waits for Procore's rate-limit reset (up to an hour) never holds up the consumer. One row per sync
-- command (job_id = the command's id: a redelivered command finds its job). Any instance may run a queued job;
-- the one running it holds it by `owner` until `lease_until` and renews that while it works, so the job of an
-- instance that vanished is taken up again by another one.
CREATE TABLE sync_jobs (
    job_id          uuid        PRIMARY KEY,
    account_id      text        NOT NULL,
    entity          text        NOT NULL,
    command         jsonb       NOT NULL,
    requested_by    text,
    -- queued → running ⇄ waiting (for Procore's rate limit, or for Procore to come back) → done | failed
    state           text        NOT NULL DEFAULT 'queued'
                    CHECK (state IN ('queued', 'running', 'waiting', 'done', 'failed')),
    progress_done   integer     NOT NULL DEFAULT 0,
    progress_total  integer,
    waiting_until   timestamptz,
    error           text,
    attempts        integer     NOT NULL DEFAULT 0,
    owner           text,
    lease_until     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);
CREATE INDEX sync_jobs_open ON sync_jobs (created_at) WHERE state NOT IN ('done', 'failed');
CREATE INDEX sync_jobs_by_account ON sync_jobs (account_id, created_at DESC);

-- The read contract (see 005): the dashboard shows each sync's state and progress. Not the command itself.
CREATE VIEW ${read_schema}.sync_jobs AS
    SELECT job_id, account_id, entity, state, progress_done, progress_total, waiting_until, error, requested_by,
           created_at, started_at, updated_at, finished_at
      FROM ${schema}.sync_jobs;
GRANT SELECT ON ${read_schema}.sync_jobs TO ${readers};
