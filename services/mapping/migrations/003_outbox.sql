-- Transactional outbox: every setup and mapping change is written with the database change that causes it
-- and relayed to mapping.changes by shared.outbox.OutboxRelay, so a crash between commit and send loses nothing.
CREATE TABLE outbox (
    id          bigserial   PRIMARY KEY,
    topic       text        NOT NULL,
    key         text        NOT NULL,
    payload     jsonb       NOT NULL,
    headers     jsonb       NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The connect command that stored the current tokens: an authorization code works once, so the tokens are
-- stored as soon as Procore issues them, and a redelivered command resumes from them instead of failing.
ALTER TABLE connections ADD COLUMN connect_command uuid;

-- The changes a command emitted are in the outbox now; a redelivered command is simply not redone.
COMMENT ON COLUMN command_outcomes.changes IS 'What the command emitted (for the record; sent through the outbox).';
