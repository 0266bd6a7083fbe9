"""Metrics against the real broker and PostgreSQL: the consumer middleware, consumer lag, the outbox, entry status.

Counters are process-wide; every test uses its own topics, schemas and companies, so its series are its own.
"""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from faststream.asgi import AsgiFastStream
from prometheus_client import REGISTRY, generate_latest

from services.aggregator.status_metrics import EntryStatusGauges
from shared import db, metrics
from shared.broker import ensure_topics
from shared.events import Module, ReferenceKind, ReferenceUpserted, SetupChanged, TimelogUpserted
from shared.outbox import OutboxMessage, OutboxRelay, add_to_outbox
from tests.integration.worker_app import ATTEMPTS, Probe, Work, running_worker, send
from tests.support.database import ProvisionedDatabase, migrated
from tests.support.kafka import eventually, produce
from tests.support.scrape import Series, parse, total
from tests.support.stack import StackConfig, running

pytestmark = pytest.mark.integration


async def scrape_app(app: AsgiFastStream) -> Series:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as http:
        response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


async def test_the_aggregator_counts_consumed_and_dead_lettered_records_and_reports_no_lag_once_done(
    kafka_bootstrap: str, postgres_dsn: str, unique: str, schemas: dict[str, str]
) -> None:
    cfg = StackConfig(kafka_bootstrap, postgres_dsn, f"{unique}.", schemas)
    topics = cfg.topics
    timelog = TimelogUpserted(
        account_id="acc",
        timelog_id="t1",
        revision=1,
        employee_id="e1",
        company_id="c1",
        crew_tag="A",
        job_site_id="s1",
        work_date="2026-11-16",
        duration_seconds=3600,
        pay_id="REG",
    )
    async with running(cfg, which=("aggregator",)) as apps:
        app = apps["aggregator"]
        await produce(
            kafka_bootstrap,
            topics.mapping_changes,
            [SetupChanged(account_id="acc", procore_company_id=1, enabled_modules=list(Module), two_way=False)],
        )
        # a batch with one poison record (the batch handler isolates it) and a poison control event
        await produce(kafka_bootstrap, topics.timelogs, [timelog, b'{"type": "timelog.upserted", '])
        await produce(
            kafka_bootstrap,
            topics.reference,
            [b"not json", ReferenceUpserted(account_id="acc", kind=ReferenceKind.JOB_SITE, entity_id="s1", name="S")],
        )

        def settled(series: Series) -> bool:
            return (
                total(series, "messaging_dead_lettered_messages_total", messaging_destination_name=topics.timelogs) == 1
                and total(series, "messaging_dead_lettered_messages_total", messaging_destination_name=topics.reference)
                == 1
                and total(series, "aggregator_entries", module="manpower") >= 1  # non-publishable: nothing is mapped
            )

        series = await eventually(lambda: scrape_app(app), settled, timeout_s=40, what="both dead letters counted")
        group = f"{topics.prefix}aggregator"
        consumed = "messaging_client_consumed_messages_total"
        assert (
            total(series, consumed, messaging_destination_name=topics.timelogs, messaging_consumer_group_name=group)
            == 2
        )
        assert total(series, consumed, messaging_destination_name=topics.reference) == 2
        assert total(series, "messaging_batch_message_count_sum", messaging_destination_name=topics.timelogs) == 2
        ok = {"messaging_destination_name": topics.timelogs, "error_type": ""}
        assert total(series, "messaging_process_duration_seconds_count", **ok) >= 1
        # both timelog records (the poison one too: its handler call succeeded) were a few seconds old at most
        age = {"messaging_destination_name": topics.timelogs}
        assert total(series, "messaging_consumed_message_age_seconds_count", **age) == 2
        assert total(series, "messaging_consumed_message_age_seconds_bucket", **age, le="30.0") == 2
        # all read and committed: every assigned partition of the timelog topic reports a lag of 0
        lag = [
            value
            for (name, labels), value in series.items()
            if name == "messaging_kafka_consumer_lag" and ("messaging_destination_name", topics.timelogs) in labels
        ]
        assert lag, lag
        assert all(value == 0 for value in lag), lag
        assert total(series, "outbox_backlog_messages", outbox=schemas["aggregator"]) == 0


