-- Each mapped project's directory (the company people added to it in Procore), refreshed by every Employees sync:
-- the Data mapping screen warns about a mapped employee who has timecards on a project whose directory lacks them.
CREATE TABLE project_directories (
    account_id          text        NOT NULL,
    procore_project_id  bigint      NOT NULL,
    person_ids          bigint[]    NOT NULL,
    synced_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, procore_project_id)
);

-- The read contract (see 005).
CREATE VIEW ${read_schema}.project_directories AS
    SELECT account_id, procore_project_id, person_ids, synced_at FROM ${schema}.project_directories;
GRANT SELECT ON ${read_schema}.project_directories TO ${readers};
