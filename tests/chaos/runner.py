"""One chaos run: start the system, set accounts up, then each scenario: load + publishing + its fault,
recovery, a final publish, and the invariants checked against the oracle.

Scenarios run one after another on one running system, each on accounts of its own, so a verdict is
about its own fault only.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from tests.chaos import messages as m
from tests.chaos import readback
from tests.chaos.accounts import set_up
from tests.chaos.clients import Gateway, Sandbox, Sender, read_all
from tests.chaos.diagnosis import diagnose
from tests.chaos.generator import Generator, Outgoing
from tests.chaos.oracle import Oracle
from tests.chaos.plan import AccountPlan, work_days
from tests.chaos.profiles import Profile
from tests.chaos.system import ChaosSystem, Events
from tests.chaos.verdict import (
    RECORD_KINDS,
    HumanTouch,
    IssuedCommand,
    SentMessage,
    Tally,
    check_conflicts,
    check_dead_letters,
    check_entries,
    check_procore,
    dead_letter_of,
)

DEAD_LETTER_TOPICS = [m.dead_letter_topic(s) for s in m.DEAD_LETTER_SERVICES]
BASE_SANDBOX_SETTINGS = {"rate_limit_spike": 1000, "rate_limit_hourly": 1_000_000, "rate_limit_time_scale": 1.0}
"""Procore's spike limit (100 per 10 s per company) would make publishing, not faults, fill the time
budget; the 429 storm scenario sets tiny limits on purpose."""


@dataclass
class Context:
    profile: Profile
    seed: int
    system: ChaosSystem
    sender: Sender
    gateway: Gateway
    sandbox: Sandbox
    oracle: Oracle
    events: Events
    rng: random.Random
    today: date


@dataclass
class ScenarioRun:
    """One scenario's accounts, what was sent and done to them, and its outcome."""

    name: str
    plans: list[AccountPlan]
    storage: str = "memory"
    ghosts: list[AccountPlan] = field(default_factory=list)
    start: float = 0.0
    end: float = 0.0
    fault_start: float | None = None
    fault_end: float | None = None
    timelog_messages: int = 0
    load_seconds: float = 0.0
    commands: list[IssuedCommand] = field(default_factory=list)
    touches: list[HumanTouch] = field(default_factory=list)
    poison: list[tuple[str, list[tuple[str, int, int]]]] = field(default_factory=list)
    tolerated: set[str] = field(default_factory=set)
    valid_event_ids: set[str] = field(default_factory=set)
    recover_s: float | None = None
    publish_settle_s: float | None = None
    entries_checked: int = 0
    dead_letters: int = 0
    poison_dead_lettered: int = 0
    tally: Tally = field(default_factory=Tally)
    duration_s: float = 0.0

    @property
    def events(self) -> int:
        return self.timelog_messages + len(self.poison) + len(self.commands)


Fault = Callable[[Context, ScenarioRun], Awaitable[None]]


async def sleep_until(moment: float) -> None:
    await asyncio.sleep(max(0.0, moment - time.monotonic()))


# --- load and publishing ---------------------------------------------------------------------------


async def send(ctx: Context, run: ScenarioRun, outs: list[Outgoing]) -> None:
    for o in outs:
        if o.valid and isinstance(o.value, dict):
            run.valid_event_ids.add(str(o.value["event_id"]))
            if o.topic == m.TIMELOGS and o.value["account_id"] in ctx.oracle.plans:
                ctx.oracle.observe(o.value)
    await ctx.sender.send(outs)


async def drive_load(ctx: Context, run: ScenarioRun, generator: Generator) -> None:
    tick = 0.1
    per_tick = max(1, round(ctx.profile.rate * tick))
    due = time.monotonic()
    while time.monotonic() < run.end or (
        run.fault_start is not None
        and (run.fault_end is None or time.monotonic() < run.fault_end + ctx.profile.after_fault_s)
    ):
        outs = generator.take(per_tick)
        await send(ctx, run, outs)
        run.timelog_messages += len(outs)
        due = max(due + tick, time.monotonic() - 1.0)  # after a stall, catch up for at most a second
        await asyncio.sleep(max(0.0, due - time.monotonic()))
    run.load_seconds = time.monotonic() - run.start


async def issue_command(
    ctx: Context, run: ScenarioRun, plan: AccountPlan, module: str, action: str, scope: dict[str, Any], via: str
) -> None:
    command = IssuedCommand(plan.account_id, module, action, scope, time.monotonic(), via)
    if via == "kafka":
        body = m.publish_entries(plan.account_id, module, action, scope)
        key = f"{plan.account_id}:{scope['job_site_id']}" if scope["kind"] == "cell" else plan.account_id
        run.commands.append(command)
        await send(ctx, run, [Outgoing(m.PUBLISH_COMMANDS, key, body)])
        return
    request: dict[str, Any] = {"action": action, "scope": scope}
    for _ in range(3):  # a force publish confirms a preview; entries changing meanwhile (409) need a fresh one
        if action == "force_publish":
            preview = await ctx.gateway.call(
                "POST", plan.account_id, f"/api/modules/{module}/force-publish/preview", json_body={"scope": scope}
            )
            if preview.status_code != 200:
                response = preview
                break
            request["preview_id"] = preview.json()["preview_id"]
        response = await ctx.gateway.call("POST", plan.account_id, f"/api/modules/{module}/publish", json_body=request)
        if response.status_code != 409 or action != "force_publish":
            break
    if response.status_code == 202:
        run.commands.append(command)
    elif response.status_code != 404:  # 404: no entries in that cell (yet)
        ctx.events.say(f"publish via gateway answered {response.status_code}: {response.text[:200]}")


