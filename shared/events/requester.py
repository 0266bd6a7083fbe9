"""Who asked: the requester of a command (a user, or a named system principal) and the permissions a command needs."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    StringConstraints,
)

from shared import labels


class Permission(StrEnum):
    """The role permissions a command needs; the service that owns the data checks them."""

    PUBLISH = "procore.publish"
    """Publish, republish and force publish entries (checked by the aggregator)."""
    MAPPING = "procore.mapping"
    """The role permission "Procore Connect data mapping" (checked by the mapping service)."""
    SETUP = "procore.setup"
    """Administration > Integrations > Procore > Setup (checked by the mapping service)."""


PERMISSION_LABEL: dict[str, str] = labels.PERMISSIONS
"""The role permissions' names (shared.labels keeps them; keyed by the enum values)."""


class RequesterKind(StrEnum):
    USER = "user"
    """A dashboard user: the gateway copies the user id and permissions from the verified token."""
    SYSTEM = "system"
    """A back-end caller acting on its own behalf (MobiClocks core, the dev demo, an operator tool), named by
    `requested_by` ("system:<name>") with the permissions it was given."""


Permissions = list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] | None
"""The requester's permissions. Fail closed: a command without a list (None) is refused by the service that owns
the data, recorded as rejected with the reason; there is no implicit "trusted backend". A back-end caller sends as a
named system principal (`SystemPrincipal`) with the permissions it needs. The gateway always sends the user's list,
copied from the verified token."""

SYSTEM_NAME = r"^system:[a-z0-9][a-z0-9._-]{0,55}$"


@dataclass(frozen=True)
class SystemPrincipal:
    """A named back-end caller and the permissions it is given (nothing is implied by being a back end)."""

    name: str
    permissions: tuple[Permission, ...]

    def __post_init__(self) -> None:
        if re.fullmatch(SYSTEM_NAME, self.name) is None:
            raise ValueError(f"a system principal is named system:<name>, not {self.name!r}")

    def requester(self) -> dict[str, Any]:
        """The requester fields of a command sent by this principal: `Command(..., **principal.requester())`."""
        return {
            "requested_by": self.name,
            "requester_kind": RequesterKind.SYSTEM,
            "permissions": sorted(p.value for p in self.permissions),
        }


NO_PERMISSIONS = (
    "the command names no permissions of its requester, so it is refused (fail closed): a back-end caller sends "
    "as a named system principal with the permissions it needs"
)


def permission_refusal(needed: Permission, permissions: Sequence[str] | None) -> str | None:
    """Why the requester of a command may not do this (None: it may). Used by each service that owns the data."""
    if permissions is None:
        return NO_PERMISSIONS
    if needed.value not in permissions:
        return f"this needs {labels.permission_sentence(needed.value)}"
    return None
