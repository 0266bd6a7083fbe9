-- Mapping and setup changes mark what they affect instead of recomputing the account at once (issue 11): a mark
-- names the entries it affects by one of their dimensions (`dim` = job_site_id, company_id, employee_id, pay_id,
-- cost_code_id or pay_class_id, `value` = the MobiClocks id), or every entry of the account (`dim` = '*',
-- `value` = '': the Procore company changed). Marked entries only need their errors re-checked (their totals are
-- right; enabling or disabling a module still recomputes the account at once). A background remapper
-- recomputes an account's marked entries once its marks have been quiet for a moment (or waited too long),
-- then deletes the marks it covered (`seq` up to what it read): a mark made again meanwhile stays for the next
-- round, and a mark survives a crash before its round finished. Marking again is idempotent (one row per key).
CREATE SEQUENCE remap_mark_seq;

CREATE TABLE remap_marks (
    account_id       text        NOT NULL,
    dim              text        NOT NULL,
    value            text        NOT NULL,
    first_marked_at  timestamptz NOT NULL DEFAULT now(),
    marked_at        timestamptz NOT NULL DEFAULT now(),
    seq              bigint      NOT NULL DEFAULT nextval('remap_mark_seq'),
    PRIMARY KEY (account_id, dim, value)
);

-- One row per finished remap round: what it covered and how long it took (counted by tests and the benchmark,
-- kept for a week).
CREATE TABLE remap_rounds (
    id           bigserial   PRIMARY KEY,
    account_id   text        NOT NULL,
    marks        integer     NOT NULL,
    groups       integer     NOT NULL,
    chunks       integer     NOT NULL,
    first_marked_at timestamptz NOT NULL,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX remap_rounds_by_account ON remap_rounds (account_id, finished_at);
