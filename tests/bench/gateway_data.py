"""A big, persistent data set for the gateway benchmark, built with set-based SQL in a dedicated layout.

    python -m tests.bench.gateway_data --timelogs 10000000 --accounts 50 --sites 500
    python -m tests.bench.gateway_data --drop

The layout (roles and schemas `gwbench_<service>`, as `shared.provision` makes them) is migrated with the services'
own migrations, so the gateway reads exactly the read contract it reads in production. It stays between runs; a
second build with the same arguments does nothing (`--rebuild` empties and refills it, `--drop` removes it).

What it holds (deterministic: `setseed`):
- `--accounts` accounts; `gw-big` has `--sites` job sites and `--big-share` of the timelogs, every other account
  `--small-sites` job sites and an equal part of the rest; `--weeks` weeks of work ending with this week's Sunday.
- timelogs: each job site has its crew of employees (companies, crews, pay classes, pay ids fixed per employee),
  4 to 10 h, a cost code of 30, 30 % with a quantity; 3 % are tombstones (deleted).
- entries derived from the live timelogs by GROUP BY exactly as the aggregator groups them (`MODULE_DIMS`):
  manpower per (company, crew) with the distinct head count, timecard per (employee, pay id, cost code, pay class),
  production quantity per (cost code, unit); `seconds`, `units`, `contributions` filled. A status mix by age:
  older weeks mostly Published, the last two weeks mostly To do with every other status present (Non publishable
  with the help article's reasons, Failed with Procore's message or a conflict, Publishing, Updated, Deleted
  without content). Entry ids are md5-derived UUIDs of (account, module, key), not the aggregator's uuid5 (the
  gateway only needs them unique and stable); `entry_members` is left empty (the gateway never reads it).
- reference names of every job site, employee, company, cost code, pay class and pay id; project and payroll type
  mappings for most job sites and pay ids; setups with every module; two publish-history steps for the published
  entries of the last two weeks.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import asyncpg
from tqdm import tqdm

from shared import db
from shared.labels import CHANGED_IN_PROCORE
from shared.provision import Layout
from tests.support.database import ProvisionedDatabase, drop_layout, migrated, provision_layout

PREFIX = "gwbench_"
BIG_ACCOUNT = "gw-big"
LAYOUT = Layout(PREFIX)
EMPLOYEES_PER_SITE = 12
COST_CODES = 30


@dataclass(frozen=True)
class Plan:
    timelogs: int
    accounts: int
    sites: int
    small_sites: int
    weeks: int
    big_share: float
    last_day: date

    @property
    def days(self) -> int:
        return self.weeks * 7

    @property
    def first_day(self) -> date:
        return self.last_day - timedelta(days=self.days - 1)

    def accounts_plan(self) -> list[tuple[str, int, int]]:
        """(account_id, job sites, timelogs per day) of every account."""
        big = round(self.timelogs * self.big_share) if self.accounts > 1 else self.timelogs
        rest = self.timelogs - big
        out = [(BIG_ACCOUNT, self.sites, max(1, big // self.days))]
        for i in range(1, self.accounts):
            out.append((f"gw-{i:02d}", self.small_sites, max(1, rest // (self.accounts - 1) // self.days)))
        return out

    def describe(self) -> str:
        return (
            f"timelogs={self.timelogs} accounts={self.accounts} sites={self.sites} small_sites={self.small_sites}"
            f" weeks={self.weeks} big_share={self.big_share} last_day={self.last_day}"
        )


def this_sunday(today: date | None = None) -> date:
    today = today or datetime.now(UTC).date()
    return today + timedelta(days=6 - today.weekday())


# The status of an entry from a hash of its key and its age: what a live account looks like.
_STATUS = """
CASE WHEN work_date < $last_day::date - 13 THEN
    CASE WHEN h < 92 THEN 'published' WHEN h < 95 THEN 'updated' WHEN h < 97 THEN 'failed'
         WHEN h < 99 THEN 'non_publishable' ELSE 'deleted' END
