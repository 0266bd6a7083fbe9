"""Procore webhooks: register a hook for each chosen company, take its deliveries, reconcile what they missed.

- **Register** (`WebhookKeeper`, every `WEBHOOK_KEEPER_INTERVAL_S` and at once after a setup or connection change):
  for each connected account whose Setup chose a company, a company-scoped hook (namespace `NAMESPACE`) delivering
  to the gateway's `WEBHOOK_DESTINATION_URL`, with `destination_headers: {Authorization: "Bearer <secret>"}` (a
  secret per hook; only its SHA-256 is stored), and triggers for Manpower Logs, Quantity Logs and Timecard
  Entries, each for create, update and delete. A leftover hook of ours (an interrupted registration) is deleted
  first; the hook of a company no longer chosen is deleted.
- **Deliveries** (`receive`, over the internal API from the gateway's public route): the Authorization header must
  match a stored hook; the delivery is recorded by its id (duplicates and retries are taken once) and, when it
  reports someone else's update or delete of a record of ours, a `ProcoreRecordChanged` goes to `mapping.changes`
  through the outbox in the same transaction. The aggregator turns the Published entry owning the record into
  Failed "changed/deleted in Procore".
- **Reconcile** (`reconcile`, every `WEBHOOK_RECONCILE_INTERVAL_S` per hook): lists what changed in Procore since
  the last reconcile and reports it the same way — what deliveries missed (Procore gives up after 12 h; our
  gateway may be down). Timecard entries: the company list filtered by `updated_at` and `deleted_at`; manpower
  and quantity logs (no such filter) are re-read by date over the last `WEBHOOK_RECONCILE_DAYS` days for every
  mapped project and compared on `updated_at`; a log seen in the window by an earlier reconcile and missing now
  was deleted (`reconcile_seen`). The aggregator ignores changes not newer than our last publish, so our own
  writes reported by the reconcile change nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
from pydantic import ValidationError

from services.mapping import webhook_rules as rules
from services.mapping.adapters import procore_links
from services.mapping.adapters import webhooks as hooks_db
from services.mapping.adapters.webhooks import HookDue, StoredHook
from services.mapping.deps import MappingDeps
from services.mapping.procore_link import NeedsReauthorization, NotBound, NotConnected, client_for
from shared import metrics
from shared.background import RepeatingTask
from shared.events import Module, ProcoreChange, ProcoreRecordChanged
from shared.outbox import OutboxMessage, add_to_outbox, trace_headers
from shared.procore import ProcoreError
from shared.procore.client import REST
from shared.procore.records import RECORD_PATHS, parse_time
from shared.transient import transient_cause

log = logging.getLogger(__name__)

HOOKS = f"{REST}/webhooks/hooks"
RECONCILE_OVERLAP = timedelta(minutes=2)
"""Each reconcile looks back this much before the last one ended (clock skew, a write committing late)."""


class Unauthorized(Exception):
    """A delivery without the Authorization header of a hook we registered."""


class InvalidDelivery(Exception):
    """A delivery that is not a Procore event."""


@dataclass(frozen=True)
class WebhookSettings:
    destination_url: str
    """The gateway's public webhook route; empty: webhooks off (the reconcile alone catches changes)."""
    keeper_interval_s: float = 30.0
    reconcile_interval_s: float = 3600.0
    reconcile_days: int = 14
    dedupe_keep_s: float = 7 * 24 * 3600.0


# --- registration ----------------------------------------------------------------------------------------------


async def register(deps: MappingDeps, due: HookDue, destination_url: str) -> None:
    """One hook (and its triggers) for a chosen company, replacing any earlier one of ours."""
    company = due.procore_company_id
    procore = client_for(deps, due.account_id, company)
    scope = {"company_id": company}
    existing = await procore.get_json(HOOKS, company, params={**scope, "namespace": rules.NAMESPACE})
    stale = {int(h["id"]) for h in existing if isinstance(h, dict) and h.get("namespace") == rules.NAMESPACE}
    if due.procore_hook_id is not None:
        stale.add(due.procore_hook_id)
    for hook_id in sorted(stale):
        with contextlib.suppress(ProcoreError):  # gone already
            await procore.request("DELETE", f"{HOOKS}/{hook_id}", company, params=scope)
    secret = rules.new_secret()
    hook = {
        "api_version": "v2",
        "namespace": rules.NAMESPACE,
        "destination_url": destination_url,
        "destination_headers": {"Authorization": rules.authorization_header(secret)},
    }
    created = (await procore.request("POST", HOOKS, company, json={**scope, "hook": hook})).json()
    hook_id = int(created["id"])
    for resource in rules.RESOURCE_MODULES:
        for event_type in rules.EVENT_TYPES:
            trigger = {"resource_name": resource, "event_type": event_type}
            body = {**scope, "api_version": "v2", "trigger": trigger}
            await procore.request("POST", f"{HOOKS}/{hook_id}/triggers", company, json=body)
    async with deps.pool.acquire() as db:
        await hooks_db.save_hook(db, due.account_id, company, hook_id, rules.secret_digest(secret), destination_url)
    log.info("account %s: Procore webhooks registered for company %s (hook %s)", due.account_id, company, hook_id)


