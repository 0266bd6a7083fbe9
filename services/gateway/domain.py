"""Pure gateway logic: tokens and permissions, cell status and actions, dashboard and details views.

No I/O here. The read-model rows come in as plain dataclasses; the views go out as pydantic
models (`views`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import jwt
from pydantic import TypeAdapter, ValidationError

from services.gateway.views import (
    Cell,
    CellDetails,
    Column,
    CostCodeQuantity,
    Dashboard,
    DashboardRow,
    DetailsRow,
    EntryDetail,
    EntryStatus,
    ErrorGroup,
    HistoryItem,
    JobSite,
    ManpowerRow,
    ProductionQuantityRow,
    TimecardRow,
)
from shared.events import PERMISSION_LABEL, Id, Module, Permission, ProcoreEntity, PublishAction, ReferenceKind

# --- auth ------------------------------------------------------------------------------

CORE_ALGORITHMS: tuple[str, ...] = ("RS256", "EdDSA")
"""Production: MobiClocks core signs with a private key; the gateway holds only the public keys (JWKS)."""
DEV_ALGORITHM = "HS256"
"""Development only: a shared secret (JWT_SECRET) signs the tokens of dev login and tests."""
DEV_ISSUER = "procore-gateway-dev-login"
DEV_AUDIENCE = "procore-gateway-development"
"""The audience of every development token. Production checks its own audience (JWT_AUDIENCE, which may never be
this one) and never takes HS256, so a development token is refused there twice over."""

PERMISSION_LABELS = PERMISSION_LABEL


@dataclass(frozen=True)
class Principal:
    """The signed-in user: every query and command is scoped to `account_id`."""

    user_id: str
    account_id: str
    permissions: frozenset[str] = frozenset()

    def has(self, permission: Permission) -> bool:
        return permission.value in self.permissions


@dataclass(frozen=True)
class TokenRules:
    """What a token must say to be taken: signed with one of `algorithms`, by `issuer`, for `audience`."""

    issuer: str
    audience: str
    algorithms: tuple[str, ...]
    leeway_s: int = 30


DEV_RULES = TokenRules(DEV_ISSUER, DEV_AUDIENCE, (DEV_ALGORITHM,))


class NotAuthenticated(Exception):
    """No token, or one that is not valid (bad signature, expired, wrong issuer or audience, missing claims): 401."""


class MissingPermission(Exception):
    """The user is signed in but lacks the permission the action needs: HTTP 403."""

    def __init__(self, permission: Permission) -> None:
        self.permission = permission
        super().__init__(f"this action needs the permission {permission.value!r} ({PERMISSION_LABELS[permission]})")


class NotFound(Exception):
    """Nothing with this id in the caller's account (another account's data is 'not found' too)."""


def require(principal: Principal, permission: Permission) -> None:
    if not principal.has(permission):
        raise MissingPermission(permission)


def issue_dev_token(principal: Principal, secret: str, ttl_s: int, now: datetime | None = None) -> str:
    """A development token (HS256, the development issuer and audience): dev login and tests, never production."""
    issued = now or datetime.now(UTC)
    claims = {
        "iss": DEV_ISSUER,
        "aud": DEV_AUDIENCE,
        "sub": principal.user_id,
        "account_id": principal.account_id,
        "permissions": sorted(principal.permissions),
        "iat": int(issued.timestamp()),
        "exp": int((issued + timedelta(seconds=ttl_s)).timestamp()),
    }
    return jwt.encode(claims, secret, algorithm=DEV_ALGORITHM)


@dataclass(frozen=True)
class TokenHeader:
    algorithm: str
    key_id: str | None


def token_header(token: str) -> TokenHeader:
    """The unverified header: which algorithm and key the token claims, to pick the verification (never trusted
    beyond that: the key and the algorithm allow-list decide)."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as error:
        raise NotAuthenticated(f"invalid token: {error}") from error
    algorithm, key_id = header.get("alg"), header.get("kid")
    if not isinstance(algorithm, str) or (key_id is not None and not isinstance(key_id, str)):
        raise NotAuthenticated("invalid token: malformed header")
    return TokenHeader(algorithm, key_id)