async def drive_commands(ctx: Context, run: ScenarioRun) -> None:
    rng, tasks = ctx.rng, []
    while time.monotonic() < run.end:
        await asyncio.sleep(ctx.profile.command_every_s * rng.uniform(0.5, 1.5))
        plan = rng.choice(run.plans)
        module = rng.choice(plan.modules)
        action = rng.choices(["publish", "republish", "force_publish"], weights=[65, 20, 15])[0]
        if rng.random() < 0.75:
            scope = m.publish_scope_cell(rng.choice(plan.sites), rng.choice(plan.days))
        else:
            scope = m.publish_scope_range(plan.days[0], plan.days[-1])
        via = "gateway" if rng.random() < 0.7 else "kafka"
        tasks.append(asyncio.create_task(issue_command(ctx, run, plan, module, action, scope, via)))
    await asyncio.gather(*tasks)


# --- recovery --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """What one poll of the dashboards shows, compared with the recompute."""

    differing: int
    """Cells whose numbers differ."""
    non_publishable_differing: int
    """Cells with another number of Non publishable entries (statuses not caught up with the mappings yet)."""
    counts: dict[str, int]
    """Entries per status."""

    def state(self) -> tuple[object, ...]:
        return (self.differing, self.non_publishable_differing, *sorted(self.counts.items()))


async def poll(ctx: Context, run: ScenarioRun) -> Progress:
    differing = non_publishable_differing = 0
    counts: dict[str, int] = {}
    for plan in run.plans:
        view = await readback.dashboard(ctx.gateway, plan)
        differing += readback.cell_differences(view.cells, ctx.oracle.cells(plan.account_id))
        non_publishable_differing += readback.non_publishable_differences(
            view.non_publishable, ctx.oracle.non_publishable(plan.account_id)
        )
        for status, n in view.counts.items():
            counts[status] = counts.get(status, 0) + n
    return Progress(differing, non_publishable_differing, counts)


def recovered(p: Progress) -> bool:
    """Numbers and Non publishable statuses as the recompute says, and nothing Publishing."""
    return p.differing == 0 and p.non_publishable_differing == 0 and not p.counts.get("publishing")


def publish_settled(p: Progress) -> bool:
    """Nothing left to publish or being published, and no entry held back by a mapping change not yet applied
    (it would turn To do after the verdict)."""
    busy = ("publishing", "todo", "updated", "deleted")
    return p.non_publishable_differing == 0 and not any(p.counts.get(s) for s in busy)


async def converge(
    ctx: Context,
    run: ScenarioRun,
    since: float,
    timeout_s: float,
    done: Callable[[Progress], bool],
    wait_for_publishing: bool = True,
) -> float | None:
    """Poll the dashboards until `done(progress)`; seconds since `since`, or None.

    Gives up early when nothing has changed for the profile's stall time and nothing is Publishing (lost
    data does not come back); while entries are Publishing it waits the whole settle time, since a
    re-drive may finish them late — unless `wait_for_publishing` is off (they were given that time once).
    """
    deadline = time.monotonic() + timeout_s
    last: tuple[object, ...] | None = None
    changed_at = time.monotonic()
    while True:
        progress = await poll(ctx, run)
        if done(progress):
            return time.monotonic() - since
        if progress.state() != last:
            last, changed_at = progress.state(), time.monotonic()
        quiet = time.monotonic() - changed_at > ctx.profile.stall_s
        stalled = quiet and not (wait_for_publishing and progress.counts.get("publishing"))
        if stalled or time.monotonic() > deadline:
            waited = f"stalled for {ctx.profile.stall_s:.0f}s" if stalled else f"not settled after {timeout_s:.0f}s"
            run.tally.notes.append(
                f"{waited}: {progress.differing} cells differ from the recompute, "
                f"{progress.non_publishable_differing} in their Non publishable entries; statuses {progress.counts}"
            )
            return None
        await asyncio.sleep(1.0)


async def final_publish(ctx: Context, run: ScenarioRun) -> None:
    """Publish every module's whole date range of every account (a user's 'publish all' after the incident)."""
    for plan in run.plans:
        for module in plan.modules:
            scope = m.publish_scope_range(plan.days[0], plan.days[-1])
            await issue_command(ctx, run, plan, module, "publish", scope, "gateway")


# --- verdict ---------------------------------------------------------------------------------------


