"""Every arrow of the entry status machine (DESIGN.md "Entry status")."""

import uuid

from services.aggregator.domain import (
    EntryState,
    Status,
    content_changed,
    errors_changed,
    new_entry,
    publish_requested,
    result_arrived,
    timelog_deleted,
)
from shared.events import ProcoreOperation, PublishAction, PublishOutcome

IDS = frozenset({"t1", "t2"})


def published(fp: str = "A", ids: frozenset[str] = IDS) -> EntryState:
    state = new_entry(fp, ())
    rid = uuid.uuid4()
    moved = publish_requested(state, PublishAction.PUBLISH, rid, ids)
    assert moved is not None
    after = result_arrived(moved[0], rid, PublishOutcome.PUBLISHED, 42, None)
    assert after is not None
    assert after.status is Status.PUBLISHED
    return after


def test_new_entry_is_todo_or_non_publishable():
    assert new_entry("A", ()).status is Status.TODO
    assert new_entry("A", ("Pay ID OT has no payroll item",)).status is Status.NON_PUBLISHABLE


def test_published_entry_changed_is_updated_and_changed_back_is_published():
    e = published()
    updated = content_changed(e, "B", frozenset())
    assert updated is not None
    assert updated.status is Status.UPDATED
    back = content_changed(updated, "A", frozenset())
    assert back is not None
    assert back.status is Status.PUBLISHED


def test_published_entry_losing_a_deleted_timelog_is_deleted():
    e = published()
    after = content_changed(e, "B", frozenset({"t2"}))
    assert after is not None
    assert after.status is Status.DELETED
    emptied = content_changed(e, None, frozenset(IDS))
    assert emptied is not None
    assert emptied.status is Status.DELETED


def test_deleting_a_timelog_the_entry_was_not_published_with_is_not_deleted():
    e = published()
    assert timelog_deleted(e, "t9") == frozenset()
    assert timelog_deleted(e, "t2") == frozenset({"t2"})


def test_published_entry_losing_a_moved_timelog_is_updated_not_deleted():
    after = content_changed(published(), "B", frozenset())
    assert after is not None
    assert after.status is Status.UPDATED


def test_never_published_entry_emptied_disappears():
    assert content_changed(new_entry("A", ()), None, frozenset()) is None


def test_change_while_publishing_ends_updated_not_published():
    e = new_entry("A", ())
    rid = uuid.uuid4()
    moved = publish_requested(e, PublishAction.PUBLISH, rid, IDS)
    assert moved is not None
    publishing, op = moved
    assert op is ProcoreOperation.CREATE
    assert publishing.status is Status.PUBLISHING
    changed = content_changed(publishing, "B", frozenset())
    assert changed is not None
    assert changed.status is Status.PUBLISHING
    done = result_arrived(changed, rid, PublishOutcome.PUBLISHED, 7, None)
    assert done is not None
    assert done.status is Status.UPDATED
    assert done.published_fingerprint == "A"


def test_delete_while_publishing_ends_deleted():
    e = new_entry("A", ())
    rid = uuid.uuid4()
    moved = publish_requested(e, PublishAction.PUBLISH, rid, IDS)
    assert moved is not None
    emptied = content_changed(moved[0], None, frozenset(IDS))
    assert emptied is not None
    assert emptied.status is Status.PUBLISHING
    done = result_arrived(emptied, rid, PublishOutcome.PUBLISHED, 7, None)
    assert done is not None
    assert done.status is Status.DELETED


def test_failed_publish_keeps_reason_and_republish_applies():
    e = new_entry("A", ())
    rid = uuid.uuid4()
    moved = publish_requested(e, PublishAction.PUBLISH, rid, IDS)
    assert moved is not None
    failed = result_arrived(moved[0], rid, PublishOutcome.CONFLICT, None, "changed in Procore")
    assert failed is not None
    assert failed.status is Status.FAILED
    assert failed.last_error == "changed in Procore"
    assert publish_requested(failed, PublishAction.REPUBLISH, uuid.uuid4(), IDS) is not None


def test_stale_result_changes_nothing():
    e = new_entry("A", ())
    moved = publish_requested(e, PublishAction.PUBLISH, uuid.uuid4(), IDS)
    assert moved is not None
    assert result_arrived(moved[0], uuid.uuid4(), PublishOutcome.PUBLISHED, 1, None) is moved[0]


def test_publish_applies_only_to_eligible_statuses():
    e = published()
    assert publish_requested(e, PublishAction.PUBLISH, uuid.uuid4(), IDS) is None
    forced = publish_requested(e, PublishAction.FORCE_PUBLISH, uuid.uuid4(), IDS)
    assert forced is not None
    assert forced[1] is ProcoreOperation.UPDATE
    non_publishable = new_entry("A", ("x",))
    assert publish_requested(non_publishable, PublishAction.FORCE_PUBLISH, uuid.uuid4(), IDS) is None


def test_operations_follow_the_entry():
    updated = content_changed(published(), "B", frozenset())
    assert updated is not None
    moved = publish_requested(updated, PublishAction.PUBLISH, uuid.uuid4(), IDS)
    assert moved is not None
    assert moved[1] is ProcoreOperation.UPDATE
    deleted_with_rest = content_changed(published(), "B", frozenset({"t2"}))
    assert deleted_with_rest is not None
    moved = publish_requested(deleted_with_rest, PublishAction.PUBLISH, uuid.uuid4(), IDS)
    assert moved is not None
    assert moved[1] is ProcoreOperation.REPLACE
    deleted_all = content_changed(published(), None, IDS)
    assert deleted_all is not None
    rid = uuid.uuid4()
    moved = publish_requested(deleted_all, PublishAction.PUBLISH, rid, IDS)
    assert moved is not None
    assert moved[1] is ProcoreOperation.DELETE
    assert result_arrived(moved[0], rid, PublishOutcome.DELETED, None, None) is None


def test_mapping_changes_toggle_non_publishable():
    e = new_entry("A", ("Cost code 03-300 Concrete is not mapped for project Tower A",))
    fixed = errors_changed(e, ())
    assert fixed is not None
    assert fixed.status is Status.TODO
    broken = errors_changed(fixed, ("x",))
    assert broken is not None
    assert broken.status is Status.NON_PUBLISHABLE
