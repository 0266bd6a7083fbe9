-- Mapping schema: setup per account, MobiClocks reference entities, synced Procore entities, mappings.
CREATE TABLE setups (
    account_id          text        PRIMARY KEY,
    procore_company_id  bigint,
    enabled_modules     text[]      NOT NULL DEFAULT '{}',
    two_way             boolean     NOT NULL DEFAULT false,
    updated_by          text,
    updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE reference_entities (
    account_id          text        NOT NULL,
    kind                text        NOT NULL,
    entity_id           text        NOT NULL,
    name                text        NOT NULL,
    number              text,
    linked_procore_id   bigint,
    deleted             boolean     NOT NULL DEFAULT false,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, kind, entity_id)
);

CREATE TABLE procore_entities (
    account_id          text        NOT NULL,
    entity              text        NOT NULL,
    procore_project_id  bigint      NOT NULL DEFAULT 0,
    procore_id          bigint      NOT NULL,
    name                text        NOT NULL,
    number              text,
    synced_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, entity, procore_project_id, procore_id)
);

-- procore_project_id = 0 when the mapping is not scoped to a project.
CREATE TABLE mappings (
    account_id          text        NOT NULL,
    entity              text        NOT NULL,
    mobiclocks_id       text        NOT NULL,
    procore_project_id  bigint      NOT NULL DEFAULT 0,
    procore_id          bigint      NOT NULL,
    source              text        NOT NULL CHECK (source IN ('manual', 'auto', 'two_way')),
    updated_by          text,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, entity, mobiclocks_id, procore_project_id)
);
