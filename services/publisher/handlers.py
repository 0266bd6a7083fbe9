"""Publisher use cases: take each request once, then make Procore hold exactly one record with the entry's content."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter

from services.publisher import domain
from services.publisher.adapters.attempts import Pending, Started
from services.publisher.adapters.procore import MaybeCreated
from services.publisher.bulk_run import BulkRun
from services.publisher.failures import Failure, classify, message_for
from services.publisher.lease import Lease, LeaseLost
from services.publisher.ports import Attempts, RecordsFor
from services.publisher.publication import Publication, failed, finished
from shared.events import ProcorePublishFinished, PublishOutcome, PublishRequest, PublishToProcore
from shared.outbox import trace_headers
from shared.procore import ProcoreError
from shared.records import DeadLetterSink, parse_records

log = logging.getLogger(__name__)
_request: TypeAdapter[PublishToProcore] = TypeAdapter(PublishRequest)


def parse_requests(
    records: Sequence[Any],
) -> tuple[list[tuple[PublishToProcore, dict[str, str]]], list[tuple[Any, str]]]:
    """Kafka records → (request, its trace context) pairs, and (record, reason) for what cannot be read."""
    parsed, rejects = parse_records(records, _request)
    valid: list[tuple[PublishToProcore, dict[str, str]]] = []
    for record, request in parsed:
        headers = {k: v.decode(errors="replace") for k, v in (record.headers or ())}
        valid.append((request, {k: v for k, v in headers.items() if k in ("traceparent", "tracestate")}))
    return valid, rejects


async def accept_records(
    records: Sequence[Any],
    attempts: Attempts,
    wake: Callable[[int], None],
    dead_letters: DeadLetterSink,
) -> int:
    """Store a batch of publish requests, each once; one answered before has its stored result queued again.

    Returns how many results were queued again (the caller wakes the outbox relay)."""
    valid, rejects = parse_requests(records)
    for record, reason in rejects:
        await dead_letters.send(record, reason)
    if not valid:
        return 0
    again = 0
    for (request, _), received in zip(valid, await attempts.receive(valid), strict=True):
        if received.state == "done":
            again += received.result is not None
        else:
            wake(request.procore_company_id)
    return again


async def process_request(
    pending: Pending,
    lease: Lease,
    attempts: Attempts,
    records_for: RecordsFor,
    max_tries: int = 8,
    *,
    not_created: bool = False,
) -> ProcorePublishFinished:
    """Send one stored request to Procore, then store its result and queue its event together.

    Raises (the request stays pending, its worker backs off and tries again) while something it needs is
    unavailable, and `LeaseLost` when another instance took the company over."""
    request = pending.request
    started = await attempts.start(request.request_id, lease)
    if not_created:  # a bulk call refused this item, after any look-up it needed: nothing of it is in Procore
        started = Started(started.tries, False, started.deleted_by_us)
    records = records_for(request, lease)
    run = Publication(request, records, started, attempts, lease)
    try:
        try:
            result = await run.perform()
        except ProcoreError as error:
            if not run.refused_for_start_stop(error):
                raise
            # the project's timesheet takes start and stop times: learnt once, then every entry is sent so
            records.start_stop_projects.add(request.procore_project_id)
            log.info("Procore project %s takes start/stop times; sending clock times", request.procore_project_id)
            run = Publication(request, records, started, attempts, lease, reconciled=run.reconciled)
            result = await run.perform()
        outcome = Outcome(result, reconciled=run.reconciled)
    except LeaseLost:
        raise
    except Exception as error:
        failure = classify(error)
        if failure is Failure.UNAVAILABLE:
            raise
        message = message_for(error)
        refused = _refusal(request, error)
        if refused is not None:
            log.info("request %s refused by Procore: %s (%s)", request.request_id, refused, message)
            outcome = Outcome(failed(request, refused), reconciled=run.reconciled)
            await attempts.finish(outcome.result, lease, trace_headers(), reconciled=outcome.reconciled)
            return outcome.result
        if failure is Failure.SERVER_ERROR:
            errors = await attempts.note_error(request.request_id, message, lease)
            if errors < max_tries:
                raise
            log.warning("request %s failed %d rounds (%s): failing its entry", request.request_id, errors, message)
        # a create may have landed unseen: the entry's next create looks for it first
        uncertain = isinstance(error, MaybeCreated) or failure is Failure.SERVER_ERROR
        outcome = Outcome(failed(request, message), uncertain=uncertain, reconciled=run.reconciled)
    await attempts.finish(
        outcome.result, lease, trace_headers(), uncertain=outcome.uncertain, reconciled=outcome.reconciled
    )
    return outcome.result


async def process_bulk(
    group: Sequence[Pending],
    lease: Lease,
    attempts: Attempts,
    records_for: RecordsFor,
    max_tries: int = 8,
    bulk_refused: set[int] | None = None,
) -> list[ProcorePublishFinished]:
    """Create a run of timecard entries (`domain.bulk_groups`) with one Procore `bulk_create` call.

    The same guarantees as one by one: a run with a request started before (a crash, a lost answer) first looks for
    its records (one listing for the run) and adopts what it finds; an answer lost on the way makes it look again
    before anything is sent again (the rest stays pending, and its worker tries again); each created record is
    matched to its request by our `origin_id`; an item Procore refused goes on its own (`process_request`), which
    words its Failed reason, learns a start/stop project, and so on. A company where `bulk_create` is refused as a
    whole (403: no beta access) is remembered in `bulk_refused` and published one by one from then on."""
    refused_companies = bulk_refused if bulk_refused is not None else set()
    if len(group) == 1 or lease.company_id in refused_companies:
        return [await process_request(p, lease, attempts, records_for, max_tries) for p in group]
    run = BulkRun(list(group), lease, attempts, records_for(group[0].request, lease))
    try:
        todo = await run.prepare()
        if run.recovering and todo:
            todo = await run.adopt_listed(todo)
        if not todo:
            return run.results
        answer = await run.records.bulk_create([domain.bulk_item(body, run.records.project_id) for _, body in todo])
    except LeaseLost:
        raise
    except MaybeCreated as error:
        log.warning("bulk create of %d timecards may have landed (%s): looking for them", len(todo), error)
        rest = await run.adopt_listed(todo)
        if rest and classify(error) is Failure.UNAVAILABLE:
            raise  # the rest stays pending; its next round looks first again
        return run.results + [await process_request(p, lease, attempts, records_for, max_tries) for p, _ in rest]
    except Exception as error:
        if classify(error) is Failure.UNAVAILABLE:
            raise
        if isinstance(error, ProcoreError) and error.status == 403:
            log.warning("company %s: bulk_create refused (%s); publishing one by one", lease.company_id, error)
            refused_companies.add(lease.company_id)
        # refused as a whole (nothing created): each request goes on its own and gets its own answer
        return run.results + [
            await process_request(p, lease, attempts, records_for, max_tries, not_created=True) for p, _ in todo
        ]
    waiting = {str(body.get("origin_id")): (p, body) for p, body in todo}
    for record in answer.created:
        matched = waiting.pop(str(record.get("origin_id")), None)
        if matched is None:
            log.warning("bulk_create answered a record %s we did not send", record.get("id"))
            continue
        await run.finish(matched[0], finished(matched[0].request, PublishOutcome.PUBLISHED, record, payload=matched[1]))
    refused = {str(item.get("origin_id")) for item in answer.refused if isinstance(item, dict)}
    project = run.records.project_id
    if project not in run.records.start_stop_projects and any(
        domain.wants_start_stop(422, item, {}) for item in answer.refused if isinstance(item, dict)
    ):
        # the project's timesheet takes start and stop times: its refused items go again, each with clock times
        run.records.start_stop_projects.add(project)
    for origin, (p, _) in waiting.items():
        # refused item: certainly not created; missing from the answer: left open, so it looks first
        run.results.append(
            await process_request(p, lease, attempts, records_for, max_tries, not_created=origin in refused)
        )
    return run.results


@dataclass
class Outcome:
    result: ProcorePublishFinished
    uncertain: bool = False
    """A create failed without telling whether Procore made the record."""
    reconciled: bool = False
    """We listed the day's records looking for one of ours."""


def _refusal(request: PublishToProcore, error: BaseException) -> str | None:
    """A Procore refusal with a precise reason of its own (completed day, person outside the project directory)."""
    cause = error.cause if isinstance(error, MaybeCreated) else error
    if not isinstance(cause, ProcoreError):
        return None
    return domain.refusal_reason(request, cause.status, cause.message, cause.body)
