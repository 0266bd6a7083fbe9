-- Aggregator schema: timelogs (with tombstones), entries of all three modules, and the
-- replicas of setup, mappings and reference names it validates entries against.

CREATE TABLE timelogs (
    account_id      text        NOT NULL,
    timelog_id      text        NOT NULL,
    revision        bigint      NOT NULL,
    deleted         boolean     NOT NULL DEFAULT false,
    employee_id     text,
    company_id      text,
    crew_tag        text,
    job_site_id     text,
    work_date       date,
    seconds         integer,
    cost_code_id    text,
    pay_class_id    text,
    pay_id          text,
    quantities      jsonb       NOT NULL DEFAULT '[]',
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, timelog_id)
);
CREATE INDEX timelogs_by_group ON timelogs (account_id, job_site_id, work_date) WHERE NOT deleted;

CREATE TABLE entries (
    entry_id                uuid        PRIMARY KEY,
    account_id              text        NOT NULL,
    module                  text        NOT NULL,
    job_site_id             text        NOT NULL,
    work_date               date        NOT NULL,
    entry_key               text        NOT NULL,
    dims                    jsonb       NOT NULL,
    content                 jsonb,
    fingerprint             text,
    timelog_ids             text[]      NOT NULL DEFAULT '{}',
    status                  text        NOT NULL,
    version                 integer     NOT NULL DEFAULT 1,
    errors                  jsonb       NOT NULL DEFAULT '[]',
    last_error              text,
    published_fingerprint   text,
    published_timelog_ids   text[],
    published_payload       jsonb,
    procore_id              bigint,
    procore_updated_at      timestamptz,
    publishing_request_id   uuid,
    publishing_fingerprint  text,
    publishing_timelog_ids  text[],
    deleted_timelog_ids     text[]      NOT NULL DEFAULT '{}',
    updated_at              timestamptz NOT NULL DEFAULT now(),
    UNIQUE (account_id, module, entry_key)
);
CREATE INDEX entries_by_cell ON entries (account_id, module, work_date, job_site_id);

CREATE TABLE publish_history (
    id              bigserial   PRIMARY KEY,
    entry_id        uuid        NOT NULL REFERENCES entries (entry_id) ON DELETE CASCADE,
    request_id      uuid,
    action          text        NOT NULL,
    requested_by    text,
    outcome         text,
    message         text,
    at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX publish_history_by_entry ON publish_history (entry_id, at);

CREATE TABLE setups (
    account_id          text        PRIMARY KEY,
    procore_company_id  bigint,
    enabled_modules     text[]      NOT NULL DEFAULT '{}',
    two_way             boolean     NOT NULL DEFAULT false,
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- procore_project_id = 0 when the mapping is not scoped to a project.
CREATE TABLE mappings (
    account_id          text        NOT NULL,
    entity              text        NOT NULL,
    mobiclocks_id       text        NOT NULL,
    procore_project_id  bigint      NOT NULL DEFAULT 0,
    procore_id          bigint      NOT NULL,
    procore_name        text,
    PRIMARY KEY (account_id, entity, mobiclocks_id, procore_project_id)
);

CREATE TABLE reference_names (
    account_id  text NOT NULL,
    kind        text NOT NULL,
    entity_id   text NOT NULL,
    name        text NOT NULL,
    number      text,
    PRIMARY KEY (account_id, kind, entity_id)
);

-- Transactional outbox: publish requests are written with the state change and relayed to Kafka.
CREATE TABLE outbox (
    id          bigserial   PRIMARY KEY,
    topic       text        NOT NULL,
    key         text        NOT NULL,
    payload     jsonb       NOT NULL,
    headers     jsonb       NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE VIEW manpower_entries AS
    SELECT entry_id, account_id, job_site_id, work_date,
           dims->>'company_id' AS company_id, dims->>'crew_tag' AS crew_tag,
           (content->>'manpower')::int AS manpower, (content->>'total_hours')::numeric AS total_hours,
           (content->>'average_hours')::numeric AS average_hours, status
      FROM entries WHERE module = 'manpower';
CREATE VIEW timecard_entries AS
    SELECT entry_id, account_id, job_site_id, work_date,
           dims->>'employee_id' AS employee_id, dims->>'pay_id' AS pay_id,
           dims->>'cost_code_id' AS cost_code_id, dims->>'pay_class_id' AS pay_class_id,
           (content->>'hours')::numeric AS hours, status
      FROM entries WHERE module = 'timecard';
CREATE VIEW production_quantity_entries AS
    SELECT entry_id, account_id, job_site_id, work_date,
           dims->>'cost_code_id' AS cost_code_id, dims->>'unit_of_measure' AS unit_of_measure,
           (content->>'units')::numeric AS units, status
      FROM entries WHERE module = 'production_quantity';
