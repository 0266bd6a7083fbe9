"""The publisher against the Procore sandbox over real HTTP, with a real broker and PostgreSQL.

Each module and operation, conflicts, force, records deleted in Procore, token expiry, 5xx,
timeouts, dropped connections, 429 storms, duplicate delivery, and what Procore cannot take.
After every test, every request the publisher sent is checked against the OpenAPI subset.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import httpx
import pytest

from shared.events import Module, ProcoreOperation, PublishOutcome
from tests.support.publisher import (
    Sandbox,
    payload_for,
    request_for,
    wired_publisher,
)
from tests.support.stack import StackConfig

pytestmark = pytest.mark.integration
MODULES = [Module.MANPOWER, Module.TIMECARD, Module.PRODUCTION_QUANTITY]


def live(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if not r["deleted"]]


# --------------------------------------------------------------------- every module, every operation


@pytest.mark.parametrize("module", MODULES)
async def test_create_update_replace_delete(cfg: StackConfig, sandbox: Sandbox, module: Module) -> None:
    company = await sandbox.company()
    async with wired_publisher(cfg) as (requests, results):
        create = request_for(module, company)
        await requests.send(create)
        created = await results.wait(create.request_id)
        assert created.outcome is PublishOutcome.PUBLISHED, created.message
        (record,) = await sandbox.records(module, company)
        assert record["id"] == created.procore_id
        assert record["project_id"] == company.project
        assert created.procore_updated_at is not None
        assert created.published_payload is not None

        changed = payload_for(module, company, create.marker)
        if module is Module.MANPOWER:
            changed |= {"num_workers": 4, "num_hours": "6.25"}
        elif module is Module.TIMECARD:
            changed |= {"hours": "9.25", "origin_id": create.payload["origin_id"]}
        else:
            changed |= {"quantity": 20}
        update = request_for(module, company, ProcoreOperation.UPDATE, payload=changed, after=created)
        await requests.send(update)
        updated = await results.wait(update.request_id)
        assert updated.outcome is PublishOutcome.PUBLISHED
        assert updated.procore_id == created.procore_id
        (record,) = await sandbox.records(module, company)
        if module is Module.MANPOWER:
            assert record["num_workers"] == 4
            assert Decimal(record["num_hours"]) == Decimal("6.25")
            assert record["vendor"]["id"] == company.vendor
            assert create.marker in record["notes"]
        elif module is Module.TIMECARD:
            assert Decimal(record["hours"]) == Decimal("9.25")
            assert record["party"]["id"] == company.person
            assert record["origin_id"] == create.payload["origin_id"]
            assert record["cost_code"]["id"] == company.cost_code
            assert record["timecard_time_type"]["id"] == company.time_type
        else:
            assert record["quantity"] == 20
            assert record["unit"] == "m3"
            assert record["cost_code"]["id"] == company.cost_code

        replace = request_for(module, company, ProcoreOperation.REPLACE, payload=changed, after=updated)
        await requests.send(replace)
        replaced = await results.wait(replace.request_id)
        assert replaced.outcome is PublishOutcome.PUBLISHED
        assert replaced.procore_id != created.procore_id
        (record,) = await sandbox.records(module, company)
        assert record["id"] == replaced.procore_id

        delete = request_for(module, company, ProcoreOperation.DELETE, after=replaced)
        await requests.send(delete)
        deleted = await results.wait(delete.request_id)
        assert deleted.outcome is PublishOutcome.DELETED
        assert await sandbox.records(module, company) == []

    sent = await sandbox.requests(company.id)
    rest = [(e["method"], e["path"].rsplit("/", 1)[-1].isdigit()) for e in sent if e["path"].startswith("/rest/")]
    # create: POST; update: GET + PATCH; replace: GET + DELETE + POST; delete: GET + DELETE
    assert rest == [
        ("POST", False),
        ("GET", True),
        ("PATCH", True),
        ("GET", True),
        ("DELETE", True),
        ("POST", False),
        ("GET", True),
        ("DELETE", True),
    ]


# --------------------------------------------------------------------- conflicts and force


@pytest.mark.parametrize("module", MODULES)
async def test_edited_in_procore_is_a_conflict_and_force_overwrites(
    cfg: StackConfig, sandbox: Sandbox, module: Module
) -> None:
    company = await sandbox.company()
    edits: dict[Module, dict[str, object]] = {
        Module.MANPOWER: {"num_workers": 9},
        Module.TIMECARD: {"hours": "2.0"},
        Module.PRODUCTION_QUANTITY: {"quantity": 99},
    }
    edit = edits[module]
    async with wired_publisher(cfg) as (requests, results):
        create = request_for(module, company)
        await requests.send(create)
        created = await results.wait(create.request_id)
        assert created.procore_id is not None
        await sandbox.edit(module, created.procore_id, edit)

        for operation in (ProcoreOperation.UPDATE, ProcoreOperation.DELETE, ProcoreOperation.REPLACE):
            attempt = request_for(module, company, operation, payload=create.payload, after=created)
            await requests.send(attempt)
            refused = await results.wait(attempt.request_id)
            assert refused.outcome is PublishOutcome.CONFLICT, operation
            assert refused.message == "changed in Procore since it was published"
        (record,) = await sandbox.records(module, company)
        assert all(Decimal(str(record[k])) == Decimal(str(v)) for k, v in edit.items())  # as the Procore user left it

        force = request_for(module, company, ProcoreOperation.UPDATE, payload=create.payload, after=created, force=True)
        await requests.send(force)
        forced = await results.wait(force.request_id)
        assert forced.outcome is PublishOutcome.PUBLISHED
        assert forced.procore_id == created.procore_id
    (record,) = await sandbox.records(module, company)
    key = next(iter(edit))
    assert Decimal(str(record[key])) == Decimal(str(create.payload[key]))


async def test_conflict_by_content_when_no_baseline_time(cfg: StackConfig, sandbox: Sandbox) -> None:
    company = await sandbox.company()
    async with wired_publisher(cfg) as (requests, results):
        create = request_for(Module.MANPOWER, company)
        await requests.send(create)
        created = await results.wait(create.request_id)
        assert created.procore_id is not None
        await sandbox.edit(Module.MANPOWER, created.procore_id, {"notes": f"changed by the foreman {create.marker}"})
        no_time = created.model_copy(update={"procore_updated_at": None})
        update = request_for(Module.MANPOWER, company, ProcoreOperation.UPDATE, after=no_time)
        await requests.send(update)
        assert (await results.wait(update.request_id)).outcome is PublishOutcome.CONFLICT


async def test_deleted_in_procore(cfg: StackConfig, sandbox: Sandbox) -> None:
    company = await sandbox.company()
    module = Module.TIMECARD
    async with wired_publisher(cfg) as (requests, results):
        create = request_for(module, company)
        await requests.send(create)
        created = await results.wait(create.request_id)
        assert created.procore_id is not None
        await sandbox.delete(module, created.procore_id)

        update = request_for(module, company, ProcoreOperation.UPDATE, payload=create.payload, after=created)
        await requests.send(update)
        refused = await results.wait(update.request_id)
        assert refused.outcome is PublishOutcome.CONFLICT
        assert refused.message == "deleted in Procore since it was published"
        assert await sandbox.records(module, company) == []

        delete = request_for(module, company, ProcoreOperation.DELETE, after=created)
        await requests.send(delete)
        assert (await results.wait(delete.request_id)).outcome is PublishOutcome.DELETED

        force = request_for(module, company, ProcoreOperation.UPDATE, payload=create.payload, after=created, force=True)
        await requests.send(force)
        recreated = await results.wait(force.request_id)
        assert recreated.outcome is PublishOutcome.PUBLISHED
        assert recreated.procore_id != created.procore_id
    (record,) = await sandbox.records(module, company)
    assert record["id"] == recreated.procore_id
    assert record["origin_id"] == create.payload["origin_id"]


# --------------------------------------------------------------------- what Procore cannot take, permanent errors


async def test_values_procore_cannot_take_fail_with_a_reason(cfg: StackConfig, sandbox: Sandbox) -> None:
    company = await sandbox.company()
    async with wired_publisher(cfg) as (requests, results):
        marker = "[mc:cafe]"
        fractional = request_for(
            Module.PRODUCTION_QUANTITY,
            company,
            payload=payload_for(Module.PRODUCTION_QUANTITY, company, marker) | {"quantity": "2.5"},
        )
        too_long = request_for(
            Module.TIMECARD, company, payload=payload_for(Module.TIMECARD, company, marker) | {"hours": "25.00"}
        )
        foreign_vendor = request_for(
            Module.MANPOWER, company, payload=payload_for(Module.MANPOWER, company, marker) | {"contact_id": 4242}
        )
        await requests.send(fractional, too_long, foreign_vendor)
        first = await results.wait(fractional.request_id)
        assert first.outcome is PublishOutcome.FAILED
        assert first.message == "Procore takes whole quantities only; 2.5 m3 is fractional"
        second = await results.wait(too_long.request_id)
        assert second.message == "Procore takes at most 24 hours in one timecard entry; this entry has 25.00 hours"
        third = await results.wait(foreign_vendor.request_id)
        assert third.outcome is PublishOutcome.FAILED
        assert third.message
        assert "4242" in third.message
    sent = [e for e in await sandbox.requests(company.id) if e["path"].startswith("/rest/")]
    assert [e["method"] for e in sent] == ["POST"]
    assert sent[0]["status"] == 422


# --------------------------------------------------------------------- duplicates


async def test_duplicate_delivery_creates_one_record_and_answers_again(cfg: StackConfig, sandbox: Sandbox) -> None:
    company = await sandbox.company()
    async with wired_publisher(cfg) as (requests, results):
        create = request_for(Module.MANPOWER, company)
        await requests.send(create, create)  # the second arrives while the first is in progress
        await results.wait(create.request_id)
        await results.settle(1.0)
        assert len(results.by_request[create.request_id]) == 1
        await requests.send(create)  # long after it was done: the stored result again
        await results.wait(create.request_id, count=2)
    answers = results.by_request[create.request_id]
    assert {(a.outcome, a.procore_id) for a in answers} == {(PublishOutcome.PUBLISHED, answers[0].procore_id)}
    assert len(await sandbox.records(Module.MANPOWER, company)) == 1
    posts = [e for e in await sandbox.requests(company.id) if e["method"] == "POST"]
    assert len(posts) == 1


# --------------------------------------------------------------------- tokens, 5xx, timeouts, dropped connections


async def test_token_expiry_mid_run(cfg: StackConfig, sandbox: Sandbox) -> None:
    company = await sandbox.company()
    async with wired_publisher(cfg) as (requests, results):
        first = request_for(Module.MANPOWER, company)
        await requests.send(first)
        assert (await results.wait(first.request_id)).outcome is PublishOutcome.PUBLISHED
        await sandbox.expire_tokens()
        second = request_for(Module.PRODUCTION_QUANTITY, company)
        await requests.send(second)
        assert (await results.wait(second.request_id)).outcome is PublishOutcome.PUBLISHED
    log = await sandbox.requests(since=sandbox.start_seq)
    statuses = [(e["method"], e["path"].split("/")[-1], e["status"]) for e in log if e["path"] != "/oauth/token"]
    assert ("POST", "quantity_logs", 401) in statuses
    assert statuses[-1] == ("POST", "quantity_logs", 201)
    assert len([e for e in log if e["path"] == "/oauth/token"]) == 2  # first token, then the refresh


async def test_5xx_timeouts_and_dropped_connections_never_duplicate(cfg: StackConfig, sandbox: Sandbox) -> None:
    company = await sandbox.company()
    logs = f"/rest/v1.0/projects/{company.project}/manpower_logs"
    async with wired_publisher(cfg, procore_timeout_s=1.0, publisher_max_tries=2, publisher_retry_base_s=0.2) as (
        requests,
        results,
    ):
        # 500 without handling: the publisher looks for its record, finds none, posts again
        await sandbox.fault(path=logs, method="POST", kind="status", status=500, company_id=company.id)
        plain = request_for(Module.MANPOWER, company)
        await requests.send(plain)
        assert (await results.wait(plain.request_id)).outcome is PublishOutcome.PUBLISHED

        # handled, then 502: the record exists; it is found and adopted, not posted again
        await sandbox.fault(path=logs, method="POST", kind="fail_after_commit", status=502, company_id=company.id)
        committed = request_for(Module.MANPOWER, company)
        await requests.send(committed)
        adopted = await results.wait(committed.request_id)
        assert adopted.outcome is PublishOutcome.PUBLISHED

        # handled, then the connection drops
        await sandbox.fault(path=logs, method="POST", kind="fail_after_commit", after_commit="drop")
        dropped = request_for(Module.MANPOWER, company)
        await requests.send(dropped)
        assert (await results.wait(dropped.request_id)).outcome is PublishOutcome.PUBLISHED

        # a read that times out, then a PATCH answered 503, both retried
        await sandbox.fault(path=f"{logs}/*", method="GET", kind="timeout", timeout_s=2.0)
        await sandbox.fault(path=f"{logs}/*", method="PATCH", kind="status", status=503, retry_after=1)
        update = request_for(
            Module.MANPOWER,
            company,
            ProcoreOperation.UPDATE,
            payload=plain.payload,
            after=(await results.wait(plain.request_id)),
        )
        await requests.send(update)
        assert (await results.wait(update.request_id, timeout_s=40)).outcome is PublishOutcome.PUBLISHED

        # a 500 every time: counted rounds, then Failed with Procore's message (see services/publisher/failures.py)
        await sandbox.fault(path=logs, method="POST", kind="status", status=500, times=None, company_id=company.id)
        doomed = request_for(Module.MANPOWER, company)
        await requests.send(doomed)
        failed = await results.wait(doomed.request_id, timeout_s=40)
        assert failed.outcome is PublishOutcome.FAILED
        assert failed.message == "Sandbox injected error 500"
        await sandbox.clear_faults()

        # the entry's next create looks for a record the failed one may have left first
        retry = request_for(Module.MANPOWER, company, entry_id=doomed.entry_id)
        await requests.send(retry)
        assert (await results.wait(retry.request_id)).outcome is PublishOutcome.PUBLISHED

    records = await sandbox.records(Module.MANPOWER, company)
    markers = sorted(r["notes"] for r in records)
    assert len(records) == 4
    assert len(set(markers)) == 4
    assert adopted.procore_id in {r["id"] for r in records}
    after_doomed = [e for e in await sandbox.requests(company.id) if e["method"] == "GET" and "log_date" in e["query"]]
    assert after_doomed  # reconciliation listed the day (and the retry of the doomed entry did, too)


# --------------------------------------------------------------------- rate limits


async def test_429_storm_blocks_only_that_company_until_reset(cfg: StackConfig, sandbox: Sandbox) -> None:
    stormy, calm = await sandbox.company("Stormy"), await sandbox.company("Calm")
    retry_after = 2
    await sandbox.fault(
        path="/rest/*", kind="status", status=429, retry_after=retry_after, times=3, company_id=stormy.id
    )
    # budgets per company (the sandbox's default counting): under one token both would share one budget (see
    # test_publisher_procore_rules.py::test_companies_under_one_token_share_its_budget)
    async with wired_publisher(cfg, procore_rate_limit_scope="company") as (requests, results):
        storm = [request_for(Module.MANPOWER, stormy) for _ in range(3)]
        quiet = [request_for(Module.PRODUCTION_QUANTITY, calm) for _ in range(10)]
        await requests.send(*storm)
        await asyncio.sleep(0.3)
        await requests.send(*quiet)
        for r in quiet:
            assert (await results.wait(r.request_id)).outcome is PublishOutcome.PUBLISHED
        quiet_done = asyncio.get_running_loop().time()
        for r in storm:
            assert (await results.wait(r.request_id, timeout_s=40)).outcome is PublishOutcome.PUBLISHED
        storm_done = asyncio.get_running_loop().time()
    assert quiet_done < storm_done  # the calm company did not wait for the stormy one's resets

    log = [e for e in await sandbox.requests(stormy.id) if e["path"].startswith("/rest/")]
    rejected = [e for e in log if e["status"] == 429]
    assert len(rejected) == 3
    for e in rejected:
        later = [x for x in log if x["seq"] > e["seq"]]
        assert later, "a request came before the reset"
        assert later[0]["timestamp"] >= e["timestamp"] + retry_after, "a request came before the reset"
    calm_log = [e for e in await sandbox.requests(calm.id) if e["path"].startswith("/rest/")]
    assert calm_log[0]["timestamp"] < rejected[-1]["timestamp"] + retry_after
    assert len(await sandbox.records(Module.MANPOWER, stormy)) == 3


async def test_spent_budget_waits_for_the_reset_header(cfg: StackConfig, sandbox: Sandbox) -> None:
    """Another app spends the company's budget: the publisher's 429 makes it wait until the reset, then go on."""
    company = await sandbox.company()
    await sandbox.settings(rate_limit_spike=6, rate_limit_hourly=1000, rate_limit_time_scale=0.3)  # 6 per 3 s
    async with httpx.AsyncClient(base_url=sandbox.url) as other:
        token = (
            await other.post(
                "/oauth/token",
                json={
                    "grant_type": "client_credentials",
                    "client_id": "sandbox-client",
                    "client_secret": "sandbox-secret",
                },
            )
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}", "Procore-Company-Id": str(company.id)}
        async with wired_publisher(cfg) as (requests, results):
            spent = None
            while spent is None:
                r = await other.get(f"/rest/v1.0/projects/{company.project}/quantity_logs", headers=headers)
                if r.headers.get("x-rate-limit-remaining") == "0":
                    spent = float(r.headers["x-rate-limit-reset"])
            batch = [request_for(Module.TIMECARD, company) for _ in range(8)]
            await requests.send(*batch)
            for b in batch:
                assert (await results.wait(b.request_id, timeout_s=40)).outcome is PublishOutcome.PUBLISHED
    log = [e for e in await sandbox.requests(company.id) if e["path"].startswith("/rest/") and e["method"] == "POST"]
    rejected = [e for e in log if e["status"] == 429]
    for e in rejected:
        later = [x for x in log if x["seq"] > e["seq"]]
        assert later[0]["timestamp"] >= spent, "a request came before X-Rate-Limit-Reset"
    assert len(rejected) <= 1  # one probe learns the window; after that the headers pace every call
    assert len(live(await sandbox.records(Module.TIMECARD, company))) == 8


# --------------------------------------------------------------------- trace context


async def test_result_carries_the_request_trace(cfg: StackConfig, sandbox: Sandbox) -> None:
    company = await sandbox.company()
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    async with wired_publisher(cfg) as (requests, results):
        request = request_for(Module.MANPOWER, company)
        await requests.send(request, headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
        await results.wait(request.request_id)
    (headers,) = results.headers[request.request_id]
    assert headers["traceparent"].split("-")[1] == trace_id


async def test_many_companies_publish_side_by_side(cfg: StackConfig, sandbox: Sandbox) -> None:
    companies = [await sandbox.company(f"Co{i}") for i in range(6)]
    async with wired_publisher(cfg) as (requests, results):
        batch = [request_for(m, c) for c in companies for m in MODULES for _ in range(3)]
        await requests.send(*batch)
        for r in batch:
            assert (await results.wait(r.request_id)).outcome is PublishOutcome.PUBLISHED
    for c in companies:
        for m in MODULES:
            assert len(await sandbox.records(m, c)) == 3
