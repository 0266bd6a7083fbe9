"""The gateway's query use cases (services/gateway/handlers.py, mapping_handlers.py) on an in-memory fake of the read
contracts: what each answer is made of, its fallbacks while a service has not published its contract yet, its
messages when there is nothing to show, and the caller's account in every read."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any, cast
from uuid import UUID, uuid4

import pytest

from services.gateway import handlers, mapping_handlers
from services.gateway.adapters.mapping_model import MappingSetup
from services.gateway.details import CellRead
from services.gateway.failures import NotFound
from services.gateway.handlers import EntryReads
from services.gateway.mapping_handlers import MappingReads
from services.gateway.mapping_rules import TWO_WAY_CONFLICT
from services.gateway.permissions import MissingPermission
from services.gateway.schemas import Setup
from services.gateway.tokens import Principal
from shared.events import Module, Permission, ProcoreEntity

DAY = date(2026, 11, 27)


@dataclass
class FakeReads:
    """The read contracts of one account as a test sets them; each read records the account it was asked for."""

    mapping_ready_: bool = True
    mapping_setup_: MappingSetup | None = None
    aggregator_setup_: Setup = field(
        default_factory=lambda: Setup(procore_company_id=None, enabled_modules=[], two_way=False)
    )
    connection: dict[str, Any] | None = None
    manual: int = 0
    projects: list[tuple[int, str]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    gaps: dict[str, list[str]] = field(default_factory=dict)
    asked_for: set[str] = field(default_factory=set)

    def _asked(self, account_id: str) -> None:
        self.asked_for.add(account_id)

    # the aggregator's contract
    async def cell(self, account_id: str, *_: Any) -> CellRead:
        self._asked(account_id)
        return CellRead([], {}, {}, {})

    async def entry(self, account_id: str, entry_id: UUID) -> None:
        self._asked(account_id)

    async def aggregator_setup(self, account_id: str) -> Setup:
        self._asked(account_id)
        return self.aggregator_setup_

    # the mapping service's contract
    async def mapping_ready(self) -> bool:
        return self.mapping_ready_

    async def mapping_setup(self, account_id: str) -> MappingSetup | None:
        self._asked(account_id)
        return self.mapping_setup_

    async def procore_connection(self, account_id: str) -> dict[str, Any] | None:
        self._asked(account_id)
        return self.connection

    async def manual_mappings(self, account_id: str) -> int:
        self._asked(account_id)
        return self.manual

    async def mapped_procore_projects(self, account_id: str) -> list[tuple[int, str]]:
        self._asked(account_id)
        return self.projects

    async def tab_rows(self, account_id: str, *_: Any) -> list[dict[str, Any]]:
        self._asked(account_id)
        return [dict(r) for r in self.rows]

    async def directory_gaps(self, account_id: str) -> dict[str, list[str]]:
        self._asked(account_id)
        return self.gaps

    async def procore_options(self, account_id: str, *_: Any) -> list[tuple[int, str, str | None]]:
        self._asked(account_id)
        return [(501, "Ann Smith", "E-1")]

    async def last_sync(self, account_id: str, *_: Any) -> None:
        self._asked(account_id)

    async def last_auto_map(self, account_id: str, *_: Any) -> None:
        self._asked(account_id)

    async def command_outcome(self, account_id: str, command_id: UUID) -> None:
        self._asked(account_id)


def entries(fake: FakeReads) -> EntryReads:
    return cast(EntryReads, fake)


def mapping(fake: FakeReads) -> MappingReads:
    return cast(MappingReads, fake)


def user(*permissions: Permission) -> Principal:
    return Principal("u-1", "acc-7", frozenset(p.value for p in (permissions or tuple(Permission))))


async def test_an_empty_cell_and_an_unknown_entry_are_not_found_in_words() -> None:
    fake = FakeReads()
    with pytest.raises(NotFound, match="No Timecard entries for this job site on 2026-11-27"):
        await handlers.cell_details(entries(fake), user(), Module.TIMECARD, "site-1", DAY)
    entry_id = uuid4()
    with pytest.raises(NotFound, match=str(entry_id)):
        await handlers.entry_detail(entries(fake), user(), entry_id)
    assert fake.asked_for == {"acc-7"}


async def test_setup_is_the_mapping_services_and_says_what_is_still_missing() -> None:
    fake = FakeReads(mapping_setup_=MappingSetup(7, [Module.MANPOWER], False), manual=3)
    setup = await handlers.current_setup(entries(fake), user())
    assert (setup.procore_company_id, setup.enabled_modules) == (7, [Module.MANPOWER])
    assert setup.missing == ["connection"]  # not connected yet
    assert setup.manual_mappings == 3
    fake.connection = {"status": "connected"}
    assert (await handlers.current_setup(entries(fake), user())).missing == []


async def test_setup_falls_back_to_nothing_chosen_then_to_the_aggregators_copy() -> None:
    fake = FakeReads(aggregator_setup_=Setup(procore_company_id=9, enabled_modules=[Module.TIMECARD], two_way=False))
    nothing = await handlers.current_setup(entries(fake), user())
    assert nothing.missing == ["connection", "company", "modules"]  # the mapping service holds no setup yet
    fake.mapping_ready_ = False  # its read contract is not there yet: the aggregator's copy is shown
    copy = await handlers.current_setup(entries(fake), user())
    assert (copy.procore_company_id, copy.enabled_modules) == (9, [Module.TIMECARD])


async def test_the_mapping_overview_needs_the_mapping_permission_and_explains_an_empty_screen() -> None:
    fake = FakeReads()
    with pytest.raises(MissingPermission):
        await mapping_handlers.overview(mapping(fake), user(Permission.PUBLISH))
    empty = await mapping_handlers.overview(mapping(fake), user())
    assert empty.tabs == []
    assert empty.message is not None
    assert "choose the modules to publish in Setup" in empty.message
    fake.mapping_setup_ = MappingSetup(7, [Module.TIMECARD], True)
    two_way = await mapping_handlers.overview(mapping(fake), user())
    assert two_way.message == TWO_WAY_CONFLICT
    assert [t.entity for t in two_way.tabs][:1] == [ProcoreEntity.PROJECT]


async def test_a_mapping_tab_explains_why_it_is_empty() -> None:
    fake = FakeReads(mapping_ready_=False)
    tab = await mapping_handlers.mapping_tab(mapping(fake), user(), ProcoreEntity.VENDOR, None)
    assert tab.message == "The mapping service has not started yet."
    fake.mapping_ready_ = True
    codes = await mapping_handlers.mapping_tab(mapping(fake), user(), ProcoreEntity.COST_CODE, None)
    assert codes.message is not None
    assert codes.message.startswith("Map at least one project first")


async def test_an_employee_missing_from_a_project_directory_is_warned_on_the_row() -> None:
    row = {
        "mobiclocks_id": "emp-1",
        "name": "Ann",
        "number": "E-1",
        "procore_id": 501,
        "procore_name": "Ann Smith",
        "source": "manual",
        "broken_reason": None,
    }
    fake = FakeReads(rows=[row], gaps={"emp-1": ["Tower A"]})
    tab = await mapping_handlers.mapping_tab(mapping(fake), user(), ProcoreEntity.EMPLOYEE, None)
    (shown,) = tab.rows
    assert shown.warning is not None
    assert "Tower A" in shown.warning
    assert fake.asked_for == {"acc-7"}


async def test_a_command_not_handled_yet_is_pending() -> None:
    command_id = uuid4()
    outcome = await mapping_handlers.command_outcome(mapping(FakeReads()), user(), command_id)
    assert (outcome.command_id, outcome.status) == (command_id, "pending")
