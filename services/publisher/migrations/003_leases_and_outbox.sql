-- Several publisher instances. Each Procore company is worked by one instance at a time: the holder
-- of its lease. A lease has an owner, an expiry and a fencing token that grows on every claim; every
-- write to the attempt log made while working a request names the token and is refused once the lease
-- has moved on. The company's last known Procore rate budget is kept with its lease, so a new owner
-- continues from it instead of bursting.
CREATE TABLE company_leases (
    company_id     bigint      PRIMARY KEY,
    owner          text,
    fencing_token  bigint      NOT NULL DEFAULT 0,
    expires_at     timestamptz NOT NULL DEFAULT '-infinity',
    -- No Procore call for this company before this time: a write the previous owner sent just before
    -- it vanished may still be landing in Procore (the new owner looks for it after this).
    quiet_until    timestamptz NOT NULL DEFAULT '-infinity',
    budget         jsonb,
    claimed_at     timestamptz
);
CREATE INDEX company_leases_by_owner ON company_leases (owner) WHERE owner IS NOT NULL;

-- Live instances (a heartbeat each), so each can claim its fair share of the companies with work.
CREATE TABLE instances (
    instance_id  text        PRIMARY KEY,
    seen_until   timestamptz NOT NULL
);

-- Results are written to the outbox in the transaction that stores them (shared/outbox.py).
CREATE TABLE outbox (
    id          bigserial   PRIMARY KEY,
    topic       text        NOT NULL,
    key         text        NOT NULL,
    payload     jsonb       NOT NULL,
    headers     jsonb       NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The lease epoch of the last write made while working the request.
ALTER TABLE attempts ADD COLUMN fencing_token bigint;
-- Rounds that ended with a Procore 500 (or an unexpected error): after PUBLISHER_MAX_TRIES the entry
-- fails with the last message. Unavailability (connection errors, timeouts, 502/503/504, the token
-- endpoint or the database away) is not counted: such a request waits for as long as it takes.
ALTER TABLE attempts ADD COLUMN errors integer NOT NULL DEFAULT 0;
ALTER TABLE attempts ADD COLUMN last_error text;
-- From here on `emitted_at` is when the result was queued in the outbox (in the statement that stored it);
-- rows an earlier version stored but never sent are queued once at start-up (AttemptLog.queue_unemitted).
COMMENT ON COLUMN attempts.emitted_at IS 'when the result was queued in the outbox';
