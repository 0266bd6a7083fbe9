"""The five faults. Each runs beside the load and the publish commands and records when it started and ended."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

from tests.chaos import poison as poison_kit
from tests.chaos.generator import Outgoing
from tests.chaos.plan import AccountPlan
from tests.chaos.runner import BASE_SANDBOX_SETTINGS, Context, Fault, ScenarioRun, send, sleep_until
from tests.chaos.system import SERVICES
from tests.chaos.verdict import RECORD_KINDS, HumanTouch, record_text


async def postgres_outage(ctx: Context, run: ScenarioRun) -> None:
    """PostgreSQL stopped (fast shutdown) mid-load, started again on the same data and port."""
    await sleep_until(run.start + ctx.profile.fault_at * ctx.profile.load_s)
    run.fault_start = time.monotonic()
    await ctx.system.stop_postgres()
    ctx.events.say(f"postgres stopped for {ctx.profile.postgres_outage_s:.0f}s")
    await asyncio.sleep(ctx.profile.postgres_outage_s)
    ctx.system.start_postgres()
    run.fault_end = time.monotonic()
    ctx.events.say("postgres started again")


async def broker_restart(ctx: Context, run: ScenarioRun) -> None:
    """The broker killed (-9) mid-load and started again on the same durable (s3://) storage."""
    await sleep_until(run.start + ctx.profile.fault_at * ctx.profile.load_s)
    run.fault_start = time.monotonic()
    await ctx.system.kill_broker()
    ctx.events.say(f"broker killed; down for {ctx.profile.broker_outage_s:.0f}s")
    await asyncio.sleep(ctx.profile.broker_outage_s)
    await ctx.system.start_broker()
    run.fault_end = time.monotonic()
    ctx.events.say("broker started again")


async def kill_storm(ctx: Context, run: ScenarioRun) -> None:
    """SIGKILL a random instance of each service in turn, at random moments; restart it after a delay."""
    rng, system, p = ctx.rng, ctx.system, ctx.profile
    restarts: list[asyncio.Task[None]] = []

    async def restart_later(inst: Any, delay: float) -> None:
        await asyncio.sleep(delay)
        await system.start_instance(inst)

    await asyncio.sleep(p.kill_every_s * rng.uniform(0.3, 1.0))
    run.fault_start = time.monotonic()
    kills: list[str] = []
    while time.monotonic() < run.end:
        for service in rng.sample(SERVICES, len(SERVICES)):
            if time.monotonic() >= run.end:
                break
            candidates = [i for i in system.of(service) if i.running]
            if candidates:
                inst = rng.choice(candidates)
                await system.kill(inst)
                kills.append(inst.name)
                restarts.append(asyncio.create_task(restart_later(inst, rng.uniform(*p.kill_down_s))))
            await asyncio.sleep(p.kill_every_s * rng.uniform(0.6, 1.4))
    await asyncio.gather(*restarts)
    run.fault_end = time.monotonic()
    ctx.events.say(f"killed {len(kills)} times: {', '.join(kills)}")


async def procore_faults(ctx: Context, run: ScenarioRun) -> None:
    """5xx, answers lost after the write, timeouts, a 429 storm, token revocation, Procore users' edits."""
    sandbox, p = ctx.sandbox, ctx.profile
    await asyncio.sleep(0.5)
    run.fault_start = time.monotonic()
    forever: dict[str, Any] = {"path": "/rest/*", "times": None}
    for fault in (
        {**forever, "method": "POST", "kind": "status", "status": 500, "probability": 0.08},
        {**forever, "method": "PATCH", "kind": "status", "status": 503, "probability": 0.08, "retry_after": 1},
        {**forever, "method": "POST", "kind": "fail_after_commit", "status": 502, "probability": 0.1},
        {**forever, "method": "PATCH", "kind": "fail_after_commit", "after_commit": "drop", "probability": 0.08},
        {**forever, "method": "DELETE", "kind": "fail_after_commit", "status": 500, "probability": 0.1},
        {**forever, "method": "*", "kind": "timeout", "timeout_s": 7, "probability": 0.02},
    ):
        await sandbox.call("POST", "/faults", fault)
    ctx.events.say("procore: 5xx, fail-after-commit and timeout faults on")

    async def storm() -> None:
        await sleep_until(run.start + 0.4 * p.load_s)
        await sandbox.call("PUT", "/settings", {"rate_limit_spike": 3, "rate_limit_time_scale": 0.2})
        ctx.events.say(f"procore: 429 storm (3 requests per 2 s per company) for {p.storm_s:.0f}s")
        await asyncio.sleep(p.storm_s)
        await sandbox.call("PUT", "/settings", BASE_SANDBOX_SETTINGS)

    async def revocations() -> None:
        for share in (0.3, 0.7):
            await sleep_until(run.start + share * p.load_s)
            answer = await sandbox.call("POST", "/tokens/revoke", {})
            ctx.events.say(f"procore: {answer['revoked']} access tokens revoked")

    async def users() -> None:
        # a few edits and deletes in any case: past the load window while publishing has produced none yet
        deadline = run.end + p.load_s
        while time.monotonic() < run.end or (len(run.touches) < MIN_TOUCHES and time.monotonic() < deadline):
            await asyncio.sleep(p.load_s / 12)
            await touch_a_record(ctx, run)

    await asyncio.gather(storm(), revocations(), users())
    hits = [f"{f['kind']} {f['method']} {f.get('status')}: {f['hits']}" for f in await sandbox.call("GET", "/faults")]
    run.tally.notes.append("Procore faults hit: " + "; ".join(hits))
    await sandbox.call("DELETE", "/faults")
    await sandbox.call("PUT", "/settings", BASE_SANDBOX_SETTINGS)
    run.fault_end = time.monotonic()
    ctx.events.say(f"procore: faults cleared; {len(run.touches)} records edited or deleted by Procore users")


MIN_TOUCHES = 4


async def touch_a_record(ctx: Context, run: ScenarioRun) -> None:
    """A Procore user edits (70 %) or deletes one of the records we published."""
    touched = {t.record_id for t in run.touches}
    candidates: list[tuple[str, dict[str, Any]]] = []
    for plan in run.plans:
        assert plan.procore is not None
        for kind in RECORD_KINDS.values():
            candidates += [
                (kind, r)
                for r in await ctx.sandbox.records(kind, plan.procore.company_id)
                if not r.get("deleted") and r.get("created_by_client_id") == "sandbox-client" and r["id"] not in touched
            ]
    if not candidates:
        return
    kind, record = ctx.rng.choice(candidates)
    fields: dict[str, Any] | None
    if ctx.rng.random() < 0.3:
        fields = None
        await ctx.sandbox.call("DELETE", f"/records/{kind}/{record['id']}")
    else:
        if kind == "manpower_logs":
            fields = {"num_workers": int(record["num_workers"] or 0) + 7}
        elif kind == "timecard_entries":
            fields = {"hours": float(Decimal(str(record["hours"])) + Decimal("1.25"))}
        else:
            fields = {"quantity": int(record["quantity"] or 0) + 13}
        await ctx.sandbox.call("PATCH", f"/records/{kind}/{record['id']}", fields)
    run.touches.append(
        HumanTouch(
            kind,
            int(record["id"]),
            int(record["project_id"]),
            str(record["date"]),
            record_text(kind, record),
            fields,
            time.monotonic(),
        )
    )


async def poison_messages(ctx: Context, run: ScenarioRun) -> None:
    """Poison messages mixed into the valid load (same keys, same partitions)."""
    await sleep_until(run.start + ctx.profile.fault_at * ctx.profile.load_s)
    run.fault_start = time.monotonic()
    plan = run.plans[0]
    ghost = AccountPlan(f"{plan.account_id}-ghost", plan.shape, plan.days)
    run.ghosts.append(ghost)
    outs: list[Outgoing] = poison_kit.poison_messages(plan, ghost.account_id, ctx.rng)
    for out in outs:
        sent = await ctx.sender.send([out]) if not out.valid else []
        if out.valid:
            run.tolerated.add(out.label)
            await send(ctx, run, [out])
        for s in sent:
            run.poison.append((out.label, s.positions))
        await asyncio.sleep(ctx.profile.load_s * 0.4 / len(outs))
    run.fault_end = time.monotonic()
    ctx.events.say(f"sent {len(run.poison)} poison messages and one of an unknown account")


async def calm(ctx: Context, run: ScenarioRun) -> None:
    """No fault: the control that shows the harness and the oracle agree with a healthy system."""


SCENARIOS: dict[str, tuple[str, Fault]] = {
    "postgres": ("PostgreSQL stopped mid-load, then started again", postgres_outage),
    "broker": ("broker killed (-9) mid-load and restarted on durable storage", broker_restart),
    "kill": ("SIGKILL of a random instance of each service, repeatedly", kill_storm),
    "procore": ("Procore faults: 5xx, lost answers, timeouts, 429 storm, token revocation, user edits", procore_faults),
    "poison": ("poison messages mixed into the load", poison_messages),
    "calm": ("no fault (a control run; not part of the default set)", calm),
}
DEFAULT_SCENARIOS = ["postgres", "broker", "kill", "procore", "poison"]