_ID = TypeAdapter(Id)
_PERMISSIONS = TypeAdapter(list[str])
_REQUIRED_CLAIMS = ["exp", "iss", "aud", "sub", "account_id", "permissions"]


def read_token(token: str, key: Any, rules: TokenRules) -> Principal:
    """The principal of a token that `key` verifies and that meets `rules`; `NotAuthenticated` naming the problem.

    Fail closed: a token without a permissions list is refused, not read as "no permissions"."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=list(rules.algorithms),
            audience=rules.audience,
            issuer=rules.issuer,
            leeway=rules.leeway_s,
            options={"require": _REQUIRED_CLAIMS, "enforce_minimum_key_length": True},
        )
    except jwt.ExpiredSignatureError as error:
        raise NotAuthenticated("token expired") from error
    except jwt.InvalidAudienceError as error:
        raise NotAuthenticated(f"token not meant for this service (aud): {error}") from error
    except jwt.InvalidIssuerError as error:
        raise NotAuthenticated(f"token from an issuer this service does not trust (iss): {error}") from error
    except jwt.InvalidAlgorithmError as error:
        raise NotAuthenticated(f"token algorithm not accepted here: {error}") from error
    except jwt.InvalidTokenError as error:
        raise NotAuthenticated(f"invalid token: {error}") from error
    try:
        user_id = _ID.validate_python(claims["sub"])
        account_id = _ID.validate_python(claims["account_id"])
        permissions = _PERMISSIONS.validate_python(claims["permissions"], strict=True)
    except ValidationError as error:
        raise NotAuthenticated("invalid token: sub, account_id or permissions malformed") from error
    return Principal(user_id=user_id, account_id=account_id, permissions=frozenset(permissions))


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

ELIGIBLE_STATUSES: dict[PublishAction, frozenset[EntryStatus]] = {
    **CELL_ACTION_STATUSES,
    PublishAction.REPUBLISH: frozenset(
        {EntryStatus.FAILED, EntryStatus.DELETED, EntryStatus.UPDATED, EntryStatus.TODO}
    ),
}
"""The entries the aggregator actually moves to Publishing for each action (mirrors its rules)."""


def cell_status(counts: Mapping[EntryStatus, int]) -> EntryStatus:
    for status in STATUS_PRECEDENCE:
        if counts.get(status, 0) > 0:
            return status
    raise ValueError("a cell without entries has no status")


def allowed_actions(statuses: Iterable[EntryStatus]) -> list[PublishAction]:
    present = set(statuses)
    return [action for action, wanted in CELL_ACTION_STATUSES.items() if present & wanted]


def row_actions(status: EntryStatus) -> list[PublishAction]:
    """Per-row Republish, for Failed and Deleted entries (help article)."""
    return [PublishAction.REPUBLISH] if status in CELL_ACTION_STATUSES[PublishAction.REPUBLISH] else []


def week_of(day: date) -> date:
    """The Monday of the week `day` falls in."""
    return day - timedelta(days=day.weekday())


def week_days(week_start: date) -> list[date]:
    return [week_start + timedelta(days=i) for i in range(7)]


# --- names -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Name:
    name: str
    number: str | None = None


Names = Mapping[tuple[str, str], Name]
"""(reference kind, MobiClocks id) → name and Number field."""

NUMBERED_LABELS = frozenset({ReferenceKind.COST_CODE})
"""Kinds shown as "number name" (cost codes read "03-300 Concrete"); others by name alone."""


def label(names: Names, kind: ReferenceKind, entity_id: str | None) -> str | None:
    if entity_id is None:
        return None
    found = names.get((kind.value, entity_id))
    if found is None:
        return entity_id
    if kind in NUMBERED_LABELS and found.number:
        return f"{found.number} {found.name}"
    return found.name


def job_site(names: Names, job_site_id: str) -> JobSite:
    found = names.get((ReferenceKind.JOB_SITE.value, job_site_id))
    if found is None:
        return JobSite(job_site_id=job_site_id, name=job_site_id)
    return JobSite(job_site_id=job_site_id, name=found.name, number=found.number)


# --- dashboard -------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusGroup:
    """Entries of one cell with one status, summed by the read-model query."""

    job_site_id: str
    work_date: date
    status: EntryStatus
    entries: int
    manpower: int = 0
    total_hours: Decimal = Decimal(0)
    timecards: int = 0


@dataclass(frozen=True)
class QuantityGroup:
    job_site_id: str
    work_date: date
    cost_code_id: str
    unit: str
    units: Decimal


def build_dashboard(
    module: Module,
    week_start: date,
    status_filter: Sequence[EntryStatus],
    groups: Iterable[StatusGroup],
    quantities: Iterable[QuantityGroup],
    names: Names,
) -> Dashboard:
    """Job sites (sorted by name) by the 7 days of the week, each cell summarising its entries."""
    days = week_days(week_start)
    slot = {d: i for i, d in enumerate(days)}
    by_cell: dict[tuple[str, date], list[StatusGroup]] = defaultdict(list)
    for g in groups:
        if g.work_date in slot:
            by_cell[(g.job_site_id, g.work_date)].append(g)
    quantities_by_cell: dict[tuple[str, date], list[QuantityGroup]] = defaultdict(list)
    for q in quantities:
        quantities_by_cell[(q.job_site_id, q.work_date)].append(q)

    cells_by_site: dict[str, list[Cell | None]] = {}
    for (site, day), cell_groups in by_cell.items():
        counts = {g.status: g.entries for g in cell_groups}
        cell = Cell(
            job_site_id=site,
            work_date=day,
            status=cell_status(counts),
            entries=sum(counts.values()),
            counts=counts,
            actions=allowed_actions(counts),
        )
        if module is Module.MANPOWER:
            cell = cell.model_copy(
                update={
                    "manpower": sum(g.manpower for g in cell_groups),
                    "total_hours": sum((g.total_hours for g in cell_groups), Decimal(0)),
                }
            )
        elif module is Module.TIMECARD:
            cell = cell.model_copy(update={"timecards": sum(g.timecards for g in cell_groups)})
        else:
            tracked = sorted(
                (
                    CostCodeQuantity(
                        cost_code_id=q.cost_code_id,
                        cost_code=label(names, ReferenceKind.COST_CODE, q.cost_code_id) or q.cost_code_id,
                        unit=q.unit,
                        quantity=q.units,
                    )
                    for q in quantities_by_cell.get((site, day), [])
                ),
                key=lambda c: (c.cost_code.lower(), c.unit),
            )
            cell = cell.model_copy(update={"quantities": tracked})
        cells_by_site.setdefault(site, [None] * 7)[slot[day]] = cell

    sites = sorted((job_site(names, s) for s in cells_by_site), key=lambda j: (j.name.lower(), j.job_site_id))
    return Dashboard(
        module=module,
        week_start=week_start,
        days=days,
        status_filter=list(status_filter),
        status_precedence=list(STATUS_PRECEDENCE),
        rows=[DashboardRow(job_site=s, days=cells_by_site[s.job_site_id]) for s in sites],
    )


# --- details ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EntryRecord:
    """One row of the aggregator's `entries` table, as far as the gateway needs it."""

    entry_id: UUID
    module: Module
    job_site_id: str
    work_date: date
    dims: dict[str, str | None]
    content: dict[str, str] | None
    status: EntryStatus
    errors: tuple[str, ...] = ()
    last_error: str | None = None
    version: int = 1
    procore_id: int | None = None
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True)
class HistoryRecord:
    at: datetime
    action: str
    request_id: UUID | None = None
    requested_by: str | None = None
    outcome: str | None = None
    message: str | None = None


