"""Procore's stricter rules, each switchable per company or project (all off by default: the friendlier sandbox).

Real Procore is less forgiving than the sandbox's defaults. Each rule here can be switched on through the control
API (`PUT /_sandbox/rules/companies/{id}`, `PUT /_sandbox/rules/projects/{id}`, `PUT /_sandbox/rules`) so a test
can show the product copes with it. Pure data and decisions; `state/` asks them at the right moments.

Error shapes: Procore documents the 422 validation shape `{code, message, reason, fields, error, errors}` and the
403/404 shapes; the *texts* of the rule-specific errors below (time-entry mode, completed day, project directory)
are not documented and are assumed (see the sandbox README).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal

TimeEntryMode = Literal["hours", "start_stop"]
DeletedAnswer = Literal["404", "403", "deleted_at"]
Precision = Literal["microsecond", "second"]
RateLimitScope = Literal["company", "token"]

COMPLETED_DAY_MESSAGE = "The Daily Log for {day} has been completed and can no longer be edited"
"""Assumed text (Procore does not document the answer to a write into a completed day)."""
NOT_IN_DIRECTORY = "{party_id} is not in the directory of project {project_id}"
"""Assumed text: Procore's timecard screens only offer people of the project's directory."""
START_STOP_REQUIRED = "is required: the project's timesheet takes start and stop times"
"""Assumed text: the tutorial says the fields sent must match the project timesheet's time-entry setting."""


@dataclass
class ProjectRules:
    time_entry_mode: TimeEntryMode = "hours"
    """`start_stop`: timecard entries need `time_in`+`time_out` (hours alone are refused with 422)."""
    completed_days: set[date] = field(default_factory=set)
    """Days whose Daily Log is marked Complete: every write to that day's records is refused."""
    directory: set[int] | None = None
    """People (party ids) a timecard may name; None: not enforced (the sandbox's default) unless `enforce_directory`."""
    enforce_directory: bool = False
    """Refuse timecards for people outside the project's directory as `project_directory.py` serves it."""


@dataclass
class CompanyRules:
    pending_only_timecard_list: bool = False
    """The project timecard list answers pending entries only (approved ones drop out of it)."""
    timestamp_precision: Precision = "microsecond"
    """`second`: `updated_at` has one-second precision, so two writes within a second look identical."""
    deleted_answer: DeletedAnswer = "404"
    """What a GET of a deleted Daily Log record answers: 404, 403, or 200 with `deleted_at` set."""
    bulk_create_forbidden: bool = False
    """v1.1 timecard `bulk_create` answers 403 (Procore gates it behind beta access)."""


@dataclass
class Rules:
    companies: dict[int, CompanyRules] = field(default_factory=dict)
    projects: dict[int, ProjectRules] = field(default_factory=dict)
    rate_limit_scope: RateLimitScope = "company"
    """`token`: rate limits count per OAuth grant (client + the user it acts for), across its companies."""

    def company(self, company_id: int) -> CompanyRules:
        return self.companies.get(company_id) or CompanyRules()

    def project(self, project_id: int) -> ProjectRules:
        return self.projects.get(project_id) or ProjectRules()

    def set_company(self, company_id: int, changes: dict[str, Any]) -> CompanyRules:
        rules = self.companies.setdefault(company_id, CompanyRules())
        for name, value in changes.items():
            setattr(rules, name, value)
        return rules

    def set_project(self, project_id: int, changes: dict[str, Any]) -> ProjectRules:
        rules = self.projects.setdefault(project_id, ProjectRules())
        for name, value in changes.items():
            if name in ("completed_days", "directory") and value is not None:
                value = set(value)
            setattr(rules, name, value)
        return rules

    def rate_key(self, client_id: str, user_id: int | None, company_id: int | None) -> tuple[Any, ...]:
        """Which rate budget a /rest call spends."""
        if self.rate_limit_scope == "token":
            return ("token", client_id, user_id)
        return (client_id, company_id)


def stamp(moment: datetime, precision: Precision) -> datetime:
    """An `updated_at` as the company's Procore would store it."""
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=0) if precision == "second" else moment


def company_json(rules: CompanyRules) -> dict[str, Any]:
    return {
        "pending_only_timecard_list": rules.pending_only_timecard_list,
        "timestamp_precision": rules.timestamp_precision,
        "deleted_answer": rules.deleted_answer,
        "bulk_create_forbidden": rules.bulk_create_forbidden,
    }


def project_json(rules: ProjectRules) -> dict[str, Any]:
    return {
        "time_entry_mode": rules.time_entry_mode,
        "completed_days": sorted(d.isoformat() for d in rules.completed_days),
        "directory": None if rules.directory is None else sorted(rules.directory),
        "enforce_directory": rules.enforce_directory,
    }
