-- A timelog's own clock times (null when it came with a duration only): a timecard publish request carries its
-- entry's first clock-in, last clock-out and gaps, for Procore projects whose timesheet takes start/stop times.
ALTER TABLE timelogs ADD COLUMN clock_in timestamptz, ADD COLUMN clock_out timestamptz;