async def unregister(deps: MappingDeps, hook: StoredHook) -> None:
    """The hook of a company Setup no longer chooses: deleted in Procore when we still can, forgotten here."""
    try:
        procore = client_for(deps, hook.account_id, hook.procore_company_id)
        await procore.request(
            "DELETE",
            f"{HOOKS}/{hook.procore_hook_id}",
            hook.procore_company_id,
            params={"company_id": hook.procore_company_id},
        )
    except (ProcoreError, NotBound, NotConnected, NeedsReauthorization) as error:
        log.info(
            "hook %s of company %s not deleted in Procore: %s", hook.procore_hook_id, hook.procore_company_id, error
        )
    async with deps.pool.acquire() as db:
        await hooks_db.drop_hook(db, hook.procore_company_id, hook.procore_hook_id)


# --- deliveries ------------------------------------------------------------------------------------------------


async def _own_application_ids(db: asyncpg.Connection, deps: MappingDeps, account_id: str) -> frozenset[str]:
    """The OAuth clients our writes to this account's Procore go through: the app, or the customer's service account."""
    stored = await procore_links.read(db, deps.cipher, account_id)
    ids = {deps.oauth.client_id}
    if stored is not None and stored.client_id:
        ids.add(stored.client_id)
    return frozenset(ids)


async def receive(deps: MappingDeps, authorization: str | None, event: Any) -> str:
    """Take one delivery; returns its outcome. `Unauthorized` / `InvalidDelivery` when it is refused."""
    digest = rules.digest_of_authorization(authorization)
    if digest is None:
        metrics.WEBHOOK_DELIVERIES.labels("unauthorized").inc()
        raise Unauthorized("no bearer token")
    async with deps.pool.acquire() as db, db.transaction():
        hook = await hooks_db.hook_by_digest(db, digest)
        if hook is None:
            metrics.WEBHOOK_DELIVERIES.labels("unauthorized").inc()
            raise Unauthorized("unknown hook secret")
        try:
            delivery = rules.Delivery.model_validate(event)
        except ValidationError as error:
            metrics.WEBHOOK_DELIVERIES.labels("invalid").inc()
            raise InvalidDelivery(f"not a Procore webhook event: {error.error_count()} problems") from error
        if delivery.company_id is not None and delivery.company_id != hook.procore_company_id:
            metrics.WEBHOOK_DELIVERIES.labels("invalid").inc()
            raise InvalidDelivery("the event is for another company than its hook")
        if not await hooks_db.take_delivery(db, hook.procore_company_id, delivery.delivery_id):
            outcome = "duplicate"
        else:
            noticed = rules.notice(delivery, await _own_application_ids(db, deps, hook.account_id))
            if isinstance(noticed, str):
                outcome = noticed
            else:
                outcome = "conflict"
                await _report(db, deps, hook, [noticed], "webhook")
    metrics.WEBHOOK_DELIVERIES.labels(outcome).inc()
    if outcome == "conflict":
        deps.notify()
    return outcome


async def _report(
    db: asyncpg.Connection, deps: MappingDeps, hook: StoredHook, noticed: Sequence[rules.Noticed], source: str
) -> None:
    headers = trace_headers()
    messages = []
    for n in noticed:
        change = ProcoreRecordChanged(
            account_id=hook.account_id,
            procore_company_id=hook.procore_company_id,
            module=n.module,
            procore_id=n.procore_id,
            change=n.change,
            changed_at=n.changed_at,
            source="webhook" if source == "webhook" else "reconcile",
        )
        messages.append(OutboxMessage(deps.changes_topic, hook.account_id, change.model_dump_json(), headers))
    await add_to_outbox(db, messages)


# --- reconcile -------------------------------------------------------------------------------------------------


