-- Entries keep the totals they add up, so each timelog change applies as a delta; manpower
-- keeps timelogs per employee so its head count stays exact. Timelog membership is no longer
-- stored per entry: it is read from the timelogs when an entry is published.
ALTER TABLE entries DROP COLUMN timelog_ids;
ALTER TABLE entries
    ADD COLUMN seconds       bigint  NOT NULL DEFAULT 0,
    ADD COLUMN units         numeric NOT NULL DEFAULT 0,
    ADD COLUMN contributions integer NOT NULL DEFAULT 0;

CREATE TABLE entry_members (
    entry_id    uuid    NOT NULL,
    employee_id text    NOT NULL,
    timelogs    integer NOT NULL CHECK (timelogs > 0),
    PRIMARY KEY (entry_id, employee_id)
);

-- entry_id is derived from (account, module, entry_key), so the second unique index only cost writes.
ALTER TABLE entries DROP CONSTRAINT entries_account_id_module_entry_key_key;
