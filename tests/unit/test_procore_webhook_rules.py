"""Procore webhooks, the pure rules: who may deliver, what a delivery tells us, and the status arrow it causes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from services.aggregator.domain import (
    EntryState,
    Status,
    changed_in_procore,
    content_changed,
    errors_changed,
    new_entry,
    publish_requested,
    result_arrived,
)
from services.mapping import webhook_rules as rules
from shared.events import Module, ProcoreChange, PublishAction, PublishOutcome
from shared.labels import CHANGED_IN_PROCORE, DELETED_IN_PROCORE

PUBLISHED_AT = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)


def published() -> EntryState:
    rid = uuid.uuid4()
    moved = publish_requested(new_entry("A", ()), PublishAction.PUBLISH, rid, frozenset({"t1"}))
    assert moved is not None
    after = result_arrived(moved[0], rid, PublishOutcome.PUBLISHED, 42, None)
    assert after is not None
    assert after.status is Status.PUBLISHED
    return after


def event(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": 7,
        "ulid": "01JD0000000000000000000000",
        "timestamp": "2026-11-18T12:00:01.000001Z",
        "event_type": "update",
        "resource_name": "Manpower Logs",
        "resource_id": 42,
        "company_id": 5,
        "project_id": 6,
        "metadata": {"source_user_id": 9, "source_application_id": None},
    }
    return {**base, **overrides}


def test_only_the_bearer_secret_of_a_hook_matches_its_digest() -> None:
    secret = rules.new_secret()
    digest = rules.secret_digest(secret)
    assert rules.digest_of_authorization(rules.authorization_header(secret)) == digest
    assert rules.digest_of_authorization(f"bearer  {secret} ") == digest
    assert rules.digest_of_authorization(f"Basic {secret}") is None
    assert rules.digest_of_authorization("Bearer ") is None
    assert rules.digest_of_authorization(None) is None
    assert rules.digest_of_authorization("Bearer other") != digest


def test_someone_elses_update_or_delete_is_noticed_creates_and_our_own_writes_are_not() -> None:
    ours = frozenset({"our-client"})
    noticed = rules.notice(rules.Delivery.model_validate(event()), ours)
    assert noticed == rules.Noticed(
        Module.MANPOWER, 42, ProcoreChange.UPDATED, datetime(2026, 11, 18, 12, 0, 1, 1, tzinfo=UTC)
    )
    deleted = rules.notice(
        rules.Delivery.model_validate(event(event_type="delete", resource_name="Timecard Entries")), ours
    )
    assert isinstance(deleted, rules.Noticed)
    assert deleted.change is ProcoreChange.DELETED
    assert deleted.module is Module.TIMECARD
    assert rules.notice(rules.Delivery.model_validate(event(event_type="create")), ours) == "create"
    own = event(metadata={"source_application_id": "our-client"})
    assert rules.notice(rules.Delivery.model_validate(own), ours) == "own_write"
    assert rules.notice(rules.Delivery.model_validate(event(resource_name="RFIs")), ours) == "other_resource"


def test_duplicates_share_the_delivery_id_and_v4_string_ids_are_accepted() -> None:
    first = rules.Delivery.model_validate(event())
    again = rules.Delivery.model_validate(event(id=8))  # the same event (ulid) delivered again
    assert first.delivery_id == again.delivery_id
    v4 = rules.Delivery.model_validate(event(id="abc", ulid=None))
    assert v4.delivery_id == "abc"
    with pytest.raises(ValidationError):
        rules.Delivery.model_validate(event(resource_id="x"))


def test_a_published_entry_changed_in_procore_fails_with_the_conflict_at_once() -> None:
    after = PUBLISHED_AT + timedelta(seconds=1)
    changed = changed_in_procore(published(), False, after, PUBLISHED_AT)
    assert changed.status is Status.FAILED
    assert changed.last_error == CHANGED_IN_PROCORE
    deleted = changed_in_procore(published(), True, None, PUBLISHED_AT)
    assert deleted.status is Status.FAILED
    assert deleted.last_error == DELETED_IN_PROCORE


def test_our_own_write_and_entries_not_published_are_left_alone() -> None:
    e = published()
    # the reconcile sees our publish's own updated_at (it cannot tell who wrote)
    assert changed_in_procore(e, False, PUBLISHED_AT, PUBLISHED_AT, same_time_counts=False) is e
    assert changed_in_procore(e, False, PUBLISHED_AT - timedelta(seconds=5), PUBLISHED_AT) is e  # overwritten since
    # a webhook names someone else's write: the same second as our publish counts (one-second timestamps)
    assert changed_in_procore(e, False, PUBLISHED_AT, PUBLISHED_AT).status is Status.FAILED
    todo = new_entry("A", ())
    assert changed_in_procore(todo, True, None, None) is todo
    updated = content_changed(e, "B", frozenset())
    assert updated is not None
    assert changed_in_procore(updated, False, None, None) is updated


def test_the_conflict_survives_a_revalidation_and_a_content_change_makes_it_an_update() -> None:
    flagged = changed_in_procore(published(), False, None, None)
    again = errors_changed(flagged, ("Pay ID OT has no payroll item",))
    assert again is not None
    back = errors_changed(again, ())
    assert back is not None
    assert back.status is Status.FAILED
    assert back.last_error == CHANGED_IN_PROCORE
    moved = content_changed(flagged, "B", frozenset())
    assert moved is not None
    assert moved.status is Status.UPDATED


def test_a_lost_refresh_answer_is_told_apart_from_procores_refusal() -> None:
    import httpx

    from services.mapping.domain import REFRESH_BURNT, reauthorization_message
    from services.mapping.procore_link import answer_lost
    from shared.procore import OAuthError

    request = httpx.Request("POST", "http://login/oauth/token")
    assert answer_lost(httpx.RemoteProtocolError("peer closed", request=request))
    assert answer_lost(httpx.ReadTimeout("slow", request=request))
    assert answer_lost(ValueError("Expecting value"))  # a 200 cut short: not a whole token answer
    assert not answer_lost(httpx.ConnectError("refused", request=request))  # never reached Procore
    assert not answer_lost(OAuthError(400, "used", "invalid_grant"))  # Procore answered
    assert reauthorization_message("The refresh token is invalid.", answer_lost=True) == REFRESH_BURNT
    told = reauthorization_message("The refresh token is invalid.", answer_lost=False)
    assert "(The refresh token is invalid)" in told
    assert "Connect to Procore again" in told