ELSE
    CASE WHEN h < 45 THEN 'todo' WHEN h < 70 THEN 'published' WHEN h < 75 THEN 'publishing'
         WHEN h < 83 THEN 'updated' WHEN h < 89 THEN 'failed' WHEN h < 96 THEN 'non_publishable'
         ELSE 'deleted' END
END"""

TIMELOGS_SQL = """
INSERT INTO {s}.timelogs (account_id, timelog_id, revision, deleted, employee_id, company_id, crew_tag, job_site_id,
                          work_date, seconds, cost_code_id, pay_class_id, pay_id, quantities, updated_at)
SELECT $1, 'tl-' || d || '-' || g, 1, random() < 0.03,
       'emp-' || emp, 'co-' || (emp % 4), 'crew-' || (emp % 2), 'site-' || lpad(site::text, 3, '0'),
       $2::date + d, 14400 + (random() * 21600)::int, 'cc-' || lpad((abs(hashint4(g + d)) % {cc})::text, 2, '0'),
       'pc-' || (emp % 3), 'pay-' || (emp % 3),
       CASE WHEN random() < 0.3 THEN jsonb_build_array(jsonb_build_array(
            'cc-' || lpad((abs(hashint4(g + d)) % {cc})::text, 2, '0'), 'm', (1 + (random() * 40)::int)::text))
            ELSE '[]'::jsonb END,
       ($2::date + d)::timestamptz + interval '20 hours'
  FROM generate_series(0, $3::int - 1) d, generate_series(0, $4::int - 1) g,
       LATERAL (SELECT g % $5 AS site) s,
       LATERAL (SELECT s.site * {eps} + (g / $5) % {eps} AS emp) e
"""


def entries_sql(schema: str, module: str, dims: str, group: str, content: str, source: str) -> str:
    units = "sum(units)" if module == "production_quantity" else "0::numeric"
    return f"""
SELECT md5(account_id || chr(31) || '{module}' || chr(31) || entry_key)::uuid, account_id, '{module}', job_site_id,
       work_date, entry_key, dims,
       CASE WHEN status = 'deleted' THEN NULL ELSE content END,
       NULL, status, 1 + (h % 3),
       CASE WHEN status = 'non_publishable' THEN jsonb_build_array(
            CASE WHEN h % 2 = 0 THEN 'Job site ' || job_site_id || ' is not mapped to a Procore project'
                 ELSE 'Pay ID pay-' || (h % 3) || ' has no payroll item' END) ELSE '[]'::jsonb END,
       CASE WHEN status = 'failed' THEN
            CASE WHEN h % 4 = 0 THEN $changed ELSE 'Procore answered 422: Cost code is inactive' END END,
       CASE WHEN status IN ('published', 'updated', 'failed', 'deleted', 'publishing') THEN 100000 + h END,
       work_date::timestamptz + interval '22 hours', seconds, units, contributions,
       CASE WHEN status IN ('published', 'updated', 'failed') AND work_date >= $last_day::date - 13
            THEN content END,
       CASE WHEN status IN ('published', 'updated', 'failed') THEN work_date::timestamptz + interval '23 hours' END,
       h
  FROM (SELECT g.*, abs(hashtext(g.entry_key)) % 100 AS h
          FROM (SELECT account_id, job_site_id, work_date,
                       json_build_array(job_site_id, work_date, {group})::text AS entry_key,
                       jsonb_build_object({dims}) AS dims, {content} AS content,
                       sum(seconds)::bigint AS seconds, {units} AS units, count(*)::int AS contributions
                  FROM {source}
                 WHERE work_date BETWEEN $from::date AND $to::date
                 GROUP BY account_id, job_site_id, work_date, {group}) g) k,
       LATERAL (SELECT {_STATUS} AS status) st
"""


ENTRIES_SQL = """
INSERT INTO {schema}.entries (entry_id, account_id, module, job_site_id, work_date, entry_key, dims, content,
        fingerprint, status, version, errors, last_error, procore_id, updated_at, seconds, units, contributions,
        published_payload, procore_updated_at)
