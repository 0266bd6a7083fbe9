"""The services' Prometheus metrics: one catalogue, `prometheus-client`, served at `GET /metrics`.

Names follow the OpenTelemetry semantic conventions where one exists (`messaging.process.duration` →
`messaging_process_duration_seconds`, as the OpenTelemetry Prometheus exporter would write it); the
others say their unit in the name. deploy/prometheus/README.md lists every series with its meaning.

Most series are updated where things happen (the broker middleware, the outbox relay, the HTTP
hooks). Gauges that need a query — consumer lag, entries by status — are refreshed on scrape by
hooks registered per owner (a service's broker): `on_scrape(broker, hook)`; `exposition(broker)`
runs them (each bounded in time; one failing keeps its last values) and renders the text.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from datetime import UTC, datetime
from typing import Any

import httpx
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

log = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST
disable_created_metrics()  # no `_created` series next to every counter: nothing here reads them

# -- Kafka consumers (shared.broker's middleware, every consuming service) --
TOPIC = "messaging_destination_name"
PARTITION = "messaging_destination_partition_id"
GROUP = "messaging_consumer_group_name"
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
AGE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)

CONSUMED = Counter(
    "messaging_client_consumed_messages",
    "Kafka records delivered to a handler (a record tried again counts again).",
    [TOPIC, PARTITION, GROUP],
)
PROCESS_DURATION = Histogram(
    "messaging_process_duration_seconds",
    "Duration of one handler call (a batch or one message); error_type is empty on success.",
    [TOPIC, GROUP, "error_type"],
    buckets=DURATION_BUCKETS,
)
BATCH_SIZE = Histogram(
    "messaging_batch_message_count",
    "Records per handler call.",
    [TOPIC, GROUP],
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500),
)
MESSAGE_AGE = Histogram(
    "messaging_consumed_message_age_seconds",
    "Now minus a record's Kafka timestamp when its handler succeeded (the data is stored by then).",
    [TOPIC, GROUP],
    buckets=AGE_BUCKETS,
)
RETRIES = Counter(
    "messaging_retries",
    "Failed handler calls sent back to be tried again, by kind (transient: a dependency is away; failure: an error).",
    [TOPIC, GROUP, "retry_kind"],
)
DEAD_LETTERED = Counter(
    "messaging_dead_lettered_messages",
    "Records sent to the service's dead-letter topic, by the topic they came from.",
    [TOPIC],
)
CONSUMER_LAG = Gauge(
    "messaging_kafka_consumer_lag",
    "Log-end offset minus the consumer's position, per assigned partition (sampled on scrape).",
    [TOPIC, PARTITION, GROUP],
)

# -- transactional outbox (shared.outbox) --
OUTBOX_BACKLOG = Gauge("outbox_backlog_messages", "Rows waiting in the outbox.", ["outbox"])
OUTBOX_AGE = Gauge(
    "outbox_oldest_message_age_seconds", "Age of the oldest waiting outbox row (0 when empty).", ["outbox"]
)
OUTBOX_SENT = Counter("outbox_sent_messages", "Outbox rows sent to Kafka.", ["outbox"])

# -- aggregator --
ENTRIES = Gauge("aggregator_entries", "Entries by module and status (queried on scrape).", ["module", "status"])
OLDEST_PUBLISHING = Gauge(
    "aggregator_entries_oldest_publishing_age_seconds",
    "How long the oldest entry still in Publishing has waited (0 when none).",
    ["module"],
)

# -- publisher --
PUBLISH_REQUESTS = Counter(
    "publisher_publish_requests", "Publish requests answered, by module and outcome.", ["module", "outcome"]
)
PUBLISH_DURATION = Histogram(
    "publisher_publish_duration_seconds",
    "End to end: a publish request queued by the aggregator → its result stored by the publisher.",
    ["module", "outcome"],
    buckets=(0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0),
)

# -- Procore over HTTP (publisher, mapping) --
HTTP_CLIENT_DURATION = Histogram(
    "http_client_request_duration_seconds",
    "Outgoing HTTP requests (Procore and token calls) by endpoint template and status.",
    ["server_address", "http_request_method", "url_template", "http_response_status_code"],
    buckets=DURATION_BUCKETS,
)
RATE_LIMIT_REMAINING = Gauge(
    "procore_rate_limit_remaining", "Procore's last X-Rate-Limit-Remaining, per company.", ["procore_company_id"]
)
RATE_LIMIT_LIMIT = Gauge(
    "procore_rate_limit_limit", "Procore's last X-Rate-Limit-Limit, per company.", ["procore_company_id"]
)
TOKEN_REFRESHES = Counter(
    "procore_oauth_token_refreshes", "Refreshes of an account's Procore token, by outcome.", ["grant_type", "outcome"]
)

REFRESH_ANSWERS_LOST = Counter(
    "procore_oauth_refresh_answers_lost",
    "Token refreshes sent to Procore whose answer never came back (the single-use refresh token may be burnt).",
)
NEEDS_REAUTHORIZATION = Gauge(
    "procore_connections_needing_reauthorization",
    "Accounts whose Procore connection Procore refused to renew (an administrator must connect again).",
    ["grant_type"],
)
WEBHOOK_DELIVERIES = Counter(
    "procore_webhook_deliveries",
    "Procore webhook deliveries the mapping service took, by outcome (conflict: someone else changed a record; "
    "duplicate, own_write, create, other_resource: nothing to do; unauthorized, invalid: refused).",
    ["outcome"],
)
RECONCILE_CHANGES = Counter(
    "procore_reconcile_changes",
    "Records the periodic reconcile found changed in Procore by someone else (what webhook deliveries missed, or "
    "repeated), by module.",
    ["module"],
)

# -- gateway --
HTTP_SERVER_DURATION = Histogram(
    "http_server_request_duration_seconds",
    "Incoming HTTP requests by route template and status.",
    ["http_request_method", "http_route", "http_response_status_code"],
    buckets=DURATION_BUCKETS,
)


# -- scrape-time hooks --
ScrapeHook = Callable[[], Awaitable[None]]
_hooks: weakref.WeakKeyDictionary[Any, list[ScrapeHook]] = weakref.WeakKeyDictionary()


def on_scrape(owner: Any, hook: ScrapeHook) -> None:
    """Run `hook` (it updates gauges) before each exposition of `owner`'s metrics."""
    _hooks.setdefault(owner, []).append(hook)


