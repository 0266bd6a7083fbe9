-- Live updates: every statement that changes entries tells listeners which account, module and days changed
-- (NOTIFY on channel '<schema>.entries', delivered at commit), so the gateway pushes them to dashboards at once
-- instead of polling. One notification per (account, module) per statement, whatever the number of rows: the
-- cost grows with the rows a statement changed, never with the table. `dates` is null when one statement
-- touched more than 62 days of a module, which keeps the payload far below NOTIFY's 8000 bytes.
CREATE FUNCTION ${schema}.notify_entry_days(channel text, account_id text, module text, dates date[]) RETURNS void
LANGUAGE sql AS $$
    SELECT pg_notify(
        channel,
        json_build_object(
            'account_id', account_id,
            'module', module,
            'dates', CASE WHEN cardinality(dates) <= 62 THEN dates END
        )::text
    );
$$;

CREATE FUNCTION ${schema}.entries_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Each trigger sees only the transition tables of its own event, hence one query per event.
    IF TG_OP = 'INSERT' THEN
        PERFORM ${schema}.notify_entry_days(TG_TABLE_SCHEMA || '.entries', account_id, module, array_agg(DISTINCT work_date ORDER BY work_date))
           FROM live_new GROUP BY account_id, module;
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM ${schema}.notify_entry_days(TG_TABLE_SCHEMA || '.entries', account_id, module, array_agg(DISTINCT work_date ORDER BY work_date))
           FROM live_old GROUP BY account_id, module;
    ELSE
        PERFORM ${schema}.notify_entry_days(TG_TABLE_SCHEMA || '.entries', account_id, module, array_agg(DISTINCT work_date ORDER BY work_date))
           FROM (SELECT account_id, module, work_date FROM live_new
                 UNION SELECT account_id, module, work_date FROM live_old) touched
          GROUP BY account_id, module;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER entries_live_insert AFTER INSERT ON ${schema}.entries
    REFERENCING NEW TABLE AS live_new FOR EACH STATEMENT EXECUTE FUNCTION ${schema}.entries_changed();
CREATE TRIGGER entries_live_update AFTER UPDATE ON ${schema}.entries
    REFERENCING OLD TABLE AS live_old NEW TABLE AS live_new FOR EACH STATEMENT EXECUTE FUNCTION ${schema}.entries_changed();
CREATE TRIGGER entries_live_delete AFTER DELETE ON ${schema}.entries
    REFERENCING OLD TABLE AS live_old FOR EACH STATEMENT EXECUTE FUNCTION ${schema}.entries_changed();

-- The force-publish preview compares Procore's record now with what our last publish left there: the read
-- contract gains the published fields and Procore's updated_at after that publish (columns added at the end).
CREATE OR REPLACE VIEW ${read_schema}.entries AS
    SELECT entry_id, account_id, module, job_site_id, work_date, dims, content, status, errors, last_error,
           version, procore_id, updated_at, published_payload, procore_updated_at
      FROM ${schema}.entries;
