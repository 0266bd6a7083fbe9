"""Every consumer dead-letters what it cannot parse, with the reason, and goes on; `python -m shared.dead_letters`
lists them and replays chosen ones once (real broker)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import uuid
from datetime import date
from typing import Any

import pytest

from shared import db
from shared.broker import REASON_HEADER, DeadLetters, ensure_topics, make_broker
from shared.dead_letters import REPLAYED_FROM_HEADER, read_dead_letters, read_topic
from shared.events import ConfigureSetup, Module, ProcoreOperation, PublishToProcore
from shared.topics import Topics
from tests.integration.worker_app import Probe, Work, running_worker, send
from tests.support.kafka import consume, eventually, produce
from tests.support.principals import TEST_BACKEND
from tests.support.stack import StackConfig, running

pytestmark = pytest.mark.integration


async def test_publisher_dead_letters_and_continues(
    kafka_bootstrap: str, postgres_dsn: str, procore_sandbox_url: str, unique: str, schemas: dict[str, str]
) -> None:
    cfg = StackConfig(kafka_bootstrap, postgres_dsn, f"{unique}.", schemas, procore_url=procore_sandbox_url)
    topics = cfg.topics
    good = PublishToProcore(
        account_id="acc",
        entry_id=uuid.uuid4(),
        entry_version=1,
        module=Module.MANPOWER,
        operation=ProcoreOperation.CREATE,
        procore_company_id=999_999,
        procore_project_id=1,
        work_date=date(2026, 11, 20),
        payload={"num_workers": 1},
        marker="[mc:test]",
    )
    bad_update = json.loads(good.model_dump_json()) | {"operation": "update", "request_id": str(uuid.uuid4())}
    async with running(cfg, which=("publisher",)):
        await produce(kafka_bootstrap, topics.publish_requests, [b"{", json.dumps(bad_update).encode(), good])
        dead = await consume(kafka_bootstrap, topics.dead_letter("publisher"), 2)
        results = await consume(kafka_bootstrap, topics.publish_results, 1)
    reasons = [dict(r.headers)[REASON_HEADER].decode() for r in dead]
    assert reasons[0].startswith("message is not valid JSON")
    assert "operation update needs procore_id" in reasons[1]
    result = json.loads(results[0].value)
    assert result["request_id"] == str(good.request_id)
    assert result["outcome"] == "failed"
    assert "not connected" in result["message"].lower()


async def test_mapping_dead_letters_and_continues(
    kafka_bootstrap: str, postgres_dsn: str, unique: str, schemas: dict[str, str]
) -> None:
    cfg = StackConfig(kafka_bootstrap, postgres_dsn, f"{unique}.", schemas)
    topics = cfg.topics
    setup = ConfigureSetup(
        account_id="acc", procore_company_id=None, enabled_modules=[Module.TIMECARD], **TEST_BACKEND.requester()
    )
    async with running(cfg, which=("mapping",)):
        await produce(
            kafka_bootstrap,
            topics.mapping_commands,
            [b'{"type": "setup.configure", "account_id": "acc", "enabled_modules": ["payroll"]}', setup],
        )
        dead = await consume(kafka_bootstrap, topics.dead_letter("mapping"), 1)
        changes = await consume(kafka_bootstrap, topics.mapping_changes, 1)
    reason = dict(dead[0].headers)[REASON_HEADER].decode()
    assert "enabled_modules.0" in reason
    assert "requested_by: Field required" in reason
    change = json.loads(changes[0].value)
    assert change["type"] == "setup.changed"
    assert change["enabled_modules"] == ["timecard"]


# --- the dead-letter command line: list, and replay each one once ---------------------------------


async def cli(kafka: str, prefix: str, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka, "TOPIC_PREFIX": prefix}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shared.dead_letters",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def replayed_copies(kafka: str, topic: str) -> list[Any]:
    return [r for r in await read_topic(kafka, topic) if REPLAYED_FROM_HEADER in dict(r.headers or ())]


async def test_cli_lists_dead_letters_and_replays_chosen_ones_once(
    kafka_bootstrap: str, postgres_dsn: str, unique: str
) -> None:
    prefix, schema = f"{unique}.", f"t_{unique}_worker"
    probe = Probe(broken={"fixme"})
    huge = b'{"id": "huge", "pad": "' + b"x" * 2_000_000 + b'"}'
    try:
        async with running_worker(kafka_bootstrap, postgres_dsn, schema, prefix, probe) as worker:
            await send(
                kafka_bootstrap,
                worker.single_topic,
                [b"not json", Work(id="fixme", n=7), huge, Work(id="ok")],
                max_request_size=4 << 20,
            )
            await eventually(
                lambda: read_dead_letters(kafka_bootstrap, worker.dead_letter_topic), lambda d: len(d) >= 3
            )

            code, out, err = await cli(kafka_bootstrap, prefix, "list", "--service", "worker")
            assert code == 0, err
            assert f"{worker.dead_letter_topic}: 3 of 3" in out
            header = out.splitlines()[1].split()
            assert header == ["SERVICE", "POSITION", "AGE", "SIZE", "SOURCE", "REPLAYED", "REASON"]
            assert "message is not valid JSON" in out
            assert "handler failed 3 times: ValueError" in out
            assert "(omitted)" in out
            assert f"{worker.single_topic}[" in out

            code, out, _ = await cli(kafka_bootstrap, prefix, "list", "-s", "worker", "--reason-contains", "VALUEERROR")
            assert f"{worker.dead_letter_topic}: 1 of 3" in out
            code, out, _ = await cli(kafka_bootstrap, prefix, "list", "-s", "worker", "--older-than", "1h")
            assert out.strip() == "no dead letters match"

            fixme = [
                d for d in await read_dead_letters(kafka_bootstrap, worker.dead_letter_topic) if "Value" in d.reason
            ]
            code, out, err = await cli(
                kafka_bootstrap, prefix, "replay", "-s", "worker", "--offsets", fixme[0].position, "--dry-run"
            )
            assert code == 0, (out, err)
            assert "would replay 1" in out, (out, err)
            assert await replayed_copies(kafka_bootstrap, worker.single_topic) == []

            probe.broken.clear()  # the cause is fixed: now replay it, twice
            runs = [
                await cli(kafka_bootstrap, prefix, "replay", "-s", "worker", "--reason-contains", "handler failed")
                for _ in range(2)
            ]
            assert [code for code, _, _ in runs] == [0, 0], runs
            (_, first_out, first_err), (_, second_out, _) = runs
            assert "replayed 1" in first_out
            assert f"replay {worker.dead_letter_topic}: 100%" in first_err
            assert "1/1" in first_err
            assert "1 already replayed, skipped" in second_out
            assert "replayed 0" in second_out
            await eventually(worker.done, lambda done: done.get("fixme") == 7, what="the replayed message handled")

            copies = await replayed_copies(kafka_bootstrap, worker.single_topic)
            assert len(copies) == 1
            assert copies[0].value == fixme[0].value
            assert copies[0].key == fixme[0].key
            headers = dict(copies[0].headers)
            assert headers[REPLAYED_FROM_HEADER] == f"{worker.dead_letter_topic}:{fixme[0].position}".encode()
            assert not [k for k in headers if k.startswith("x-dead-letter-")]

            code, out, err = await cli(kafka_bootstrap, prefix, "replay", "-s", "worker", "--reason-contains", "limit")
            assert code == 0
            assert "payload omitted" in err
            assert "cannot be replayed" in err
            assert len(await replayed_copies(kafka_bootstrap, worker.single_topic)) == 1

            code, out, _ = await cli(kafka_bootstrap, prefix, "list", "-s", "worker", "--reason-contains", "failed")
            assert re.search(r"@\d+\s+yes\s+handler failed 3 times", out), out  # SOURCE, REPLAYED, REASON
    finally:
        await db.drop_schemas(postgres_dsn, [schema])


async def test_cli_names_a_missing_setting() -> None:
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shared.dead_letters", "list", env=env, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    assert proc.returncode == 2
    assert "setting KAFKA_BOOTSTRAP_SERVERS is required but not set" in err.decode()


async def test_a_dead_letter_the_broker_refuses_as_too_large_is_sent_as_a_reference(
    kafka_bootstrap: str, unique: str
) -> None:
    topics = Topics(f"{unique}.")
    source = f"{unique}.big"
    await ensure_topics(kafka_bootstrap, [source, topics.dead_letter("svc")], partitions=1)
    value = b'{"pad": "' + b"x" * 1_500_000 + b'"}'
    await send(kafka_bootstrap, source, [value], max_request_size=4 << 20)
    (record,) = await read_topic(kafka_bootstrap, source)
    broker = make_broker(kafka_bootstrap, "svc", topics)
    await broker.start()
    try:
        # a limit above the client's 1 MiB request limit: the producer refuses it (MessageSizeTooLargeError)
        await DeadLetters(broker, "svc", topics, max_bytes=10 << 20).send(record, "invalid message: pad")
    finally:
        await broker.stop()
    (dead,) = await read_dead_letters(kafka_bootstrap, topics.dead_letter("svc"))
    assert dead.omitted
    assert dead.reason == "invalid message: pad"
    assert dead.size == len(value)
    assert dead.value is not None
    body = json.loads(dead.value)
    assert body["payload_omitted"].startswith("the broker refused")
    assert "MessageSizeTooLarge" in body["payload_omitted"]
    assert body["source"] == {"topic": source, "partition": 0, "offset": 0}
    assert body["head"].startswith('{"pad": "xx')
