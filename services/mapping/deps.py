"""What the mapping use cases receive: `MappingDeps`, typed (the started app's other resources: `bootstrap.Running`).

A command's use case sees it as `ports.CommandDeps` only: the unit of work (`stores`), an account's Procore lists
and the revocation of a link's tokens; never the pool."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import asyncpg

from services.mapping.adapters import changes as changes_out
from services.mapping.adapters.changes import Change
from services.mapping.adapters.procore_links import StoredProcoreLink, TokenCipher
from services.mapping.adapters.procore_lists import AccountLists
from services.mapping.adapters.store import PgUnitOfWork
from services.mapping.procore_link import client_for, revoke_tokens
from shared.procore import OAuthApp, ProcoreClient


@dataclass
class MappingDeps:
    """Everything a mapping use case may need: the database pool, the token cipher, the OAuth app and the
    Procore client (whose calls `procore_link.client_for` gives tokens), and where changes go."""

    pool: asyncpg.Pool
    cipher: TokenCipher
    oauth: OAuthApp
    procore: ProcoreClient
    changes_topic: str
    """mapping.changes: where the outbox relay sends what `emit` queues."""
    notify: Callable[[], None]
    """Wakes the outbox relay after a commit that queued changes (it would find them at its next poll anyway)."""
    refresh_margin_s: float = 300.0
    """Refresh this long before expiry, so every token handed out lives at least this long."""
    commands_topic: str = ""
    """mapping.commands: where a new link's CompleteProcoreConnection goes (through the outbox)."""
    pkce: bool = False
    """Send a PKCE challenge (RFC 7636 S256) with every authorization request."""
    state_ttl_s: float = 600.0
    """How long an authorization request (its state) may be completed."""

    async def emit(self, db: asyncpg.Connection, changes: Sequence[Change]) -> None:
        """Queue changes in the caller's transaction (sent only if it commits)."""
        await changes_out.emit(db, self.changes_topic, changes)

    @property
    def stores(self) -> PgUnitOfWork:
        """The unit of work of the use cases: a store on a connection of the pool, in a transaction or not."""
        return PgUnitOfWork(self.pool, self.cipher, self.changes_topic, self.commands_topic)

    def procore_lists(self, account_id: str, company_id: int | None, proof_header: int | None = None) -> AccountLists:
        """Procore's lists with the account's tokens, for one company bound to it (`procore_link.client_for`)."""
        return AccountLists(client_for(self, account_id, company_id, proof_header))

    async def revoke_tokens(self, link: StoredProcoreLink) -> None:
        await revoke_tokens(self.oauth, link)
