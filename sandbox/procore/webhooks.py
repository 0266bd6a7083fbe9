"""Webhook hooks/triggers (v1.0) and event delivery with bounded retries."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import httpx

from sandbox.procore.company_rules import deliveries_off
from sandbox.procore.state import (
    RESOURCE_NAMES,
    ChangeEvent,
    Hook,
    ProcoreError,
    SandboxState,
    Trigger,
    fmt_ts,
    invalid,
)

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_ulid(now_ms: int | None = None) -> str:
    """A ULID (48-bit ms timestamp + 80 random bits, Crockford base32)."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def _scope(body: dict[str, Any]) -> tuple[int | None, int | None]:
    company_id, project_id = body.get("company_id"), body.get("project_id")
    for name, value in (("company_id", company_id), ("project_id", project_id)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise invalid(name, "must be an integer")
    if company_id is None and project_id is None:
        raise ProcoreError(400, "company_id or project_id is required")
    return company_id, project_id


def in_scope(state: SandboxState, hook: Hook, company_id: int) -> bool:
    if hook.company_id is not None:
        return hook.company_id == company_id
    return hook.project_id is not None and hook.project_id in state.companies[company_id].projects


def create_hook(state: SandboxState, body: Any, company_id: int, owner_user_id: int) -> Hook:
    if not isinstance(body, dict):
        raise ProcoreError(400, "param is missing or the value is empty: hook")
    scope_company, scope_project = _scope(body)
    fields = body.get("hook")
    if not isinstance(fields, dict) or not fields.get("destination_url"):
        raise invalid("destination_url", "is required")
    headers = fields.get("destination_headers") or {}
    if not isinstance(headers, dict):
        raise invalid("destination_headers", "must be an object")
    if scope_project is not None:
        state.project(company_id, scope_project)
    hook = Hook(
        id=state.next_id(),
        company_id=scope_company if scope_project is None else None,
        project_id=scope_project,
        api_version=str(fields.get("api_version") or "v2"),
        namespace=fields.get("namespace"),
        destination_url=str(fields["destination_url"]),
        destination_headers={str(k): str(v) for k, v in headers.items()},
        owned_by_user_id=owner_user_id,
    )
    state.hooks[hook.id] = hook
    return hook


def get_hook(state: SandboxState, hook_id: int, company_id: int) -> Hook:
    hook = state.hooks.get(hook_id)
    if hook is None or not in_scope(state, hook, company_id):
        raise ProcoreError(404, f"Webhook hook {hook_id} not found")
    return hook


def update_hook(state: SandboxState, hook_id: int, body: Any, company_id: int) -> Hook:
    hook = get_hook(state, hook_id, company_id)
    fields = body.get("hook") if isinstance(body, dict) else None
    if not isinstance(fields, dict):
        raise ProcoreError(400, "param is missing or the value is empty: hook")
    if "destination_url" in fields:
        hook.destination_url = str(fields["destination_url"])
    if "destination_headers" in fields:
        hook.destination_headers = {str(k): str(v) for k, v in (fields["destination_headers"] or {}).items()}
    if "namespace" in fields:
        hook.namespace = fields["namespace"]
    if "api_version" in fields:
        hook.api_version = str(fields["api_version"])
    return hook


def delete_hook(state: SandboxState, hook_id: int, company_id: int) -> None:
    get_hook(state, hook_id, company_id)
    del state.hooks[hook_id]
    for trigger_id in [t.id for t in state.triggers.values() if t.hook_id == hook_id]:
        del state.triggers[trigger_id]


def create_trigger(state: SandboxState, hook_id: int, body: Any, company_id: int, user_id: int) -> Trigger:
    hook = get_hook(state, hook_id, company_id)
    if not isinstance(body, dict):
        raise ProcoreError(400, "param is missing or the value is empty: trigger")
    scope_company, scope_project = _scope(body)
    fields = body.get("trigger")
    if not isinstance(fields, dict):
        raise ProcoreError(400, "param is missing or the value is empty: trigger")
    resource_name = fields.get("resource_name")
    event_type = str(fields.get("event_type") or "").lower()
    if not isinstance(resource_name, str) or not resource_name:
        raise invalid("resource_name", "is required")
    if event_type not in ("create", "update", "delete"):
        raise invalid("event_type", "must be one of create, update, delete")
    trigger = Trigger(state.next_id(), hook.id, resource_name, event_type, scope_company, scope_project, user_id)
    state.triggers[trigger.id] = trigger
    return trigger


def delete_trigger(state: SandboxState, hook_id: int, trigger_id: int, company_id: int) -> None:
    get_hook(state, hook_id, company_id)
    trigger = state.triggers.get(trigger_id)
    if trigger is None or trigger.hook_id != hook_id:
        raise ProcoreError(404, f"Webhook trigger {trigger_id} not found")
    del state.triggers[trigger_id]


def event_payload(event: ChangeEvent, event_id: int) -> dict[str, Any]:
    """Procore's v2 webhook payload."""
    return {
        "id": event_id,
        "ulid": new_ulid(int(event.timestamp.timestamp() * 1000)),
        "timestamp": fmt_ts(event.timestamp),
        "event_type": event.event_type,
        "resource_name": RESOURCE_NAMES[event.kind],
        "resource_id": event.record_id,
        "company_id": event.company_id,
        "project_id": event.project_id,
        "user_id": event.actor.user_id,
        "api_version": "v2",
        "metadata": {
            "source_user_id": event.actor.user_id,
            "source_application_id": event.actor.client_id,
            "source_project_id": event.project_id,
            "source_company_id": event.company_id,
        },
    }


def matching_hooks(state: SandboxState, event: ChangeEvent) -> list[Hook]:
    resource_name = RESOURCE_NAMES[event.kind]
    hooks: dict[int, Hook] = {}
    for trigger in state.triggers.values():
        if trigger.resource_name != resource_name or trigger.event_type != event.event_type:
            continue
        hook = state.hooks.get(trigger.hook_id)
        if hook is None:
            continue
        if hook.company_id is not None and hook.company_id != event.company_id:
            continue
        if hook.project_id is not None and hook.project_id != event.project_id:
            continue
        hooks[hook.id] = hook
    return list(hooks.values())


class WebhookDispatcher:
    """Turns change events into background deliveries; retries with exponential backoff, bounded."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None

    def on_change(self, event: ChangeEvent) -> None:
        if deliveries_off(self.state, event.company_id):
            return  # the company's rule: deliveries are lost (the receiver's reconcile must catch the change)
        for hook in matching_hooks(self.state, event):
            payload = event_payload(event, self.state.next_id())
            delivery: dict[str, Any] = {
                "id": len(self.state.deliveries) + 1,
                "hook_id": hook.id,
                "destination_url": hook.destination_url,
                "event": payload,
                "attempts": [],
                "status": "pending",
            }
            self.state.deliveries.append(delivery)
            try:
                task = asyncio.get_running_loop().create_task(self._deliver(hook, delivery))
            except RuntimeError:  # no loop (pure unit use): leave it pending
                continue
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _deliver(self, hook: Hook, delivery: dict[str, Any]) -> None:
        settings = self.state.settings
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=settings.webhook_timeout_s)
        headers = {"Content-Type": "application/json", **hook.destination_headers}
        for attempt in range(1, settings.webhook_max_attempts + 1):
            record: dict[str, Any] = {"attempt": attempt, "at": time.time()}
            try:
                response = await self._client.post(hook.destination_url, json=delivery["event"], headers=headers)
                record["status_code"] = response.status_code
                if 200 <= response.status_code < 300:
                    delivery["attempts"].append(record)
                    delivery["status"] = "delivered"
                    return
            except httpx.HTTPError as exc:
                record["error"] = f"{type(exc).__name__}: {exc}"
            delivery["attempts"].append(record)
            if attempt < settings.webhook_max_attempts:
                await asyncio.sleep(settings.webhook_retry_base_s * 2 ** (attempt - 1))
        delivery["status"] = "failed"

    async def aclose(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None
