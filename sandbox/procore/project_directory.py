"""Project directories: which company people belong to a project (Procore's "Project Directory").

`GET /rest/v1.0/projects/{project_id}/people` lists them (Procore's "List Project People"; not in the OpenAPI
subset, so its shape here — the company-person shape, paginated — is **assumed**). Until the control API sets a
project's directory, every company person is in it (the friendlier default: nobody is missing);
`PUT /_sandbox/projects/{project_id}/people {person_ids: [...]}` sets it (`company_id` in the query). Directories are
kept beside the state (forgotten at reset, with the companies).
"""

from __future__ import annotations

import weakref
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from sandbox.procore import serializers as ser
from sandbox.procore.http_util import paged, query_int, read_body, require_company, sandbox_state
from sandbox.procore.state import Person, ProcoreError, SandboxState

router = APIRouter()

_DIRECTORIES: weakref.WeakKeyDictionary[SandboxState, tuple[object, dict[int, set[int]]]] = weakref.WeakKeyDictionary()


def directories(state: SandboxState) -> dict[int, set[int]]:
    """Project id → the person ids of its directory, for the projects whose directory was set."""
    kept = _DIRECTORIES.get(state)
    if kept is None or kept[0] is not state.companies:
        kept = (state.companies, {})
        _DIRECTORIES[state] = kept
    return kept[1]


def people_of(state: SandboxState, company_id: int, project_id: int) -> list[Person]:
    state.project(company_id, project_id)  # 404 for a project of another company
    people = list(state.companies[company_id].people.values())
    chosen = directories(state).get(project_id)
    return people if chosen is None else [p for p in people if p.id in chosen]


def set_people(state: SandboxState, company_id: int, project_id: int, body: Any) -> list[int]:
    state.project(company_id, project_id)
    ids = body.get("person_ids") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise ProcoreError(400, "person_ids: a list of the company's person ids is required")
    unknown = sorted(set(ids) - set(state.companies[company_id].people))
    if unknown:
        raise ProcoreError(404, f"no such people in company {company_id}: {unknown}")
    directories(state)[project_id] = set(ids)
    return sorted(ids)


@router.get("/rest/v1.0/projects/{project_id}/people")
async def project_people(request: Request, project_id: int) -> Response:
    """The project's directory: the company people added to the project."""
    state = sandbox_state(request)
    return paged(request, people_of(state, require_company(request), project_id), ser.person)


@router.put("/_sandbox/projects/{project_id}/people")
async def put_project_people(request: Request, project_id: int) -> Response:
    """Set who is in the project's directory (`company_id` in the query)."""
    state = sandbox_state(request)
    company_id = query_int(request, "company_id", required=True)
    assert company_id is not None
    if company_id not in state.companies:
        raise ProcoreError(404, f"Company {company_id} not found")
    return JSONResponse({"person_ids": set_people(state, company_id, project_id, await read_body(request))})
