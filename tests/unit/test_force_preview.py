"""Force publish never happens by accident: the preview's pure rules (what it shows, what it signs)."""

from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from services.gateway import force_preview
from services.gateway.details import EntryRecord
from services.gateway.force_preview import PreviewRefused, Reviewed
from services.gateway.names import Name
from services.gateway.schemas import EntryStatus
from shared.events import Module

KEY = b"k" * 32
PUBLISHED_AT = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
NAMES = {("job_site", "s1"): Name("Tower A"), ("company", "c1"): Name("Acme Concrete")}


def crew(**kw: Any) -> EntryRecord:
    base: dict[str, Any] = dict(
        entry_id=uuid4(),
        module=Module.MANPOWER,
        job_site_id="s1",
        work_date=date(2026, 11, 24),
        dims={"company_id": "c1", "crew_tag": "Framers"},
        content={"manpower": "3", "total_hours": "24.00", "average_hours": "8.00"},
        status=EntryStatus.PUBLISHED,
        procore_id=77,
        procore_updated_at=PUBLISHED_AT,
        published_payload={"num_workers": 3, "num_hours": "8.00", "notes": "Framers [mc:x]"},
    )
    return EntryRecord(**{**base, **kw})


def test_procores_record_beside_ours_flagged_when_edited_there_since_published():
    e = crew()
    edited = {"id": 77, "num_workers": 7, "num_hours": "6.5", "updated_at": "2026-11-24T10:00:00Z"}
    shown = force_preview.preview_entry(e, NAMES, edited)
    assert shown.ours == {"num_workers": "3", "num_hours": "8.00"}
    assert shown.procore == {"num_workers": "7", "num_hours": "6.5"}
    assert shown.changed_in_procore
    assert shown.effect == "overwrite"
    assert shown.label == "Tue 24 Nov 2026 · Tower A · Acme Concrete, crew Framers"
    untouched = {"id": 77, "num_workers": 3, "num_hours": "8.0", "updated_at": "2026-11-24T09:00:00+00:00"}
    assert not force_preview.preview_entry(e, NAMES, untouched).changed_in_procore


def test_without_a_baseline_time_the_published_fields_decide():
    e = crew(procore_updated_at=None)
    assert not force_preview.preview_entry(e, NAMES, {"num_workers": "3", "num_hours": "8"}).changed_in_procore
    assert force_preview.preview_entry(e, NAMES, {"num_workers": "4", "num_hours": "8"}).changed_in_procore


def test_deleted_in_procore_is_a_change_and_is_created_again():
    shown = force_preview.preview_entry(crew(), NAMES, None)
    assert shown.changed_in_procore
    assert shown.procore is None
    assert shown.effect == "recreate"


def test_never_published_is_created_and_unread_records_are_not_called_changed():
    new = force_preview.preview_entry(crew(procore_id=None, procore_updated_at=None), NAMES, None)
    assert (new.effect, new.changed_in_procore, new.procore) == ("create", False, None)
    unread = force_preview.preview_entry(crew(), NAMES, None, read=False)
    assert (unread.effect, unread.changed_in_procore) == ("overwrite", False)


def test_a_preview_covers_exactly_its_entries_of_its_account_until_it_expires():
    ids = [Reviewed(uuid4(), 1, None), Reviewed(uuid4(), 3, 42)]
    preview_id, expires = force_preview.issue_preview_id("acc", Module.MANPOWER, ids, KEY)
    force_preview.check_preview_id(preview_id, "acc", Module.MANPOWER, list(reversed(ids)), KEY)  # order is free
    refusals = {
        "missing": (None, "acc", Module.MANPOWER, ids, KEY),
        "another entry set": (preview_id, "acc", Module.MANPOWER, [*ids, Reviewed(uuid4(), 1, None)], KEY),
        "another account": (preview_id, "other", Module.MANPOWER, ids, KEY),
        "another module": (preview_id, "acc", Module.TIMECARD, ids, KEY),
        "another key": (preview_id, "acc", Module.MANPOWER, ids, b"x" * 32),
    }
    for why, args in refusals.items():
        try:
            force_preview.check_preview_id(*args)
        except PreviewRefused:
            continue
        pytest.fail(f"a preview id for {why} was accepted")
    old, _ = force_preview.issue_preview_id(
        "acc", Module.MANPOWER, ids, KEY, now=datetime.now(UTC) - timedelta(hours=1)
    )
    with pytest.raises(PreviewRefused, match="expired"):
        force_preview.check_preview_id(old, "acc", Module.MANPOWER, ids, KEY)
    assert expires > datetime.now(UTC)


def test_a_preview_binds_what_each_entry_was_when_shown():
    shown = [Reviewed(uuid4(), 1, None), Reviewed(uuid4(), 3, 42)]
    preview_id, _ = force_preview.issue_preview_id("acc", Module.MANPOWER, shown, KEY)
    changed = {
        "a new version (its timelogs changed)": [shown[0], Reviewed(shown[1].entry_id, 4, 42)],
        "published in between (now has a Procore record)": [Reviewed(shown[0].entry_id, 1, 7), shown[1]],
        "another Procore record": [shown[0], Reviewed(shown[1].entry_id, 3, 43)],
    }
    for why, now in changed.items():
        with pytest.raises(PreviewRefused) as refused:
            force_preview.check_preview_id(preview_id, "acc", Module.MANPOWER, now, KEY)
        assert str(refused.value) == "These entries changed since you reviewed them — review again", why


def test_a_preview_reads_a_bounded_number_of_records():
    many = [crew(entry_id=uuid4()) for _ in range(force_preview.MAX_PREVIEW_RECORDS + 1)]
    with pytest.raises(force_preview.PreviewTooLarge):
        force_preview.to_read(many)
    assert len(force_preview.to_read([*many[:-1], crew(procore_id=None)])) == force_preview.MAX_PREVIEW_RECORDS