async def reconcile(deps: MappingDeps, hook: StoredHook, days: int, now: datetime | None = None) -> int:
    """Report what changed in Procore since the last reconcile (what deliveries may have missed); returns how many."""
    until = now or datetime.now(UTC)
    since = (hook.reconciled_until or until - timedelta(days=1)) - RECONCILE_OVERLAP
    company = hook.procore_company_id
    procore = client_for(deps, hook.account_id, company)
    enabled = {Module(m) for m in hook.enabled_modules if m in Module._value2member_map_}
    noticed: list[rules.Noticed] = []
    if Module.TIMECARD in enabled:
        window = f"{since.isoformat()}...{until.isoformat()}"
        path = f"{REST}/companies/{company}/timecard_entries"
        async for record in procore.paginate(path, company, {"filters[updated_at]": window}):
            noticed.append(_seen(Module.TIMECARD, record, ProcoreChange.UPDATED, "updated_at"))
        async for record in procore.paginate(path, company, {"filters[deleted_at]": window}):
            noticed.append(_seen(Module.TIMECARD, record, ProcoreChange.DELETED, "deleted_at"))
    by_date = [m for m in (Module.MANPOWER, Module.PRODUCTION_QUANTITY) if m in enabled]
    if by_date:
        async with deps.pool.acquire() as db:
            projects = await hooks_db.mapped_projects(db, hook.account_id)
        end = until.date()
        start = end - timedelta(days=days)
        listed: list[tuple[Module, int, list[tuple[int, date]]]] = []
        for project in projects:
            for module in by_date:
                params = _date_window(start, end, module)
                seen: list[tuple[int, date]] = []
                async for record in procore.paginate(
                    f"{REST}/projects/{project}/{RECORD_PATHS[module]}", company, params
                ):
                    seen.append((int(record["id"]), date.fromisoformat(str(record["date"])[:10])))
                    if rules.changed_record(record, since) is not None:
                        noticed.append(_seen(module, record, ProcoreChange.UPDATED, "updated_at"))
                listed.append((module, project, seen))
    async with deps.pool.acquire() as db, db.transaction():
        if by_date:
            # Procore's lists omit deleted logs: one seen in this window before and missing now was deleted.
            for kind, project, seen in listed:
                gone = await hooks_db.replace_seen(db, company, kind.value, project, start, end, seen)
                noticed += [rules.Noticed(kind, record_id, ProcoreChange.DELETED, until) for record_id in gone]
        await _report(db, deps, hook, noticed, "reconcile")
        await hooks_db.set_reconciled_until(db, company, until)
    for n in noticed:
        metrics.RECONCILE_CHANGES.labels(n.module.value).inc()
    if noticed:
        deps.notify()
    return len(noticed)


def _date_window(start: date, end: date, module: Module) -> dict[str, Any]:
    params: dict[str, Any] = {"start_date": start.isoformat(), "end_date": end.isoformat()}
    if module is Module.MANPOWER:
        params["filters[status]"] = "all"
    return params


def _seen(module: Module, record: dict[str, Any], change: ProcoreChange, stamp: str) -> rules.Noticed:
    return rules.Noticed(module, int(record["id"]), change, parse_time(record.get(stamp)))


# --- the keeper: registration, reconcile, pruning, in the background --------------------------------------------


class WebhookKeeper:
    """Keeps every chosen company's hook registered and reconciles each hook periodically (any instance may do
    it: registering twice replaces the hook; the reconcile only reports, and the aggregator is idempotent)."""

    def __init__(self, deps: Callable[[], MappingDeps | None], settings: WebhookSettings) -> None:
        self._deps = deps
        self._settings = settings
        # A failed tick is tried again at the next one (registration and reconcile are idempotent).
        self._loop = RepeatingTask(
            self.tick,
            name="mapping-webhooks",
            what="webhooks",
            log=log,
            interval_s=settings.keeper_interval_s,
            max_backoff_s=settings.keeper_interval_s,
        )

    def wake(self) -> None:
        """A company was chosen or dropped: register or delete its hook now."""
        self._loop.wake()

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def tick(self) -> None:
        deps: MappingDeps | None = self._deps()
        if deps is None:
            return
        s = self._settings
        # One keeper at a time across instances (a session lock on a connection held for the tick): two instances
        # registering one company at once would each replace the other's hook, leaving one whose secret is lost.
        async with deps.pool.acquire() as lock:
            if not await hooks_db.try_keeper_lock(lock):
                return
            try:
                async with deps.pool.acquire() as db:
                    due = await hooks_db.hooks_due(db, s.destination_url) if s.destination_url else []
                    orphaned = await hooks_db.hooks_orphaned(db)
                    to_reconcile = await hooks_db.hooks_to_reconcile(db, s.reconcile_interval_s)
                    await hooks_db.prune_deliveries(db, s.dedupe_keep_s)
                for hook in orphaned:
                    await unregister(deps, hook)
                for item in due:
                    what = f"register webhooks of {item.procore_company_id}"
                    await _each(register(deps, item, s.destination_url), what)
                for hook in to_reconcile:
                    await _each(reconcile(deps, hook, s.reconcile_days), f"reconcile company {hook.procore_company_id}")
            finally:
                await hooks_db.keeper_unlock(lock)


EACH_TIMEOUT_S = 120.0
"""One company's registration or reconcile may take this long (a company whose rate budget is spent would otherwise
hold up every other company's until Procore's reset, up to an hour); it is tried again at the next tick."""


async def _each(work: Any, what: str) -> None:
    """One company's failure (Procore refusing, unavailable, its rate budget spent) does not stop the others; the
    next tick tries again."""
    try:
        await asyncio.wait_for(work, EACH_TIMEOUT_S)
    except TimeoutError:
        log.info("webhooks: could not %s within %.0f s: next time", what, EACH_TIMEOUT_S)
    except (ProcoreError, NotBound, NotConnected, NeedsReauthorization) as error:
        log.warning("webhooks: could not %s: %s", what, error)
    except Exception as error:
        if transient_cause(error) is None:
            raise
        log.info("webhooks: could not %s for now: %r", what, error)
