"""The aggregator's use cases, one module per thing that changes together: `timelogs` (batches and from-scratch
recomputes), `remap` (mapping and setup changes, remap rounds), `publishing` (commands, results, auto-publish,
re-drives) and `records` (Procore record changes, reference names). Each receives the tables it works on as a
protocol of its own (`adapters.store.Store` over a connection in a transaction the caller opened; an in-memory fake
in unit tests); the SQL lives in `services.aggregator.adapters`. Everything is re-exported here."""

from services.aggregator.handlers.publishing import (
    AUTO_PUBLISHER,
    REDRIVEN,
    RedrivePolicy,
    apply_publish_result,
    auto_publish,
    publish_entries,
    redrive_stalled_publishes,
)
from services.aggregator.handlers.records import PROCORE_CHANGE, apply_record_changed, apply_reference_event
from services.aggregator.handlers.remap import (
    RemapPolicy,
    RemapRound,
    apply_mapping_change,
    record_mapping_change,
    remap_now,
    remap_round,
    revalidate_groups,
)
from services.aggregator.handlers.timelogs import (
    ConcurrentEntryCreation,
    DeadLetterSink,
    TimelogChange,
    apply_timelog_events,
    apply_timelog_records,
    newest_per_timelog,
    parse_timelog_records,
    recompute_groups,
    revalidate_account,
    to_timelog,
)

__all__ = [
    "AUTO_PUBLISHER",
    "PROCORE_CHANGE",
    "REDRIVEN",
    "ConcurrentEntryCreation",
    "DeadLetterSink",
    "RedrivePolicy",
    "RemapPolicy",
    "RemapRound",
    "TimelogChange",
    "apply_mapping_change",
    "apply_publish_result",
    "apply_record_changed",
    "apply_reference_event",
    "apply_timelog_events",
    "apply_timelog_records",
    "auto_publish",
    "newest_per_timelog",
    "parse_timelog_records",
    "publish_entries",
    "recompute_groups",
    "record_mapping_change",
    "redrive_stalled_publishes",
    "remap_now",
    "remap_round",
    "revalidate_account",
    "revalidate_groups",
    "to_timelog",
]
