-- The week grid shows job site and cost code names from reference_names. The gateway keeps computed week views in
-- memory until a NOTIFY on '<schema>.entries' says what changed (migration 007); a renamed job site or cost code
-- changes what those views show without any entry changing, so it notifies too: the account, with module and dates
-- null (every module, every day), once per statement and only when a name or number really changed.
-- Dashboards reload their grid on it as on any entries event. Other kinds of names (employees, companies, ...) are
-- only in the details, which are never kept.
CREATE FUNCTION ${schema}.grid_names_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM ${schema}.notify_entry_days(TG_TABLE_SCHEMA || '.entries', account_id, NULL, NULL)
           FROM (SELECT DISTINCT account_id FROM names_new WHERE kind IN ('job_site', 'cost_code')) changed;
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM ${schema}.notify_entry_days(TG_TABLE_SCHEMA || '.entries', account_id, NULL, NULL)
           FROM (SELECT DISTINCT account_id FROM names_old WHERE kind IN ('job_site', 'cost_code')) changed;
    ELSE
        PERFORM ${schema}.notify_entry_days(TG_TABLE_SCHEMA || '.entries', account_id, NULL, NULL)
           FROM (SELECT DISTINCT n.account_id
                   FROM names_new n
                   JOIN names_old o USING (account_id, kind, entity_id)
                  WHERE n.kind IN ('job_site', 'cost_code')
                    AND (n.name IS DISTINCT FROM o.name OR n.number IS DISTINCT FROM o.number)) changed;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER reference_names_grid_insert AFTER INSERT ON ${schema}.reference_names
    REFERENCING NEW TABLE AS names_new FOR EACH STATEMENT EXECUTE FUNCTION ${schema}.grid_names_changed();
CREATE TRIGGER reference_names_grid_update AFTER UPDATE ON ${schema}.reference_names
    REFERENCING OLD TABLE AS names_old NEW TABLE AS names_new
    FOR EACH STATEMENT EXECUTE FUNCTION ${schema}.grid_names_changed();
CREATE TRIGGER reference_names_grid_delete AFTER DELETE ON ${schema}.reference_names
    REFERENCING OLD TABLE AS names_old FOR EACH STATEMENT EXECUTE FUNCTION ${schema}.grid_names_changed();
