"""Publisher use cases: make Procore hold exactly one record with the entry's content."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import httpx

from services.publisher import domain
from services.publisher.adapters.attempts import AttemptLog
from services.publisher.domain import RESOURCES, Verdict
from shared.events import ProcoreOperation, ProcorePublishFinished, PublishOutcome, PublishToProcore
from shared.procore import ProcoreClient, ProcoreError

log = logging.getLogger(__name__)


async def handle_publish_request(
    request: PublishToProcore, attempts: AttemptLog, procore: ProcoreClient
) -> ProcorePublishFinished:
    """Run one request at most once in effect; a redelivered request gets the stored result again."""
    before = await attempts.begin(request.request_id, request.entry_id, request.account_id, request.operation.value)
    if before.state == "done" and before.result is not None:
        return ProcorePublishFinished.model_validate(before.result)
    recovering = before.state == "started"
    try:
        result = await _execute(request, procore, recovering)
    except ProcoreError as error:
        result = _finished(request, PublishOutcome.FAILED, message=error.message)
    except httpx.TransportError as error:
        result = _finished(request, PublishOutcome.FAILED, message=f"Procore could not be reached: {error!r}")
    await attempts.finish(request.request_id, result.procore_id, result.model_dump(mode="json"))
    return result


def _finished(
    request: PublishToProcore,
    outcome: PublishOutcome,
    record: dict[str, Any] | None = None,
    message: str | None = None,
    payload: dict[str, Any] | None = None,
) -> ProcorePublishFinished:
    updated_at = domain.parse_time(record.get("updated_at")) if record else None
    return ProcorePublishFinished(
        account_id=request.account_id,
        request_id=request.request_id,
        entry_id=request.entry_id,
        entry_version=request.entry_version,
        module=request.module,
        outcome=outcome,
        procore_id=int(record["id"]) if record else None,
        procore_updated_at=updated_at,
        published_payload=payload,
        message=message,
    )


async def _fetch(request: PublishToProcore, procore: ProcoreClient, record_id: int) -> dict[str, Any] | None:
    resource = RESOURCES[request.module]
    path = resource.item(request.procore_company_id, request.procore_project_id, record_id)
    try:
        record = await procore.get_json(path, request.procore_company_id)
    except ProcoreError as error:
        if error.status == 404:
            return None
        raise
    if isinstance(record, dict) and record.get("deleted_at"):
        return None
    return record if isinstance(record, dict) else None


async def _find_own_record(request: PublishToProcore, procore: ProcoreClient) -> dict[str, Any] | None:
    resource = RESOURCES[request.module]
    path = resource.collection(request.procore_company_id, request.procore_project_id)
    records = [
        r
        async for r in procore.paginate(
            path, request.procore_company_id, resource.list_params(request.work_date.isoformat())
        )
    ]
    return domain.find_marked(records, resource.marker_field, request.marker)


async def _create(request: PublishToProcore, procore: ProcoreClient, recovering: bool) -> dict[str, Any]:
    resource = RESOURCES[request.module]
    if recovering:
        # An earlier try may have created the record and died before recording it: adopt it.
        adopted = await _find_own_record(request, procore)
        if adopted is not None:
            log.info("adopting Procore record %s for entry %s", adopted.get("id"), request.entry_id)
            return await _update(request, procore, int(adopted["id"]))
    path = resource.collection(request.procore_company_id, request.procore_project_id)
    response = await procore.request(
        "POST",
        path,
        request.procore_company_id,
        json=resource.body(request.procore_project_id, request.payload),
    )
    record: dict[str, Any] = response.json()
    return record


async def _update(request: PublishToProcore, procore: ProcoreClient, record_id: int) -> dict[str, Any]:
    resource = RESOURCES[request.module]
    response = await procore.request(
        "PATCH",
        resource.item(request.procore_company_id, request.procore_project_id, record_id),
        request.procore_company_id,
        json=resource.body(request.procore_project_id, request.payload),
    )
    record: dict[str, Any] = response.json()
    return record


async def _delete(request: PublishToProcore, procore: ProcoreClient, record_id: int) -> None:
    resource = RESOURCES[request.module]
    await procore.request(
        "DELETE",
        resource.item(request.procore_company_id, request.procore_project_id, record_id),
        request.procore_company_id,
    )


async def _execute(request: PublishToProcore, procore: ProcoreClient, recovering: bool) -> ProcorePublishFinished:
    op = request.operation
    published = PublishOutcome.PUBLISHED
    if op is ProcoreOperation.CREATE or request.procore_id is None:
        record = await _create(request, procore, recovering)
        return _finished(request, published, record, payload=request.payload)

    current = await _fetch(request, procore, request.procore_id)
    deleting = op in (ProcoreOperation.DELETE, ProcoreOperation.REPLACE)
    verdict, reason = domain.judge_existing(current, _baseline(request), request.force, deleting)
    if verdict is Verdict.CONFLICT:
        return _finished(request, PublishOutcome.CONFLICT, current, message=reason)

    if op is ProcoreOperation.UPDATE:
        if verdict is Verdict.RECREATE:
            record = await _create(request, procore, recovering)
        else:
            record = await _update(request, procore, request.procore_id)
        return _finished(request, published, record, payload=request.payload)

    if verdict is Verdict.PROCEED:
        await _delete(request, procore, request.procore_id)
    if op is ProcoreOperation.DELETE:
        return _finished(request, PublishOutcome.DELETED)
    record = await _create(request, procore, recovering)
    return _finished(request, published, record, payload=request.payload)


def _baseline(request: PublishToProcore) -> datetime | None:
    return request.published_updated_at
