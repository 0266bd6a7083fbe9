"""The messages the suite sends, built as plain JSON from the documented contracts (pure).

Deliberately not built with `shared.events`: the harness holds the system to its contracts from the
outside (a unit test checks these bodies against `shared.events`, so a drift shows up there).
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

Json = dict[str, Any]

# Kafka topics by their base name; the run's prefix is added by the caller.
TIMELOGS = "mobiclocks.timelogs"
REFERENCE = "mobiclocks.reference"
PUBLISH_COMMANDS = "publish.commands"
PUBLISH_REQUESTS = "procore.publish-requests"
PUBLISH_RESULTS = "procore.publish-results"
MAPPING_COMMANDS = "mapping.commands"
MAPPING_CHANGES = "mapping.changes"
DEAD_LETTER_SERVICES = ("aggregator", "publisher", "mapping")
ALL_TOPICS = (
    TIMELOGS,
    REFERENCE,
    PUBLISH_COMMANDS,
    PUBLISH_REQUESTS,
    PUBLISH_RESULTS,
    MAPPING_COMMANDS,
    MAPPING_CHANGES,
)


def dead_letter_topic(service: str) -> str:
    return f"{service}.dead-letter"


def envelope(account_id: str, type_: str) -> Json:
    return {
        "event_id": str(uuid.uuid4()),
        "occurred_at": datetime.now(UTC).isoformat(),
        "account_id": account_id,
        "schema_version": 1,
        "type": type_,
    }


def timelog_key(account_id: str, job_site_id: str) -> str:
    """One job site's changes stay in order (the documented key)."""
    return f"{account_id}:{job_site_id}"


def timelog_deleted(account_id: str, timelog_id: str, revision: int) -> Json:
    return {**envelope(account_id, "timelog.deleted"), "timelog_id": timelog_id, "revision": revision}


def reference_upserted(account_id: str, kind: str, entity_id: str, name: str, number: str | None = None) -> Json:
    return {
        **envelope(account_id, "reference.upserted"),
        "kind": kind,
        "entity_id": entity_id,
        "name": name,
        "number": number,
    }


SYSTEM_REQUESTER: Json = {
    "requested_by": "system:chaos",
    "requester_kind": "system",
    "permissions": ["procore.mapping", "procore.publish", "procore.setup"],
}
"""A back end sending commands straight to Kafka names itself as a system principal with its permissions
(commands without a permissions list are refused: fail closed)."""


def mapping_command(account_id: str, type_: str, **fields: Any) -> Json:
    """A back-end command, as MobiClocks core or the demo sends them."""
    return {**envelope(account_id, type_), **SYSTEM_REQUESTER, **fields}


def publish_scope_cell(job_site_id: str, day: date) -> Json:
    return {"kind": "cell", "job_site_id": job_site_id, "work_date": day.isoformat()}


def publish_scope_range(date_from: date, date_to: date) -> Json:
    return {"kind": "date_range", "date_from": date_from.isoformat(), "date_to": date_to.isoformat()}


def publish_entries(account_id: str, module: str, action: str, scope: Json) -> Json:
    return {
        **envelope(account_id, "publish.entries"),
        "module": module,
        "action": action,
        "scope": scope,
        **SYSTEM_REQUESTER,
    }