async def test_consumer_lag_is_the_records_a_consumer_has_not_read_per_partition(
    kafka_bootstrap: str, unique: str
) -> None:
    topic = f"{unique}.lagging"
    await ensure_topics(kafka_bootstrap, [topic], partitions=2)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for _ in range(5):
            await producer.send_and_wait(topic, b"x", partition=0)
        for _ in range(3):
            await producer.send_and_wait(topic, b"y", partition=1)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        first, second = TopicPartition(topic, 0), TopicPartition(topic, 1)
        consumer.assign([first, second])
        subscriber = SimpleNamespace(consumer=consumer, group_id=f"{unique}.group")
        lag = metrics.ConsumerLag(lambda: [subscriber])

        def lag_of(partition: int) -> float:
            series = parse(generate_latest(REGISTRY).decode())
            return total(
                series,
                "messaging_kafka_consumer_lag",
                messaging_destination_name=topic,
                messaging_destination_partition_id=str(partition),
            )

        await lag.sample()
        assert (lag_of(0), lag_of(1)) == (5, 3)
        consumer.seek(first, 4)
        await lag.sample()
        assert (lag_of(0), lag_of(1)) == (1, 3)
        # a partition no longer assigned loses its series (its new owner reports it)
        consumer.assign([first])
        await lag.sample()
        text = generate_latest(REGISTRY).decode()
        assert f'messaging_destination_name="{topic}",messaging_destination_partition_id="1"' not in text
    finally:
        await consumer.stop()


async def test_outbox_gauges_show_the_backlog_and_its_age_until_the_relay_sends_it(
    kafka_bootstrap: str, database: ProvisionedDatabase, unique: str
) -> None:
    await migrated(database, "aggregator")
    schema = database.schema("aggregator")
    topic = f"{unique}.outboxed"
    await ensure_topics(kafka_bootstrap, [topic], partitions=1)
    pool = await db.create_pool(database.dsn("aggregator"), schema, max_size=2)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()

    async def publish(body: bytes, to: str, key: str, headers: dict[str, str]) -> None:
        await producer.send_and_wait(to, body, key=key.encode())

    try:
        async with pool.acquire() as conn, conn.transaction():
            await add_to_outbox(conn, [OutboxMessage(topic, "k", json.dumps({"n": n})) for n in range(3)])
            await conn.execute("UPDATE outbox SET created_at = now() - interval '90 seconds'")
        relay = OutboxRelay(pool, publish, schema, backlog_interval_s=0)

        def gauge(name: str) -> float:
            return total(parse(generate_latest(REGISTRY).decode()), name, outbox=schema)

        await relay.measure_backlog()
        assert gauge("outbox_backlog_messages") == 3
        assert 90 <= gauge("outbox_oldest_message_age_seconds") < 150
        assert await relay.relay_once() == 3
        assert gauge("outbox_sent_messages_total") == 3
        await relay.measure_backlog()
        assert (gauge("outbox_backlog_messages"), gauge("outbox_oldest_message_age_seconds")) == (0, 0)
    finally:
        await producer.stop()
        await pool.close()


