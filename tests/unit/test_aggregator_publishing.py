"""Publishing rules of the entry status machine that keep an entry from getting stuck: refusals and re-drives."""

import uuid
from dataclasses import dataclass, field

from services.aggregator.domain import (
    EntryState,
    Status,
    content_changed,
    new_entry,
    operation_for,
    publish_blocker,
    publish_refused,
    publish_requested,
    redrive_delay,
    result_arrived,
    settle,
)
from shared.events import ProcoreEntity, ProcoreOperation, PublishAction, PublishOutcome, ReferenceKind


@dataclass
class Mappings:
    procore_company_id: int | None = 7
    projects: dict[str, int] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)

    def procore_id(self, entity: ProcoreEntity, mobiclocks_id: str, project_id: int | None = None) -> int | None:
        return self.projects.get(mobiclocks_id) if entity is ProcoreEntity.PROJECT else None

    def procore_name(self, entity: ProcoreEntity, mobiclocks_id: str, project_id: int | None = None) -> str | None:
        return None

    def label(self, kind: ReferenceKind, entity_id: str) -> str:
        return {"s1": "Tower A"}.get(entity_id, entity_id)

    def broken_reason(self, entity: ProcoreEntity, mobiclocks_id: str, project_id: int | None = None) -> str | None:
        return self.broken.get(mobiclocks_id)


def published(fp: str = "A") -> EntryState:
    rid = uuid.uuid4()
    moved = publish_requested(new_entry(fp, ()), PublishAction.PUBLISH, rid, frozenset({"t1"}))
    assert moved is not None
    after = result_arrived(moved[0], rid, PublishOutcome.PUBLISHED, 42, None)
    assert after is not None
    return after


def test_no_procore_company_blocks_publishing_with_what_to_do():
    assert publish_blocker(Mappings(procore_company_id=None), "s1") == (
        "Choose the Procore company in Setup, then publish again"
    )


def test_unmapped_job_site_blocks_publishing_and_names_it():
    reason = publish_blocker(Mappings(), "s1")
    assert reason == "Job site Tower A is not mapped to a Procore project; map it in Setup, then publish again"
    broken = publish_blocker(Mappings(broken={"s1": "it no longer exists in Procore"}), "s1")
    assert broken is not None
    assert "(it no longer exists in Procore)" in broken


def test_mapped_job_site_of_a_connected_account_can_be_published():
    assert publish_blocker(Mappings(projects={"s1": 100}), "s1") is None


def test_a_refused_publish_leaves_the_entry_failed_with_the_reason():
    todo = new_entry("A", ())
    refused = publish_refused(todo, "Choose the Procore company in Setup, then publish again")
    assert refused.status is Status.FAILED
    assert refused.last_error == "Choose the Procore company in Setup, then publish again"
    assert refused.publishing_request_id is None
    # Failed entries are what Publish (as Republish) acts on: the user can try again once it is fixed
    again = publish_requested(refused, PublishAction.PUBLISH, uuid.uuid4(), frozenset({"t1"}))
    assert again is not None
    assert again[0].status is Status.PUBLISHING
    assert again[0].last_error is None


def test_a_refused_entry_stays_failed_until_its_content_changes():
    refused = publish_refused(new_entry("A", ()), "reason")
    assert settle(refused) == refused
    changed = content_changed(refused, "B", frozenset())
    assert changed is not None
    assert changed.status is Status.TODO
    assert changed.last_error is None


def test_an_entry_being_published_is_not_refused():
    rid = uuid.uuid4()
    moved = publish_requested(new_entry("A", ()), PublishAction.PUBLISH, rid, frozenset())
    assert moved is not None
    assert publish_refused(moved[0], "reason") is moved[0]


def test_a_deleted_entry_refused_or_failed_is_still_replaced_when_published_again():
    deleted = content_changed(published("A"), "B", frozenset({"t1"}))
    assert deleted is not None
    assert deleted.status is Status.DELETED
    assert operation_for(deleted) is ProcoreOperation.REPLACE
    refused = publish_refused(deleted, "Choose the Procore company in Setup, then publish again")
    assert operation_for(refused) is ProcoreOperation.REPLACE
    moved = publish_requested(refused, PublishAction.PUBLISH, uuid.uuid4(), frozenset({"t2"}))
    assert moved is not None
    assert moved[1] is ProcoreOperation.REPLACE


def test_a_published_entry_whose_content_changed_is_updated_in_procore():
    updated = content_changed(published("A"), "B", frozenset())
    assert updated is not None
    assert operation_for(updated) is ProcoreOperation.UPDATE


def test_re_drives_wait_the_timeout_then_twice_as_long_each_time_up_to_the_cap():
    assert [redrive_delay(n, 120, 1000) for n in range(6)] == [120, 240, 480, 960, 1000, 1000]
    assert redrive_delay(10_000, 120, 3600) == 3600
    assert redrive_delay(0, 120, 60) == 120  # a cap below the timeout never shortens the first wait