async def exposition(owner: Any = None, timeout_s: float = 5.0) -> bytes:
    """The Prometheus text of this process, after `owner`'s scrape hooks ran (one that fails or is slow is logged
    and keeps its previous values: a scrape never fails because a query did)."""
    for hook in _hooks.get(owner, []) if owner is not None else []:
        try:
            async with asyncio.timeout(timeout_s):
                await hook()
        except Exception as error:
            log.warning("metrics: a scrape hook failed (%r); its series keep their last values", error)
    return generate_latest(REGISTRY)


# -- Kafka consumers --
def group_of(consumer: Any) -> str:
    """The consumer group of an aiokafka consumer ('' for one without a group)."""
    return str(getattr(consumer, "_group_id", None) or "")


def consumed(records: Iterable[Any], group: str) -> None:
    """Count records delivered to a handler and the size of the call's batch."""
    records = list(records)
    per_partition = collections.Counter((record.topic, record.partition) for record in records)
    for (topic, partition), count in per_partition.items():
        CONSUMED.labels(topic, str(partition), group).inc(count)
    for topic in {topic for topic, _ in per_partition}:
        DEAD_LETTERED.labels(topic)  # exists at 0 before its first dead letter, so increase() sees that one
    if records:
        BATCH_SIZE.labels(records[0].topic, group).observe(len(records))


def processed(records: Iterable[Any], group: str, duration_s: float, error: BaseException | None) -> None:
    """A handler call ended: its duration, and on success each record's age (now - its Kafka timestamp)."""
    records = list(records)
    if not records:
        return
    PROCESS_DURATION.labels(records[0].topic, group, "" if error is None else type(error).__name__).observe(duration_s)
    if error is not None:
        return
    now_ms = time.time() * 1000
    age_of: dict[str, Histogram] = {}
    for record in records:
        timestamp = getattr(record, "timestamp", None)
        if isinstance(timestamp, int) and timestamp > 0:
            age = age_of.get(record.topic)
            if age is None:
                age = age_of[record.topic] = MESSAGE_AGE.labels(record.topic, group)
            age.observe(max(now_ms - timestamp, 0) / 1000)


def retried(topics: Iterable[str], group: str, transient: bool) -> None:
    for topic in set(topics):
        RETRIES.labels(topic, group, "transient" if transient else "failure").inc()


