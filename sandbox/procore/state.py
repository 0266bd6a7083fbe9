"""In-memory Procore: reference data, daily-log records, OAuth clients/tokens and the rules Procore applies.

Pure Python (no FastAPI). Every rule violation raises `ProcoreError(status, message)`; the HTTP layer turns it
into Procore's error body.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, TypeVar

from sandbox.procore.faults import FaultRegistry
from sandbox.procore.ratelimit import RateLimitConfig, RateLimiter

RecordKind = Literal["manpower_logs", "quantity_logs", "timecard_entries"]
RECORD_KINDS: tuple[RecordKind, ...] = ("manpower_logs", "quantity_logs", "timecard_entries")
# Webhook resource names (Procore's display names for these tools).
RESOURCE_NAMES: dict[RecordKind, str] = {
    "manpower_logs": "Manpower Logs",
    "quantity_logs": "Quantity Logs",
    "timecard_entries": "Timecard Entries",
}
EventType = Literal["create", "update", "delete"]

DEFAULT_CLIENT_ID = "sandbox-client"
DEFAULT_CLIENT_SECRET = "sandbox-secret"
FIRST_ID = 562_949_953_421_312  # 2**49: Procore ids are large; keeps clients honest about 64-bit storage
MANPOWER_STATUSES = ("pending", "approved")
APPROVAL_STATUSES = ("pending", "reviewed", "approved", "completed")


class ProcoreError(Exception):
    """A Procore-style error answer."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        reason: str | None = None,
        errors: dict[str, list[str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason
        self.errors = errors
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "code": self.status,
            "message": self.message,
            "reason": self.reason or self.message,
            "fields": ", ".join(self.errors) if self.errors else "",
            "error": None,
        }
        if self.errors:
            body["errors"] = self.errors
        return body


def invalid(field_name: str, problem: str) -> ProcoreError:
    return ProcoreError(422, f"{field_name} {problem}", errors={field_name: [problem]})


def fmt_ts(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def fmt_decimal(value: Decimal | None) -> str | None:
    if value is None:
        return None
    text = format(value.normalize(), "f")
    return text if "." in text else f"{text}.0"


# ---------------------------------------------------------------- reference data


@dataclass
class LineItemType:
    id: int
    name: str
    code: str
    base_type: str  # labor | material | equipment | ...


@dataclass
class CostCode:
    id: int
    project_id: int
    full_code: str
    name: str
    origin_id: str | None
    line_item_types: list[LineItemType]
    created_at: datetime
    updated_at: datetime


@dataclass
class Project:
    id: int
    company_id: int
    name: str
    project_number: str | None
    active: bool
    origin_id: str | None
    created_at: datetime
    updated_at: datetime
    cost_codes: dict[int, CostCode] = field(default_factory=dict)


@dataclass
class Vendor:
    id: int
    name: str
    abbreviated_name: str | None
    origin_id: str | None
    is_active: bool
    created_at: datetime
    updated_at: datetime


@dataclass
class Person:
    id: int
    first_name: str
    last_name: str
    employee_id: str | None
    is_employee: bool
    user_id: int | None
    work_classification_id: int | None
    origin_id: str | None
    email: str | None
    is_active: bool = True

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


@dataclass
class WorkClassification:
    id: int
    name: str
    abbreviation: str | None
    project_ids: list[int]
    created_at: datetime
    updated_at: datetime


@dataclass
class TimeType:
    id: int
    time_type: str
    abbreviated_time_type: str
    is_global: bool


@dataclass
class Company:
    id: int
    name: str
    is_active: bool
    projects: dict[int, Project] = field(default_factory=dict)
    vendors: dict[int, Vendor] = field(default_factory=dict)
    people: dict[int, Person] = field(default_factory=dict)
    work_classifications: dict[int, WorkClassification] = field(default_factory=dict)
    time_types: dict[int, TimeType] = field(default_factory=dict)


# ---------------------------------------------------------------- OAuth


@dataclass
class Client:
    client_id: str
    secret: str
    company_ids: set[int]
    user_id: int  # the app's service-account user; appears as created_by / webhook user_id
    name: str


@dataclass
class User:
    """A Procore user (a person who signs in): the companies they are a member of are the ones they can act for."""

    id: int
    login: str
    name: str
    company_ids: set[int]


@dataclass
class Token:
    access_token: str
    client_id: str
    created_at: float
    expires_at: float
    grant_type: str
    refresh_token: str | None = None
    revoked: bool = False
    user_id: int | None = None
    """The consenting user (authorization code and its refreshes); None: the client's own service account."""


@dataclass
class AuthCode:
    code: str
    client_id: str
    redirect_uri: str
    expires_at: float
    user_id: int
    code_challenge: str | None = None
    """RFC 7636: set when the authorize request carried one; the token request must then prove the verifier."""
    code_challenge_method: str = "plain"


PKCE_METHODS = ("S256", "plain")
_PKCE_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")


def pkce_challenge(verifier: str, method: str) -> str:
    """RFC 7636 section 4.2: S256 = BASE64URL(SHA256(ASCII(verifier))) without padding; plain = the verifier."""
    if method == "plain":
        return verifier
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class Actor:
    """Who performed a write: an OAuth client (our publisher) or a human Procore user (control API)."""

    user_id: int
    name: str
    login: str
    client_id: str | None = None


# ---------------------------------------------------------------- daily-log records


@dataclass
class Record:
    id: int
    company_id: int
    project_id: int
    date: date
    created_at: datetime
    updated_at: datetime
    created_by: Actor
    deleted_at: datetime | None = None
    position: int = 0


@dataclass
class ManpowerLog(Record):
    datetime_: datetime | None = None
    num_workers: int = 0
    num_hours: Decimal = Decimal("0")
    notes: str | None = None
    contact_id: int | None = None
    user_id: int | None = None
    cost_code_id: int | None = None
    location_id: int | None = None
    trade_id: int | None = None
    status: str = "approved"


@dataclass
class QuantityLog(Record):
    description: str | None = None
    quantity: int | None = None
    unit: str | None = None
    cost_code_id: int | None = None
    vendor_id: int | None = None
    location_id: int | None = None
    daily_log_segment_id: int | None = None


@dataclass
class TimecardEntry(Record):
    hours: Decimal = Decimal("0")
    time_in: datetime | None = None
    time_out: datetime | None = None
    lunch_time: int | None = None
    party_id: int | None = None
    timecard_time_type_id: int | None = None
    cost_code_id: int | None = None
    line_item_type_id: int | None = None
    sub_job_id: int | None = None
    location_id: int | None = None
    timesheet_id: int | None = None
    crew_id: int | None = None
    daily_log_segment_id: int | None = None
    billable: bool = False
    description: str | None = None
    origin_id: int | None = None
    origin_data: str | None = None
    approval_status: str = "pending"


AnyRecord = ManpowerLog | QuantityLog | TimecardEntry


_R = TypeVar("_R", ManpowerLog, QuantityLog, TimecardEntry)


@dataclass(frozen=True)
class ChangeEvent:
    kind: RecordKind
    event_type: EventType
    record_id: int
    company_id: int
    project_id: int
    actor: Actor
    timestamp: datetime


@dataclass
class Hook:
    id: int
    company_id: int | None
    project_id: int | None
    api_version: str
    namespace: str | None
    destination_url: str
    destination_headers: dict[str, str]
    owned_by_user_id: int


@dataclass
class Trigger:
    id: int
    hook_id: int
    resource_name: str
    event_type: str
    company_id: int | None
    project_id: int | None
    user_id: int


@dataclass
class Settings:
    token_lifetime_s: int = 5400
    per_page_max: int = 1000
    today: date | None = None  # pin "today" for Daily Log defaults; None = the UTC date of the clock
    duplicate_origin_status: int = 422
    webhook_max_attempts: int = 4
    webhook_retry_base_s: float = 0.5
    webhook_timeout_s: float = 5.0
    request_log_max: int = 100_000


# ---------------------------------------------------------------- value parsing (Procore-like coercion)

_INT_RE = re.compile(r"^-?\d+$")


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise invalid(name, "must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _INT_RE.match(value.strip()):
        return int(value)
    raise invalid(name, f"must be an integer, got {value!r}")


def _opt_int(value: Any, name: str) -> int | None:
    return None if value is None or value == "" else _int(value, name)


def _decimal(value: Any, name: str) -> Decimal:
    if isinstance(value, bool):
        raise invalid(name, "must be a number")
    if isinstance(value, int | float | str):
        try:
            result = Decimal(str(value).strip())
        except InvalidOperation as exc:
            raise invalid(name, f"must be a number, got {value!r}") from exc
        if not result.is_finite():
            raise invalid(name, "must be a finite number")
        return result
    raise invalid(name, f"must be a number, got {value!r}")


def _str(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise invalid(name, "must be a string")


def _bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    raise invalid(name, "must be a boolean")


def _date(value: Any, name: str) -> date:
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise invalid(name, f"must be a date in YYYY-MM-DD format, got {value!r}")


def _datetime(value: Any, name: str, day: date | None = None) -> datetime:
    """ISO 8601 datetime, or a bare HH:MM[:SS] taken on `day` (UTC)."""
    if isinstance(value, str):
        text = value.strip().replace("Z", "+00:00")
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            parsed = None
            if day is not None and re.match(r"^\d{1,2}:\d{2}(:\d{2})?$", text):
                parsed = datetime.fromisoformat(f"{day.isoformat()}T{text.zfill(5)}")
        if parsed is not None:
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    raise invalid(name, f"must be an ISO 8601 datetime, got {value!r}")


def require_wrapper(body: Any, wrapper: str) -> dict[str, Any]:
    """Rails strong-params: the wrapper object must be present and non-empty, else 400."""
    if not isinstance(body, dict) or not isinstance(body.get(wrapper), dict) or not body[wrapper]:
        raise ProcoreError(400, f"param is missing or the value is empty: {wrapper}", reason="bad_request")
    inner: dict[str, Any] = body[wrapper]
    return inner


class SandboxState:
    """Everything the sandbox knows. One instance per app; `reset()` returns it to the start state."""

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] | None = None,
        wall: Callable[[], float] | None = None,
    ) -> None:
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self.wall: Callable[[], float] = wall or time.time
        self.listeners: list[Callable[[ChangeEvent], None]] = []
        self.reset()

    # ------------------------------------------------------------ lifecycle

    def reset(self) -> None:
        self.settings = Settings()
        self.limiter = RateLimiter(RateLimitConfig(), clock=self.wall)
        self.faults = FaultRegistry()
        self.companies: dict[int, Company] = {}
        self.clients: dict[str, Client] = {}
        self.users: dict[int, User] = {}
        self.tokens: dict[str, Token] = {}
        self.refresh_tokens: dict[str, Token] = {}
        self.auth_codes: dict[str, AuthCode] = {}
        self.records: dict[RecordKind, dict[int, AnyRecord]] = {kind: {} for kind in RECORD_KINDS}
        self.hooks: dict[int, Hook] = {}
        self.triggers: dict[int, Trigger] = {}
        self.request_log: deque[dict[str, Any]] = deque(maxlen=self.settings.request_log_max)
        self.deliveries: list[dict[str, Any]] = []
        self._last_id = FIRST_ID
        self._last_ts: datetime | None = None
        self._request_seq = 0
        self.procore_user = Actor(user_id=self.next_id(), name="Pat Procore", login="pat@procore.example")
        self.register_client(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, [])

    # ------------------------------------------------------------ ids and time

    def next_id(self) -> int:
        self._last_id += 1
        return self._last_id

    def claim_id(self, explicit: int | None) -> int:
        if explicit is None:
            return self.next_id()
        self._last_id = max(self._last_id, explicit)
        return explicit

    def next_timestamp(self) -> datetime:
        """Strictly increasing: two writes in the same clock tick still get different updated_at."""
        now = self.clock().astimezone(UTC)
        if self._last_ts is not None and now <= self._last_ts:
            now = self._last_ts + timedelta(microseconds=1)
        self._last_ts = now
        return now

    def today(self) -> date:
        return self.settings.today or self.clock().astimezone(UTC).date()

    def next_request_seq(self) -> int:
        self._request_seq += 1
        return self._request_seq

    # ------------------------------------------------------------ clients and tokens

    def register_client(self, client_id: str, secret: str, company_ids: Iterable[int], name: str = "") -> Client:
        existing = self.clients.get(client_id)
        if existing is not None:
            existing.secret = secret
            existing.company_ids |= set(company_ids)
            return existing
        client = Client(client_id, secret, set(company_ids), self.next_id(), name or client_id)
        self.clients[client_id] = client
        return client

    def authenticate_client(self, client_id: Any, secret: Any) -> Client:
        client = self.clients.get(client_id) if isinstance(client_id, str) else None
        if client is None or not isinstance(secret, str) or not secrets.compare_digest(client.secret, secret):
            raise ProcoreError(401, "Client authentication failed", reason="invalid_client")
        return client

    def issue_token(self, client: Client, grant_type: str, *, with_refresh: bool, user_id: int | None = None) -> Token:
        now = self.wall()
        token = Token(
            access_token=secrets.token_urlsafe(32),
            client_id=client.client_id,
            created_at=now,
            expires_at=now + self.settings.token_lifetime_s,
            grant_type=grant_type,
            refresh_token=secrets.token_urlsafe(32) if with_refresh else None,
            user_id=user_id,
        )
        self.tokens[token.access_token] = token
        if token.refresh_token:
            self.refresh_tokens[token.refresh_token] = token
        return token

    def register_user(self, login: str, name: str, company_ids: Iterable[int]) -> User:
        """A Procore user and their company memberships (an existing login gains the companies)."""
        for company_id in company_ids:
            self.company(company_id)
        existing = self.user_by_login(login)
        if existing is not None:
            existing.company_ids |= set(company_ids)
            existing.name = name or existing.name
            return existing
        user = User(self.next_id(), login, name or login, set(company_ids))
        self.users[user.id] = user
        return user

    def user_by_login(self, login: str) -> User | None:
        wanted = login.strip().casefold()
        return next((u for u in self.users.values() if u.login.casefold() == wanted), None)

    def issue_auth_code(
        self,
        client_id: str,
        redirect_uri: str,
        user_id: int,
        code_challenge: str | None = None,
        code_challenge_method: str | None = None,
    ) -> str:
        """A one-time code for what `user_id` consented to; bound to the PKCE challenge when one was sent."""
        if client_id not in self.clients:
            raise ProcoreError(401, "Client authentication failed", reason="invalid_client")
        if user_id not in self.users:
            raise ProcoreError(400, "Unknown user", reason="invalid_request")
        method = code_challenge_method or "plain"  # RFC 7636 4.3: plain when the method is left out
        if code_challenge is not None and (method not in PKCE_METHODS or not _PKCE_VERIFIER.match(code_challenge)):
            raise ProcoreError(400, "code_challenge or code_challenge_method is invalid", reason="invalid_request")
        code = secrets.token_urlsafe(24)
        self.auth_codes[code] = AuthCode(
            code, client_id, redirect_uri, self.wall() + 600, user_id, code_challenge, method
        )
        return code

    def redeem_auth_code(self, client: Client, code: Any, redirect_uri: Any, code_verifier: Any = None) -> Token:
        grant = self.auth_codes.pop(code, None) if isinstance(code, str) else None
        if (
            grant is None
            or grant.client_id != client.client_id
            or grant.expires_at < self.wall()
            or (redirect_uri is not None and redirect_uri != grant.redirect_uri)
        ):
            raise ProcoreError(400, "The provided authorization grant is invalid or expired", reason="invalid_grant")
        if grant.code_challenge is not None and not (
            isinstance(code_verifier, str)
            and _PKCE_VERIFIER.match(code_verifier)
            and secrets.compare_digest(pkce_challenge(code_verifier, grant.code_challenge_method), grant.code_challenge)
        ):
            # RFC 7636 4.6: the code is spent either way (popped above).
            raise ProcoreError(400, "The code_verifier does not match the code_challenge", reason="invalid_grant")
        return self.issue_token(client, "authorization_code", with_refresh=True, user_id=grant.user_id)

    def refresh(self, client: Client, refresh_token: Any) -> Token:
        """Refresh tokens are single-use: the old one is burnt and a new pair is issued (for the same user)."""
        old = self.refresh_tokens.pop(refresh_token, None) if isinstance(refresh_token, str) else None
        if old is None or old.client_id != client.client_id or old.revoked:
            raise ProcoreError(400, "The refresh token is invalid, used or revoked", reason="invalid_grant")
        return self.issue_token(client, "refresh_token", with_refresh=True, user_id=old.user_id)

    def revoke(self, token_value: str) -> None:
        token = self.tokens.get(token_value) or self.refresh_tokens.pop(token_value, None)
        if token is not None:
            token.revoked = True
            if token.refresh_token:
                self.refresh_tokens.pop(token.refresh_token, None)

    def revoke_all(self, client_id: str | None = None, *, refresh_tokens: bool = False) -> int:
        """Revoke every live access token (of one client): Procore withdrawing an app's access at once.

        Refresh tokens stay usable unless `refresh_tokens`, so a connection can recover by refreshing.
        """
        doomed = [
            value
            for value, token in self.tokens.items()
            if not token.revoked and (client_id is None or token.client_id == client_id)
        ]
        for value in doomed:
            token = self.tokens.pop(value)  # unknown from now on: 401 like a revoked one
            if refresh_tokens:
                token.revoked = True
                if token.refresh_token:
                    self.refresh_tokens.pop(token.refresh_token, None)
        return len(doomed)

    def check_token(self, authorization: str | None) -> Token:
        if not authorization or not authorization.lower().startswith("bearer "):
            raise ProcoreError(401, "Access token is missing", reason="unauthorized")
        token = self.tokens.get(authorization[7:].strip())
        if token is None or token.revoked:
            raise ProcoreError(401, "Access token is invalid or revoked", reason="unauthorized")
        if token.expires_at <= self.wall():
            raise ProcoreError(401, "Access token expired", reason="unauthorized")
        return token

    def actor_for(self, client_id: str) -> Actor:
        client = self.clients[client_id]
        return Actor(client.user_id, client.name, f"{client.client_id}@apps.procore.example", client.client_id)

    def actor_for_token(self, token: Token) -> Actor:
        """Writes made with a user's token are the user's (through the app); others the app's service account."""
        if token.user_id is not None and token.user_id in self.users:
            user = self.users[token.user_id]
            return Actor(user.id, user.name, user.login, token.client_id)
        return self.actor_for(token.client_id)

    # ------------------------------------------------------------ companies and lookups

    def company(self, company_id: int) -> Company:
        company = self.companies.get(company_id)
        if company is None:
            raise ProcoreError(404, f"Company {company_id} not found", reason="not_found")
        return company

    def require_installed(self, client_id: str, company_id: int) -> Company:
        company = self.companies.get(company_id)
        if company is None or company_id not in self.clients[client_id].company_ids:
            raise ProcoreError(403, "App is not connected to this company", reason="forbidden")
        return company

    def require_access(self, token: Token, company_id: int) -> Company:
        """The app must be installed in the company; a user's token also needs the user to be a member."""
        company = self.require_installed(token.client_id, company_id)
        if token.user_id is not None and company_id not in self.users[token.user_id].company_ids:
            raise ProcoreError(403, "You do not have access to this company", reason="forbidden")
        return company

    def companies_for(self, token: Token) -> list[Company]:
        """`GET /companies`: where the app is installed — and, for a user's token, where the user is a member."""
        ids = set(self.clients[token.client_id].company_ids)
        if token.user_id is not None:
            ids &= self.users[token.user_id].company_ids
        return [self.companies[cid] for cid in sorted(ids) if cid in self.companies]

    def project(self, company_id: int, project_id: int) -> Project:
        project = self.companies[company_id].projects.get(project_id) if company_id in self.companies else None
        if project is None:
            raise ProcoreError(404, f"Project {project_id} not found", reason="not_found")
        return project

    def cost_code(self, company_id: int, cost_code_id: int | None) -> CostCode | None:
        if cost_code_id is None or company_id not in self.companies:
            return None
        for project in self.companies[company_id].projects.values():
            if cost_code_id in project.cost_codes:
                return project.cost_codes[cost_code_id]
        return None

    def time_types_for(self, company_id: int) -> list[TimeType]:
        return list(self.companies[company_id].time_types.values())

    # ------------------------------------------------------------ records: generic helpers

    def record(self, kind: RecordKind, record_id: int, *, company_id: int, project_id: int | None) -> AnyRecord:
        rec = self.records[kind].get(record_id)
        if (
            rec is None
            or rec.deleted_at is not None
            or rec.company_id != company_id
            or (project_id is not None and rec.project_id != project_id)
        ):
            raise ProcoreError(404, f"{RESOURCE_NAMES[kind][:-1]} {record_id} not found", reason="not_found")
        return rec

    def _emit(self, kind: RecordKind, event_type: EventType, rec: AnyRecord, actor: Actor) -> None:
        event = ChangeEvent(kind, event_type, rec.id, rec.company_id, rec.project_id, actor, rec.updated_at)
        for listener in self.listeners:
            listener(event)

    def _position(self, kind: RecordKind, project_id: int, day: date) -> int:
        return 1 + sum(1 for r in self.records[kind].values() if r.project_id == project_id and r.date == day)

    def _check_cost_code(self, project: Project, cost_code_id: int | None, name: str = "cost_code_id") -> None:
        if cost_code_id is not None and cost_code_id not in project.cost_codes:
            raise invalid(name, f"{cost_code_id} is not a cost code of project {project.id}")

    def _check_vendor(self, company: Company, vendor_id: int | None, name: str) -> None:
        if vendor_id is not None and vendor_id not in company.vendors:
            raise invalid(name, f"{vendor_id} is not a vendor of company {company.id}")

    def list_daily(
        self, kind: RecordKind, company_id: int, project_id: int, first: date, last: date
    ) -> list[AnyRecord]:
        self.project(company_id, project_id)
        found = [
            r
            for r in self.records[kind].values()
            if r.project_id == project_id and r.deleted_at is None and first <= r.date <= last
        ]
        return sorted(found, key=lambda r: (r.date, r.position, r.id))

    def delete_record(self, kind: RecordKind, rec: AnyRecord, actor: Actor) -> AnyRecord:
        stamp = self.next_timestamp()
        rec.deleted_at = stamp
        rec.updated_at = stamp
        self._emit(kind, "delete", rec, actor)
        return rec

    # ------------------------------------------------------------ manpower logs

    def _new_record(self, cls: type[_R], company_id: int, project_id: int, actor: Actor) -> _R:
        stamp = self.next_timestamp()
        return cls(
            id=self.next_id(),
            company_id=company_id,
            project_id=project_id,
            date=self.today(),
            created_at=stamp,
            updated_at=stamp,
            created_by=actor,
        )

    def _store_new(self, kind: RecordKind, record: _R, actor: Actor) -> _R:
        record.position = self._position(kind, record.project_id, record.date)
        self.records[kind][record.id] = record
        self._emit(kind, "create", record, actor)
        return record

    def _update_record(
        self,
        kind: RecordKind,
        cls: type[_R],
        company_id: int,
        project_id: int | None,
        record_id: int,
        apply: Callable[[_R, Project], None],
        actor: Actor,
    ) -> _R:
        """Validate the change on a copy, so a rejected update leaves the record as it was."""
        record = self.record(kind, record_id, company_id=company_id, project_id=project_id)
        assert isinstance(record, cls)
        draft = cls(**{**record.__dict__})
        apply(draft, self.project(company_id, record.project_id))
        draft.updated_at = self.next_timestamp()
        record.__dict__.update(draft.__dict__)
        self._emit(kind, "update", record, actor)
        return record

    def create_manpower_log(self, company_id: int, project_id: int, body: Any, actor: Actor) -> ManpowerLog:
        project = self.project(company_id, project_id)
        fields = require_wrapper(body, "manpower_log")
        log = self._new_record(ManpowerLog, company_id, project_id, actor)
        self._apply_manpower(log, project, fields, creating=True)
        return self._store_new("manpower_logs", log, actor)

    def update_manpower_log(
        self, company_id: int, project_id: int | None, log_id: int, fields: dict[str, Any], actor: Actor
    ) -> ManpowerLog:
        def apply(draft: ManpowerLog, project: Project) -> None:
            self._apply_manpower(draft, project, fields, creating=False)

        return self._update_record("manpower_logs", ManpowerLog, company_id, project_id, log_id, apply, actor)

    def _apply_manpower(self, log: ManpowerLog, project: Project, f: dict[str, Any], *, creating: bool) -> None:
        company = self.companies[project.company_id]
        if f.get("date") is not None and f.get("datetime") is not None:
            raise invalid("datetime", "cannot be combined with date")
        if "date" in f and f["date"] is not None:
            log.date = _date(f["date"], "date")
            log.datetime_ = None
        if "datetime" in f and f["datetime"] is not None:
            log.datetime_ = _datetime(f["datetime"], "datetime")
            log.date = log.datetime_.date()
        if "num_workers" in f:
            log.num_workers = _int(f["num_workers"], "num_workers") if f["num_workers"] is not None else 0
            if log.num_workers < 0:
                raise invalid("num_workers", "must be greater than or equal to 0")
        if "num_hours" in f:
            log.num_hours = _decimal(f["num_hours"], "num_hours") if f["num_hours"] is not None else Decimal(0)
            if log.num_hours < 0:
                raise invalid("num_hours", "must be greater than or equal to 0")
        if "notes" in f:
            log.notes = _str(f["notes"], "notes")
        if "contact_id" in f:
            log.contact_id = _opt_int(f["contact_id"], "contact_id")
            self._check_vendor(company, log.contact_id, "contact_id")
        if "user_id" in f:
            log.user_id = _opt_int(f["user_id"], "user_id")
            if log.user_id is not None and not any(
                p.user_id == log.user_id or p.id == log.user_id for p in company.people.values()
            ):
                raise invalid("user_id", f"{log.user_id} is not a user of company {company.id}")
        if "cost_code_id" in f:
            log.cost_code_id = _opt_int(f["cost_code_id"], "cost_code_id")
            self._check_cost_code(project, log.cost_code_id)
        if "location_id" in f:
            log.location_id = _opt_int(f["location_id"], "location_id")
        if "trade_id" in f:
            log.trade_id = _opt_int(f["trade_id"], "trade_id")
        if "status" in f and f["status"] is not None:
            status = _str(f["status"], "status")
            if status not in MANPOWER_STATUSES:
                raise invalid("status", f"must be one of {', '.join(MANPOWER_STATUSES)}")
            log.status = status

    # ------------------------------------------------------------ quantity logs

    def create_quantity_log(self, company_id: int, project_id: int, body: Any, actor: Actor) -> QuantityLog:
        project = self.project(company_id, project_id)
        fields = require_wrapper(body, "quantity_log")
        log = self._new_record(QuantityLog, company_id, project_id, actor)
        self._apply_quantity(log, project, fields)
        return self._store_new("quantity_logs", log, actor)

    def update_quantity_log(
        self, company_id: int, project_id: int | None, log_id: int, fields: dict[str, Any], actor: Actor
    ) -> QuantityLog:
        def apply(draft: QuantityLog, project: Project) -> None:
            self._apply_quantity(draft, project, fields)

        return self._update_record("quantity_logs", QuantityLog, company_id, project_id, log_id, apply, actor)

    def _apply_quantity(self, log: QuantityLog, project: Project, f: dict[str, Any]) -> None:
        company = self.companies[project.company_id]
        if "date" in f and f["date"] is not None:
            log.date = _date(f["date"], "date")
        if "description" in f:
            log.description = _str(f["description"], "description")
        if "quantity" in f:
            value = f["quantity"]
            if isinstance(value, float) or (isinstance(value, str) and not _INT_RE.match(value.strip())):
                raise invalid("quantity", f"must be an integer, got {value!r}")
            log.quantity = _opt_int(value, "quantity")
        if "unit" in f:
            log.unit = _str(f["unit"], "unit")
        if "cost_code_id" in f:
            log.cost_code_id = _opt_int(f["cost_code_id"], "cost_code_id")
            self._check_cost_code(project, log.cost_code_id)
        if "vendor_id" in f:
            log.vendor_id = _opt_int(f["vendor_id"], "vendor_id")
            self._check_vendor(company, log.vendor_id, "vendor_id")
        if "location_id" in f:
            log.location_id = _opt_int(f["location_id"], "location_id")
        if "daily_log_segment_id" in f:
            log.daily_log_segment_id = _opt_int(f["daily_log_segment_id"], "daily_log_segment_id")

    # ------------------------------------------------ timecard entries (project + company families)

    def create_timecard_entry(
        self, company_id: int, project_id: int, fields: dict[str, Any], actor: Actor, *, require_date: bool
    ) -> TimecardEntry:
        project = self.project(company_id, project_id)
        if require_date and fields.get("date") in (None, ""):
            raise invalid("date", "is required")
        entry = self._new_record(TimecardEntry, company_id, project_id, actor)
        self._apply_timecard(entry, project, fields)
        if entry.party_id is None:
            raise invalid("party_id", "is required (the worker this timecard belongs to)")
        if "hours" not in fields and entry.time_in is None:
            raise invalid("hours", "is required unless time_in and time_out are given")
        return self._store_new("timecard_entries", entry, actor)

    def update_timecard_entry(
        self, company_id: int, project_id: int | None, entry_id: int, fields: dict[str, Any], actor: Actor
    ) -> TimecardEntry:
        def apply(draft: TimecardEntry, project: Project) -> None:
            self._apply_timecard(draft, project, fields)

        return self._update_record("timecard_entries", TimecardEntry, company_id, project_id, entry_id, apply, actor)

    def _apply_timecard(self, entry: TimecardEntry, project: Project, f: dict[str, Any]) -> None:
        company = self.companies[project.company_id]
        if "date" in f and f["date"] is not None:
            entry.date = _date(f["date"], "date")
        if "datetime" in f and f["datetime"] is not None:
            entry.date = _datetime(f["datetime"], "datetime").date()
        if "lunch_time" in f:
            entry.lunch_time = _opt_int(f["lunch_time"], "lunch_time")
        for key in ("time_in", "time_out"):
            if key in f:
                value = None if f[key] in (None, "") else _datetime(f[key], key, entry.date)
                setattr(entry, key, value)
        if (entry.time_in is None) != (entry.time_out is None):
            raise invalid("time_out" if entry.time_out is None else "time_in", "is required with the other")
        if entry.time_in is not None and entry.time_out is not None:
            if entry.time_out <= entry.time_in:
                raise invalid("time_out", "must be after time_in")
            if "hours" not in f and ({"time_in", "time_out", "lunch_time"} & f.keys()):
                worked = (entry.time_out - entry.time_in).total_seconds() / 60 - (entry.lunch_time or 0)
                entry.hours = (Decimal(worked) / Decimal(60)).quantize(Decimal("0.01"))
        if "hours" in f:
            entry.hours = _decimal(f["hours"], "hours") if f["hours"] is not None else Decimal(0)
            if entry.hours < 0 or entry.hours > 24:
                raise invalid("hours", "must be between 0 and 24")
        if "party_id" in f:
            entry.party_id = _opt_int(f["party_id"], "party_id")
            if entry.party_id is not None and entry.party_id not in company.people:
                raise invalid("party_id", f"{entry.party_id} is not a person of company {company.id}")
        if "timecard_time_type_id" in f:
            entry.timecard_time_type_id = _opt_int(f["timecard_time_type_id"], "timecard_time_type_id")
            if entry.timecard_time_type_id is not None and entry.timecard_time_type_id not in company.time_types:
                raise invalid(
                    "timecard_time_type_id",
                    f"{entry.timecard_time_type_id} is not a timecard time type of company {company.id}",
                )
        if "cost_code_id" in f:
            entry.cost_code_id = _opt_int(f["cost_code_id"], "cost_code_id")
            self._check_cost_code(project, entry.cost_code_id)
        if "line_item_type_id" in f:
            entry.line_item_type_id = _opt_int(f["line_item_type_id"], "line_item_type_id")
        if entry.line_item_type_id is not None:
            code = project.cost_codes.get(entry.cost_code_id) if entry.cost_code_id else None
            if code is None or all(lit.id != entry.line_item_type_id for lit in code.line_item_types):
                raise invalid(
                    "line_item_type_id",
                    f"{entry.line_item_type_id} is not a line item type of cost code {entry.cost_code_id}",
                )
        for key in ("sub_job_id", "location_id", "timesheet_id", "crew_id", "daily_log_segment_id"):
            if key in f:
                setattr(entry, key, _opt_int(f[key], key))
        if "billable" in f and f["billable"] is not None:
            entry.billable = _bool(f["billable"], "billable")
        if "description" in f:
            entry.description = _str(f["description"], "description")
        if "origin_data" in f:
            entry.origin_data = _str(f["origin_data"], "origin_data")
        if "approval_status" in f and f["approval_status"] is not None:
            status = _str(f["approval_status"], "approval_status")
            if status not in APPROVAL_STATUSES:
                raise invalid("approval_status", f"must be one of {', '.join(APPROVAL_STATUSES)}")
            entry.approval_status = status
        if "origin_id" in f:
            entry.origin_id = _opt_int(f["origin_id"], "origin_id")
            self._check_origin_unique(entry)

    def _check_origin_unique(self, entry: TimecardEntry) -> None:
        if entry.origin_id is None:
            return
        for other in self.records["timecard_entries"].values():
            if (
                isinstance(other, TimecardEntry)
                and other.id != entry.id
                and other.company_id == entry.company_id
                and other.deleted_at is None
                and other.origin_id == entry.origin_id
            ):
                raise ProcoreError(
                    self.settings.duplicate_origin_status,
                    f"origin_id {entry.origin_id} has already been taken",
                    errors={"origin_id": ["has already been taken"]},
                )

    def list_company_timecards(
        self,
        company_id: int,
        *,
        updated: tuple[datetime, datetime] | None,
        deleted: tuple[datetime, datetime] | None,
        ids: set[int],
        party_ids: set[int],
        first: date | None,
        last: date | None,
    ) -> list[TimecardEntry]:
        out: list[TimecardEntry] = []
        for rec in self.records["timecard_entries"].values():
            if not isinstance(rec, TimecardEntry) or rec.company_id != company_id:
                continue
            if deleted is not None:
                if rec.deleted_at is None or not deleted[0] <= rec.deleted_at <= deleted[1]:
                    continue
            elif rec.deleted_at is not None:
                continue
            if updated is not None and not updated[0] <= rec.updated_at <= updated[1]:
                continue
            if ids and rec.id not in ids:
                continue
            if party_ids and rec.party_id not in party_ids:
                continue
            if first is not None and rec.date < first:
                continue
            if last is not None and rec.date > last:
                continue
            out.append(rec)
        return sorted(out, key=lambda r: (r.date, r.id))

    # ------------------------------------------------------------ "as a Procore user" edits (control API)

    def user_edit(self, kind: RecordKind, record_id: int, fields: dict[str, Any]) -> AnyRecord:
        rec = self.records[kind].get(record_id)
        if rec is None or rec.deleted_at is not None:
            raise ProcoreError(404, f"{kind} {record_id} not found")
        actor = self.procore_user
        if kind == "manpower_logs":
            return self.update_manpower_log(rec.company_id, rec.project_id, record_id, fields, actor)
        if kind == "quantity_logs":
            return self.update_quantity_log(rec.company_id, rec.project_id, record_id, fields, actor)
        return self.update_timecard_entry(rec.company_id, rec.project_id, record_id, fields, actor)

    def user_delete(self, kind: RecordKind, record_id: int) -> AnyRecord:
        rec = self.records[kind].get(record_id)
        if rec is None or rec.deleted_at is not None:
            raise ProcoreError(404, f"{kind} {record_id} not found")
        return self.delete_record(kind, rec, self.procore_user)
