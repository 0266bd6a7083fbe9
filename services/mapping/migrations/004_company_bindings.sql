-- A Procore company belongs to the account that proved it controls it (services/mapping/README.md, "Binding").

-- One row per bound company: the primary key makes one company bound to at most one account.
CREATE TABLE company_bindings (
    procore_company_id  bigint      PRIMARY KEY,
    account_id          text        NOT NULL,
    name                text        NOT NULL,
    is_active           boolean     NOT NULL DEFAULT true,
    proof               text        NOT NULL CHECK (proof IN ('user_consent', 'customer_credentials')),
    connect_command     uuid,
    bound_by            text,
    bound_at            timestamptz NOT NULL DEFAULT now(),
    UNIQUE (procore_company_id, account_id)
);
CREATE INDEX company_bindings_by_account ON company_bindings (account_id, name);

-- An account's setup can name only a company bound to that same account. NOT VALID: setups written before
-- bindings existed are not checked (they are refused at every Procore call until the company is proven).
ALTER TABLE setups
    ADD CONSTRAINT setups_company_bound_to_account FOREIGN KEY (procore_company_id, account_id)
        REFERENCES company_bindings (procore_company_id, account_id) NOT VALID;

-- What a connection merely reaches is not the account's: the picker shows bindings only.
DROP TABLE procore_companies;
-- The gateway no longer builds the authorize URL (the mapping service does, with state and PKCE).
DROP TABLE oauth_app;

-- A customer's own service account (client credentials that only that customer holds); the secret encrypted.
ALTER TABLE connections
    ADD COLUMN client_id     text,
    ADD COLUMN client_secret text;

-- OAuth authorization requests in flight: single use, short-lived, tied to the browser that started them.
-- Only hashes of the state and of the browser's nonce are kept: a reader of this table cannot complete a flow.
CREATE TABLE oauth_attempts (
    state_hash          bytea       PRIMARY KEY,
    browser_hash        bytea       NOT NULL,
    account_id          text        NOT NULL,
    requested_by        text        NOT NULL,
    permissions         text[]      NOT NULL,
    redirect_uri        text        NOT NULL,
    code_verifier       text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    expires_at          timestamptz NOT NULL,
    used_at             timestamptz
);
CREATE INDEX oauth_attempts_by_expiry ON oauth_attempts (expires_at);
