"""Helpers for publisher tests: a Procore sandbox handle, publish requests per module, results by request id,
and the check that every request sent to the sandbox matches Procore's OpenAPI subset."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from sandbox.procore.spec import validate_request
from shared.events import Module, ProcoreOperation, ProcorePublishFinished, PublishToProcore

DAY = date(2026, 11, 20)
KIND = {
    Module.MANPOWER: "manpower_logs",
    Module.TIMECARD: "timecard_entries",
    Module.PRODUCTION_QUANTITY: "quantity_logs",
}


@dataclass(frozen=True)
class Company:
    id: int
    project: int
    vendor: int
    person: int
    time_type: int
    cost_code: int


class Sandbox:
    """The sandbox's control API (`/_sandbox`), as a Procore user or an operator would use it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.AsyncClient(base_url=url, timeout=30)
        self.start_seq = 0
        """The request log's last `seq` when the test began."""

    async def aclose(self) -> None:
        await self.http.aclose()

    async def company(self, name: str = "Builders") -> Company:
        response = await self.http.post(
            "/_sandbox/companies",
            json={
                "name": f"{name} {uuid.uuid4().hex[:6]}",
                "projects": [{"name": "Tower A", "cost_codes": [{"full_code": "03-300", "name": "Concrete"}]}],
                "vendors": [{"name": "Acme Framing"}],
                "people": [{"first_name": "Ada", "last_name": "Lovelace", "employee_id": "E1"}],
            },
        )
        response.raise_for_status()
        body = response.json()
        project = body["projects"][0]
        return Company(
            id=body["company_id"],
            project=project["id"],
            vendor=body["vendors"][0],
            person=body["people"][0],
            time_type=body["timecard_time_types"][0]["id"],
            cost_code=project["cost_codes"][0]["id"],
        )

    async def records(self, module: Module, company: Company, live_only: bool = True) -> list[dict[str, Any]]:
        response = await self.http.get(f"/_sandbox/records/{KIND[module]}", params={"company_id": company.id})
        response.raise_for_status()
        records: list[dict[str, Any]] = response.json()
        return [r for r in records if not (live_only and r.get("deleted"))]

    async def edit(self, module: Module, record_id: int, fields: dict[str, Any]) -> dict[str, Any]:
        response = await self.http.patch(f"/_sandbox/records/{KIND[module]}/{record_id}", json=fields)
        response.raise_for_status()
        edited: dict[str, Any] = response.json()
        return edited

    async def delete(self, module: Module, record_id: int) -> None:
        (await self.http.delete(f"/_sandbox/records/{KIND[module]}/{record_id}")).raise_for_status()

    async def fault(self, **spec: Any) -> None:
        (await self.http.post("/_sandbox/faults", json=spec)).raise_for_status()

    async def clear_faults(self) -> None:
        (await self.http.delete("/_sandbox/faults")).raise_for_status()

    async def settings(self, **values: Any) -> None:
        (await self.http.put("/_sandbox/settings", json=values)).raise_for_status()

    async def expire_tokens(self) -> None:
        (await self.http.post("/_sandbox/tokens/expire")).raise_for_status()

    async def requests(self, company_id: int | None = None, since: int = 0) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"since": since}
        if company_id is not None:
            params["company_id"] = company_id
        response = await self.http.get("/_sandbox/requests", params=params)
        response.raise_for_status()
        entries: list[dict[str, Any]] = response.json()
        return entries

    async def last_seq(self) -> int:
        entries = await self.requests()
        return max((e["seq"] for e in entries), default=0)


def assert_match_spec(entries: list[dict[str, Any]]) -> int:
    """Every logged request (not dropped before it was read) validates against the OpenAPI subset."""
    checked = 0
    for e in entries:
        if not e["path"].startswith(("/rest/", "/oauth/token")):
            continue
        headers = {k: str(v) for k, v in e["headers"].items() if v not in (None, False) and k != "authorization"}
        if e["headers"].get("authorization"):
            headers["Authorization"] = "Bearer logged-token"
        url = f"https://api.procore.com{e['path']}" + (f"?{e['query']}" if e["query"] else "")
        body = e["body"]
        if isinstance(body, dict) and "***" in body.values():
            body = {k: ("redacted" if v == "***" else v) for k, v in body.items()}
        validate_request(e["method"], url, headers, None if body is None else json.dumps(body).encode())
        checked += 1
    return checked


