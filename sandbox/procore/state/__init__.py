"""In-memory Procore: reference data, daily-log records, OAuth clients/tokens and the rules Procore applies.

Pure Python (no FastAPI). Every rule violation raises `ProcoreError(status, message)`; the HTTP layer turns it
into Procore's error body. `SandboxState` is assembled from one part per concern: `oauth` (clients, users, tokens),
`record_store` (what every daily-log family shares) and one module per family (`manpower`, `quantity`, `timecards`);
the dataclasses live in `reference`, `identity` and `records`. The names below are the package's public surface.
"""

from sandbox.procore.state.base import Settings
from sandbox.procore.state.errors import ProcoreError, invalid, require_wrapper
from sandbox.procore.state.identity import Actor, AuthCode, Client, Token, User
from sandbox.procore.state.oauth import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, pkce_challenge
from sandbox.procore.state.records import (
    RECORD_KINDS,
    RESOURCE_NAMES,
    AnyRecord,
    ChangeEvent,
    EventType,
    Hook,
    ManpowerLog,
    QuantityLog,
    Record,
    RecordKind,
    TimecardEntry,
    Trigger,
)
from sandbox.procore.state.reference import (
    Company,
    CostCode,
    LineItemType,
    Person,
    Project,
    TimeType,
    Vendor,
    WorkClassification,
)
from sandbox.procore.state.sandbox import SandboxState
from sandbox.procore.state.values import fmt_decimal, fmt_ts

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "RECORD_KINDS",
    "RESOURCE_NAMES",
    "Actor",
    "AnyRecord",
    "AuthCode",
    "ChangeEvent",
    "Client",
    "Company",
    "CostCode",
    "EventType",
    "Hook",
    "LineItemType",
    "ManpowerLog",
    "Person",
    "ProcoreError",
    "Project",
    "QuantityLog",
    "Record",
    "RecordKind",
    "SandboxState",
    "Settings",
    "TimeType",
    "TimecardEntry",
    "Token",
    "Trigger",
    "User",
    "Vendor",
    "WorkClassification",
    "fmt_decimal",
    "fmt_ts",
    "invalid",
    "pkce_challenge",
    "require_wrapper",
]
