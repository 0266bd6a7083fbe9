"""The database's own ceiling for the aggregator's work: a minimal set-based applier of the same stream.

No broker, no status machine, no validation: each batch of timelog changes is kept at its newest revision
per timelog, and applied in one transaction of three statements: one that locks the stored timelogs,
upserts the batch (revision-gated, tombstones on delete), derives every entry's delta (old contributions
out, new ones in, all three modules, manpower head count per employee) and upserts the entries' totals and
members (`INSERT … SELECT FROM unnest(…) ON CONFLICT DO UPDATE`); then two deletes of what dropped to zero.

It works on its own tables (`ceiling_*`, shaped like the aggregator's: same keys and indexes) in the
benchmark's schema, so the aggregator and the ceiling run against the same database, the same number
of stored timelogs and the same stream, in the same run.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from services.aggregator.adapters.timelogs import timelog_arrays
from services.aggregator.handlers import TimelogChange, newest_per_timelog

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS ceiling_timelogs (
    account_id text NOT NULL, timelog_id text NOT NULL, revision bigint NOT NULL, deleted boolean NOT NULL,
    employee_id text, company_id text, crew_tag text, job_site_id text, work_date date, seconds integer,
    cost_code_id text, pay_class_id text, pay_id text, quantities jsonb NOT NULL DEFAULT '[]',
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, timelog_id)
);
CREATE INDEX IF NOT EXISTS ceiling_timelogs_by_group ON ceiling_timelogs (account_id, job_site_id, work_date)
    WHERE NOT deleted;
CREATE TABLE IF NOT EXISTS ceiling_entries (
    entry_id uuid PRIMARY KEY, account_id text NOT NULL, module text NOT NULL, job_site_id text NOT NULL,
    work_date date NOT NULL, entry_key text NOT NULL, seconds bigint NOT NULL, units numeric NOT NULL,
    contributions integer NOT NULL, updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS ceiling_entries_by_cell ON ceiling_entries (account_id, module, work_date, job_site_id);
CREATE INDEX IF NOT EXISTS ceiling_entries_empty ON ceiling_entries (entry_id) WHERE contributions = 0;
CREATE TABLE IF NOT EXISTS ceiling_members (
    entry_id uuid NOT NULL, employee_id text NOT NULL, timelogs integer NOT NULL,
    PRIMARY KEY (entry_id, employee_id)
);
CREATE INDEX IF NOT EXISTS ceiling_members_empty ON ceiling_members (entry_id) WHERE timelogs = 0;
"""

# One statement: lock, gate by revision, store, derive deltas, upsert totals and members.
APPLY_SQL = """
WITH b AS (
    SELECT * FROM unnest($1::text::text[], $2::text::text[], $3::text::bigint[], $4::text::bool[], $5::text::text[],
                         $6::text::text[], $7::text::text[], $8::text::text[], $9::text::date[], $10::text::int[],
                         $11::text::text[], $12::text::text[], $13::text::text[], $14::text::text[])
           AS x(account_id, timelog_id, revision, deleted, employee_id, company_id, crew_tag, job_site_id,
                work_date, seconds, cost_code_id, pay_class_id, pay_id, quantities)
),
old AS (
    SELECT t.* FROM ceiling_timelogs t JOIN b ON t.account_id = b.account_id AND t.timelog_id = b.timelog_id
     ORDER BY t.account_id, t.timelog_id FOR UPDATE OF t
),
fresh AS (
    SELECT b.* FROM b LEFT JOIN old o ON o.account_id = b.account_id AND o.timelog_id = b.timelog_id
     WHERE o.revision IS NULL OR o.revision < b.revision
),
stored AS (
    INSERT INTO ceiling_timelogs (account_id, timelog_id, revision, deleted, employee_id, company_id, crew_tag,
                                  job_site_id, work_date, seconds, cost_code_id, pay_class_id, pay_id, quantities)
    SELECT account_id, timelog_id, revision, deleted, employee_id, company_id, crew_tag, job_site_id, work_date,
           seconds, cost_code_id, pay_class_id, pay_id, quantities::jsonb
      FROM fresh
    ON CONFLICT (account_id, timelog_id) DO UPDATE SET
        revision = EXCLUDED.revision, deleted = EXCLUDED.deleted, employee_id = EXCLUDED.employee_id,
        company_id = EXCLUDED.company_id, crew_tag = EXCLUDED.crew_tag, job_site_id = EXCLUDED.job_site_id,
        work_date = EXCLUDED.work_date, seconds = EXCLUDED.seconds, cost_code_id = EXCLUDED.cost_code_id,
        pay_class_id = EXCLUDED.pay_class_id, pay_id = EXCLUDED.pay_id, quantities = EXCLUDED.quantities,
        updated_at = now()
    RETURNING 1
),
change AS (
    SELECT -1 AS sign, o.account_id, o.employee_id, o.company_id, o.crew_tag, o.job_site_id, o.work_date,
           o.seconds, o.cost_code_id, o.pay_class_id, o.pay_id, o.quantities
      FROM old o JOIN fresh f ON f.account_id = o.account_id AND f.timelog_id = o.timelog_id
     WHERE NOT o.deleted
    UNION ALL
    SELECT 1, account_id, employee_id, company_id, crew_tag, job_site_id, work_date, seconds, cost_code_id,
           pay_class_id, pay_id, quantities::jsonb
      FROM fresh WHERE NOT deleted
),
contribution AS (
    SELECT account_id, 'manpower' AS module, job_site_id, work_date,
           jsonb_build_array(job_site_id, work_date, company_id, crew_tag)::text AS entry_key,
           sign, seconds, 0::numeric AS units, employee_id AS member
      FROM change
    UNION ALL
    SELECT account_id, 'timecard', job_site_id, work_date,
           jsonb_build_array(job_site_id, work_date, employee_id, pay_id, cost_code_id, pay_class_id)::text,
           sign, seconds, 0::numeric, NULL
      FROM change
    UNION ALL
    SELECT c.account_id, 'production_quantity', c.job_site_id, c.work_date,
           jsonb_build_array(c.job_site_id, c.work_date, q->>0, q->>1)::text, c.sign, 0, (q->>2)::numeric, NULL
      FROM change c CROSS JOIN LATERAL jsonb_array_elements(c.quantities) q
),
keyed AS (
    SELECT md5(account_id || chr(31) || module || chr(31) || entry_key)::uuid AS entry_id, * FROM contribution
),
members AS (
    INSERT INTO ceiling_members (entry_id, employee_id, timelogs)
    SELECT entry_id, member, sum(sign) FROM keyed WHERE member IS NOT NULL GROUP BY entry_id, member
    HAVING sum(sign) <> 0
    ON CONFLICT (entry_id, employee_id) DO UPDATE SET timelogs = ceiling_members.timelogs + EXCLUDED.timelogs
    RETURNING 1
)
INSERT INTO ceiling_entries (entry_id, account_id, module, job_site_id, work_date, entry_key, seconds, units,
                             contributions)
SELECT entry_id, min(account_id), min(module), min(job_site_id), min(work_date), min(entry_key), sum(sign * seconds),
       sum(sign * units), sum(sign)
  FROM keyed GROUP BY entry_id
HAVING sum(sign) <> 0 OR sum(sign * seconds) <> 0 OR sum(sign * units) <> 0
ON CONFLICT (entry_id) DO UPDATE SET
    seconds = ceiling_entries.seconds + EXCLUDED.seconds, units = ceiling_entries.units + EXCLUDED.units,
    contributions = ceiling_entries.contributions + EXCLUDED.contributions, updated_at = now()
"""