def payload_for(module: Module, company: Company, marker: str, **overrides: Any) -> dict[str, Any]:
    """The body the aggregator would send (inside its wrapper key)."""
    if module is Module.MANPOWER:
        base: dict[str, Any] = {
            "date": DAY.isoformat(),
            "num_workers": 3,
            "num_hours": "8.00",
            "contact_id": company.vendor,
            "notes": f"Framers {marker}",
        }
    elif module is Module.TIMECARD:
        base = {
            "date": DAY.isoformat(),
            "hours": "7.50",
            "party_id": company.person,
            "timecard_time_type_id": company.time_type,
            "cost_code_id": company.cost_code,
            "origin_id": uuid.uuid4().int >> 75,
            "origin_data": marker,
            "description": marker,
        }
    else:
        base = {
            "date": DAY.isoformat(),
            "quantity": 12,
            "unit": "m3",
            "cost_code_id": company.cost_code,
            "description": marker,
        }
    return base | overrides


def request_for(
    module: Module,
    company: Company,
    operation: ProcoreOperation = ProcoreOperation.CREATE,
    *,
    entry_id: uuid.UUID | None = None,
    payload: dict[str, Any] | None = None,
    after: ProcorePublishFinished | None = None,
    force: bool = False,
    account_id: str = "acc-pub",
) -> PublishToProcore:
    """A publish request; `after` is the previous result of the same entry (its Procore id and baseline)."""
    entry = entry_id or (after.entry_id if after else uuid.uuid4())
    marker = f"[mc:{entry.hex[:16]}]"
    return PublishToProcore(
        account_id=account_id,
        entry_id=entry,
        entry_version=1,
        module=module,
        operation=operation,
        procore_company_id=company.id,
        procore_project_id=company.project,
        work_date=DAY,
        payload={} if operation is ProcoreOperation.DELETE else (payload or payload_for(module, company, marker)),
        marker=marker,
        procore_id=after.procore_id if after else None,
        published_updated_at=after.procore_updated_at if after else None,
        published_payload=after.published_payload if after else None,
        force=force,
    )


class Results:
    """Publish results as they arrive, by request id (one consumer for the whole test)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
        )
        self.by_request: dict[uuid.UUID, list[ProcorePublishFinished]] = {}
        self.headers: dict[uuid.UUID, list[dict[str, str]]] = {}

    async def __aenter__(self) -> Results:
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def _poll(self) -> None:
        batch = await self._consumer.getmany(timeout_ms=100)
        for records in batch.values():
            for record in records:
                result = ProcorePublishFinished.model_validate_json(record.value)
                self.by_request.setdefault(result.request_id, []).append(result)
                headers = {k: v.decode() for k, v in (record.headers or ())}
                self.headers.setdefault(result.request_id, []).append(headers)

    async def wait(self, request_id: uuid.UUID, count: int = 1, timeout_s: float = 30.0) -> ProcorePublishFinished:
        deadline = time.monotonic() + timeout_s
        while len(self.by_request.get(request_id, [])) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"no result for request {request_id} within {timeout_s}s")
            await self._poll()
        return self.by_request[request_id][0]

    async def settle(self, seconds: float) -> None:
        """Keep reading for a while (to see that nothing more arrives)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await self._poll()


class Requests:
    """A producer of publish requests onto the request topic (with an optional trace context)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        self._topic = topic

    async def __aenter__(self) -> Requests:
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    async def send(self, *requests: PublishToProcore, headers: dict[str, str] | None = None) -> None:
        for request in requests:
            await self._producer.send_and_wait(
                self._topic,
                request.model_dump_json().encode(),
                key=f"{request.account_id}:{request.procore_project_id}".encode(),
                headers=[(k, v.encode()) for k, v in (headers or {}).items()],
            )


async def wait_until(check: Any, timeout_s: float = 20.0, interval_s: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval_s)
