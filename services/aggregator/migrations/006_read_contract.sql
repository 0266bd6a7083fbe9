-- The read contract: what the gateway may read of this service, as views in ${read_schema} (owned by this
-- service's role, like its tables). SELECT goes to ${readers}, whose member the gateway's role is; nobody else
-- reads the tables themselves. Columns are those the dashboard needs, nothing of the publish machinery.
--
-- Changing the contract is a later migration: CREATE OR REPLACE VIEW to add columns at the end, or DROP VIEW +
-- CREATE VIEW to reshape one (the default privilege below grants SELECT on the new view again). A migration that
-- drops or retypes a table column a view uses must replace that view in the same migration.
GRANT USAGE ON SCHEMA ${read_schema} TO ${readers};
ALTER DEFAULT PRIVILEGES IN SCHEMA ${read_schema} GRANT SELECT ON TABLES TO ${readers};

-- Entries of all three modules: what a cell shows, its status and why it cannot be published.
CREATE VIEW ${read_schema}.entries AS
    SELECT entry_id, account_id, module, job_site_id, work_date, dims, content, status, errors, last_error,
           version, procore_id, updated_at
      FROM ${schema}.entries;

-- Publish history of each entry (the gateway reads it for an entry of the account it already checked).
CREATE VIEW ${read_schema}.publish_history AS
    SELECT id, entry_id, request_id, action, requested_by, outcome, message, at
      FROM ${schema}.publish_history;

-- The replicas the aggregator validates against and the dashboard names things with.
CREATE VIEW ${read_schema}.setups AS
    SELECT account_id, procore_company_id, enabled_modules, two_way, updated_at
      FROM ${schema}.setups;

CREATE VIEW ${read_schema}.mappings AS
    SELECT account_id, entity, mobiclocks_id, procore_project_id, procore_id, procore_name, broken_reason
      FROM ${schema}.mappings;

CREATE VIEW ${read_schema}.reference_names AS
    SELECT account_id, kind, entity_id, name, number
      FROM ${schema}.reference_names;

GRANT SELECT ON ALL TABLES IN SCHEMA ${read_schema} TO ${readers};
