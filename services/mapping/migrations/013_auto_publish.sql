-- Auto-publish (issue 13): per module, how many minutes after an entry last changed its To do or Updated entries
-- are published automatically ({"timecard": 60}); empty: off (the article's manual flow, the default).
ALTER TABLE setups ADD COLUMN auto_publish jsonb NOT NULL DEFAULT '{}';

CREATE OR REPLACE VIEW ${read_schema}.setups AS
    SELECT account_id, procore_company_id, enabled_modules, two_way, updated_by, updated_at, auto_publish
      FROM ${schema}.setups;