COLUMNS: dict[Module, list[Column]] = {
    Module.MANPOWER: [
        Column(key="company_name", label="Company name"),
        Column(key="crew_tag", label="Crew tag"),
        Column(key="total_hours", label="Total hours"),
        Column(key="manpower", label="Manpower"),
        Column(key="average", label="Average"),
        Column(key="status", label="Status"),
    ],
    Module.TIMECARD: [
        Column(key="employee", label="Employee"),
        Column(key="pay_class", label="Pay class"),
        Column(key="cost_code", label="Cost code"),
        Column(key="pay_id", label="Pay ID"),
        Column(key="payroll_item", label="Payroll item"),
        Column(key="timelog_duration", label="Timelog duration"),
        Column(key="status", label="Status"),
    ],
    Module.PRODUCTION_QUANTITY: [
        Column(key="cost_code", label="Cost code"),
        Column(key="um", label="UM"),
        Column(key="unit", label="Unit"),
        Column(key="status", label="Status"),
    ],
}
"""Exactly the fields of the help article's details tables, in its order."""


def names_needed(entries: Iterable[EntryRecord]) -> set[tuple[str, str]]:
    """The (kind, id) pairs whose names the details of these entries show."""
    wanted: set[tuple[str, str]] = set()
    dim_kinds = {
        "company_id": ReferenceKind.COMPANY,
        "employee_id": ReferenceKind.EMPLOYEE,
        "pay_class_id": ReferenceKind.PAY_CLASS,
        "cost_code_id": ReferenceKind.COST_CODE,
        "pay_id": ReferenceKind.PAY_ID,
    }
    for e in entries:
        wanted.add((ReferenceKind.JOB_SITE.value, e.job_site_id))
        for dim, kind in dim_kinds.items():
            value = e.dims.get(dim)
            if value is not None:
                wanted.add((kind.value, value))
    return wanted


