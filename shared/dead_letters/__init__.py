"""Dead letters: what they carry, and `python -m shared.dead_letters list|replay` to act on them.

A dead letter is the original record (value, key, headers) sent to `<service>.dead-letter`
with `x-dead-letter-*` headers: the reason, the source topic/partition/offset, the service,
when, and the size. A record too large to forward is replaced by a small reference (JSON:
reason, source, size, sha256, the first bytes) with `x-dead-letter-payload-omitted: true`;
such a dead letter can be listed but not replayed.

Replay sends chosen dead letters back to their source topic with their original value, key
and headers (minus the `x-dead-letter-*` ones, plus `x-replayed-from`), and records each in
`<dead-letter topic>.replayed`, keyed by the source position, so replaying again (or a second
dead letter of the same source record) sends nothing. See docs/dead-letters.md.

The package: `letters` (what a dead letter carries), `selection` (which ones a command acts on), `replay` (reading
and replaying, I/O) and `cli`; the names below are its public surface.
"""

from shared.dead_letters.letters import (
    AT_HEADER,
    HEAD_BYTES,
    OMITTED_HEADER,
    PREFIX,
    REASON_HEADER,
    REPLAYED_FROM_HEADER,
    SERVICE_HEADER,
    SERVICES,
    SHA256_HEADER,
    SIZE_HEADER,
    SOURCE_OFFSET_HEADER,
    SOURCE_PARTITION_HEADER,
    SOURCE_TOPIC_HEADER,
    DeadLetter,
    dead_letter_headers,
    record_size,
    reference_for,
    reference_headers,
)
from shared.dead_letters.replay import marker_topic, read_dead_letters, read_replayed, read_topic, replay
from shared.dead_letters.selection import (
    ReplayReport,
    Selection,
    human_age,
    human_size,
    parse_duration,
    parse_positions,
    plan_replay,
    table,
)

__all__ = [
    "AT_HEADER",
    "HEAD_BYTES",
    "OMITTED_HEADER",
    "PREFIX",
    "REASON_HEADER",
    "REPLAYED_FROM_HEADER",
    "SERVICES",
    "SERVICE_HEADER",
    "SHA256_HEADER",
    "SIZE_HEADER",
    "SOURCE_OFFSET_HEADER",
    "SOURCE_PARTITION_HEADER",
    "SOURCE_TOPIC_HEADER",
    "DeadLetter",
    "ReplayReport",
    "Selection",
    "dead_letter_headers",
    "human_age",
    "human_size",
    "marker_topic",
    "parse_duration",
    "parse_positions",
    "plan_replay",
    "read_dead_letters",
    "read_replayed",
    "read_topic",
    "record_size",
    "reference_for",
    "reference_headers",
    "replay",
    "table",
]
