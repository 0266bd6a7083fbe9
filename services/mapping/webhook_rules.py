"""Procore webhooks, the pure part: what we subscribe to, how a delivery proves it is Procore's, and which
deliveries say that someone else changed a record we may have published.

Procore's documentation (developers' "Using the Webhooks API" and the support article "Configure Company
Webhooks"): a hook carries `destination_headers`, typically `{"Authorization": "Bearer <token>"}`, which Procore
puts on every delivery; a delivery is a JSON event `{id, ulid, timestamp, event_type, resource_name, resource_id,
company_id, project_id, user_id, metadata{source_user_id, source_application_id, …}}`; duplicates happen (dedupe
on `id` or `ulid`), and `metadata.source_application_id` tells an integration's own writes apart.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from shared.events import Module, ProcoreChange
from shared.procore.records import parse_time

NAMESPACE = "mobiclocks-procore-publishing"
"""Our hooks' namespace in Procore: a hook of ours left by an interrupted registration is found and replaced."""

RESOURCE_MODULES: dict[str, Module] = {
    "Manpower Logs": Module.MANPOWER,
    "Quantity Logs": Module.PRODUCTION_QUANTITY,
    "Timecard Entries": Module.TIMECARD,
}
"""Procore's resource names (as the sandbox implements them; the notes mark the real strings as not confirmed)."""

EVENT_TYPES = ("create", "update", "delete")

CHANGES: dict[str, ProcoreChange] = {"update": ProcoreChange.UPDATED, "delete": ProcoreChange.DELETED}
"""A create is nobody's edit of a record we published: counted and ignored."""


def new_secret() -> str:
    """A hook's secret: 32 random bytes, URL-safe (it travels in a header)."""
    return secrets.token_urlsafe(32)


def authorization_header(secret: str) -> str:
    return f"Bearer {secret}"


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def digest_of_authorization(header: str | None) -> str | None:
    """The stored digest a delivery's Authorization header must match (None: no usable header)."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip() or len(value) > 512:
        return None
    return secret_digest(value.strip())


def _text_id(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).strip():
        raise ValueError("must be an integer or a string")
    return str(value).strip()[:128]


class DeliveryMetadata(BaseModel):
    model_config = ConfigDict(extra="ignore")

    source_user_id: int | str | None = None
    source_application_id: int | str | None = None


class Delivery(BaseModel):
    """One webhook event as Procore posts it (payload v2: integer ids; v4 uses strings — both accepted)."""

    model_config = ConfigDict(extra="ignore")

    id: Annotated[str, BeforeValidator(_text_id)]
    ulid: str | None = None
    timestamp: datetime | None = None
    event_type: str
    resource_name: str
    resource_id: Annotated[int, Field(gt=0, lt=2**63)]
    company_id: Annotated[int, Field(gt=0, lt=2**63)] | None = None
    project_id: Annotated[int, Field(gt=0, lt=2**63)] | None = None
    metadata: DeliveryMetadata = DeliveryMetadata()

    @property
    def delivery_id(self) -> str:
        """What duplicates share: Procore's event id (the ulid when there is one: v4 ids are strings too)."""
        return self.ulid or self.id


@dataclass(frozen=True)
class Noticed:
    """A delivery that reports someone else's change to a record of one of our modules."""

    module: Module
    procore_id: int
    change: ProcoreChange
    changed_at: datetime | None


def notice(delivery: Delivery, own_application_ids: frozenset[str]) -> Noticed | str:
    """What a delivery tells us, or why it tells us nothing (a reason, for the counters)."""
    module = RESOURCE_MODULES.get(delivery.resource_name)
    if module is None:
        return "other_resource"
    change = CHANGES.get(delivery.event_type.lower())
    if change is None:
        return "create"
    source = delivery.metadata.source_application_id
    if source is not None and str(source) in own_application_ids:
        return "own_write"
    return Noticed(module, delivery.resource_id, change, delivery.timestamp)


def changed_record(record: dict[str, Any], since: datetime) -> datetime | None:
    """For the reconcile: the record's `updated_at` when it is after `since` (None: not changed since)."""
    updated = parse_time(record.get("updated_at"))
    return updated if updated is not None and updated > since else None
