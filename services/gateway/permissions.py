"""What the signed-in user may do: one check per action (403 naming the permission)."""

from __future__ import annotations

from services.gateway.tokens import Principal
from shared import labels
from shared.events import Permission


class MissingPermission(Exception):
    """The user is signed in but lacks the permission the action needs: HTTP 403."""

    def __init__(self, permission: Permission) -> None:
        self.permission = permission
        super().__init__(f"This needs {labels.permission_sentence(permission.value)}.")


def require(principal: Principal, permission: Permission) -> None:
    if not principal.has(permission):
        raise MissingPermission(permission)
