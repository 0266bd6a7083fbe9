"""Where work stands inside the system after a scenario: for reading a failure, never for the verdict.

Read-only and best effort: the services' tables change under other engineers' hands, so each probe
that no longer fits is skipped with its error instead of failing the run.
"""

from __future__ import annotations

import asyncpg

from tests.chaos import messages as m
from tests.chaos.clients import read_all

PROBES = {
    "aggregator entries by status": "SELECT status, count(*) FROM aggregator.entries GROUP BY 1 ORDER BY 1",
    "aggregator outbox (rows, oldest s)": (
        "SELECT count(*), coalesce(round(extract(epoch FROM now() - min(created_at)))::int, 0) FROM aggregator.outbox"
    ),
    "publisher attempts by state": (
        "SELECT state || CASE WHEN state = 'done' AND emitted_at IS NULL THEN ' (result not sent)' ELSE '' END,"
        " count(*) FROM publisher.attempts GROUP BY 1 ORDER BY 1"
    ),
}


async def diagnose(dsn: str, kafka: str) -> list[str]:
    lines: list[str] = []
    try:
        conn = await asyncpg.connect(dsn, timeout=5)
    except (OSError, asyncpg.PostgresError) as error:
        return [f"diagnosis: database unreachable ({error!r})"]
    try:
        for name, sql in PROBES.items():
            try:
                async with conn.transaction(readonly=True):
                    rows = await conn.fetch(sql)
                lines.append(f"diagnosis: {name}: " + ", ".join(" ".join(str(v) for v in r.values()) for r in rows))
            except asyncpg.PostgresError as error:
                lines.append(f"diagnosis: {name}: n/a ({type(error).__name__})")
    finally:
        await conn.close()
    try:
        topics = [m.PUBLISH_COMMANDS, m.PUBLISH_REQUESTS, m.PUBLISH_RESULTS]
        records = await read_all(kafka, topics)
        counts = {t: sum(1 for r in records if r.topic == t) for t in topics}
        lines.append("diagnosis: messages on " + ", ".join(f"{t} {n}" for t, n in counts.items()))
    except Exception as error:  # best effort: the broker may be the thing that failed
        lines.append(f"diagnosis: topic sizes n/a ({error!r})")
    return lines
