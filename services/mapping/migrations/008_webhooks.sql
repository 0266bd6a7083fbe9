-- Procore webhooks (services/mapping/webhooks.py): one hook per bound company that Setup chose, registered with
-- this service's connection, delivering to the gateway. Each hook has its own secret, sent by Procore in the
-- Authorization header of every delivery; only its SHA-256 is kept (a secret of 32 random bytes needs no slow
-- hash), so a read of this table cannot forge deliveries.
CREATE TABLE webhook_hooks (
    procore_company_id  bigint      PRIMARY KEY,
    account_id          text        NOT NULL,
    procore_hook_id     bigint      NOT NULL,
    secret_sha256       text        NOT NULL UNIQUE,
    destination_url     text        NOT NULL,
    registered_at       timestamptz NOT NULL DEFAULT now(),
    last_delivery_at    timestamptz,
    -- the reconcile lists what changed in Procore since this time (minus an overlap) to catch missed deliveries
    reconciled_until    timestamptz
);
CREATE INDEX webhook_hooks_by_account ON webhook_hooks (account_id);

-- Deliveries already taken (Procore retries and duplicates them): keyed by the event's id within its company.
-- Pruned after WEBHOOK_DEDUPE_KEEP_S (Procore gives up retrying after 12 hours).
CREATE TABLE webhook_deliveries (
    procore_company_id  bigint      NOT NULL,
    delivery_id         text        NOT NULL,
    received_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (procore_company_id, delivery_id)
);
CREATE INDEX webhook_deliveries_by_time ON webhook_deliveries (received_at);
