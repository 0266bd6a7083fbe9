-- A mapping whose Procore entity disappeared stays known as broken, with the reason, so the
-- entries it blocks say why ("… no longer exists in Procore") instead of only "not mapped".
ALTER TABLE mappings ALTER COLUMN procore_id DROP NOT NULL;
ALTER TABLE mappings ADD COLUMN broken_reason text;
