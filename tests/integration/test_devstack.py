"""Tests of the local infrastructure package ``devstack`` (broker, PostgreSQL, supervisor, testinfra)."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from devstack import testinfra
from devstack._proc import pid_alive
from devstack.broker import LocalBroker, create_topics_and_wait
from devstack.databases import drop_schemas_with_prefix
from devstack.ports import free_port, wait_for_tcp
from devstack.postgres import LocalPostgres
from devstack.processes import ServiceFailed, ServiceSpec, Supervisor, http_ready

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _wait_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.02)
    return not pid_alive(pid)


# -- ports ----------------------------------------------------------------------------------------
def test_free_port_and_wait_for_tcp() -> None:
    port = free_port()
    assert 1024 < port < 65536
    with pytest.raises(TimeoutError):
        wait_for_tcp("127.0.0.1", port, timeout=0.2)


# -- broker ---------------------------------------------------------------------------------------
async def test_local_broker_roundtrip_with_header(tmp_path: Path) -> None:
    async with LocalBroker(log_dir=tmp_path) as broker:
        pid = broker.pid
        assert pid is not None
        assert pid_alive(pid)
        assert broker.bootstrap_servers == f"127.0.0.1:{broker.port}"
        assert broker.log_path.exists()
        topic = f"{testinfra.run_id()}.devstack.roundtrip"
        assert await create_topics_and_wait(broker.bootstrap_servers, [topic], partitions=2) == [topic]
        assert await create_topics_and_wait(broker.bootstrap_servers, [topic]) == []  # already there: tolerated

        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers)
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"payload", key=b"k", headers=[("traceparent", b"00-abc-01")])
        finally:
            await producer.stop()

        consumer = AIOKafkaConsumer(topic, bootstrap_servers=broker.bootstrap_servers, auto_offset_reset="earliest")
        await consumer.start()
        try:
            msg = await asyncio.wait_for(consumer.getone(), 15)
        finally:
            await consumer.stop()
        assert msg.value == b"payload"
        assert msg.key == b"k"
        assert list(msg.headers) == [("traceparent", b"00-abc-01")]
    assert broker.pid is None
    assert _wait_gone(pid, 1.0), "broker process still alive after stop()"


def test_local_broker_sync_context_manager(tmp_path: Path) -> None:
    with LocalBroker(log_dir=tmp_path) as broker:
        pid = broker.pid
        assert pid is not None
        assert broker.started_in is not None
        assert broker.started_in < 10
    assert _wait_gone(pid, 1.0)


def test_broker_dies_with_parent_on_sigkill(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from devstack.broker import LocalBroker
        b = LocalBroker(log_dir={str(tmp_path)!r}).start()
        print(b.pid, flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        broker_pid = int(parent.stdout.readline())
        assert pid_alive(broker_pid)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    assert _wait_gone(broker_pid, 3.0), "broker orphaned after its parent was SIGKILLed"


async def test_local_broker_s3_storage_survives_restart(tmp_path: Path) -> None:
    pytest.importorskip("moto.server", reason="s3 storage needs moto[server]")
    broker = LocalBroker(log_dir=tmp_path, storage="s3")
    await broker.astart()
    try:
        assert broker.storage_url == "s3://tansu/"
        assert broker.s3 is not None
        topic = f"{testinfra.run_id()}.devstack.s3"
        await create_topics_and_wait(broker.bootstrap_servers, [topic], partitions=1)
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers)
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"kept", headers=[("h", b"v")])
        finally:
            await producer.stop()
        old_pid = broker.pid
        await asyncio.to_thread(broker.stop, keep_s3=True)
        assert old_pid is not None
        assert _wait_gone(old_pid, 1.0)
        await broker.astart()  # same port, same S3 emulator
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=broker.bootstrap_servers, auto_offset_reset="earliest")
        await consumer.start()
        try:
            msg = await asyncio.wait_for(consumer.getone(), 15)
        finally:
            await consumer.stop()
        assert (msg.value, list(msg.headers)) == (b"kept", [("h", b"v")])
    finally:
        s3_pid = broker.s3.pid if broker.s3 else None
        await asyncio.to_thread(broker.stop)
    assert s3_pid is not None
    assert _wait_gone(s3_pid, 5.0)


# -- postgres -------------------------------------------------------------------------------------
async def test_local_postgres_embedded(tmp_path: Path) -> None:
    pg = LocalPostgres(log_dir=tmp_path)
    with pg:
        pid = pg.pid
        assert pid is not None
        assert pg.embedded
        data_dir = pg.data_dir
        assert data_dir is not None
        conn = await asyncpg.connect(pg.dsn)
        try:
            assert await conn.fetchval("select 1") == 1
            prefix = f"{testinfra.run_id()}_"
            await conn.execute(f"create schema {prefix}a; create schema {prefix}b; create schema keep_me")
        finally:
            await conn.close()
        assert await drop_schemas_with_prefix(pg.dsn, prefix) == [f"{prefix}a", f"{prefix}b"]
        conn = await asyncpg.connect(pg.socket_dsn)  # the Unix socket works too
        try:
            assert await conn.fetchval("select count(*) from pg_namespace where nspname = 'keep_me'") == 1
        finally:
            await conn.close()
    assert _wait_gone(pid, 2.0), "postgres still running after stop()"
    assert not data_dir.exists(), "temporary cluster not removed"


async def test_local_postgres_persistent_data_dir_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "pgdata"
    with LocalPostgres(data_dir=data_dir, durable=False) as pg:
        conn = await asyncpg.connect(pg.dsn)
        await conn.execute("create table kept(x int); insert into kept values (42)")
        await conn.close()
    t0 = time.monotonic()
    with LocalPostgres(data_dir=data_dir, durable=False) as pg:
        assert pg.initdb_seconds is None  # no initdb on restart
        assert time.monotonic() - t0 < 10
        conn = await asyncpg.connect(pg.dsn)
        assert await conn.fetchval("select x from kept") == 42
        await conn.close()


def test_local_postgres_external_dsn_is_passthrough() -> None:
    with LocalPostgres("postgresql://u@example.invalid/db") as pg:
        assert pg.dsn == "postgresql://u@example.invalid/db"
        assert not pg.embedded
        assert pg.pid is None


async def test_postgres_dsn_embedded_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setattr(testinfra, "docker_available", lambda: False)
    with testinfra.postgres_dsn() as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            assert await conn.fetchval("select 1") == 1
        finally:
            await conn.close()


# -- supervisor -----------------------------------------------------------------------------------
CHILD = textwrap.dedent(
    """
    import http.server, os, sys, threading, time
    port, crash_after = int(sys.argv[1]), float(sys.argv[2])
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()
        def log_message(self, *a):
            pass
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
    print(f"child listening on {port}", flush=True)
    print("to stderr", file=sys.stderr, flush=True)
    if crash_after >= 0:
        threading.Timer(crash_after, lambda: os._exit(3)).start()
    srv.serve_forever()
    """
)


def _spec(tmp_path: Path, name: str, crash_after: float = -1, restart: bool = True) -> ServiceSpec:
    script = tmp_path / "child.py"
    if not script.exists():
        script.write_text(CHILD)
    port = free_port()
    return ServiceSpec(
        name=name,
        argv=[sys.executable, str(script), str(port), str(crash_after)],
        health_url=f"http://127.0.0.1:{port}/health",
        ready_timeout=15,
        restart=restart,
    )


async def test_supervisor_starts_waits_ready_and_stops(tmp_path: Path) -> None:
    out = io.StringIO()
    async with Supervisor(output=out, log_dir=tmp_path / "logs") as sup:
        procs = await sup.start_all([_spec(tmp_path, "alpha"), _spec(tmp_path, "beta-service")])
        assert [p.name for p in procs] == ["alpha", "beta-service"]
        assert all(p.ready_in is not None and p.returncode is None for p in procs)
        pids = [p.pid for p in procs]
    assert all(_wait_gone(pid, 2.0) for pid in pids)
    text = out.getvalue()
    assert "alpha        | child listening on" in text
    assert "beta-service | to stderr" in text
    assert "\033[" not in text  # not a TTY: no colors
    assert text.index("stopping beta-service") < text.index("stopping alpha")  # reverse order
    assert "child listening" in (tmp_path / "logs" / "alpha.log").read_text()
    assert not sup.failures


async def test_supervisor_without_restart_reports_crash_and_stops_everything(tmp_path: Path) -> None:
    out = io.StringIO()
    sup = Supervisor(output=out)
    good, bad = _spec(tmp_path, "good"), _spec(tmp_path, "crasher", crash_after=0.5, restart=False)
    code = await asyncio.wait_for(sup.run([good, bad], handle_signals=False), 20)
    assert code == 1
    assert any("crasher" in f and "code 3" in f for f in sup.failures), sup.failures
    assert "ERROR: crasher" in out.getvalue()
    assert all(not pid_alive(p.pid) for p in sup.processes)


async def _wait_for_text(out: io.StringIO, text: str, within_s: float = 15.0, times: int = 1) -> None:
    deadline = time.monotonic() + within_s
    while out.getvalue().count(text) < times:
        assert time.monotonic() < deadline, f"{text!r} not printed; output:\n{out.getvalue()}"
        await asyncio.sleep(0.05)


async def test_supervisor_restarts_a_killed_child_with_backoff_and_stops_cleanly(tmp_path: Path) -> None:
    out = io.StringIO()
    sup = Supervisor(output=out)
    task = asyncio.create_task(sup.run([_spec(tmp_path, "steady"), _spec(tmp_path, "victim")], handle_signals=False))
    await asyncio.wait_for(sup.ready.wait(), 15)
    steady, victim = sup.processes
    first_pid = victim.pid

    os.kill(first_pid, signal.SIGKILL)
    await _wait_for_text(out, "devstack | victim exited (signal 9); restarting in 1 s (restart #1)")
    await _wait_for_text(out, "victim ready again in")
    second_pid = victim.pid
    assert second_pid != first_pid
    assert pid_alive(second_pid)
    assert not pid_alive(first_pid)
    assert victim.spec.health_url is not None
    assert await http_ready(victim.spec.health_url)

    os.kill(second_pid, signal.SIGKILL)  # again at once: the backoff doubles
    await _wait_for_text(out, "devstack | victim exited (signal 9); restarting in 2 s (restart #2)")
    await _wait_for_text(out, "victim ready again in", times=2)
    assert victim.pid != second_pid
    assert f"restarted victim (pid {victim.pid})" in out.getvalue()

    assert not task.done()
    assert not sup.failures
    assert steady.restarts == 0
    assert pid_alive(steady.pid)
    sup.request_stop()
    assert await asyncio.wait_for(task, 15) == 0
    assert all(not pid_alive(pid) for pid in (steady.pid, victim.pid, first_pid, second_pid))


async def test_supervisor_stop_during_restart_backoff_leaves_no_child(tmp_path: Path) -> None:
    out = io.StringIO()
    sup = Supervisor(output=out)
    task = asyncio.create_task(sup.run([_spec(tmp_path, "victim")], handle_signals=False))
    await asyncio.wait_for(sup.ready.wait(), 15)
    (victim,) = sup.processes
    victim.backoff_step = 3  # the next restart waits 8 s
    old_pid = victim.pid
    os.kill(old_pid, signal.SIGKILL)
    await _wait_for_text(out, "restarting in 8 s (restart #1)")
    sup.request_stop()
    assert await asyncio.wait_for(task, 5) == 0
    assert victim.pid == old_pid
    assert "restarted victim" not in out.getvalue()


async def test_supervisor_run_fails_when_a_child_never_becomes_ready(tmp_path: Path) -> None:
    out = io.StringIO()
    sup = Supervisor(output=out)
    broken = ServiceSpec(
        name="broken",
        argv=[sys.executable, "-c", "import sys; print('no database'); sys.exit(2)"],
        health_url=f"http://127.0.0.1:{free_port()}/health",
    )
    code = await asyncio.wait_for(sup.run([_spec(tmp_path, "first"), broken], handle_signals=False), 20)
    assert code == 1
    assert "ERROR: broken exited with code 2 before it was ready" in out.getvalue()
    assert "restarting" not in out.getvalue()
    assert all(not pid_alive(p.pid) for p in sup.processes)


async def test_supervisor_child_dying_before_ready(tmp_path: Path) -> None:
    sup = Supervisor(output=io.StringIO())
    spec = ServiceSpec(
        name="broken",
        argv=[sys.executable, "-c", "import sys; print('boom'); sys.exit(2)"],
        health_url=f"http://127.0.0.1:{free_port()}/health",
    )
    try:
        with pytest.raises(ServiceFailed, match=r"broken exited with code 2.*\n.*boom"):
            await sup.start(spec)
    finally:
        await sup.stop_all()


async def test_supervisor_run_stops_on_request_and_kills_stubborn_child(tmp_path: Path) -> None:
    out = io.StringIO()
    sup = Supervisor(output=out)

    async def handler_installed() -> bool:  # a custom readiness check instead of an HTTP URL
        return "stubborn | up" in out.getvalue()

    stubborn = ServiceSpec(
        name="stubborn",
        argv=[
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); "
            "time.sleep(60)",
        ],
        ready_check=handler_installed,
        stop_timeout=0.5,
    )
    task = asyncio.create_task(sup.run([_spec(tmp_path, "web"), stubborn], handle_signals=False))
    await asyncio.wait_for(sup.ready.wait(), 15)
    sup.request_stop()
    assert await asyncio.wait_for(task, 15) == 0
    assert "stubborn did not stop in time: SIGKILL" in out.getvalue()
    assert all(not pid_alive(p.pid) for p in sup.processes)


# -- testinfra resolution order -------------------------------------------------------------------
class _FakeLocal:
    started = 0

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __enter__(self) -> _FakeLocal:
        type(self).started += 1
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    bootstrap_servers = "local-broker:1"
    dsn = "postgresql://local-embedded/db"
    pid = 1


class _FakeContainer:
    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def with_kraft(self) -> _FakeContainer:
        return self

    def __enter__(self) -> _FakeContainer:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def get_bootstrap_server(self) -> str:
        return "docker-kafka:9093"

    def get_connection_url(self) -> str:
        return "postgresql+psycopg2://test:test@docker-pg:5432/test"


@contextmanager
def _no_docker(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(testinfra, "LocalBroker", _FakeLocal)
    monkeypatch.setattr(testinfra, "LocalPostgres", _FakeLocal)
    yield


def test_testinfra_env_var_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "envhost:9092")
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    monkeypatch.setattr(testinfra, "docker_available", lambda: pytest.fail("docker must not be probed"))
    assert testinfra.kafka_source() == "env"
    assert testinfra.postgres_source() == "env"
    with testinfra.kafka_bootstrap() as bootstrap, testinfra.postgres_dsn() as dsn:
        assert bootstrap == "envhost:9092"
        assert dsn == "postgresql://postgres@127.0.0.1:5432/test"


def test_testinfra_docker_branch_used_when_engine_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setattr(testinfra, "docker_available", lambda: True)
    monkeypatch.setattr(testinfra, "_import_container", lambda name, cls: _FakeContainer)
    with testinfra.kafka_bootstrap() as bootstrap, testinfra.postgres_dsn() as dsn:
        assert bootstrap == "docker-kafka:9093"
        assert dsn == "postgresql://test:test@docker-pg:5432/test"


def test_testinfra_without_docker_falls_through_quickly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("DEVSTACK_DOCKER", raising=False)
    # An engine address nobody listens on: the real probe must give up fast.
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{free_port()}")
    real_probe = testinfra.docker_available
    real_probe.cache_clear()
    try:
        t0 = time.monotonic()
        assert real_probe() is False
        assert time.monotonic() - t0 < 3.0
        monkeypatch.delenv("DOCKER_HOST")
        real_probe.cache_clear()
        if not any(p.exists() for p in testinfra._docker_socket_candidates()):
            t0 = time.monotonic()
            assert real_probe() is False
            assert time.monotonic() - t0 < 0.5
        monkeypatch.setattr(testinfra, "docker_available", lambda: False)
        with _no_docker(monkeypatch):
            _FakeLocal.started = 0
            with testinfra.kafka_bootstrap() as bootstrap, testinfra.postgres_dsn() as dsn:
                assert bootstrap == "local-broker:1"
                assert dsn == "postgresql://local-embedded/db"
            assert _FakeLocal.started == 2
    finally:
        real_probe.cache_clear()


def test_testinfra_docker_disabled_by_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEVSTACK_DOCKER", "0")
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
    testinfra.docker_available.cache_clear()
    try:
        assert testinfra.docker_available() is False
    finally:
        testinfra.docker_available.cache_clear()


def test_run_id_is_stable_and_identifier_safe() -> None:
    rid = testinfra.run_id()
    assert rid == testinfra.run_id()
    assert rid[0].isalpha()
    assert rid.isalnum()
    assert rid.islower()
    assert len(rid) <= 12
    assert os.environ.get("DEVSTACK_RUN_ID", rid) == rid
