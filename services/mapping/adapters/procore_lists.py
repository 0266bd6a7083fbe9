"""Procore's lists behind each mapping tab, read whole (every page) through the shared client."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.mapping.adapters.procore_entities import SyncedEntity
from services.mapping.proof import ReachedCompany
from shared.events import ProcoreEntity
from shared.procore import ProcoreClient, budget_key
from shared.procore.client import REST

PER_PAGE = 1000
"""Procore recommends per_page ≤ 2,000; the sandbox clamps to its own maximum and `Link` tells us the rest."""


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _person_name(item: dict[str, Any]) -> str:
    name = " ".join(p for p in (_text(item.get("first_name")), _text(item.get("last_name"))) if p)
    return name or _text(item.get("name")) or f"Person {item['id']}"


async def companies(client: ProcoreClient, header_company: int | None = None) -> list[ReachedCompany]:
    """The companies the connection can act for: with a user's token, the user's own companies; with a customer's
    service account, the companies that installed it (`header_company`: named in Procore-Company-Id, as Procore's
    documentation asks of service accounts)."""
    found = []
    async for item in client.paginate(f"{REST}/companies", header_company, per_page=PER_PAGE):
        name = _text(item.get("name")) or f"Company {item['id']}"
        found.append(ReachedCompany(int(item["id"]), name, bool(item.get("is_active", True))))
    return found


async def directory(client: ProcoreClient, company_id: int, project_id: int) -> list[int]:
    """The person ids of a project's directory (Procore's project people)."""
    path = f"{REST}/projects/{project_id}/people"
    return [int(p["id"]) async for p in client.paginate(path, company_id, per_page=PER_PAGE)]


async def fetch(
    client: ProcoreClient, entity: ProcoreEntity, company_id: int, project_id: int | None = None
) -> list[SyncedEntity]:
    """The whole current Procore list of one tab (cost codes: of one project)."""
    items: list[SyncedEntity] = []
    if entity is ProcoreEntity.VENDOR:
        async for v in client.paginate(f"{REST}/vendors", company_id, {"company_id": company_id}, PER_PAGE):
            items.append(SyncedEntity(int(v["id"]), _text(v.get("name")) or f"Vendor {v['id']}", None))
    elif entity is ProcoreEntity.PROJECT:
        async for p in client.paginate(f"{REST}/projects", company_id, {"company_id": company_id}, PER_PAGE):
            items.append(
                SyncedEntity(int(p["id"]), _text(p.get("name")) or f"Project {p['id']}", _text(p.get("project_number")))
            )
    elif entity is ProcoreEntity.EMPLOYEE:
        path = f"{REST}/companies/{company_id}/people"
        async for person in client.paginate(path, company_id, {"filters[is_employee]": "true"}, PER_PAGE):
            items.append(SyncedEntity(int(person["id"]), _person_name(person), _text(person.get("employee_id"))))
    elif entity is ProcoreEntity.CLASSIFICATION:
        path = f"{REST}/companies/{company_id}/work_classifications"
        async for w in client.paginate(path, company_id, None, PER_PAGE):
            items.append(
                SyncedEntity(
                    int(w["id"]),
                    _text(w.get("name")) or f"Classification {w['id']}",
                    _text(w.get("abbreviation")),
                    tuple(int(p) for p in (w.get("project_ids") or [])),
                )
            )
    elif entity is ProcoreEntity.COST_CODE:
        if project_id is None:
            raise ValueError("cost codes are listed per project")
        async for c in client.paginate(f"{REST}/cost_codes", company_id, {"project_id": project_id}, PER_PAGE):
            items.append(
                SyncedEntity(int(c["id"]), _text(c.get("name")) or f"Cost code {c['id']}", _text(c.get("full_code")))
            )
    else:
        items = await payroll_types(client, company_id, project_id)
    return items


async def payroll_types(client: ProcoreClient, company_id: int, project_id: int | None) -> list[SyncedEntity]:
    """Company timecard time types (not paginated). The company list carries only id and time_type, so the
    abbreviation (`abbreviated_time_type`, what auto-map compares) comes from a mapped project's list."""
    listed = await client.get_json(f"{REST}/companies/{company_id}/timecard_time_types", company_id)
    abbreviations: dict[int, str | None] = {int(t["id"]): _text(t.get("abbreviated_time_type")) for t in listed}
    if project_id is not None and not all(abbreviations.values()):
        path = f"{REST}/timecard_time_types"
        async for t in client.paginate(path, company_id, {"project_id": project_id}, PER_PAGE):
            if int(t["id"]) in abbreviations and _text(t.get("abbreviated_time_type")):
                abbreviations[int(t["id"])] = _text(t.get("abbreviated_time_type"))
    return [
        SyncedEntity(int(t["id"]), _text(t.get("time_type")) or f"Time type {t['id']}", abbreviations[int(t["id"])])
        for t in listed
    ]


def names(items: Sequence[SyncedEntity]) -> dict[int, str]:
    return {i.procore_id: i.name for i in items}


class AccountLists:
    """These lists through one account's client (`procore_link.client_for`): the use cases' `ports.ProcoreLists`."""

    def __init__(self, client: ProcoreClient) -> None:
        self._client = client

    async def companies(self, header_company: int | None = None) -> list[ReachedCompany]:
        return await companies(self._client, header_company)

    async def fetch(self, entity: ProcoreEntity, company_id: int, project_id: int | None = None) -> list[SyncedEntity]:
        return await fetch(self._client, entity, company_id, project_id)

    async def directory(self, company_id: int, project_id: int) -> list[int]:
        return await directory(self._client, company_id, project_id)

    def held_up_s(self, company_id: int) -> float:
        return self._client.limiter.delay_for(budget_key(company_id))
