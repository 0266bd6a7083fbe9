-- The read contract: what the gateway may read of this service (Setup and Data mapping screens), as views in
-- ${read_schema} (owned by this service's role). SELECT goes to ${readers}, whose member the gateway's role is.
-- Never in it: tokens, client ids and secrets (connections), OAuth attempts, the outbox, emitted changes.
--
-- Changing the contract is a later migration: CREATE OR REPLACE VIEW to add columns at the end, or DROP VIEW +
-- CREATE VIEW to reshape one (the default privilege below grants SELECT on the new view again). A migration that
-- drops or retypes a table column a view uses must replace that view in the same migration.
GRANT USAGE ON SCHEMA ${read_schema} TO ${readers};
ALTER DEFAULT PRIVILEGES IN SCHEMA ${read_schema} GRANT SELECT ON TABLES TO ${readers};

CREATE VIEW ${read_schema}.setups AS
    SELECT account_id, procore_company_id, enabled_modules, two_way, updated_by, updated_at
      FROM ${schema}.setups;

-- The connection's status only: no token or secret column.
CREATE VIEW ${read_schema}.connection_status AS
    SELECT account_id, grant_type, status, message, connected_by, connected_at, refreshed_at, expires_at
      FROM ${schema}.connections;

-- The Procore companies bound to each account (the only ones it sees or may choose).
CREATE VIEW ${read_schema}.bound_companies AS
    SELECT procore_company_id, account_id, name, is_active, proof, bound_by, bound_at
      FROM ${schema}.company_bindings;

CREATE VIEW ${read_schema}.procore_entities AS
    SELECT account_id, entity, procore_project_id, procore_id, name, number, project_ids, gone, gone_at, synced_at
      FROM ${schema}.procore_entities;

CREATE VIEW ${read_schema}.reference_entities AS
    SELECT account_id, kind, entity_id, name, number, deleted, updated_at
      FROM ${schema}.reference_entities;

CREATE VIEW ${read_schema}.mappings AS
    SELECT account_id, entity, mobiclocks_id, procore_project_id, procore_id, source, broken_reason, updated_by,
           updated_at
      FROM ${schema}.mappings;

CREATE VIEW ${read_schema}.sync_runs AS
    SELECT account_id, entity, procore_project_id, synced_at, total, added, updated, gone
      FROM ${schema}.sync_runs;

CREATE VIEW ${read_schema}.automap_reports AS
    SELECT account_id, entity, ran_at, requested_by, overwrite_manual, mapped, skipped, ambiguous, details
      FROM ${schema}.automap_reports;

-- What became of each command (not the changes it emitted).
CREATE VIEW ${read_schema}.command_outcomes AS
    SELECT command_id, account_id, command_type, status, message, details, requested_by, finished_at
      FROM ${schema}.command_outcomes;

GRANT SELECT ON ALL TABLES IN SCHEMA ${read_schema} TO ${readers};
