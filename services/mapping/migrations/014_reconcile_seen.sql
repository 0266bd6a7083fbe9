-- The manpower and quantity logs each reconcile saw, per company, project and day: Procore's lists omit a deleted
-- log, so one we saw before and no longer see in the same window was deleted — the reconcile reports it even when
-- the webhook delivery of that deletion was lost.
CREATE TABLE reconcile_seen (
    procore_company_id bigint NOT NULL,
    module text NOT NULL,
    project_id bigint NOT NULL,
    record_id bigint NOT NULL,
    log_date date NOT NULL,
    PRIMARY KEY (procore_company_id, module, record_id)
);
CREATE INDEX reconcile_seen_by_window ON reconcile_seen (procore_company_id, module, project_id, log_date);
