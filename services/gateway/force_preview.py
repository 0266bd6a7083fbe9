"""Force publish never happens by accident (pure logic, no I/O).

Before a force publish the user sees every entry it writes and, beside ours, Procore's record as Procore holds it at
that moment, flagged where it changed since we published it. The preview is signed into a `preview_id` that names
the account, the module, exactly these entries and what each of them was when shown (its version, bumped by every
change of its timelogs, and its Procore record); a force publish is refused without one that still holds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from uuid import UUID

import jwt

from services.gateway.details import EntryRecord, details_row
from services.gateway.names import Names, job_site
from services.gateway.schemas import (
    ForcePublishPreview,
    ManpowerRow,
    PreviewEntry,
    ProductionQuantityRow,
    TimecardRow,
)
from shared.events import Module
from shared.procore.records import changed_since_published

PREVIEW_AUDIENCE = "procore-gateway-force-preview"
PREVIEW_TTL_S = 600
"""Ten minutes to read the confirmation and decide."""
MAX_PREVIEW_RECORDS = 200
"""Published records read from Procore for one preview (each read spends the company's Procore rate budget)."""
MAX_PREVIEW_ENTRIES = 1000
"""Entries one preview lists (a person reads them before confirming)."""

FIELDS: dict[Module, tuple[str, ...]] = {
    Module.MANPOWER: ("num_workers", "num_hours"),
    Module.TIMECARD: ("hours",),
    Module.PRODUCTION_QUANTITY: ("quantity", "unit"),
}
"""The Procore fields shown ours beside Procore's (labels: shared.labels.PROCORE_FIELDS)."""


def signing_key(process_key: bytes) -> bytes:
    """Previews are signed with a key of their own, derived from the gateway's shared key."""
    return hashlib.sha256(b"force-publish-preview:" + process_key).digest()


CHANGED_SINCE_REVIEW = "These entries changed since you reviewed them — review again"


class PreviewRefused(Exception):
    """A force publish without a preview that covers exactly its entries (HTTP 409)."""


class PreviewTooLarge(Exception):
    """More published records than one preview reads from Procore (HTTP 422)."""


def ours(e: EntryRecord) -> dict[str, str | None]:
    """What a force publish writes, in Procore's fields (empty: a Deleted entry whose record is deleted)."""
    c = e.content
    if c is None:
        return {}
    if e.module is Module.MANPOWER:
        return {"num_workers": c.get("manpower"), "num_hours": c.get("average_hours")}
    if e.module is Module.TIMECARD:
        return {"hours": c.get("hours")}
    return {"quantity": c.get("units"), "unit": e.dims.get("unit_of_measure")}


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def theirs(module: Module, record: Mapping[str, Any]) -> dict[str, str | None]:
    return {name: _text(record.get(name)) for name in FIELDS[module]}


def entry_label(e: EntryRecord, names: Names) -> str:
    """'Mon 23 Nov 2026 · Tower A · Acme Concrete, crew A' — names, never ids where a name is known."""
    row = details_row(e, names, {})
    if isinstance(row, ManpowerRow):
        what = f"{row.company_name}, crew {row.crew_tag}" if row.crew_tag else row.company_name
    elif isinstance(row, TimecardRow):
        what = ", ".join(p for p in (row.employee, row.pay_id, row.cost_code) if p)
    else:
        assert isinstance(row, ProductionQuantityRow)
        what = f"{row.cost_code} ({row.um})"
    return f"{e.work_date.strftime('%a %d %b %Y')} · {job_site(names, e.job_site_id).name} · {what}"


def effect(e: EntryRecord, found: bool) -> Literal["create", "overwrite", "recreate", "delete"]:
    if e.procore_id is None:
        return "create"
    if e.content is None:
        return "delete"
    return "overwrite" if found else "recreate"


def preview_entry(e: EntryRecord, names: Names, record: Mapping[str, Any] | None, read: bool = True) -> PreviewEntry:
    """`record`: Procore's record now (None: none, or deleted in Procore); `read` false: it could not be looked up."""
    published = e.published_payload or {}
    baseline = {name: published.get(name) for name in FIELDS[e.module] if name in published}
    changed = read and e.procore_id is not None and changed_since_published(record, e.procore_updated_at, baseline)
    return PreviewEntry(
        entry_id=e.entry_id,
        label=entry_label(e, names),
        status=e.status,
        effect=effect(e, record is not None or not read),
        ours=ours(e),
        procore=theirs(e.module, record) if record is not None else None,
        changed_in_procore=changed,
        procore_updated_at=e.procore_updated_at,
    )


def to_read(entries: Sequence[EntryRecord]) -> list[EntryRecord]:
    """The entries whose Procore record is read for the preview: those we published before."""
    if len(entries) > MAX_PREVIEW_ENTRIES:
        raise PreviewTooLarge(
            f"More than {MAX_PREVIEW_ENTRIES} entries would be force published: choose fewer days or a single cell"
        )
    published = [e for e in entries if e.procore_id is not None]
    if len(published) > MAX_PREVIEW_RECORDS:
        raise PreviewTooLarge(
            f"{len(published)} of these entries are in Procore already; a force publish shows at most "
            f"{MAX_PREVIEW_RECORDS} of them before it writes: choose fewer days or a single cell"
        )
    return published


@dataclass(frozen=True)
class Reviewed:
    """One entry as the preview showed it: a new version (its timelogs changed) or another Procore record (a publish
    in between) means the user did not see what a force publish would write."""

    entry_id: UUID
    version: int
    procore_id: int | None


def reviewed(entries: Iterable[EntryRecord]) -> list[Reviewed]:
    return [Reviewed(e.entry_id, e.version, e.procore_id) for e in entries]


def digest(account_id: str, module: Module, entry_ids: Iterable[UUID]) -> str:
    ids = ",".join(sorted(str(i) for i in entry_ids))
    return hashlib.sha256(f"{account_id}|{module.value}|{ids}".encode()).hexdigest()


def content_digest(account_id: str, module: Module, entries: Iterable[Reviewed]) -> str:
    shown = ",".join(sorted(f"{e.entry_id}:{e.version}:{e.procore_id or ''}" for e in entries))
    return hashlib.sha256(f"{account_id}|{module.value}|{shown}".encode()).hexdigest()


def issue_preview_id(
    account_id: str, module: Module, entries: Sequence[Reviewed], key: bytes, now: datetime | None = None
) -> tuple[str, datetime]:
    """A signed id naming exactly these entries of the account's module as shown, and when it expires."""
    expires = (now or datetime.now(UTC)) + timedelta(seconds=PREVIEW_TTL_S)
    claims = {
        "aud": PREVIEW_AUDIENCE,
        "account_id": account_id,
        "entries": digest(account_id, module, (e.entry_id for e in entries)),
        "content": content_digest(account_id, module, entries),
        "exp": int(expires.timestamp()),
    }
    return jwt.encode(claims, key, algorithm="HS256"), expires.replace(microsecond=0)


def check_preview_id(
    preview_id: str | None, account_id: str, module: Module, entries: Sequence[Reviewed], key: bytes
) -> None:
    """`PreviewRefused` unless `preview_id` is this account's, unexpired, and covers exactly `entries` as they are
    now (same ids, same versions, same Procore records)."""
    if not preview_id:
        raise PreviewRefused(
            "Force publish overwrites Procore: review what it changes first (POST .../force-publish/preview) and "
            "send the preview_id it returns"
        )
    try:
        claims = jwt.decode(preview_id, key, algorithms=["HS256"], audience=PREVIEW_AUDIENCE)
    except jwt.ExpiredSignatureError as error:
        raise PreviewRefused("The force publish preview expired: review the changes again") from error
    except jwt.InvalidTokenError as error:
        raise PreviewRefused("This is not a force publish preview of this dashboard: review the changes again") from (
            error
        )
    if claims.get("account_id") != account_id or claims.get("entries") != digest(
        account_id, module, (e.entry_id for e in entries)
    ):
        raise PreviewRefused(
            "The entries changed since the force publish preview (or it was for other entries): review the changes "
            "again"
        )
    if claims.get("content") != content_digest(account_id, module, entries):
        raise PreviewRefused(CHANGED_SINCE_REVIEW)


def build_preview(
    entries: Sequence[EntryRecord],
    names: Names,
    records: Mapping[int, Mapping[str, Any] | None],
    preview_id: str,
    expires_at: datetime,
    unread: frozenset[UUID] = frozenset(),
) -> ForcePublishPreview:
    """`records`: Procore id → its record now (None: Procore has none); `unread`: entries whose record could not be
    looked up."""
    shown = [
        preview_entry(
            e, names, records.get(e.procore_id) if e.procore_id is not None else None, e.entry_id not in unread
        )
        for e in sorted(entries, key=lambda e: (e.work_date, e.job_site_id, str(e.entry_id)))
    ]
    return ForcePublishPreview(
        preview_id=preview_id,
        expires_at=expires_at,
        entries=shown,
        changed_in_procore=sum(1 for p in shown if p.changed_in_procore),
    )
