"""The HTTP API, assembled: one router per screen, each a thin adapter from requests to the use cases.

`routes_ops` (health, live updates), `routes_dashboard` (a module's week, cells, entries, publishing),
`routes_setup` (setup, the Procore connection, webhooks), `routes_mapping` (Data mapping, command outcomes).
Shared dependencies live in `dependencies`, request bodies in `request_bodies`, the error mapping in `errors`,
and the development sign-in (registered only when DEV_LOGIN=true) in `dev_login`.
"""

from __future__ import annotations

from fastapi import APIRouter

from services.gateway import routes_dashboard, routes_mapping, routes_ops, routes_setup

router = APIRouter()
for screen in (routes_ops, routes_dashboard, routes_setup, routes_mapping):
    router.include_router(screen.router)
