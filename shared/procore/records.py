"""Where each module's published record lives in Procore, and which of its fields a person compares.

The publisher writes these records; the mapping service reads them back for the force-publish preview (it holds
the account's Procore connection), and the gateway shows ours beside Procore's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from shared.events import Module
from shared.procore.client import REST

RECORD_PATHS: dict[Module, str] = {
    Module.MANPOWER: "manpower_logs",
    Module.TIMECARD: "timecard_entries",
    Module.PRODUCTION_QUANTITY: "quantity_logs",
}
"""Project-scoped Daily Log items: /projects/{project}/{path}/{record}."""


def record_path(module: Module, project_id: int, record_id: int) -> str:
    return f"{REST}/projects/{project_id}/{RECORD_PATHS[module]}/{record_id}"


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def same_value(ours: Any, theirs: Any) -> bool:
    """Equal as people read them: "8.0" (Procore) is our "8.00"; empty is empty."""
    if ours in (None, "") and theirs in (None, ""):
        return True
    a, b = _number(ours), _number(theirs)
    if a is not None and b is not None:
        return a == b
    return str(ours) == str(theirs)


Extract = Callable[[Mapping[str, Any]], Any]
"""Where Procore's answer shows one field we write (e.g. our `contact_id` comes back as `vendor: {id, name}`)."""


def fields_match(
    record: Mapping[str, Any], fields: Mapping[str, Any], answers: Mapping[str, Extract] | None = None
) -> bool:
    """Whether Procore's record holds these fields as we wrote them. With `answers`, only the fields it names are
    compared, each read where Procore answers it; without, those the record has under the same name."""
    for name, ours in fields.items():
        if answers is None:
            if name not in record:
                continue
            theirs = record.get(name)
        else:
            extract = answers.get(name)
            if extract is None:
                continue
            theirs = extract(record)
        if not same_value(ours, theirs):
            return False
    return True


def changed_since_published(
    current: Mapping[str, Any] | None,
    published_updated_at: datetime | None,
    published_fields: Mapping[str, Any] | None,
    answers: Mapping[str, Extract] | None = None,
) -> bool:
    """The one rule for "changed in Procore since published" (the publisher refuses to overwrite such a record; the
    force publish preview flags it): someone deleted the record, or one of the fields we published differs from what
    Procore holds (see `fields_match`), or its `updated_at` moved since our last publish.

    The content decides first: Procore's `updated_at` has one-second precision, so an edit made within the same
    second as our write leaves it unchanged — only the content shows it."""
    if current is None:
        return True
    if published_fields and not fields_match(current, published_fields, answers):
        return True
    current_updated = parse_time(current.get("updated_at"))
    if published_updated_at is not None and current_updated is not None:
        return current_updated != published_updated_at
    return False
