-- Publisher schema: one row per publish request (the attempt log that prevents duplicates).
CREATE TABLE attempts (
    request_id      uuid        PRIMARY KEY,
    entry_id        uuid        NOT NULL,
    account_id      text        NOT NULL,
    operation       text        NOT NULL,
    state           text        NOT NULL CHECK (state IN ('started', 'done')),
    tries           integer     NOT NULL DEFAULT 1,
    procore_id      bigint,
    result          jsonb,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);
CREATE INDEX attempts_by_entry ON attempts (entry_id, started_at);
