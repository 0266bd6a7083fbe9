"""Pure rules the gateway needs for the Setup and Data mapping screens: tabs, early 409s, the OAuth cookie, what
Setup still lacks, and which mappings are per Procore project.

The mapping service enforces all of this itself (it owns the data); the gateway uses the same rules
(shared.mapping_rules) to answer early and to describe the tabs.
"""

from __future__ import annotations

from services.gateway.failures import InvalidInput
from services.gateway.schemas import Setup, SetupStep, Tab
from shared import labels
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


def empty_tab_message(entity: ProcoreEntity, has_rows: bool, has_options: bool, synced: object) -> str | None:
    """Why a tab shows nothing to map, in words (None when it has rows and Procore items to pick)."""
    kinds = labels.MOBICLOCKS_KINDS_PLURAL[MOBICLOCKS_KIND_OF[entity].value]
    procore_items = TAB_LABEL[entity].lower()
    if not has_rows:
        return f"No {kinds} in MobiClocks yet: they appear here as soon as MobiClocks has them."
    if not has_options and not synced:
        return f"Select Sync to get the list of {procore_items} from Procore, then map each row."
    if not has_options:
        return f"Procore has no {procore_items} to map to (the last sync found none)."
    return None


def mobiclocks_kind(entity: ProcoreEntity) -> str:
    return MOBICLOCKS_KIND_OF[entity].value


def refuse_two_way(two_way: bool) -> None:
    if two_way:
        raise Conflict(TWO_WAY_CONFLICT)


# --- OAuth: the browser that starts a connection must be the one that completes it ---------------

OAUTH_COOKIE = "procore_oauth"
"""HttpOnly, SameSite=Lax (Procore's redirect back is a top-level cross-site GET), Secure over https, scoped to
the callback path: it holds the nonce the mapping service compares with the state's at the callback."""


def directory_warning(projects: list[str]) -> str:
    """A mapped employee missing from the Procore directory of projects where they have timecards."""
    where = ", ".join(projects)
    return (
        f"Not in the Procore project directory of {where}, where they have timecards: add them to the project's "
        "directory in Procore, then sync Employees"
    )


def setup_missing(setup: Setup, connected: bool) -> list[SetupStep]:
    """What Setup still lacks before anything can be published, in Setup's order."""
    missing: list[SetupStep] = []
    if not connected:
        missing.append("connection")
    if setup.procore_company_id is None:
        missing.append("company")
    if not setup.enabled_modules:
        missing.append("modules")
    return missing


def check_mapping_scope(entity: ProcoreEntity, procore_project_id: int | None) -> None:
    """Cost codes are mapped per Procore project; other entities per account (as the aggregator reads them)."""
    if entity in PROJECT_SCOPED and procore_project_id is None:
        raise InvalidInput(
            ("body", "procore_project_id"),
            f"{labels.ENTITIES[entity.value]} are mapped per Procore project: procore_project_id is required",
        )
    if entity not in PROJECT_SCOPED and procore_project_id is not None:
        raise InvalidInput(
            ("body", "procore_project_id"),
            f"{labels.ENTITIES[entity.value]} are not mapped per project: leave procore_project_id out",
        )
