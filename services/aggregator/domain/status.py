"""The entry status machine of DESIGN.md: `EntryState` and the transitions (content or errors changed, publish
requested, refused or answered, changed in Procore)."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from shared import labels
from shared.entry_status import PUBLISHABLE as ENTRY_PUBLISHABLE
from shared.entry_status import EntryStatus
from shared.events import (
    Permission,
    ProcoreOperation,
    PublishAction,
    PublishOutcome,
    permission_refusal,
)

Status = EntryStatus
"""The entry statuses (one definition for every service: `shared.entry_status`)."""


@dataclass(frozen=True)
class EntryState:
    status: Status
    fingerprint: str | None = None
    """None when no timelog contributes to the entry any more."""
    version: int = 1
    errors: tuple[str, ...] = ()
    last_error: str | None = None
    procore_id: int | None = None
    published_fingerprint: str | None = None
    published_timelog_ids: frozenset[str] | None = None
    publishing_request_id: uuid.UUID | None = None
    publishing_fingerprint: str | None = None
    publishing_timelog_ids: frozenset[str] | None = None
    deleted_timelog_ids: frozenset[str] = field(default=frozenset())
    """Timelogs this entry was published (or is being published) with that have since been deleted."""

    @property
    def ever_published(self) -> bool:
        return self.procore_id is not None


def settle(e: EntryState) -> EntryState | None:
    """The resting status for an entry that is not being published; None means it disappears."""
    if e.status is Status.PUBLISHING:
        return e
    if not e.ever_published:
        if e.fingerprint is None:
            return None
        if e.errors:
            return replace(e, status=Status.NON_PUBLISHABLE)
        return replace(e, status=Status.FAILED if e.last_error else Status.TODO)
    if e.fingerprint is None or e.deleted_timelog_ids:
        return replace(e, status=Status.DELETED)
    if e.fingerprint == e.published_fingerprint:
        if e.last_error in IN_PROCORE:  # flagged by Procore (a webhook): still ours to overwrite or leave
            return replace(e, status=Status.FAILED)
        return replace(e, status=Status.PUBLISHED, last_error=None)
    if e.errors:
        return replace(e, status=Status.NON_PUBLISHABLE)
    return replace(e, status=Status.FAILED if e.last_error else Status.UPDATED)


@functools.lru_cache(maxsize=8192)
def new_entry(fp: str, errors: tuple[str, ...]) -> EntryState:
    """What `settle` makes of a never-published entry with content: Non publishable with errors, else To do.
    (Remembered: states are immutable, and the entries a batch or a rebuild creates share a few contents and
    error lists.)"""
    return EntryState(status=Status.NON_PUBLISHABLE if errors else Status.TODO, fingerprint=fp, errors=errors)


def content_changed(e: EntryState, fp: str | None, deleted_timelog_ids: frozenset[str]) -> EntryState | None:
    """Timelogs changed under an entry (fp None: no timelog left). A change while Publishing is kept."""
    if fp == e.fingerprint and deleted_timelog_ids == e.deleted_timelog_ids:
        return e
    changed = replace(
        e,
        fingerprint=fp,
        deleted_timelog_ids=deleted_timelog_ids,
        version=e.version + 1,
        last_error=None if fp != e.fingerprint else e.last_error,
    )
    return settle(changed)


def errors_changed(e: EntryState, errors: tuple[str, ...]) -> EntryState | None:
    """Mapping changes re-validate entries: Non publishable ↔ To do (or Updated)."""
    if errors == e.errors:
        return e
    return settle(replace(e, errors=errors))


PUBLISHABLE = ENTRY_PUBLISHABLE
"""The entries each action moves to Publishing (`shared.entry_status`, which the gateway reads too)."""


def operation_for(e: EntryState) -> ProcoreOperation | None:
    if not e.ever_published:
        return ProcoreOperation.CREATE if e.fingerprint is not None else None
    if e.fingerprint is None:
        return ProcoreOperation.DELETE
    if e.deleted_timelog_ids:
        # Deleted (and still Failed after a replace that did not go through): the record goes, then comes back
        return ProcoreOperation.REPLACE
    return ProcoreOperation.UPDATE


def publish_requested(
    e: EntryState, action: PublishAction, request_id: uuid.UUID, timelog_ids: frozenset[str]
) -> tuple[EntryState, ProcoreOperation] | None:
    """Move an eligible entry to Publishing; None when the action does not apply to its status.

    `timelog_ids` are the timelogs the entry holds now: the ones it will have been published with.
    """
    if e.status not in PUBLISHABLE[action]:
        return None
    operation = operation_for(e)
    if operation is None:
        return None
    publishing = replace(
        e,
        status=Status.PUBLISHING,
        publishing_request_id=request_id,
        publishing_fingerprint=e.fingerprint,
        publishing_timelog_ids=timelog_ids,
        last_error=None,
    )
    return publishing, operation


def publish_refused(e: EntryState, reason: str) -> EntryState:
    """A publish command that cannot be carried out for this entry (no Procore company chosen, its job site's
    project not mapped, a payload Procore cannot take): Failed with the reason, so the user sees what to fix.

    Only an entry the command applies to is refused; one being published keeps waiting for its result."""
    if e.status is Status.PUBLISHING:
        return e
    return replace(e, status=Status.FAILED, last_error=reason)


REJECTED = "rejected"
"""The history outcome of a publish command refused for its requester (nothing else about the entry changes)."""


def requester_refusal(permissions: Sequence[str] | None) -> str | None:
    """Why the requester of a publish command may not publish (None: they may). Checked here, where the entries
    live, whoever sent the command: fail closed without a permissions list, refused without procore.publish."""
    return permission_refusal(Permission.PUBLISH, permissions)


NOTHING_TO_PUBLISH = "Nothing to publish: no timelog counts towards this entry"


def redrive_delay(redrives: int, after_s: float, max_s: float) -> float:
    """How long to wait for a publish result before re-sending the request (again): the timeout at first,
    doubling with each re-drive, capped, so a publisher that is down for long is not flooded."""
    return min(after_s * 2 ** min(redrives, 30), max(max_s, after_s))


def result_arrived(
    e: EntryState,
    request_id: uuid.UUID,
    outcome: PublishOutcome,
    procore_id: int | None,
    message: str | None,
) -> EntryState | None:
    """Apply the publisher's answer. Answers to any request but the current one change nothing."""
    if e.status is not Status.PUBLISHING or e.publishing_request_id != request_id:
        return e
    done = replace(
        e,
        status=Status.TODO,
        publishing_request_id=None,
        publishing_fingerprint=None,
        publishing_timelog_ids=None,
    )
    if outcome is PublishOutcome.PUBLISHED:
        done = replace(
            done,
            procore_id=procore_id,
            published_fingerprint=e.publishing_fingerprint,
            published_timelog_ids=e.publishing_timelog_ids,
            # a timelog deleted while its publish was in flight still makes the entry Deleted
            deleted_timelog_ids=e.deleted_timelog_ids & (e.publishing_timelog_ids or frozenset()),
            last_error=None,
        )
    elif outcome is PublishOutcome.DELETED:
        done = replace(
            done,
            procore_id=None,
            published_fingerprint=None,
            published_timelog_ids=None,
            deleted_timelog_ids=frozenset(),
            last_error=None,
        )
    else:
        failed = replace(done, status=Status.FAILED, last_error=message or outcome.value)
        return failed
    return settle(done)