class ConsumerLag:
    """Samples each subscriber's lag per assigned partition; partitions no longer assigned lose their series."""

    def __init__(self, subscribers: Callable[[], Iterable[Any]], timeout_s: float = 2.0) -> None:
        self._subscribers = subscribers
        self._timeout_s = timeout_s
        self._seen: set[tuple[str, str, str]] = set()

    async def sample(self) -> None:
        now: set[tuple[str, str, str]] = set()
        for subscriber in self._subscribers():
            consumer = getattr(subscriber, "consumer", None)
            if consumer is None or not hasattr(consumer, "end_offsets"):
                continue  # not started, or an in-memory test consumer
            group = str(getattr(subscriber, "group_id", None) or group_of(consumer))
            assigned = list(consumer.assignment())
            if not assigned:
                continue
            async with asyncio.timeout(self._timeout_s):
                ends = await consumer.end_offsets(assigned)
            for tp in assigned:
                try:
                    async with asyncio.timeout(self._timeout_s):
                        position = await consumer.position(tp)
                except Exception:  # revoked meanwhile, or its position is being reset
                    continue
                labels = (tp.topic, str(tp.partition), group)
                CONSUMER_LAG.labels(*labels).set(max(ends[tp] - position, 0))
                now.add(labels)
        for gone in self._seen - now:
            CONSUMER_LAG.remove(*gone)
        self._seen = now


# -- publisher --
def publish_finished(module: str, outcome: str, requested_at: datetime) -> None:
    """A publish request was answered: count its outcome, and its latency since the aggregator queued it."""
    PUBLISH_REQUESTS.labels(str(module), str(outcome)).inc()
    waited = (datetime.now(UTC) - requested_at).total_seconds()
    PUBLISH_DURATION.labels(str(module), str(outcome)).observe(max(waited, 0.0))


GRANT_TYPES = ("authorization_code", "client_credentials")


def token_refreshed(grant_type: str, ok: bool) -> None:
    TOKEN_REFRESHES.labels(grant_type, "success" if ok else "failure").inc()


def count_token_refreshes() -> None:
    """Create the refresh counters at 0 (in the service that refreshes), so the first failure is an increase."""
    for grant_type in GRANT_TYPES:
        for outcome in ("success", "failure"):
            TOKEN_REFRESHES.labels(grant_type, outcome)


# -- outgoing HTTP (httpx event hooks) --
_ID_SEGMENT = re.compile(r"^(\d+|[0-9a-fA-F-]{32,36})$")


def url_template(path: str) -> str:
    """A path with its ids replaced: /rest/v1.0/projects/42/manpower_logs → /rest/v1.0/projects/{id}/manpower_logs."""
    return "/".join("{id}" if _ID_SEGMENT.match(part) else part for part in path.split("/"))


def _rate_limit(request: httpx.Request, response: httpx.Response) -> None:
    company = request.headers.get("procore-company-id")
    remaining = response.headers.get("x-rate-limit-remaining")
    if not company or remaining is None:
        return
    try:
        RATE_LIMIT_REMAINING.labels(company).set(float(remaining))
        if (limit := response.headers.get("x-rate-limit-limit")) is not None:
            RATE_LIMIT_LIMIT.labels(company).set(float(limit))
    except ValueError:
        return


_STARTED = "metrics.started"


async def _request_started(request: httpx.Request) -> None:
    request.extensions[_STARTED] = time.perf_counter()


async def _response_received(response: httpx.Response) -> None:
    request = response.request
    started = request.extensions.get(_STARTED)
    elapsed = time.perf_counter() - started if isinstance(started, float) else 0.0
    HTTP_CLIENT_DURATION.labels(
        request.url.host, request.method, url_template(request.url.path), str(response.status_code)
    ).observe(elapsed)
    _rate_limit(request, response)


def http_client_hooks() -> dict[str, list[Callable[..., Awaitable[None]]]]:
    """`httpx.AsyncClient(event_hooks=...)`: each response counted by host, endpoint and status, with its duration
    (headers received) and Procore's rate-limit headers. A request that gets no response is not counted here."""
    return {"request": [_request_started], "response": [_response_received]}


# -- incoming HTTP (the gateway) --
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class HttpServerMetrics:
    """ASGI middleware: each HTTP request's duration by method, route template (`http_route`; empty when no route
    matched, so paths never become labels) and status."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", "")
            HTTP_SERVER_DURATION.labels(scope.get("method", ""), route, str(status)).observe(
                time.perf_counter() - started
            )
