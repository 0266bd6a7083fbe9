"""`python -m tests.chaos [--short|--long] [--seed N] [--scenario NAME …]`"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import shlex
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from tests.chaos.clients import Gateway, Sandbox, Sender
from tests.chaos.oracle import Oracle
from tests.chaos.profiles import PROFILES, Profile
from tests.chaos.report import Machine, section, table, write_results, write_summary
from tests.chaos.runner import Context, ScenarioRun, make_plans, prepare, run_scenario
from tests.chaos.scenarios import DEFAULT_SCENARIOS, SCENARIOS
from tests.chaos.system import ROOT, ChaosSystem, Events, versions

RESULTS = ROOT / "tests" / "chaos" / "RESULTS.md"
DEFAULT_SERVICE_ENV = {"PROCORE_TIMEOUT_S": "5"}
"""The sandbox's timeout fault must outlast the client's timeout without making the run slow."""

S3_SERVICE_ENV = {"KAFKA_FETCH_MAX_WAIT_MS": "2000", "KAFKA_SESSION_TIMEOUT_MS": "15000"}
"""On s3:// storage Tansu answers a fetch whose object listing takes longer than the client's max wait (the services'
default is 50 ms) with no records, also below the high watermark; as a partition grows (and on a loaded machine) every
fetch comes back empty and consumers stop. moto lists 150 objects in up to ~0.5 s on a busy machine, so 500 ms was not
enough either (seed 1001 failed with it); 2 s is. Measured with `python -m tests.chaos.probe_broker_restart` and
described in RESULTS.md ("Findings about the infrastructure"). Tansu keeps a group's state in one s3 object that
every member's heartbeat and commit rewrites (conditional PUTs, retried on conflict): on a busy machine heartbeats
then outlast a 6 s session and members are expelled again and again (UnknownMemberId, rejoin); a 15 s session holds."""

RUNS = ROOT / ".devstack" / "chaos"
KEEP_RUNS = 10


def prune_old_runs(runs: Path, keep: int) -> None:
    """Logs of the last runs only (a long run leaves ~100 MB); never a run of the last hour (it may be going on)."""
    if runs.is_dir():
        for old in sorted(d for d in runs.iterdir() if d.is_dir())[: -keep or None]:
            if time.time() - old.stat().st_mtime > 3600:
                shutil.rmtree(old, ignore_errors=True)


app = typer.Typer(add_completion=False, help=__doc__)


def storage_for(choice: str, scenario: str) -> str:
    """`auto`: durable s3:// storage where the broker is restarted, memory:// elsewhere.

    Tansu's s3 storage lists every object of a partition on each fetch and moto answers such a
    list in about 0.3 ms per object, so on s3 the whole system slows down as partitions grow: fine
    for one scenario's worth of data, not for a whole run (see RESULTS.md).
    """
    if choice == "auto":
        return "s3" if scenario == "broker" else "memory"
    return choice


def service_env_for(storage: str, profile_env: dict[str, str], overrides: dict[str, str]) -> dict[str, str]:
    """The extra settings of every service process: defaults, the storage's, the profile's, then `--service-env`."""
    storage_env = S3_SERVICE_ENV if storage == "s3" else {}
    return {**DEFAULT_SERVICE_ENV, **storage_env, **profile_env, **overrides}


async def _scenario(
    profile: Profile,
    seed: int,
    index: int,
    name: str,
    run_dir: Path,
    service_env: dict[str, str],
    storage: str,
    events: Events,
) -> ScenarioRun:
    """A fresh system per scenario: a verdict is about its own fault, never an earlier one's leftovers."""
    env = service_env_for(storage, profile.service_env, service_env)
    system = ChaosSystem(run_dir / name, profile.instances, env, events, storage)
    sender: Sender | None = None
    gateway: Gateway | None = None
    sandbox: Sandbox | None = None
    try:
        await system.start()
        sender = Sender(system.kafka)
        await sender.start()
        gateway = Gateway(system.gateway_url, system.jwt_secret)
        sandbox = Sandbox(system.sandbox_url)
        rng = random.Random(seed * 100 + index)
        ctx = Context(
            profile, seed, system, sender, gateway, sandbox, Oracle([]), events, rng, datetime.now(UTC).date()
        )
        run = ScenarioRun(name, make_plans(ctx, index, f"{seed % 100000:05d}"), storage=storage)
        await prepare(ctx, [run])
        return await run_scenario(ctx, run, SCENARIOS[name][1])
    finally:
        for client in (gateway, sandbox):
            if client is not None:
                await client.close()
        if sender is not None:
            await sender.stop()
        await system.close()


