-- A deleted timelog marks every entry it was published (or is being published) with as Deleted,
-- including entries it had already moved out of: find them by these sets. Partial, because GIN
-- indexes NULL arrays too and most entries have none: a full index grows with every insert.
CREATE INDEX entries_published_with ON entries USING gin (published_timelog_ids)
    WHERE published_timelog_ids IS NOT NULL;
CREATE INDEX entries_publishing_with ON entries USING gin (publishing_timelog_ids)
    WHERE publishing_timelog_ids IS NOT NULL;
