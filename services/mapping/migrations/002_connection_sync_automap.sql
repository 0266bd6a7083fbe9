-- Procore connection per account, sync bookkeeping, auto-map reports, command outcomes.

-- One row per account: the only copy of its Procore tokens, Fernet-encrypted (TOKEN_ENCRYPTION_KEY).
CREATE TABLE connections (
    account_id          text        PRIMARY KEY,
    grant_type          text        NOT NULL CHECK (grant_type IN ('authorization_code', 'client_credentials')),
    status              text        NOT NULL CHECK (status IN ('connected', 'needs_reauthorization', 'disconnected')),
    access_token        text,
    refresh_token       text,
    expires_at          timestamptz,
    message             text,
    connected_by        text,
    connected_at        timestamptz,
    refreshed_at        timestamptz,
    refresh_count       int         NOT NULL DEFAULT 0,
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- The Procore companies the connection can reach (Setup's company picker).
CREATE TABLE procore_companies (
    account_id          text        NOT NULL,
    procore_company_id  bigint      NOT NULL,
    name                text        NOT NULL,
    is_active           boolean     NOT NULL DEFAULT true,
    PRIMARY KEY (account_id, procore_company_id)
);

-- Synced entities that disappeared from Procore stay, flagged, so their mappings can say what broke.
ALTER TABLE procore_entities
    ADD COLUMN gone        boolean     NOT NULL DEFAULT false,
    ADD COLUMN gone_at     timestamptz,
    ADD COLUMN project_ids bigint[]    NOT NULL DEFAULT '{}';

ALTER TABLE mappings
    ADD COLUMN broken_reason text;
-- A broken mapping keeps its procore_id (what it pointed at) but counts as unmapped everywhere.

CREATE INDEX mappings_by_procore_id ON mappings (account_id, entity, procore_project_id, procore_id);

-- Last sync per tab and scope (cost codes: one row per mapped project).
CREATE TABLE sync_runs (
    account_id          text        NOT NULL,
    entity              text        NOT NULL,
    procore_project_id  bigint      NOT NULL DEFAULT 0,
    synced_at           timestamptz NOT NULL DEFAULT now(),
    total               int         NOT NULL,
    added               int         NOT NULL,
    updated             int         NOT NULL,
    gone                int         NOT NULL,
    PRIMARY KEY (account_id, entity, procore_project_id)
);

-- The last auto-map run per tab, shown in the Data mapping screen.
CREATE TABLE automap_reports (
    account_id          text        NOT NULL,
    entity              text        NOT NULL,
    ran_at              timestamptz NOT NULL DEFAULT now(),
    requested_by        text,
    overwrite_manual    boolean     NOT NULL,
    mapped              int         NOT NULL,
    skipped             int         NOT NULL,
    ambiguous           int         NOT NULL,
    details             jsonb       NOT NULL DEFAULT '[]',
    PRIMARY KEY (account_id, entity)
);

-- What became of each command (by its event_id): the gateway shows it. A redelivered command is not redone:
-- the changes it emitted are sent again instead (they may have been lost between commit and publish).
CREATE TABLE command_outcomes (
    command_id          uuid        PRIMARY KEY,
    account_id          text        NOT NULL,
    command_type        text        NOT NULL,
    status              text        NOT NULL CHECK (status IN ('done', 'rejected', 'failed')),
    message             text,
    details             jsonb,
    changes             jsonb       NOT NULL DEFAULT '[]',
    requested_by        text,
    finished_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX command_outcomes_by_account ON command_outcomes (account_id, finished_at DESC);

-- The public half of the Procore app (no secret): the gateway reads it to build the authorize URL.
CREATE TABLE oauth_app (
    singleton           boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    login_url           text        NOT NULL,
    client_id           text        NOT NULL,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