SELECT entry_id, account_id, module, job_site_id, work_date, entry_key, dims, content, fingerprint, status, version,
       errors, last_error, procore_id, updated_at, seconds, units, contributions, published_payload,
       procore_updated_at
  FROM ({manpower} UNION ALL {timecard} UNION ALL {production_quantity})
       AS x(entry_id, account_id, module, job_site_id, work_date, entry_key, dims, content, fingerprint, status,
            version, errors, last_error, procore_id, updated_at, seconds, units, contributions, published_payload,
            procore_updated_at, h)
 ORDER BY work_date, h, entry_id
"""
"""Entries of a window of days, every account and module mixed day by day (as the aggregator writes them over
time): a week of one account is spread over the table as in production, not stored together."""


def _entries_statements(schema: str) -> dict[str, str]:
    live = f"(SELECT * FROM {schema}.timelogs WHERE NOT deleted) t"
    quantities = (
        f"(SELECT t.account_id, t.job_site_id, t.work_date, t.seconds, q->>0 AS cost_code_id, q->>1 AS unit,"
        f" (q->>2)::numeric AS units FROM {schema}.timelogs t, jsonb_array_elements(t.quantities) q"
        f" WHERE NOT t.deleted) t"
    )
    hours = "to_char(round(sum(seconds) / 3600.0, 2), 'FM999990.00')"
    return {
        "manpower": entries_sql(
            schema,
            "manpower",
            "'company_id', company_id, 'crew_tag', crew_tag",
            "company_id, crew_tag",
            "jsonb_build_object('manpower', count(DISTINCT employee_id)::text, 'total_hours', "
            + hours
            + ", 'average_hours', to_char(round(sum(seconds) / 3600.0 / count(DISTINCT employee_id), 2),"
            " 'FM999990.00'))",
            live,
        ),
        "timecard": entries_sql(
            schema,
            "timecard",
            "'employee_id', employee_id, 'pay_id', pay_id, 'cost_code_id', cost_code_id, 'pay_class_id', pay_class_id",
            "employee_id, pay_id, cost_code_id, pay_class_id",
            "jsonb_build_object('hours', " + hours + ")",
            live,
        ),
        "production_quantity": entries_sql(
            schema,
            "production_quantity",
            "'cost_code_id', cost_code_id, 'unit_of_measure', unit",
            "cost_code_id, unit",
            "jsonb_build_object('units', sum(units)::text)",
            quantities,
        ),
    }


def _bind(sql: str, names: list[str]) -> str:
    """Named placeholders ($account, $last_day, …) → asyncpg's $1…, in the order of `names`."""
    for i, name in enumerate(names, 1):
        sql = sql.replace(f"${name}", f"${i}")
    return sql


async def _secondary_indexes(conn: asyncpg.Connection, schema: str, tables: list[str]) -> list[tuple[str, str]]:
    rows = await conn.fetch(
        """
        SELECT i.relname AS name, pg_get_indexdef(i.oid) AS definition
          FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
          JOIN pg_namespace n ON n.oid = t.relnamespace
         WHERE n.nspname = $1 AND t.relname = ANY($2::text[])
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.oid)
        """,
        schema,
        tables,
    )
    return [(r["name"], r["definition"]) for r in rows]


