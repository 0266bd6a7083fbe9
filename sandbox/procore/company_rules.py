"""Rules of Procore's that the sandbox models per company, each off by default where Procore's default is the
friendlier one, switched with `PUT /_sandbox/companies/{id}/rules` (`control_rules.py`).

- `service_account_company_header` — Procore documents that a service account's (DMSA) calls to `/companies` and
  `/me` name the company in `Procore-Company-Id`. When on, a client-credentials token reaching the company gets
  400 `Missing Procore-Company-Id header!` on `GET /rest/v1.0/companies` and `/me` without it (the documented
  message of the other /rest calls; that these two answer it is assumed).
- `lose_refresh_answers` — refresh tokens are single use (documented); an answer lost on the way (a timeout, a
  dropped connection) burns the old one. When on, a refresh of a token reaching the company rotates the pair,
  then drops the connection without an answer: the old refresh token then fails with 400
  `{"error": "invalid_grant", "error_description"}` (the documented OAuth error shape).
- `webhooks_off` — deliveries are best effort, discarded after 12 h of failures (documented). When on, no delivery
  is sent for the company's changes (the receiver's reconcile must catch them).

The rules live beside the state (keyed by it, lost at reset with the companies).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, fields
from typing import Any

from sandbox.procore.state import ProcoreError, SandboxState, Token


@dataclass
class CompanyRules:
    service_account_company_header: bool = False
    lose_refresh_answers: bool = False
    webhooks_off: bool = False

    def as_dict(self) -> dict[str, bool]:
        return {f.name: bool(getattr(self, f.name)) for f in fields(self)}


_RULES: weakref.WeakKeyDictionary[SandboxState, tuple[object, dict[int, CompanyRules]]] = weakref.WeakKeyDictionary()


def rules_of(state: SandboxState) -> dict[int, CompanyRules]:
    """The rules set on the companies of `state` (a reset replaces the companies, and so forgets the rules)."""
    kept = _RULES.get(state)
    if kept is None or kept[0] is not state.companies:
        kept = (state.companies, {})
        _RULES[state] = kept
    return kept[1]


def rules_for(state: SandboxState, company_id: int) -> CompanyRules:
    return rules_of(state).get(company_id) or CompanyRules()


def set_rules(state: SandboxState, company_id: int, body: Any) -> CompanyRules:
    if company_id not in state.companies:
        raise ProcoreError(404, f"Company {company_id} not found", reason="not_found")
    if not isinstance(body, dict):
        raise ProcoreError(400, "a JSON object of rules is required")
    known = {f.name for f in fields(CompanyRules)}
    unknown = sorted(set(body) - known)
    if unknown or any(not isinstance(v, bool) for v in body.values()):
        raise ProcoreError(400, f"rules are booleans among {sorted(known)}; unknown: {unknown}")
    current = rules_of(state).setdefault(company_id, CompanyRules())
    for name, value in body.items():
        setattr(current, name, value)
    return current


def _reached(state: SandboxState, token: Token) -> list[int]:
    return [c.id for c in state.companies_for(token)]


def check_company_header(state: SandboxState, token: Token, header: str | None) -> None:
    """`/companies` and `/me` with a service account's token, for companies with the header rule on."""
    if token.user_id is not None or header:
        return
    if any(rules_for(state, cid).service_account_company_header for cid in _reached(state, token)):
        raise ProcoreError(400, "Missing Procore-Company-Id header!", reason="bad_request")


def loses_refresh_answer(state: SandboxState, refresh_token: Any) -> bool:
    """Whether the answer to refreshing this token is to be lost (checked before the refresh burns it)."""
    token = state.refresh_tokens.get(refresh_token) if isinstance(refresh_token, str) else None
    if token is None or token.client_id not in state.clients:
        return False
    return any(rules_for(state, cid).lose_refresh_answers for cid in _reached(state, token))


def deliveries_off(state: SandboxState, company_id: int) -> bool:
    return rules_for(state, company_id).webhooks_off
