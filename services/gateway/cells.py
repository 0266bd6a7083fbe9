"""A cell of the week grid: its status (precedence), the actions it and its rows offer, and how a publish
command is keyed. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping

from shared import labels
from shared.entry_status import PUBLISHABLE, EntryStatus
from shared.events import PublishAction

# --- cell status and actions -----------------------------------------------------------

STATUS_PRECEDENCE: tuple[EntryStatus, ...] = (
    EntryStatus.FAILED,
    EntryStatus.NON_PUBLISHABLE,
    EntryStatus.DELETED,
    EntryStatus.UPDATED,
    EntryStatus.TODO,
    EntryStatus.PUBLISHING,
    EntryStatus.PUBLISHED,
)
"""A cell shows the status of its entries that most needs attention: what went wrong first
(Failed, Non publishable), then what still has to reach Procore (Deleted, Updated, To do),
then what is on its way (Publishing); Published only when every entry is."""

CELL_ACTION_STATUSES: dict[PublishAction, frozenset[EntryStatus]] = {
    PublishAction.PUBLISH: frozenset({EntryStatus.TODO, EntryStatus.UPDATED, EntryStatus.DELETED, EntryStatus.FAILED}),
    PublishAction.REPUBLISH: frozenset({EntryStatus.FAILED, EntryStatus.DELETED}),
    PublishAction.FORCE_PUBLISH: frozenset(
        {EntryStatus.TODO, EntryStatus.UPDATED, EntryStatus.DELETED, EntryStatus.FAILED, EntryStatus.PUBLISHED}
    ),
}
"""A cell (or a details table) offers an action when any of its entries has one of these statuses."""

ELIGIBLE_STATUSES: dict[PublishAction, frozenset[EntryStatus]] = PUBLISHABLE
"""The entries the aggregator actually moves to Publishing for each action (the one rule, `shared.entry_status`)."""


def cell_status(counts: Mapping[EntryStatus, int]) -> EntryStatus:
    for status in STATUS_PRECEDENCE:
        if counts.get(status, 0) > 0:
            return status
    raise ValueError("a cell without entries has no status")


def allowed_actions(counts: Mapping[EntryStatus, int], conflicts: int = 0) -> list[PublishAction]:
    """The actions a cell or details table offers. Failed entries that conflict with Procore (changed there since
    published) count only for Force publish: Publish and Republish would fail on them again."""
    present = {s for s, n in counts.items() if n > 0}
    if conflicts and conflicts >= counts.get(EntryStatus.FAILED, 0):
        present.discard(EntryStatus.FAILED)
    actions = [action for action, wanted in CELL_ACTION_STATUSES.items() if present & wanted]
    if conflicts and PublishAction.FORCE_PUBLISH not in actions:
        actions.append(PublishAction.FORCE_PUBLISH)
    return actions


def is_conflict(status: EntryStatus, last_error: str | None) -> bool:
    """Failed because Procore's record was changed (or deleted) there since we published it."""
    return status is EntryStatus.FAILED and last_error in labels.CONFLICT_ADVICES


def row_actions(status: EntryStatus, last_error: str | None = None) -> list[PublishAction]:
    """Per-row Republish, for Failed and Deleted entries (help article); a conflict offers only Force publish."""
    if is_conflict(status, last_error):
        return [PublishAction.FORCE_PUBLISH]
    return [PublishAction.REPUBLISH] if status in CELL_ACTION_STATUSES[PublishAction.REPUBLISH] else []


def publish_key(account_id: str, job_site_id: str | None) -> str:
    """Kafka key of a publish command: one job site's commands stay in order."""
    return f"{account_id}:{job_site_id}" if job_site_id else account_id