IN_PROCORE: tuple[str, str] = (labels.CHANGED_IN_PROCORE, labels.DELETED_IN_PROCORE)


def changed_in_procore(
    e: EntryState,
    deleted: bool,
    changed_at: datetime | None,
    published_at: datetime | None,
    same_time_counts: bool = True,
) -> EntryState:
    """Someone changed (or deleted) the entry's Procore record: a Published entry becomes Failed "changed/deleted
    in Procore" at once (Publish and Republish then refuse to overwrite it; Force publish does). A change older
    than our last publish does not count (a late delivery of an edit our force publish already overwrote).
    Procore's times may have one-second precision: a change stamped the same time as our publish counts when the
    report says it was someone else's (a webhook, whose writer is known), not when it may be our own write (the
    reconcile: its next publish then compares the content). An entry in any other status is left alone (its next
    publish detects the conflict itself)."""
    if e.status is not Status.PUBLISHED:
        return e
    if not deleted and changed_at is not None and published_at is not None:
        older = changed_at < published_at or (changed_at == published_at and not same_time_counts)
        if older:
            return e
    return replace(e, status=Status.FAILED, last_error=IN_PROCORE[1] if deleted else IN_PROCORE[0])


def timelog_deleted(e: EntryState, timelog_id: str) -> frozenset[str]:
    """The entry's deleted set after `timelog_id` was deleted: only timelogs it was published with count."""
    published = (e.published_timelog_ids or frozenset()) | (e.publishing_timelog_ids or frozenset())
    return e.deleted_timelog_ids | {timelog_id} if timelog_id in published else e.deleted_timelog_ids