def _decimal(content: Mapping[str, str] | None, key: str) -> Decimal | None:
    if content is None or content.get(key) is None:
        return None
    return Decimal(content[key])


def details_row(e: EntryRecord, names: Names, payroll_items: Mapping[str, str]) -> DetailsRow:
    """One row of the details table; `payroll_items` maps pay IDs to their mapped Procore payroll type."""
    common: dict[str, Any] = {
        "entry_id": e.entry_id,
        "status": e.status,
        "last_error": e.last_error,
        "errors": list(e.errors),
        "actions": row_actions(e.status),
    }
    d, c = e.dims, e.content
    if e.module is Module.MANPOWER:
        company_id = d.get("company_id") or ""
        manpower = _decimal(c, "manpower")
        return ManpowerRow(
            **common,
            company_id=company_id,
            company_name=label(names, ReferenceKind.COMPANY, company_id) or company_id,
            crew_tag=d.get("crew_tag"),
            total_hours=_decimal(c, "total_hours"),
            manpower=int(manpower) if manpower is not None else None,
            average=_decimal(c, "average_hours"),
        )
    if e.module is Module.TIMECARD:
        employee_id = d.get("employee_id") or ""
        pay_id = d.get("pay_id") or ""
        return TimecardRow(
            **common,
            employee_id=employee_id,
            employee=label(names, ReferenceKind.EMPLOYEE, employee_id) or employee_id,
            pay_class=label(names, ReferenceKind.PAY_CLASS, d.get("pay_class_id")),
            cost_code=label(names, ReferenceKind.COST_CODE, d.get("cost_code_id")),
            pay_id=label(names, ReferenceKind.PAY_ID, pay_id) or pay_id,
            payroll_item=payroll_items.get(pay_id),
            timelog_duration=_decimal(c, "hours"),
        )
    cost_code_id = d.get("cost_code_id") or ""
    return ProductionQuantityRow(
        **common,
        cost_code_id=cost_code_id,
        cost_code=label(names, ReferenceKind.COST_CODE, cost_code_id) or cost_code_id,
        um=d.get("unit_of_measure") or "",
        unit=_decimal(c, "units"),
    )