async def test_entry_gauges_count_each_module_and_status_and_age_the_oldest_publishing_entry(
    database: ProvisionedDatabase,
) -> None:
    await migrated(database, "aggregator")
    pool = await db.create_pool(database.dsn("aggregator"), database.schema("aggregator"), max_size=2)
    rows = [
        ("manpower", "todo", 0),
        ("manpower", "todo", 0),
        ("manpower", "publishing", 600),
        ("manpower", "publishing", 30),
        ("timecard", "published", 0),
    ]
    try:
        async with pool.acquire() as conn:
            for n, (module, status, age_s) in enumerate(rows):
                await conn.execute(
                    """
                    INSERT INTO entries (entry_id, account_id, module, job_site_id, work_date, entry_key, dims, status,
                                         updated_at)
                    VALUES (gen_random_uuid(), 'acc', $1, 's1', '2026-11-16', $2, '{}', $3,
                            now() - make_interval(secs => $4))
                    """,
                    module,
                    f"key-{n}",
                    status,
                    float(age_s),
                )
        clock = [1000.0]
        gauges = EntryStatusGauges(lambda: pool, min_interval_s=15, clock=lambda: clock[0])

        def series() -> Series:
            return parse(generate_latest(REGISTRY).decode())

        await gauges.refresh()
        found = series()
        assert total(found, "aggregator_entries", module="manpower", status="todo") == 2
        assert total(found, "aggregator_entries", module="manpower", status="publishing") == 2
        assert total(found, "aggregator_entries", module="timecard", status="published") == 1
        assert total(found, "aggregator_entries", module="production_quantity", status="todo") == 0
        assert 600 <= total(found, "aggregator_entries_oldest_publishing_age_seconds", module="manpower") < 660
        assert total(found, "aggregator_entries_oldest_publishing_age_seconds", module="timecard") == 0

        async with pool.acquire() as conn:
            await conn.execute("UPDATE entries SET status = 'published' WHERE status = 'publishing'")
        clock[0] += 5  # within the interval: not queried again
        await gauges.refresh()
        assert total(series(), "aggregator_entries", module="manpower", status="publishing") == 2
        clock[0] += 15
        await gauges.refresh()
        found = series()
        assert total(found, "aggregator_entries", module="manpower", status="publishing") == 0
        assert total(found, "aggregator_entries", module="manpower", status="published") == 2
        assert total(found, "aggregator_entries_oldest_publishing_age_seconds", module="manpower") == 0
    finally:
        await pool.close()


async def test_retries_are_counted_by_kind_and_the_worn_out_message_as_dead_lettered(
    kafka_bootstrap: str, postgres_dsn: str, unique: str
) -> None:
    """The shared consumer middleware over real HTTP: a transient outage retries (kind transient), a message whose
    handling keeps failing retries (kind failure) until it is dead-lettered."""
    schema = f"t_{unique}_worker"
    probe = Probe(broken={"bad"})
    try:
        async with running_worker(kafka_bootstrap, postgres_dsn, schema, f"{unique}.", probe) as worker:
            await eventually(worker.ready, lambda r: r[0] == 200, what="ready at start")
            probe.transient_until = time.monotonic() + 3600  # a dependency is away until the message was retried
            await send(kafka_bootstrap, worker.single_topic, [Work(id="ok", n=1)])

            async def deliveries() -> int:
                return probe.deliveries["ok"]

            await eventually(deliveries, lambda n: n >= 2, timeout_s=60, what="a retry")
            probe.transient_until = 0.0
            await eventually(lambda: worker.done(), lambda done: "ok" in done, timeout_s=60, what="ok stored")
            await send(kafka_bootstrap, worker.single_topic, [Work(id="bad", n=2)])

            async def scraped() -> Series:
                async with httpx.AsyncClient(timeout=5) as http:
                    return parse((await http.get(f"{worker.url}/metrics")).text)

            topic = {"messaging_destination_name": worker.single_topic}
            series = await eventually(
                scraped,
                lambda s: total(s, "messaging_dead_lettered_messages_total", **topic) >= 1,
                timeout_s=60,
                what="the broken message dead-lettered",
            )
    finally:
        await db.drop_schemas(postgres_dsn, [schema])
    assert total(series, "messaging_retries_total", **topic, retry_kind="transient") >= 1
    # tried ATTEMPTS times: ATTEMPTS - 1 retries, then dead-lettered (a consumer group rebalance on a loaded
    # machine can redeliver the message once more: at least, not exactly)
    assert total(series, "messaging_retries_total", **topic, retry_kind="failure") >= ATTEMPTS - 1
    assert total(series, "messaging_process_duration_seconds_count", **topic, error_type="ValueError") >= ATTEMPTS
    assert total(series, "messaging_process_duration_seconds_count", **topic, error_type="") >= 1  # "ok"
