"""An entry's statuses and which of them each publish action acts on: one definition, used by the aggregator
(which owns entry status and moves entries to Publishing) and by the gateway (which offers the actions and
counts what a publish will do). The names users read are in `shared.labels`."""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from shared.events import PublishAction


class EntryStatus(StrEnum):
    """The statuses of the help article (the aggregator's `entries.status` column and its read contract)."""

    TODO = "todo"
    PUBLISHING = "publishing"
    PUBLISHED = "published"
    UPDATED = "updated"
    FAILED = "failed"
    DELETED = "deleted"
    NON_PUBLISHABLE = "non_publishable"


PUBLISHABLE: Final[dict[PublishAction, frozenset[EntryStatus]]] = {
    PublishAction.PUBLISH: frozenset({EntryStatus.TODO, EntryStatus.UPDATED, EntryStatus.DELETED, EntryStatus.FAILED}),
    PublishAction.REPUBLISH: frozenset(
        {EntryStatus.FAILED, EntryStatus.DELETED, EntryStatus.UPDATED, EntryStatus.TODO}
    ),
    PublishAction.FORCE_PUBLISH: frozenset(
        {EntryStatus.TODO, EntryStatus.UPDATED, EntryStatus.DELETED, EntryStatus.FAILED, EntryStatus.PUBLISHED}
    ),
}
"""The entries each action moves to Publishing (Non publishable and Publishing never; Published only by force)."""
