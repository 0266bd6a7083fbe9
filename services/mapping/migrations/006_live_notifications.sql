-- Live updates: a statement that changes what the Setup and Data mapping screens show tells listeners which
-- account and what changed (NOTIFY on channel '<schema>.mapping', delivered at commit): mappings, synced lists,
-- auto-map reports, setup, the connection's status and command outcomes. One notification per account and
-- table per statement; only account ids are read from the rows (never a token column).
CREATE FUNCTION ${schema}.notify_mapping_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify(TG_TABLE_SCHEMA || '.mapping', json_build_object('account_id', account_id, 'what', TG_TABLE_NAME)::text)
           FROM (SELECT DISTINCT account_id FROM live_old) accounts;
    ELSE
        PERFORM pg_notify(TG_TABLE_SCHEMA || '.mapping', json_build_object('account_id', account_id, 'what', TG_TABLE_NAME)::text)
           FROM (SELECT DISTINCT account_id FROM live_new) accounts;
    END IF;
    RETURN NULL;
END
$$;

DO $$
DECLARE
    watched text;
BEGIN
    FOREACH watched IN ARRAY ARRAY['mappings', 'sync_runs', 'automap_reports', 'setups', 'connections',
                                   'command_outcomes']
    LOOP
        EXECUTE format(
            'CREATE TRIGGER %1$s_live_insert AFTER INSERT ON %2$s.%1$I REFERENCING NEW TABLE AS live_new'
            ' FOR EACH STATEMENT EXECUTE FUNCTION %2$s.notify_mapping_changed()', watched, '${schema}');
        EXECUTE format(
            'CREATE TRIGGER %1$s_live_update AFTER UPDATE ON %2$s.%1$I REFERENCING NEW TABLE AS live_new'
            ' FOR EACH STATEMENT EXECUTE FUNCTION %2$s.notify_mapping_changed()', watched, '${schema}');
        EXECUTE format(
            'CREATE TRIGGER %1$s_live_delete AFTER DELETE ON %2$s.%1$I REFERENCING OLD TABLE AS live_old'
            ' FOR EACH STATEMENT EXECUTE FUNCTION %2$s.notify_mapping_changed()', watched, '${schema}');
    END LOOP;
END
$$;
