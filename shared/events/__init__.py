"""Event contracts: the versioned envelope and every message that crosses a Kafka topic.

Commands are imperative (`PublishEntries`), events past tense (`TimelogDeleted`).
Every message carries `event_id`, `occurred_at`, `account_id` and `schema_version`;
the W3C trace context travels in Kafka headers (set by the telemetry middleware).
Each topic carries a discriminated union on `type`, so one subscriber per topic can
validate any message on it and dead-letter what does not fit.

One module per topic family (`timelogs`, `reference`, `publishing`, `mapping`) over the envelope and the requester;
this package index names every topic's contract (`TOPIC_CONTRACTS`) and keeps the old `shared.events` names.
"""

from typing import Any

from pydantic import TypeAdapter

from shared.events.envelope import (
    SCHEMA_VERSION,
    Command,
    Contract,
    Envelope,
    Id,
    Module,
    ProcoreId,
    utcnow,
)
from shared.events.mapping import (
    MOBICLOCKS_KIND_OF,
    AutoMap,
    AutoPublish,
    AutoPublishMinutes,
    CompleteProcoreConnection,
    ConfigureSetup,
    ConnectionStatus,
    DisconnectProcore,
    MappingChange,
    MappingChanged,
    MappingCommand,
    ProcoreChange,
    ProcoreEntity,
    ProcoreRecordChanged,
    SetMapping,
    SetupChanged,
    SyncProcoreEntities,
    UnbindProcoreCompany,
)
from shared.events.publishing import (
    CellScope,
    DateRangeScope,
    EntriesScope,
    ProcoreOperation,
    ProcorePublishFinished,
    PublishAction,
    PublishCommand,
    PublishEntries,
    PublishOutcome,
    PublishRequest,
    PublishResult,
    PublishScope,
    PublishToProcore,
    TimecardClock,
)
from shared.events.reference import (
    ReferenceDeleted,
    ReferenceEvent,
    ReferenceKind,
    ReferenceUpserted,
)
from shared.events.requester import (
    NO_PERMISSIONS,
    PERMISSION_LABEL,
    SYSTEM_NAME,
    Permission,
    Permissions,
    RequesterKind,
    SystemPrincipal,
    permission_refusal,
)
from shared.events.timelogs import (
    Quantity,
    TimelogDeleted,
    TimelogEvent,
    TimelogUpserted,
)

TOPIC_CONTRACTS: dict[str, Any] = {
    "timelogs": TimelogEvent,
    "reference": ReferenceEvent,
    "publish_commands": PublishCommand,
    "publish_requests": PublishRequest,
    "publish_results": PublishResult,
    "mapping_commands": MappingCommand,
    "mapping_changes": MappingChange,
}


def adapter(contract: Any) -> TypeAdapter[Any]:
    """A validator for a topic's union (used by tests, tools and the dead-letter path)."""
    return TypeAdapter(contract)


__all__ = [
    "MOBICLOCKS_KIND_OF",
    "NO_PERMISSIONS",
    "PERMISSION_LABEL",
    "SCHEMA_VERSION",
    "SYSTEM_NAME",
    "TOPIC_CONTRACTS",
    "AutoMap",
    "AutoPublish",
    "AutoPublishMinutes",
    "CellScope",
    "Command",
    "CompleteProcoreConnection",
    "ConfigureSetup",
    "ConnectionStatus",
    "Contract",
    "DateRangeScope",
    "DisconnectProcore",
    "EntriesScope",
    "Envelope",
    "Id",
    "MappingChange",
    "MappingChanged",
    "MappingCommand",
    "Module",
    "Permission",
    "Permissions",
    "ProcoreChange",
    "ProcoreEntity",
    "ProcoreId",
    "ProcoreOperation",
    "ProcorePublishFinished",
    "ProcoreRecordChanged",
    "PublishAction",
    "PublishCommand",
    "PublishEntries",
    "PublishOutcome",
    "PublishRequest",
    "PublishResult",
    "PublishScope",
    "PublishToProcore",
    "Quantity",
    "ReferenceDeleted",
    "ReferenceEvent",
    "ReferenceKind",
    "ReferenceUpserted",
    "RequesterKind",
    "SetMapping",
    "SetupChanged",
    "SyncProcoreEntities",
    "SystemPrincipal",
    "TimecardClock",
    "TimelogDeleted",
    "TimelogEvent",
    "TimelogUpserted",
    "UnbindProcoreCompany",
    "adapter",
    "permission_refusal",
    "utcnow",
]
