"""The chaos suite's short form inside `make test`: every scenario must keep every invariant.

Runs `python -m tests.chaos --short` as its own process (it owns PostgreSQL, the broker, the sandbox
and every service instance, and cleans them up), then reads its JSON verdict. The seed is random
unless CHAOS_SEED is set; a failure names it so the run can be repeated.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_short_chaos_run_keeps_every_invariant(tmp_path: Path) -> None:
    seed = int(os.environ.get("CHAOS_SEED") or random.randrange(1, 10**6))
    summary = tmp_path / "summary.json"
    command = [
        sys.executable,
        "-m",
        "tests.chaos",
        "--short",
        "--seed",
        str(seed),
        "--results",
        str(tmp_path / "RESULTS.md"),
        "--summary",
        str(summary),
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=880, check=False)
    assert done.returncode in (0, 1), f"the chaos harness itself failed (seed {seed}):\n{done.stdout[-4000:]}"
    verdict = json.loads(summary.read_text())["scenarios"]
    failed = {name: v for name, v in verdict.items() if not v["passed"]}
    report = "\n".join(
        f"- {name}: {v['violations']}\n    e.g. {[e for examples in v['examples'].values() for e in examples[:1]]}"
        for name, v in failed.items()
    )
    table = (tmp_path / "RESULTS.md").read_text()
    assert not failed, f"chaos short form (seed {seed}) broke invariants:\n{report}\n\n{table}"
    assert done.returncode == 0