PRELOAD_SQL = """
INSERT INTO ceiling_timelogs (account_id, timelog_id, revision, deleted, employee_id, company_id, crew_tag,
                              job_site_id, work_date, seconds, cost_code_id, pay_class_id, pay_id, quantities)
SELECT account_id, timelog_id, revision, deleted, employee_id, company_id, crew_tag, job_site_id, work_date,
       seconds, cost_code_id, pay_class_id, pay_id, quantities
  FROM timelogs WHERE account_id = ANY($1::text[])
"""

PRELOAD_ENTRIES_SQL = """
INSERT INTO ceiling_entries (entry_id, account_id, module, job_site_id, work_date, entry_key, seconds, units,
                             contributions)
SELECT entry_id, account_id, module, job_site_id, work_date, entry_key, seconds, units, contributions
  FROM entries WHERE account_id = ANY($1::text[])
"""


@dataclass(frozen=True)
class CeilingResult:
    events: int
    events_per_s: float
    p99_batch_ms: float


async def prepare(conn: asyncpg.Connection) -> None:
    await conn.execute(SCHEMA_SQL)


async def copy_preloaded(conn: asyncpg.Connection, accounts: Sequence[str]) -> None:
    """The ceiling starts from the same stored timelogs and entries as the aggregator."""
    for i in range(0, len(accounts), 50):
        await conn.execute(PRELOAD_SQL, list(accounts[i : i + 50]))
        await conn.execute(PRELOAD_ENTRIES_SQL, list(accounts[i : i + 50]))
    await conn.execute("ANALYZE ceiling_timelogs; ANALYZE ceiling_entries; ANALYZE ceiling_members")


async def apply_batch(conn: asyncpg.Connection, events: Sequence[TimelogChange]) -> None:
    batch = sorted(newest_per_timelog(events), key=lambda e: (e.account_id, e.timelog_id))
    async with conn.transaction():
        await conn.execute(APPLY_SQL, *timelog_arrays(batch)[:14])  # the ceiling table keeps no clock times
        await conn.execute("DELETE FROM ceiling_members WHERE timelogs = 0")
        await conn.execute("DELETE FROM ceiling_entries WHERE contributions = 0")


async def run(conn: asyncpg.Connection, stream: Sequence[TimelogChange], batch: int) -> CeilingResult:
    """Apply the stream in batches of `batch` events, one after the other; events/s and p99 batch latency."""
    took: list[float] = []
    t0 = time.perf_counter()
    for start in range(0, len(stream), batch):
        b0 = time.perf_counter()
        await apply_batch(conn, stream[start : start + batch])
        took.append(time.perf_counter() - b0)
    elapsed = time.perf_counter() - t0
    took.sort()
    p99 = took[max(0, int(len(took) * 0.99) - 1)] * 1000
    return CeilingResult(len(stream), len(stream) / elapsed, p99)


async def totals(conn: asyncpg.Connection) -> dict[tuple[str, str, str], tuple[int, object, int]]:
    """(account, module, entry_key) → (seconds, units, contributions) of the ceiling's entries."""
    rows = await conn.fetch("SELECT account_id, module, entry_key, seconds, units, contributions FROM ceiling_entries")
    return {(r[0], r[1], r[2]): (r[3], r[4], r[5]) for r in rows}
