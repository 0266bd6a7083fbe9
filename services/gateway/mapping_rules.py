"""Pure rules the gateway needs for the Setup and Data mapping screens: tabs, early 409s, the OAuth cookie.

The mapping service enforces all of this itself (it owns the data); the gateway uses the same rules
(shared.mapping_rules) to answer early and to describe the tabs.
"""

from __future__ import annotations

from services.gateway.views import Tab
from shared.events import MOBICLOCKS_KIND_OF, ProcoreEntity
from shared.mapping_rules import (  # noqa: F401 - the gateway describes tabs with the product's own rules
    MANY_TO_ONE,
    MOBICLOCKS_LABEL,
    NEEDS_MAPPED_PROJECT,
    NUMBER_FIELD,
    PROJECT_SCOPED,
    TAB_LABEL,
    TABS_OF_MODULE,
    tabs_for,
)


def _sentence_case(label: str) -> str:
    return label[:1].upper() + label[1:]


# The gateway's own wording of each tab: (Procore tab label, MobiClocks column label).
TAB_LABELS: dict[ProcoreEntity, tuple[str, str]] = {
    entity: (TAB_LABEL[entity], _sentence_case(MOBICLOCKS_LABEL[MOBICLOCKS_KIND_OF[entity]]))
    for entity in ProcoreEntity
}

TWO_WAY_CONFLICT = (
    "This account uses the two-way integration: mappings come automatically from the Procore ids linked in "
    "MobiClocks, so there is no manual mapping or auto-map. Turn two-way off in Setup to map by hand."
)


class Conflict(Exception):
    """The request is valid but the account's state forbids it (two-way account): HTTP 409."""


def tab(entity: ProcoreEntity) -> Tab:
    label, mobiclocks_label = TAB_LABELS[entity]
    return Tab(
        entity=entity.value,
        label=label,
        mobiclocks_label=mobiclocks_label,
        auto_map=NUMBER_FIELD[entity] is not None,
        number_field=NUMBER_FIELD[entity],
        many_to_one=entity in MANY_TO_ONE,
        needs_project=entity in NEEDS_MAPPED_PROJECT,
    )


def mobiclocks_kind(entity: ProcoreEntity) -> str:
    return MOBICLOCKS_KIND_OF[entity].value


def refuse_two_way(two_way: bool) -> None:
    if two_way:
        raise Conflict(TWO_WAY_CONFLICT)


# --- OAuth: the browser that starts a connection must be the one that completes it ---------------

OAUTH_COOKIE = "procore_oauth"
"""HttpOnly, SameSite=Lax (Procore's redirect back is a top-level cross-site GET), Secure over https, scoped to
the callback path: it holds the nonce the mapping service compares with the state's at the callback."""
