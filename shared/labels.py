"""Every user-facing name of the product, in one place: statuses, modules, permissions, mapping tabs,
publish actions, connection methods, details columns, and the wording of Non publishable reasons.

The Python services import these; the dashboard loads them from the gateway (`GET /api/labels`), so the
JavaScript keeps no list of its own. Keys are the values the API and the events use (the enums'
values); `tests/unit/test_labels.py` checks every enum member has exactly one label here. Where the help
article names a thing, these are its words.

This module imports nothing of the project: the event contracts and the services import it.
"""

from __future__ import annotations

import re
from typing import Final

STATUSES: Final[dict[str, str]] = {
    "todo": "To do",
    "publishing": "Publishing",
    "published": "Published",
    "updated": "Updated",
    "failed": "Failed",
    "deleted": "Deleted",
    "non_publishable": "Non publishable",
}

MODULES: Final[dict[str, str]] = {
    "manpower": "Manpower",
    "timecard": "Timecard",
    "production_quantity": "Production quantity",
}

PERMISSIONS: Final[dict[str, str]] = {
    "procore.publish": "Procore publishing",
    "procore.mapping": "Procore Connect data mapping",
    "procore.setup": "Procore setup (administrator)",
}
"""Role permissions as Administration > Role Permissions > Procore names them."""

ENTITIES: Final[dict[str, str]] = {
    "vendor": "Vendors",
    "project": "Projects",
    "employee": "Employees",
    "classification": "Classifications",
    "cost_code": "Cost codes",
    "payroll_type": "Payroll types",
}
"""The Data mapping tabs (Procore entities), in the help article's order."""

ENTITY_SINGULAR: Final[dict[str, str]] = {
    "vendor": "vendor",
    "project": "project",
    "employee": "employee",
    "classification": "classification",
    "cost_code": "cost code",
    "payroll_type": "payroll type",
}
"""One Procore entity of a tab, inside a sentence ("Procore project Tower A")."""

MOBICLOCKS_KINDS: Final[dict[str, str]] = {
    "company": "company",
    "job_site": "job site",
    "employee": "employee",
    "pay_class": "pay class",
    "cost_code": "cost code",
    "pay_id": "pay ID",
}
"""The MobiClocks side of each tab, inside a sentence."""

MOBICLOCKS_KINDS_PLURAL: Final[dict[str, str]] = {
    "company": "companies",
    "job_site": "job sites",
    "employee": "employees",
    "pay_class": "pay classes",
    "cost_code": "cost codes",
    "pay_id": "pay IDs",
}

ACTIONS: Final[dict[str, str]] = {
    "publish": "Publish",
    "republish": "Republish",
    "force_publish": "Force publish",
}

CONNECTION_METHODS: Final[dict[str, str]] = {
    "authorization_code": "a Procore user's consent (OAuth)",
    "client_credentials": "your company's own service account",
}

CONNECTION_STATUSES: Final[dict[str, str]] = {
    "not_connected": "Not connected",
    "connected": "Connected",
    "needs_reauthorization": "Needs to be connected again",
    "disconnected": "Disconnected",
}

SETUP_STEPS: Final[dict[str, str]] = {
    "connection": "Connect to Procore",
    "company": "Choose the Procore company",
    "modules": "Select Procore modules",
}
"""What `GET /api/setup` may report as missing, as Setup's steps are named."""

COLUMNS: Final[dict[str, dict[str, str]]] = {
    "manpower": {
        "company_name": "Company name",
        "crew_tag": "Crew tag",
        "total_hours": "Total hours",
        "manpower": "Manpower",
        "average": "Average",
        "status": "Status",
    },
    "timecard": {
        "employee": "Employee",
        "pay_class": "Pay class",
        "cost_code": "Cost code",
        "pay_id": "Pay ID",
        "payroll_item": "Payroll item",
        "timelog_duration": "Timelog duration",
        "status": "Status",
    },
    "production_quantity": {
        "cost_code": "Cost code",
        "um": "UM",
        "unit": "Unit",
        "status": "Status",
    },
}
"""Exactly the fields of the help article's details tables, in its order."""

PROCORE_FIELDS: Final[dict[str, str]] = {
    "num_workers": "Workers",
    "num_hours": "Hours per worker",
    "hours": "Hours",
    "quantity": "Quantity",
    "unit": "Unit",
}
"""The Procore fields the force-publish preview shows, ours beside Procore's."""

PREVIEW_EFFECTS: Final[dict[str, str]] = {
    "create": "Creates a new record in Procore",
    "overwrite": "Overwrites the record in Procore",
    "recreate": "Creates the record again (it was deleted in Procore)",
    "delete": "Deletes the record in Procore",
}

MAPPING_SOURCES: Final[dict[str, str]] = {
    "manual": "Manual",
    "auto": "Auto-map",
    "two_way": "Two-way link",
}
"""Who made a Data mapping row's mapping (its `source`): the "Mapped by" column."""

HISTORY: Final[dict[str, str]] = {
    "open": "History",
    "title": "Publish history",
    "at": "When",
    "action": "Action",
    "requested_by": "Who",
    "outcome": "Outcome",
    "message": "Message",
    "trace": "Trace",
    "system": "MobiClocks",
    "empty": "Nothing published yet: the history starts with the first Publish.",
    "no_trace": "No trace",
    "copy": "Copy",
    "copied": "Trace id copied",
    "copy_failed": "Could not copy: select the id and copy it",
    "close": "Close",
    "procore_record": "Procore record",
}
"""The words of an entry's publish history (the History of a details row): headings and fixed phrases."""

