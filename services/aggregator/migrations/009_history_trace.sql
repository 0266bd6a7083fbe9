-- The trace each publish-history row was written in (the publish command's, its result's), so the dashboard can
-- show an entry's history next to its traces. The writer names its trace in the transaction-local setting
-- app.trace_id (shared.telemetry.name_trace_in_transaction); a row written without it keeps NULL.
ALTER TABLE publish_history ADD COLUMN trace_id text DEFAULT NULLIF(current_setting('app.trace_id', true), '');

CREATE OR REPLACE VIEW ${read_schema}.publish_history AS
    SELECT id, entry_id, request_id, action, requested_by, outcome, message, at, trace_id
      FROM ${schema}.publish_history;
