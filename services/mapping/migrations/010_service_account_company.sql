-- A service account's company: Procore's documentation asks service-account (DMSA) tokens to name it in
-- Procore-Company-Id even on /companies and /me, the calls that prove which companies a connection reaches.
ALTER TABLE connections ADD COLUMN service_account_company_id bigint;