HISTORY_ACTIONS: Final[dict[str, str]] = {
    "publish": "Publish",
    "republish": "Republish",
    "force_publish": "Force publish",
    "result": "Procore answered",
    "re-driven": "Sent again (no answer in time)",
    "procore": "Someone changed it in Procore",
}
"""A history step's `action`: the publish actions as the help article names them, then the publisher's answer
(`result`), a request sent again because its answer was overdue (the aggregator's `re-driven`), and a change
made in Procore that a webhook or the reconcile reported (`procore`)."""

HISTORY_OUTCOMES: Final[dict[str, str]] = {
    "": "On the way to Procore",
    "published": "Published",
    "deleted": "Deleted",
    "conflict": "Changed in Procore",
    "failed": "Failed",
    "rejected": "Refused",
}
"""A history step's `outcome` (the publisher's PublishOutcome, the aggregator's `rejected`; "": a request sent,
no outcome yet)."""

HISTORY_OPERATIONS: Final[dict[str, str]] = {
    "create": "Creates the record in Procore",
    "update": "Updates the record in Procore",
    "delete": "Deletes the record in Procore",
    "replace": "Deletes the record in Procore and creates it again",
}
"""The message of a request step: what it asks Procore to do (the ProcoreOperation)."""


# --- sentences ------------------------------------------------------------------------------

CHANGED_IN_PROCORE: Final[str] = "changed in Procore since it was published"
DELETED_IN_PROCORE: Final[str] = "deleted in Procore since it was published"
"""The publisher's conflict reasons (an entry's last error): Publish and Republish never overwrite these."""

CONFLICT_ADVICE: Final[str] = (
    "Changed in Procore since it was published. Review the differences and force publish to overwrite "
    "Procore, or leave Procore's version."
)
"""What a Conflict entry (Failed because Procore's record was edited) tells the user to do."""
DELETED_ADVICE: Final[str] = (
    "Deleted in Procore since it was published. Force publish to create it in Procore again, or leave it deleted there."
)
CONFLICT_ADVICES: Final[dict[str, str]] = {CHANGED_IN_PROCORE: CONFLICT_ADVICE, DELETED_IN_PROCORE: DELETED_ADVICE}


NAME_AFTER_SYNC: Final[str] = "Mapped (sync to see the name)"
"""A mapped Procore item whose name is not known yet (its list was never synced): never its raw id."""

NOT_CONNECTED: Final[str] = "Procore is not connected for this account"
FRACTIONAL_QUANTITY: Final[str] = (
    "Quantity {units} {unit} of cost code {label} is fractional; Procore takes whole numbers"
)

REASONS: Final[dict[str, str]] = {
    "project": "Job site {label} is not mapped to a Procore project",
    "vendor": "Company {label} is not mapped to a Procore vendor",
    "employee": "Employee {label} is not mapped to a Procore employee",
    "payroll_type": "Pay ID {label} has no payroll item",
    "cost_code": "Cost code {label} is not mapped for project {project}",
    "classification": "Pay class {label} is not mapped to a Procore classification",
}
"""Why an entry is Non publishable, per missing mapping (keyed by the Data mapping tab that fixes it). The
aggregator words its errors with these; the gateway reads back which tab fixes an error with `reason_entity`."""


def _pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{[a-z]+\}", template)
    return re.compile("^" + "(.+?)".join(re.escape(p) for p in parts) + "(?:: .*)?$", re.DOTALL)


_REASON_PATTERNS: Final[tuple[tuple[str, re.Pattern[str]], ...]] = tuple(
    (entity, _pattern(template)) for entity, template in REASONS.items()
)


def reason_entity(text: str) -> str | None:
    """Which mapping tab fixes a Non publishable reason worded from `REASONS` (None: no mapping fixes it)."""
    for entity, pattern in _REASON_PATTERNS:
        if pattern.match(text):
            return entity
    return None


def permission_sentence(permission: str) -> str:
    """'the Procore Connect data mapping permission' — never the internal key."""
    return f"the {PERMISSIONS.get(permission, 'required')} permission"


def all_labels() -> dict[str, object]:
    """What `GET /api/labels` serves."""
    return {
        "statuses": STATUSES,
        "modules": MODULES,
        "permissions": PERMISSIONS,
        "entities": ENTITIES,
        "entity_singular": ENTITY_SINGULAR,
        "mobiclocks_kinds": MOBICLOCKS_KINDS,
        "actions": ACTIONS,
        "connection_methods": CONNECTION_METHODS,
        "connection_statuses": CONNECTION_STATUSES,
        "setup_steps": SETUP_STEPS,
        "columns": COLUMNS,
        "conflict_advice": CONFLICT_ADVICE,
        "procore_fields": PROCORE_FIELDS,
        "preview_effects": PREVIEW_EFFECTS,
        "mapping_sources": MAPPING_SOURCES,
        "history": HISTORY,
        "history_actions": HISTORY_ACTIONS,
        "history_outcomes": HISTORY_OUTCOMES,
        "history_operations": HISTORY_OPERATIONS,
    }
