"""Probe: what a Tansu broker on s3:// storage does to producers and consumer groups when it is killed (-9)
and started again — the chaos suite's broker scenario, reduced to one topic, numbered messages and numbers.

    python -m tests.chaos.probe_broker_restart [--before-s 5] [--down-s 3] [--after-s 20] [--storage s3]

A producer sends numbered messages (one per send, like the outbox relays) to a topic of two partitions; a
consumer group of two members reads them in batches (`getmany`, the publisher's batch settings, committing
after each batch). Midway the broker is killed and started on the same storage. Printed, per partition:

- the offsets the broker acknowledged before and after the restart (overlap = offsets handed out twice);
- each member's position, the high watermark of the broker's last fetch answer and the committed offset,
  sampled every second;
- the records a fresh reader finds from the start (lost / duplicated by content);
- whether the group got every acknowledged message, and when it last made progress.

Exit code 0: the group got every message; 1: it did not (the lines above say where it stopped).
`--fetch-max-wait-ms` sets the group's fetch wait (the services' default: 50), `--down-s -1` skips the restart
(a control), `--storage memory` runs on memory:// (no restart). PROBE_LOG=DEBUG shows aiokafka's wire log (the
empty fetch answers below the high watermark), PROBE_RUST_LOG=... Tansu's. Findings: tests/chaos/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from devstack.broker import LocalBroker, create_topics_and_wait
from devstack.ports import free_port

TOPIC = "probe.requests"
GROUP = "probe"
PARTITIONS = 2
FETCH_MAX_WAIT_MS = [50]


@dataclass
class Tally:
    acked: dict[int, list[tuple[int, int, str]]] = field(default_factory=lambda: defaultdict(list))
    """partition → (offset, message number, phase) the broker acknowledged."""
    got: dict[str, list[tuple[int, int, int, float]]] = field(default_factory=lambda: defaultdict(list))
    """member → (partition, offset, message number, time) it consumed."""
    samples: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    phase: str = "before"
    t0: float = field(default_factory=time.monotonic)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def say(self, line: str) -> None:
        line = f"[{self.now():6.1f}s] {line}"
        self.samples.append(line)
        print(line, flush=True)


async def produce(bootstrap: str, tally: Tally, stop: asyncio.Event, interval_s: float) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", request_timeout_ms=5000)
    await producer.start()
    number = 0
    try:
        while not stop.is_set():
            partition = number % PARTITIONS
            body = json.dumps({"n": number}).encode()
            try:
                meta = await producer.send_and_wait(TOPIC, body, partition=partition)
            except Exception as error:  # the broker is away: the same message is sent again, like a relay does
                tally.errors.append(f"produce #{number}: {error!r}")
                await asyncio.sleep(0.2)
                continue
            tally.acked[partition].append((meta.offset, number, tally.phase))
            number += 1
            await asyncio.sleep(interval_s)
    finally:
        await producer.stop()


async def consume(bootstrap: str, name: str, tally: Tally, done: asyncio.Event, members: dict[str, Any]) -> None:
    consumer = AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=bootstrap,
        group_id=GROUP,
        client_id=name,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=10_000,
        heartbeat_interval_ms=2_500,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS[0],
    )
    await consumer.start()
    members[name] = consumer
    try:
        while not done.is_set():
            try:
                batches = await consumer.getmany(timeout_ms=100, max_records=500)
            except Exception as error:
                tally.errors.append(f"{name} getmany: {error!r}")
                await asyncio.sleep(0.2)
                continue
            for tp, records in batches.items():
                for r in records:
                    tally.got[name].append((tp.partition, r.offset, json.loads(r.value)["n"], tally.now()))
            if batches:
                try:
                    await consumer.commit()
                except Exception as error:  # like FastStream: the error is logged, the records come again
                    tally.errors.append(f"{name} commit: {error!r}")
    finally:
        members.pop(name, None)
        await consumer.stop()


async def sample(tally: Tally, members: dict[str, Any], done: asyncio.Event) -> None:
    while not done.is_set():
        parts = []
        for name, consumer in sorted(members.items()):
            for tp in sorted(consumer.assignment()):
                with contextlib.suppress(Exception):
                    position = await asyncio.wait_for(consumer.position(tp), 0.5)
                    committed = await asyncio.wait_for(consumer.committed(tp), 0.5)
                    # the high watermark the broker sent with its last fetch answer: above the position while
                    # nothing arrives = answers with no records below the high watermark
                    parts.append(
                        f"{name} p{tp.partition} pos={position} hw={consumer.highwater(tp)} committed={committed}"
                    )
        top = {p: (rows[-1][0] if rows else None) for p, rows in sorted(tally.acked.items())}
        tally.say(f"{tally.phase}: last acked offset {top}; " + "; ".join(parts))
        await asyncio.sleep(1.0)


def report(tally: Tally, fresh: dict[int, list[tuple[int, int]]]) -> bool:
    ok = True
    print("\n== acknowledged offsets, per partition")
    for p in range(PARTITIONS):
        rows = tally.acked[p]
        before = [o for o, _, ph in rows if ph == "before"]
        after = [o for o, _, ph in rows if ph == "after"]
        offsets = [o for o, _, _ in rows]
        dup = len(offsets) - len(set(offsets))
        print(
            f"p{p}: before restart {len(before)} ({min(before, default=None)}..{max(before, default=None)}), "
            f"after {len(after)} ({min(after, default=None)}..{max(after, default=None)}); "
            f"offsets handed out twice: {dup}"
        )
        ok &= dup == 0
    print("== a fresh reader from the start")
    for p in range(PARTITIONS):
        read = fresh.get(p, [])
        numbers = [n for _, n in read]
        expected = {n for _, n, _ in tally.acked[p]}
        print(
            f"p{p}: {len(read)} records, offsets {read[0][0] if read else None}..{read[-1][0] if read else None}; "
            f"acked but absent: {len(expected - set(numbers))}; same message twice: {len(numbers) - len(set(numbers))}"
        )
        ok &= not (expected - set(numbers))
    print("== the consumer group")
    consumed: set[int] = set()
    last_progress: dict[int, float] = {}
    for got in tally.got.values():
        for p, _, n, t in got:
            consumed.add(n)
            last_progress[p] = max(last_progress.get(p, 0.0), t)
    for p in range(PARTITIONS):
        expected = {n for _, n, _ in tally.acked[p]}
        missing = sorted(expected - consumed)
        print(
            f"p{p}: acked {len(expected)}, consumed {len(expected & consumed)}, never consumed {len(missing)}"
            + (f" (first #{missing[0]}, offset {_offset_of(tally, p, missing[0])})" if missing else "")
            + f"; last record consumed at {last_progress.get(p, 0):.1f}s"
        )
        ok &= not missing
    if tally.errors:
        print(f"== client errors ({len(tally.errors)}), first and last:\n  {tally.errors[0]}\n  {tally.errors[-1]}")
    print("PASS: the group got every acknowledged message" if ok else "FAIL")
    return ok


def _offset_of(tally: Tally, partition: int, number: int) -> int | None:
    return next((o for o, n, _ in tally.acked[partition] if n == number), None)


async def read_all(bootstrap: str, quiet_s: float = 3.0) -> dict[int, list[tuple[int, int]]]:
    """Every record from the start, until nothing came for `quiet_s` (Tansu's end offsets lag; see RESULTS.md)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    out: dict[int, list[tuple[int, int]]] = defaultdict(list)
    try:
        consumer.assign([TopicPartition(TOPIC, p) for p in range(PARTITIONS)])
        await consumer.seek_to_beginning()
        last = time.monotonic()
        while time.monotonic() - last < quiet_s:
            batches = await consumer.getmany(timeout_ms=500)
            for tp, records in batches.items():
                out[tp.partition] += [(r.offset, json.loads(r.value)["n"]) for r in records]
                last = time.monotonic()
    finally:
        await consumer.stop()
    return out


async def main(args: argparse.Namespace) -> int:
    FETCH_MAX_WAIT_MS[0] = args.fetch_max_wait_ms
    log_dir = Path(args.log_dir or tempfile.mkdtemp(prefix="probe-broker-"))
    rust_log = {"RUST_LOG": os.environ.get("PROBE_RUST_LOG", "warn")}
    broker = LocalBroker(port=free_port(), storage=args.storage, log_dir=log_dir, extra_env=rust_log)
    await broker.astart()
    tally = Tally()
    tally.say(f"broker {broker.storage_url} at {broker.bootstrap_servers}; logs in {log_dir}")
    try:
        await create_topics_and_wait(broker.bootstrap_servers, [TOPIC], partitions=PARTITIONS)
        stop_producing, done = asyncio.Event(), asyncio.Event()
        members: dict[str, Any] = {}
        tasks = [
            asyncio.create_task(produce(broker.bootstrap_servers, tally, stop_producing, args.interval_s)),
            *(
                asyncio.create_task(consume(broker.bootstrap_servers, f"member-{i}", tally, done, members))
                for i in range(args.members)
            ),
            asyncio.create_task(sample(tally, members, done)),
        ]
        await asyncio.sleep(args.before_s)
        if args.down_s >= 0:
            assert broker.pid is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(broker.pid, signal.SIGKILL)
            await asyncio.to_thread(broker.stop, 5.0, keep_s3=True)
            tally.phase = "down"
            tally.say("broker killed (-9)")
            await asyncio.sleep(args.down_s)
            await broker.astart()
            tally.say("broker started again")
        tally.phase = "after"
        await asyncio.sleep(args.after_s)
        stop_producing.set()
        await tasks[0]  # its last send may still be on its way
        tally.say("producer stopped; waiting for the group to catch up")
        want = sum(len(v) for v in tally.acked.values())
        deadline = time.monotonic() + args.settle_s
        while time.monotonic() < deadline:
            got = len({n for rows in tally.got.values() for _, _, n, _ in rows})
            if got >= want:
                break
            await asyncio.sleep(0.5)
        done.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        fresh = await read_all(broker.bootstrap_servers)
        return 0 if report(tally, fresh) else 1
    finally:
        await asyncio.to_thread(broker.stop, 5.0)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--storage", default="s3", help="s3 (default) or memory (then nothing is restarted)")
    parser.add_argument("--before-s", type=float, default=5.0)
    parser.add_argument("--down-s", type=float, default=3.0, help="negative: no restart (a control run)")
    parser.add_argument("--after-s", type=float, default=20.0)
    parser.add_argument("--settle-s", type=float, default=30.0)
    parser.add_argument("--interval-s", type=float, default=0.03, help="pause between two sends")
    parser.add_argument("--members", type=int, default=2)
    parser.add_argument("--fetch-max-wait-ms", type=int, default=50, help="the services' default is 50")
    parser.add_argument("--log-dir", default="")
    return parser.parse_args(argv)


if __name__ == "__main__":
    logging.basicConfig(level=getattr(logging, os.environ.get("PROBE_LOG", "CRITICAL")))
    sys.exit(asyncio.run(main(parse(sys.argv[1:]))))