async def build(admin_dsn: str, plan: Plan, rebuild: bool) -> None:
    started = time.perf_counter()
    database = ProvisionedDatabase(admin_dsn, LAYOUT)
    await provision_layout(admin_dsn, LAYOUT)
    await migrated(database, "aggregator", "mapping")
    schema = db.quote_ident(LAYOUT.schema("aggregator"))
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f"CREATE TABLE IF NOT EXISTS {schema}.bench_plan (plan text NOT NULL, built_at timestamptz)")
        built = await conn.fetchval(f"SELECT plan FROM {schema}.bench_plan WHERE built_at IS NOT NULL")
        # Reused whatever day it was built on (the bench reads the latest weeks the data holds).
        same = built is not None and built.split(" last_day=")[0] == plan.describe().split(" last_day=")[0]
        if same and not rebuild:
            print(f"already built: {built} (--rebuild to refill)")
            return
        print(f"building {plan.describe()} in {LAYOUT.schema('aggregator')}")
        tables = ["timelogs", "entries", "publish_history", "setups", "mappings", "reference_names", "entry_members"]
        await conn.execute(f"TRUNCATE {', '.join(f'{schema}.{t}' for t in tables)}, {schema}.bench_plan CASCADE")
        await conn.execute(f"INSERT INTO {schema}.bench_plan (plan) VALUES ($1)", plan.describe())
        # Bulk load: no triggers (live NOTIFY), secondary indexes built once at the end, generous memory.
        await conn.execute("SET session_replication_role = replica")
        await conn.execute("SET work_mem = '256MB'")
        await conn.execute("SET maintenance_work_mem = '1GB'")
        await conn.execute("SET synchronous_commit = off")
        # Remembered before they are dropped, so a build that was interrupted still gets them all back.
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {schema}.bench_indexes (name text PRIMARY KEY, definition text NOT NULL)"
        )
        for name, definition in await _secondary_indexes(conn, LAYOUT.schema("aggregator"), ["timelogs", "entries"]):
            await conn.execute(
                f"INSERT INTO {schema}.bench_indexes VALUES ($1, $2) ON CONFLICT (name) DO NOTHING", name, definition
            )
            await conn.execute(f"DROP INDEX {schema}.{db.quote_ident(name)}")
        indexes = [(r["name"], r["definition"]) for r in await conn.fetch(f"SELECT * FROM {schema}.bench_indexes")]

        accounts = plan.accounts_plan()
        statements = _entries_statements(schema)
        timelogs_sql = TIMELOGS_SQL.format(s=schema, cc=COST_CODES, eps=EMPLOYEES_PER_SITE)
        names = ["from", "to", "last_day", "changed"]
        entries_sql = _bind(ENTRIES_SQL.format(schema=schema, **statements), names)
        total = sum(per_day * plan.days for _, _, per_day in accounts)
        with tqdm(total=total, unit="timelog", unit_scale=True, desc="timelogs") as bar:
            for n, (account, sites, per_day) in enumerate(accounts):
                await conn.execute("SELECT setseed($1)", (n % 1000) / 1000)
                await conn.execute(timelogs_sql, account, plan.first_day, plan.days, per_day, sites)
                bar.update(per_day * plan.days)
        window = 28
        with tqdm(total=plan.days, unit="day", desc="entries") as bar:
            for start in range(0, plan.days, window):
                first = plan.first_day + timedelta(days=start)
                last = min(first + timedelta(days=window - 1), plan.last_day)
                await conn.execute(entries_sql, first, last, plan.last_day, CHANGED_IN_PROCORE)
                bar.update((last - first).days + 1)
        await _references(conn, schema, accounts)
        await conn.execute(
            f"""
            INSERT INTO {schema}.publish_history (entry_id, request_id, action, requested_by, outcome, message, at,
                                                  trace_id)
            SELECT entry_id, md5(entry_id::text)::uuid, 'publish', 'user-1', NULL, NULL, updated_at, NULL
              FROM {schema}.entries WHERE status = 'published' AND work_date >= $1::date - 13
            UNION ALL
            SELECT entry_id, md5(entry_id::text)::uuid, 'result', 'procore', 'published', NULL,
                   updated_at + interval '2 seconds', NULL
              FROM {schema}.entries WHERE status = 'published' AND work_date >= $1::date - 13
            """,
            plan.last_day,
        )
        for _name, definition in tqdm(indexes, desc="indexes"):
            await conn.execute(definition)
        await conn.execute("RESET session_replication_role")
        print("VACUUM ANALYZE …", flush=True)
        for table in tables:
            await conn.execute(f"VACUUM ANALYZE {schema}.{table}")
        await conn.execute(f"UPDATE {schema}.bench_plan SET built_at = now()")
        counts = await conn.fetch(f"SELECT module, count(*) AS n FROM {schema}.entries GROUP BY module ORDER BY module")
        timelogs = await conn.fetchval(f"SELECT count(*) FROM {schema}.timelogs")
        size = await conn.fetchval(
            "SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid))) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'",
            LAYOUT.schema("aggregator"),
        )
    finally:
        await conn.close()
    print(f"timelogs={timelogs} " + " ".join(f"{r['module']}_entries={r['n']}" for r in counts) + f" size={size}")
    print(f"built in {time.perf_counter() - started:.0f} s")


