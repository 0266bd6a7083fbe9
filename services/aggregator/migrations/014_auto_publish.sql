-- Auto-publish (issue 13), copied from the mapping service's setup: per module, how many minutes after an entry
-- last changed its To do and Updated entries are published automatically ({"timecard": 60}); empty: off.
ALTER TABLE setups ADD COLUMN auto_publish jsonb NOT NULL DEFAULT '{}';
