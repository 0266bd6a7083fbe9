-- A deleted timelog marks every entry it was published (or is being published) with as Deleted,
-- including entries it had already moved out of: find them by these sets.
CREATE INDEX entries_published_with ON entries USING gin (published_timelog_ids);
CREATE INDEX entries_publishing_with ON entries USING gin (publishing_timelog_ids);
