-- The attempt log becomes the publisher's durable inbox: a request is stored (with its trace
-- context) before its Kafka offset is committed, worked through per Procore company in arrival
-- order, and its result is kept until it was emitted.
ALTER TABLE attempts DROP CONSTRAINT attempts_state_check;
ALTER TABLE attempts ADD CONSTRAINT attempts_state_check CHECK (state IN ('queued', 'started', 'done'));
ALTER TABLE attempts ADD COLUMN seq bigserial;
ALTER TABLE attempts ADD COLUMN company_id bigint;
ALTER TABLE attempts ADD COLUMN request jsonb;
ALTER TABLE attempts ADD COLUMN trace jsonb NOT NULL DEFAULT '{}'::jsonb;
-- A create that ended without knowing whether Procore made the record (timeout, dropped
-- connection, 5xx): the entry's next create looks for the record first.
ALTER TABLE attempts ADD COLUMN uncertain boolean NOT NULL DEFAULT false;
ALTER TABLE attempts ADD COLUMN emitted_at timestamptz;
ALTER TABLE attempts ALTER COLUMN tries SET DEFAULT 0;
-- Rows written by the synchronous publisher were emitted in the same step.
UPDATE attempts SET emitted_at = finished_at WHERE state = 'done';
CREATE INDEX attempts_pending ON attempts (company_id, seq) WHERE state <> 'done';
CREATE INDEX attempts_unemitted ON attempts (seq) WHERE state = 'done' AND emitted_at IS NULL;
CREATE INDEX attempts_uncertain ON attempts (entry_id) WHERE uncertain;
-- The Procore record the first half of a replace deleted: a later request of the same entry
-- that finds it gone knows it was us, not someone in Procore.
ALTER TABLE attempts ADD COLUMN deleted_procore_id bigint;