def _row_order(row: DetailsRow) -> tuple[str, ...]:
    if isinstance(row, ManpowerRow):
        return (row.company_name.lower(), row.crew_tag or "")
    if isinstance(row, TimecardRow):
        return (row.employee.lower(), row.pay_id, row.cost_code or "", row.pay_class or "")
    return (row.cost_code.lower(), row.um)


def error_groups(entries: Iterable[EntryRecord]) -> list[ErrorGroup]:
    """The Errors panel: each distinct reason a Non publishable entry cannot go out, with its rows."""
    affected: dict[str, list[UUID]] = {}
    for e in entries:
        if e.status is EntryStatus.NON_PUBLISHABLE:
            for message in dict.fromkeys(e.errors):
                affected.setdefault(message, []).append(e.entry_id)
    return [ErrorGroup(message=m, entry_ids=ids) for m, ids in sorted(affected.items())]


def build_details(
    module: Module,
    job_site_id: str,
    work_date: date,
    entries: Sequence[EntryRecord],
    names: Names,
    payroll_items: Mapping[str, str],
) -> CellDetails:
    counts: dict[EntryStatus, int] = defaultdict(int)
    for e in entries:
        counts[e.status] += 1
    rows = sorted((details_row(e, names, payroll_items) for e in entries), key=_row_order)
    return CellDetails(
        module=module,
        job_site=job_site(names, job_site_id),
        work_date=work_date,
        status=cell_status(counts),
        counts=dict(counts),
        actions=allowed_actions(counts),
        columns=COLUMNS[module],
        rows=rows,
        errors=error_groups(entries),
    )


def build_entry_detail(
    e: EntryRecord, names: Names, payroll_items: Mapping[str, str], history: Iterable[HistoryRecord]
) -> EntryDetail:
    return EntryDetail(
        entry_id=e.entry_id,
        module=e.module,
        job_site=job_site(names, e.job_site_id),
        work_date=e.work_date,
        status=e.status,
        version=e.version,
        procore_id=e.procore_id,
        updated_at=e.updated_at,
        dims=e.dims,
        content=e.content,
        row=details_row(e, names, payroll_items),
        history=[
            HistoryItem(
                at=h.at,
                action=h.action,
                request_id=h.request_id,
                requested_by=h.requested_by,
                outcome=h.outcome,
                message=h.message,
            )
            for h in history
        ],
    )


def publish_key(account_id: str, job_site_id: str | None) -> str:
    """Kafka key of a publish command: one job site's commands stay in order."""
    return f"{account_id}:{job_site_id}" if job_site_id else account_id


class InvalidInput(Exception):
    """A request that is well-formed but makes no sense; `field` names the offending input: HTTP 422."""

    def __init__(self, field: tuple[str, ...], message: str) -> None:
        self.field = field
        super().__init__(message)


PROJECT_SCOPED: frozenset[ProcoreEntity] = frozenset({ProcoreEntity.COST_CODE})
"""Procore entities mapped per Procore project: their mapping needs procore_project_id."""


def check_mapping_scope(entity: ProcoreEntity, procore_project_id: int | None) -> None:
    """Cost codes are mapped per Procore project; other entities per account (as the aggregator reads them)."""
    if entity in PROJECT_SCOPED and procore_project_id is None:
        raise InvalidInput(
            ("body", "procore_project_id"),
            f"{entity.value} mappings are per Procore project: procore_project_id is required",
        )
    if entity not in PROJECT_SCOPED and procore_project_id is not None:
        raise InvalidInput(
            ("body", "procore_project_id"),
            f"{entity.value} mappings are not per project: leave procore_project_id out",
        )
