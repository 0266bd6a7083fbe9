-- The week grid from one index, without reading the entries' heap (issue 11, target 4). What a grid cell shows —
-- status, head count, hours, timecards, quantities per cost code and unit — was inside `content` and `dims`, so a
-- week of a big account read tens of thousands of wide rows scattered over the table (150–180 ms of heap reads
-- for one timecard week at 10 M timelogs). The numbers become stored generated columns (PostgreSQL keeps them;
-- the aggregator's code does not change) and the cell index carries them, so the week's groups are an
-- index-only scan of a few hundred contiguous index pages.
-- The table is rewritten once by the ADD COLUMNs (minutes at 10 M entries, under an exclusive lock: a release
-- step to run while the aggregator is stopped or quiet).
ALTER TABLE entries
    ADD COLUMN grid_workers integer GENERATED ALWAYS AS ((content ->> 'manpower')::integer) STORED,
    ADD COLUMN grid_hours numeric GENERATED ALWAYS AS ((content ->> 'total_hours')::numeric) STORED,
    ADD COLUMN grid_units numeric GENERATED ALWAYS AS ((content ->> 'units')::numeric) STORED,
    ADD COLUMN grid_has_content boolean GENERATED ALWAYS AS (content IS NOT NULL AND content <> 'null'::jsonb) STORED,
    ADD COLUMN grid_cost_code_id text
        GENERATED ALWAYS AS (CASE WHEN module = 'production_quantity' THEN dims ->> 'cost_code_id' END) STORED,
    ADD COLUMN grid_unit text
        GENERATED ALWAYS AS (CASE WHEN module = 'production_quantity' THEN dims ->> 'unit_of_measure' END) STORED;

-- Same key as entries_by_cell (every lookup by cell keeps its index), the grid's columns carried along.
CREATE INDEX entries_grid ON entries (account_id, module, work_date, job_site_id)
    INCLUDE (status, grid_workers, grid_hours, grid_units, grid_has_content, grid_cost_code_id, grid_unit);
DROP INDEX entries_by_cell;

-- An index-only scan skips the heap only for pages the visibility map marks all-visible: vacuum this table
-- after ~1 % of it changed (the default 20 % leaves a big table's recent weeks unmarked for days).
ALTER TABLE entries SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_insert_scale_factor = 0.01);

-- Conflicts ("changed in Procore") are counted among the few Failed entries of a week only.
CREATE INDEX entries_failed_by_cell ON entries (account_id, module, work_date, job_site_id)
    INCLUDE (last_error) WHERE status = 'failed';

-- The read contract gains the grid's columns (added at the end).
CREATE OR REPLACE VIEW ${read_schema}.entries AS
    SELECT entry_id, account_id, module, job_site_id, work_date, dims, content, status, errors, last_error,
           version, procore_id, updated_at, published_payload, procore_updated_at,
           grid_workers, grid_hours, grid_units, grid_has_content, grid_cost_code_id, grid_unit
      FROM ${schema}.entries;
