"""Poison messages: what the services must dead-letter with a reason, without taking valid neighbours along.

They share keys (so partitions) with the valid load. One message is not poison but tolerated either way:
a well-formed timelog of an account nobody set up (no modules enabled, so it may give no entry).
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

from tests.chaos import messages as m
from tests.chaos.generator import Outgoing
from tests.chaos.plan import AccountPlan

UNKNOWN_ACCOUNT = "unknown account"
OVERSIZED_BYTES = 2 * 1024 * 1024


def _timelog(account_id: str, timelog_id: str, site: str, day: date) -> m.Json:
    start = datetime(day.year, day.month, day.day, 7, tzinfo=UTC)
    return {
        **m.envelope(account_id, "timelog.upserted"),
        "timelog_id": timelog_id,
        "revision": 1,
        "employee_id": "emp-0",
        "company_id": "co-0",
        "crew_tag": None,
        "job_site_id": site,
        "work_date": day.isoformat(),
        "clock_in": start.isoformat(),
        "clock_out": (start + timedelta(hours=8)).isoformat(),
        "duration_seconds": None,
        "cost_code_id": None,
        "pay_class_id": None,
        "pay_id": "REG",
        "quantities": [],
    }


def poison_messages(plan: AccountPlan, ghost_account: str, rng: random.Random) -> list[Outgoing]:
    a, site, day = plan.account_id, plan.sites[0], plan.days[0]
    key = m.timelog_key(a, site)

    def timelog(label: str, **changes: object) -> Outgoing:
        body = {**_timelog(a, f"poison-{rng.randrange(10**9)}", site, day), **changes}
        for name, value in changes.items():
            if value is _DROP:
                del body[name]
        return Outgoing(m.TIMELOGS, key, body, valid=False, label=label)

    out = [
        Outgoing(m.TIMELOGS, key, b'{"type": "timelog.upserted", "account_id": ', valid=False, label="invalid JSON"),
        Outgoing(m.TIMELOGS, key, b"\xff\xfe" + rng.randbytes(62), valid=False, label="garbage bytes"),
        timelog("unknown type", type="timelog.exploded"),
        timelog("unknown schema version", schema_version=2),
        timelog("missing fields", employee_id=_DROP, pay_id=_DROP),
        timelog("absurd duration", clock_in=None, clock_out=None, duration_seconds=10**9),
        timelog("negative duration", clock_in=None, clock_out=None, duration_seconds=-3600),
        timelog("clock out before clock in", clock_out=f"{day.isoformat()}T05:00:00+00:00"),
        timelog("impossible date", work_date=f"{day.year}-02-30"),
        timelog("oversized (2 MB)", crew_tag="x" * OVERSIZED_BYTES),
        Outgoing(
            m.TIMELOGS,
            m.timelog_key(ghost_account, site),
            _timelog(ghost_account, "ghost-1", site, day),
            valid=True,
            label=UNKNOWN_ACCOUNT,
        ),
        Outgoing(m.PUBLISH_COMMANDS, f"{a}:{site}", b"[1, 2", valid=False, label="publish command: invalid JSON"),
        Outgoing(
            m.PUBLISH_COMMANDS,
            f"{a}:{site}",
            m.publish_entries(a, "manpower", "destroy", m.publish_scope_cell(site, day)),
            valid=False,
            label="publish command: unknown action",
        ),
        Outgoing(
            m.MAPPING_COMMANDS,
            a,
            m.mapping_command(a, "mapping.set", mobiclocks_id="x", procore_id=1),
            valid=False,
            label="mapping command: missing entity",
        ),
        Outgoing(
            m.REFERENCE,
            a,
            {**m.reference_upserted(a, "job_site", "x", "X"), "kind": "planet"},
            valid=False,
            label="reference: unknown kind",
        ),
        Outgoing(
            m.PUBLISH_REQUESTS,
            a,
            {**m.envelope(a, "procore.publish"), "module": "manpower"},
            valid=False,
            label="publish request: missing fields",
        ),
        Outgoing(m.PUBLISH_RESULTS, a, b"not json at all", valid=False, label="publish result: invalid JSON"),
    ]
    return out


class _Drop:
    """Marks a field to leave out."""


_DROP = _Drop()