async def _references(conn: asyncpg.Connection, schema: str, accounts: list[tuple[str, int, int]]) -> None:
    ids = [a for a, _, _ in accounts]
    sites = [s for _, s, _ in accounts]
    await conn.execute(
        f"""
        INSERT INTO {schema}.setups (account_id, procore_company_id, enabled_modules, two_way)
        SELECT a, 4000 + o, '{{manpower,timecard,production_quantity}}', false
          FROM unnest($1::text[]) WITH ORDINALITY AS x(a, o);
        """,
        ids,
    )
    await conn.execute(
        f"""
        INSERT INTO {schema}.reference_names (account_id, kind, entity_id, name, number)
        SELECT a, 'job_site', 'site-' || lpad(i::text, 3, '0'),
               (ARRAY['Harbor', 'Maple', 'Granite', 'Riverside', 'Summit', 'Cedar', 'Lakeview', 'Oak'])[1 + i % 8]
                 || ' ' || (ARRAY['Tower', 'Plaza', 'School', 'Bridge', 'Depot', 'Clinic'])[1 + (i / 8) % 6]
                 || ' ' || i, 'JS-' || i
          FROM unnest($1::text[], $2::int[]) AS x(a, n), generate_series(0, n - 1) i
        UNION ALL
        SELECT a, 'employee', 'emp-' || i, 'Employee ' || i, NULL
          FROM unnest($1::text[], $2::int[]) AS x(a, n), generate_series(0, n * {EMPLOYEES_PER_SITE} - 1) i
        UNION ALL
        SELECT a, 'company', 'co-' || i, 'Company ' || i, NULL FROM unnest($1::text[]) a, generate_series(0, 3) i
        UNION ALL
        SELECT a, 'cost_code', 'cc-' || lpad(i::text, 2, '0'), 'Cost code ' || i, '01-' || lpad(i::text, 3, '0')
          FROM unnest($1::text[]) a, generate_series(0, {COST_CODES - 1}) i
        UNION ALL
        SELECT a, 'pay_class', 'pc-' || i, 'Pay class ' || i, NULL FROM unnest($1::text[]) a, generate_series(0, 2) i
        UNION ALL
        SELECT a, 'pay_id', 'pay-' || i, 'Pay ' || i, NULL FROM unnest($1::text[]) a, generate_series(0, 2) i
        """,
        ids,
        sites,
    )
    await conn.execute(
        f"""
        INSERT INTO {schema}.mappings (account_id, entity, mobiclocks_id, procore_project_id, procore_id,
                                       procore_name)
        SELECT a, 'project', 'site-' || lpad(i::text, 3, '0'), 0, 700000 + i, 'Project ' || i
          FROM unnest($1::text[], $2::int[]) AS x(a, n), generate_series(0, n - 1) i WHERE i % 10 <> 0
        UNION ALL
        SELECT a, 'payroll_type', 'pay-' || i, 0, 800 + i, 'Regular ' || i
          FROM unnest($1::text[]) a, generate_series(0, 1) i
        """,
        ids,
        sites,
    )


async def drop(admin_dsn: str) -> None:
    await drop_layout(admin_dsn, LAYOUT)
    print(f"dropped the {PREFIX}* roles and schemas")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timelogs", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument("--sites", type=int, default=500, help="job sites of the big account")
    parser.add_argument("--small-sites", type=int, default=20, help="job sites of every other account")
    parser.add_argument("--weeks", type=int, default=52)
    parser.add_argument("--big-share", type=float, default=0.2, help="the big account's share of the timelogs")
    parser.add_argument("--rebuild", action="store_true", help="empty and refill even when built with these args")
    parser.add_argument("--drop", action="store_true", help="remove the bench roles and schemas")
    parser.add_argument("--dsn", default=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args()
    if args.drop:
        asyncio.run(drop(args.dsn))
        return
    plan = Plan(args.timelogs, args.accounts, args.sites, args.small_sites, args.weeks, args.big_share, this_sunday())
    asyncio.run(build(args.dsn, plan, args.rebuild))


if __name__ == "__main__":
    main()
