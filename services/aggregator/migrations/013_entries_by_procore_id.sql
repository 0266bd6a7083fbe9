-- A webhook delivery or the reconcile names a Procore record: find the entry that owns it without a scan.
CREATE INDEX IF NOT EXISTS entries_by_procore_id ON entries (account_id, procore_id) WHERE procore_id IS NOT NULL;
