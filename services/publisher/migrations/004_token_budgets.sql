-- Procore counts calls per token, and the companies under one token may be leased by different instances: each
-- token's budget is kept here, shared by every instance (services/publisher/adapters/token_budgets.py). Times are
-- Unix seconds, as Procore's X-Rate-Limit-Reset.
CREATE TABLE token_budgets (
    budget_key     text             PRIMARY KEY,
    remaining      integer,
    reset_at       double precision NOT NULL DEFAULT 0,
    blocked_until  double precision NOT NULL DEFAULT 0,
    next_at        double precision NOT NULL DEFAULT 0,
    updated_at     timestamptz      NOT NULL DEFAULT now()
);
