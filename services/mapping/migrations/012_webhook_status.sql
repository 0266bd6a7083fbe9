-- The read contract (see 005): Setup shows whether Procore's webhooks are registered for the chosen company and
-- when the last delivery came (never the secret's digest).
CREATE VIEW ${read_schema}.webhook_status AS
    SELECT account_id, procore_company_id, registered_at, last_delivery_at, reconciled_until
      FROM ${schema}.webhook_hooks;
GRANT SELECT ON ${read_schema}.webhook_status TO ${readers};
