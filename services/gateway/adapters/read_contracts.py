"""The read contracts as one read-only transaction sees them: what the gateway's query handlers are given (they name
the part they use as a Protocol; unit tests give them an in-memory fake). Each method is a query of
`read_model` (the aggregator's contract) or `mapping_model` (the mapping service's, in `mapping_schema`); the SQL
stays there."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any
from uuid import UUID

import asyncpg

from services.gateway.adapters import mapping_model, read_model
from services.gateway.adapters.mapping_model import BoundCompany, MappingSetup, Outcome
from services.gateway.dashboard import QuantityGroup, StatusGroup
from services.gateway.details import CellRead, EntryRecord, HistoryRecord
from services.gateway.force_preview import Reviewed
from services.gateway.names import Name
from services.gateway.schemas import EntryStatus, Setup
from shared.events import CellScope, DateRangeScope, EntriesScope, Module


class ReadContracts:
    def __init__(self, conn: asyncpg.Connection, mapping_schema: str, aggregator_schema: str | None = None) -> None:
        self.conn = conn
        self.mapping_schema = mapping_schema
        self.aggregator_schema = aggregator_schema

    # --- the aggregator's contract ---

    async def aggregator_setup(self, account_id: str) -> Setup:
        """The aggregator's copy of the setup (shown until the mapping service has published its contract)."""
        return await read_model.setup(self.conn, account_id)

    async def payroll_items(self, account_id: str, pay_ids: Iterable[str]) -> dict[str, str]:
        """Pay ID → the name of its Procore payroll type (the synced list's name once the mapping service's contract
        is there)."""
        synced = self.mapping_schema if await mapping_model.ready(self.conn, self.mapping_schema) else None
        return await read_model.payroll_items(self.conn, account_id, pay_ids, synced)

    async def plan_for_week(self) -> None:
        await read_model.plan_for_week(self.conn)

    async def week_job_sites(
        self, account_id: str, module: Module, date_from: date, date_to: date, statuses: Sequence[EntryStatus]
    ) -> list[str]:
        return await read_model.week_job_sites(self.conn, account_id, module, date_from, date_to, statuses)

    async def status_groups(
        self,
        account_id: str,
        module: Module,
        date_from: date,
        date_to: date,
        statuses: Sequence[EntryStatus],
        job_site_ids: Sequence[str] | None = None,
    ) -> list[StatusGroup]:
        return await read_model.status_groups(self.conn, account_id, module, date_from, date_to, statuses, job_site_ids)

    async def quantity_groups(
        self,
        account_id: str,
        date_from: date,
        date_to: date,
        statuses: Sequence[EntryStatus],
        job_site_ids: Sequence[str] | None = None,
    ) -> list[QuantityGroup]:
        return await read_model.quantity_groups(self.conn, account_id, date_from, date_to, statuses, job_site_ids)

    async def reference_names(self, account_id: str, wanted: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Name]:
        return await read_model.reference_names(self.conn, account_id, wanted)

    async def mapped_projects(self, account_id: str, job_site_ids: Iterable[str]) -> dict[str, int]:
        return await read_model.mapped_projects(self.conn, account_id, job_site_ids)

    async def cell(self, account_id: str, module: Module, job_site_id: str, work_date: date) -> CellRead:
        synced = self.mapping_schema if await mapping_model.ready(self.conn, self.mapping_schema) else None
        return await read_model.cell(self.conn, account_id, module, job_site_id, work_date, synced)

    async def entry(self, account_id: str, entry_id: UUID) -> EntryRecord | None:
        return await read_model.entry(self.conn, account_id, entry_id)

    async def publish_history(self, entry_id: UUID) -> list[HistoryRecord]:
        return await read_model.publish_history(self.conn, entry_id)

    async def status_counts_in_scope(
        self, account_id: str, module: Module, scope: CellScope | EntriesScope | DateRangeScope
    ) -> dict[EntryStatus, int]:
        return await read_model.status_counts_in_scope(self.conn, account_id, module, scope)

    async def entries_in_scope(
        self,
        account_id: str,
        module: Module,
        scope: CellScope | EntriesScope | DateRangeScope,
        statuses: Iterable[EntryStatus],
        limit: int,
    ) -> list[EntryRecord]:
        return await read_model.entries_in_scope(self.conn, account_id, module, scope, statuses, limit)

    async def reviewed_in_scope(
        self,
        account_id: str,
        module: Module,
        scope: CellScope | EntriesScope | DateRangeScope,
        statuses: Iterable[EntryStatus],
    ) -> list[Reviewed]:
        return await read_model.reviewed_in_scope(self.conn, account_id, module, scope, statuses)

    async def job_sites_of_entries(self, account_id: str, module: Module, entry_ids: Sequence[UUID]) -> dict[UUID, str]:
        return await read_model.job_sites_of_entries(self.conn, account_id, module, entry_ids)

    # --- the mapping service's contract ---

    async def directory_gaps(self, account_id: str) -> dict[str, list[str]]:
        """Employee → mapped projects whose directory lacks their Procore person ({} until both contracts exist)."""
        if self.aggregator_schema is None:
            return {}
        try:
            return await mapping_model.directory_gaps(
                self.conn, self.mapping_schema, self.aggregator_schema, account_id
            )
        except asyncpg.UndefinedTableError:  # a service has not published its read contract yet
            return {}

    async def mapping_ready(self) -> bool:
        return await mapping_model.ready(self.conn, self.mapping_schema)

    async def mapping_setup(self, account_id: str) -> MappingSetup | None:
        return await mapping_model.setup(self.conn, self.mapping_schema, account_id)

    async def procore_connection(self, account_id: str) -> dict[str, Any] | None:
        return await mapping_model.procore_connection(self.conn, self.mapping_schema, account_id)

    async def webhook_status(self, account_id: str, company_id: int) -> dict[str, Any] | None:
        return await mapping_model.webhook_status(self.conn, self.mapping_schema, account_id, company_id)

    async def companies(self, account_id: str) -> list[BoundCompany]:
        return await mapping_model.companies(self.conn, self.mapping_schema, account_id)

    async def mapped_procore_projects(self, account_id: str) -> list[tuple[int, str]]:
        return await mapping_model.mapped_projects(self.conn, self.mapping_schema, account_id)

    async def tab_rows(self, account_id: str, entity: str, kind: str, project_id: int) -> list[dict[str, Any]]:
        return await mapping_model.tab_rows(self.conn, self.mapping_schema, account_id, entity, kind, project_id)

    async def procore_options(
        self, account_id: str, entity: str, project_id: int, in_projects: list[int] | None
    ) -> list[tuple[int, str, str | None]]:
        return await mapping_model.procore_options(
            self.conn, self.mapping_schema, account_id, entity, project_id, in_projects
        )

    async def last_sync(self, account_id: str, entity: str, project_id: int) -> dict[str, Any] | None:
        return await mapping_model.last_sync(self.conn, self.mapping_schema, account_id, entity, project_id)

    async def last_auto_map(self, account_id: str, entity: str) -> dict[str, Any] | None:
        return await mapping_model.last_auto_map(self.conn, self.mapping_schema, account_id, entity)

    async def command_outcome(self, account_id: str, command_id: UUID) -> Outcome | None:
        return await mapping_model.command_outcome(self.conn, self.mapping_schema, account_id, command_id)

    async def manual_mappings(self, account_id: str) -> int:
        return await mapping_model.manual_mappings(self.conn, self.mapping_schema, account_id)