async def _run(
    profile: Profile,
    seed: int,
    names: list[str],
    run_dir: Path,
    service_env: dict[str, str],
    storage: str,
    events: Events,
) -> list[ScenarioRun]:
    return [
        await _scenario(profile, seed, i, name, run_dir, service_env, storage_for(storage, name), events)
        for i, name in enumerate(names)
    ]


async def _main(run: Awaitable[list[ScenarioRun]]) -> list[ScenarioRun]:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await run


@app.command()
def main(
    short: Annotated[bool, typer.Option("--short", help="The short form (≤ 3 minutes; inside make test).")] = False,
    long: Annotated[bool, typer.Option("--long", help="The long form (make chaos).")] = False,
    seed: Annotated[int | None, typer.Option(help="Seed of every random choice (default: random).")] = None,
    scenario: Annotated[
        list[str] | None, typer.Option(help=f"Run only these (repeatable): {', '.join(SCENARIOS)}.")
    ] = None,
    results: Annotated[Path, typer.Option(help="Markdown file whose block for this form gets the table.")] = RESULTS,
    summary: Annotated[Path | None, typer.Option(help="Also write the verdict as JSON here.")] = None,
    run_dir: Annotated[
        Path | None, typer.Option(help="Where logs go (default .devstack/chaos/<run>; the last 10 runs are kept).")
    ] = None,
    service_env: Annotated[
        list[str] | None, typer.Option(help="KEY=VALUE for every service process (repeatable).")
    ] = None,
    instances: Annotated[
        list[str] | None, typer.Option(help="SERVICE=N instances instead of the profile's (repeatable).")
    ] = None,
    storage: Annotated[
        str, typer.Option(help="Broker storage: auto (s3 for the broker scenario, memory elsewhere), s3, memory.")
    ] = "auto",
) -> None:
    """Run the chaos scenarios against the real system and check the invariants; exit 1 if any fails."""
    if short and long:
        raise typer.BadParameter("choose --short or --long")
    profile = PROFILES["long" if long else "short"]
    if instances:
        counts = {k: int(v) for k, v in (item.split("=", 1) for item in instances)}
        profile = dataclasses.replace(profile, instances={**profile.instances, **counts})
    seed = seed if seed is not None else random.randrange(1, 10**6)
    names = [n for item in (scenario or DEFAULT_SCENARIOS) for n in item.split(",") if n]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise typer.BadParameter(f"unknown scenario(s) {unknown}; choose from {', '.join(SCENARIOS)}")
    if storage not in ("auto", "s3", "memory") or (storage == "memory" and "broker" in names):
        raise typer.BadParameter("--storage is auto, s3 or memory (the broker scenario needs s3)")
    extra = dict(item.split("=", 1) for item in service_env or [])
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    if run_dir is None:
        prune_old_runs(RUNS, keep=KEEP_RUNS - 1)
        run_dir = RUNS / f"{stamp}-{profile.name}-s{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    command = "python -m tests.chaos " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    events = Events()
    events.say(f"chaos {profile.name} form, seed {seed}, scenarios {', '.join(names)}; logs in {run_dir}")
    t0 = time.monotonic()
    try:
        runs = asyncio.run(_main(_run(profile, seed, names, run_dir, extra, storage, events)))
    except (KeyboardInterrupt, asyncio.CancelledError):
        events.say(f"interrupted; everything stopped; logs in {run_dir}")
        raise typer.Exit(130) from None
    except Exception:
        traceback.print_exc()
        events.say(f"the harness failed (not a verdict); logs in {run_dir}")
        raise typer.Exit(2) from None
    total = time.monotonic() - t0
    machine = Machine.describe(versions())
    print("\n" + table(runs), flush=True)
    verdict = "PASS" if all(r.tally.violations == 0 for r in runs) else "FAIL"
    header = [
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, seed {seed}, {verdict}, {total:.0f} s",
        f"Shape: {len(runs[0].plans) if runs else 0} accounts per scenario, {profile.rate} timelog messages/s for "
        f"{profile.load_s:.0f} s, instances {profile.instances}",
        f"Logs: `{run_dir}/<scenario>/logs`",
    ]
    write_results(results, profile.name, section(profile.name, command, machine, runs, header))
    (run_dir / "events.log").write_text("\n".join(events.lines) + "\n")
    if summary is not None:
        write_summary(summary, runs, total)
    events.say(f"{verdict} in {total:.0f}s; table in {results}; logs in {run_dir}")
    raise typer.Exit(0 if verdict == "PASS" else 1)
