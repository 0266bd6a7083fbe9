"""A local trace viewer for `make run`: Arize Phoenix (PyPI `arize-phoenix`), which accepts OTLP over HTTP.

Phoenix lives in a virtualenv of its own, `.venv-traces` (`make traces-viewer` makes it), so its many
dependencies never constrain the services'. `make run` starts it when it is there (or `TRACE_VIEWER` names its
`phoenix` executable), points every service's OTLP exporter at it and prints its URL under the dashboard's; each
step of an entry's publish history then links to its trace (`TRACE_URL_TEMPLATE`, `/redirects/traces/<id>`).
Jaeger stays the viewer of docker compose; it has no package in the registries this project installs from.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from devstack.ports import free_port
from devstack.processes import ServiceSpec

VIEWER_VENV = Path(".venv-traces")


def find_viewer() -> str | None:
    """The `phoenix` executable: TRACE_VIEWER, else .venv-traces, else PATH; None when there is none (or off)."""
    configured = os.environ.get("TRACE_VIEWER", "")
    if configured.lower() in ("off", "false", "0", "none"):
        return None
    if configured:
        return configured
    local = VIEWER_VENV / "bin" / "phoenix"
    if local.exists():
        return str(local.resolve())
    return shutil.which("phoenix")


@dataclass(frozen=True)
class TraceViewer:
    spec: ServiceSpec
    url: str
    """The UI, and the OTLP/HTTP endpoint (`/v1/traces` is appended by the exporters)."""

    @property
    def trace_url_template(self) -> str:
        return f"{self.url}/redirects/traces/{{trace_id}}"


def trace_viewer(executable: str, state_dir: Path) -> TraceViewer:
    port = free_port()
    work_dir = state_dir / "phoenix"
    work_dir.mkdir(parents=True, exist_ok=True)
    spec = ServiceSpec(
        name="traces",
        argv=[executable, "serve"],
        env={
            "PHOENIX_HOST": "127.0.0.1",
            "PHOENIX_PORT": str(port),
            "PHOENIX_GRPC_PORT": str(free_port()),
            "PHOENIX_WORKING_DIR": str(work_dir.resolve()),
            "PHOENIX_TELEMETRY_ENABLED": "false",
        },
        health_url=f"http://127.0.0.1:{port}/healthz",
        ready_timeout=180.0,
        console=False,  # its start-up banner is long; .devstack/logs/traces.log has it
    )
    return TraceViewer(spec, f"http://127.0.0.1:{port}")
