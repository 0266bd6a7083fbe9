"""One rule for "changed in Procore since published" (shared.procore.records), used by the publisher (it refuses to
overwrite such a record) and by the force publish preview (it flags it): both decide alike on the same record."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.gateway import force_preview
from services.gateway.names import Name
from services.publisher.domain import RESOURCES, changed_since_publish
from shared.events import Module
from shared.procore.records import changed_since_published, fields_match, same_value
from tests.unit.test_force_preview import crew

PUBLISHED_AT = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
PAYLOAD = {"num_workers": 3, "num_hours": "8.00"}
NAMES = {("job_site", "s1"): Name("Tower A"), ("company", "c1"): Name("Acme Concrete")}


@pytest.mark.parametrize(
    ("ours", "theirs", "same"),
    [("8.00", "8.0", True), (3, "3", True), (None, "", True), ("8", "9", False), (True, "1", False), ("a", "a", True)],
)
def test_values_compare_as_people_read_them(ours: object, theirs: object, same: bool) -> None:
    assert same_value(ours, theirs) is same


RECORDS: list[tuple[str, dict[str, Any] | None, datetime | None, bool]] = [
    ("deleted in Procore", None, PUBLISHED_AT, True),
    ("updated_at moved", {**PAYLOAD, "updated_at": "2026-11-24T10:00:00Z"}, PUBLISHED_AT, True),
    # one-second updated_at: an edit within the second of our write leaves it unchanged; the content shows it
    (
        "updated_at unchanged, fields differ",
        {"num_workers": 9, "updated_at": "2026-11-24T09:00:00Z"},
        PUBLISHED_AT,
        True,
    ),
    ("updated_at unchanged, same fields", {**PAYLOAD, "updated_at": "2026-11-24T09:00:00Z"}, PUBLISHED_AT, False),
    ("no baseline time, same fields", {"num_workers": "3", "num_hours": "8.0"}, None, False),
    ("no baseline time, a field differs", {"num_workers": "4", "num_hours": "8.0"}, None, True),
]


@pytest.mark.parametrize(("why", "record", "baseline", "changed"), RECORDS, ids=[r[0] for r in RECORDS])
def test_the_publisher_and_the_preview_decide_alike(
    why: str, record: dict[str, Any] | None, baseline: datetime | None, changed: bool
) -> None:
    assert changed_since_published(record, baseline, PAYLOAD) is changed, why
    if record is not None:  # the publisher handles a missing record before asking
        assert changed_since_publish(RESOURCES[Module.MANPOWER], record, baseline, PAYLOAD) is changed, why
    entry = crew(procore_updated_at=baseline, published_payload=PAYLOAD)
    assert force_preview.preview_entry(entry, NAMES, record).changed_in_procore is changed, why


def test_fields_are_read_where_procore_answers_them() -> None:
    answers = RESOURCES[Module.MANPOWER].answers
    ours = {"contact_id": 5, "num_workers": 3}
    assert fields_match({"vendor": {"id": 5}, "num_workers": "3"}, ours, answers)
    assert not fields_match({"vendor": {"id": 6}, "num_workers": "3"}, ours, answers)
    # Without answers only fields Procore has under the same name are compared.
    assert fields_match({"num_workers": "3"}, ours)