async def judge(ctx: Context, run: ScenarioRun) -> None:
    tally = run.tally
    for plan in run.plans:
        assert plan.procore is not None
        expected = ctx.oracle.entries(plan.account_id)
        t0 = time.monotonic()
        seen = await readback.entries(ctx.gateway, plan)
        ctx.events.say(f"read {len(seen)} entries of {plan.account_id} in {time.monotonic() - t0:.1f}s")
        run.entries_checked += len(expected)
        check_entries(tally, expected, seen, after_final_publish=True)
        records = {kind: await ctx.sandbox.records(kind, plan.procore.company_id) for kind in RECORD_KINDS.values()}
        check_procore(tally, plan, seen, records, run.touches, run.commands)
        check_conflicts(tally, seen, run.touches)
    for ghost in run.ghosts:
        for e in await readback.entries(ctx.gateway, ghost):
            tally.add("unexpected", f"{ghost.account_id} (never set up) shows {e.key} [{e.status}]")
    t0 = time.monotonic()
    letters = await read_all(ctx.system.kafka, DEAD_LETTER_TOPICS)  # a fresh system: all are this scenario's
    ctx.events.say(f"read {len(letters)} dead letters in {time.monotonic() - t0:.1f}s")
    run.dead_letters = len(letters)
    sent_at = {pos: SentMessage(s.out.label, s.out.valid, s.event_id) for pos, s in ctx.sender.positions.items()}
    await audit_broker(ctx, run)
    run.poison_dead_lettered = check_dead_letters(
        tally, [dead_letter_of(r) for r in letters], sent_at, run.poison, run.valid_event_ids, run.tolerated
    )


async def audit_broker(ctx: Context, run: ScenarioRun) -> None:
    """Are the timelog messages the broker acknowledged still in the topic? (A note, not a verdict: losing
    acknowledged messages is the broker's failure, and it shows up as lost or wrong entries anyway.)"""
    records = await read_all(ctx.system.kafka, [m.TIMELOGS])
    present = {(r.topic, r.partition, r.offset): r.value for r in records}
    acknowledged = {pos: s for pos, s in ctx.sender.positions.items() if pos[0] == m.TIMELOGS and s.event_id}
    missing = [pos for pos, s in acknowledged.items() if str(s.event_id).encode() not in present.get(pos, b"")]
    if missing:
        run.tally.notes.append(
            f"broker: {len(missing)} of {len(acknowledged)} acknowledged timelog messages are no longer in the "
            f"topic, e.g. {missing[:3]}"
        )


# --- one scenario ----------------------------------------------------------------------------------


async def run_scenario(ctx: Context, run: ScenarioRun, fault: Fault) -> ScenarioRun:
    p = ctx.profile
    ctx.events.say(f"scenario {run.name}: {len(run.plans)} accounts, {p.rate} timelog messages/s for {p.load_s:.0f}s")
    t0 = time.monotonic()
    generator = Generator(run.plans, seed=ctx.rng.randrange(2**32))
    run.start = time.monotonic()
    run.end = run.start + p.load_s
    await asyncio.gather(drive_load(ctx, run, generator), drive_commands(ctx, run), fault(ctx, run))
    fault_end = run.fault_end or time.monotonic()
    await ctx.system.ensure_all_up()
    ctx.events.say(f"scenario {run.name}: load done ({run.timelog_messages} timelog messages); waiting to converge")
    run.recover_s = await converge(ctx, run, fault_end, p.settle_s, recovered)
    ctx.events.say(f"scenario {run.name}: recovered in {run.recover_s}s; final publish")
    t_publish = time.monotonic()
    await final_publish(ctx, run)
    run.publish_settle_s = await converge(
        ctx, run, t_publish, p.publish_settle_s, publish_settled, wait_for_publishing=run.recover_s is not None
    )
    ctx.events.say(f"scenario {run.name}: final publish settled in {run.publish_settle_s}s; checking")
    await judge(ctx, run)
    run.tally.notes += await diagnose(ctx.system.dsn, ctx.system.kafka)
    run.duration_s = time.monotonic() - t0
    ctx.events.say(f"scenario {run.name}: {run.tally.violations} violations ({run.duration_s:.0f}s)")
    return run


def make_plans(ctx: Context, scenario_index: int, run_tag: str) -> list[AccountPlan]:
    days = work_days(ctx.profile.shape.days, ctx.today)
    return [
        AccountPlan(f"ch{run_tag}-s{scenario_index}-a{i}", ctx.profile.shape, days)
        for i in range(ctx.profile.accounts_per_scenario)
    ]


async def prepare(ctx: Context, runs: list[ScenarioRun]) -> None:
    """Sandbox settings and every scenario's accounts, set up before the first fault."""
    await ctx.sandbox.call("PUT", "/settings", {**BASE_SANDBOX_SETTINGS, "fault_seed": ctx.seed})
    plans = [p for r in runs for p in r.plans]
    ctx.oracle.add_plans(plans)
    t0 = time.monotonic()
    await set_up(plans, ctx.sandbox, ctx.sender, ctx.gateway)
    ctx.events.say(f"{len(plans)} accounts set up in {time.monotonic() - t0:.1f}s")
