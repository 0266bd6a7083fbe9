"""The aggregator's mapping and setup changes (handlers/remap.py `record_mapping_change`) on an in-memory fake of
the tables they work on: a mapping is kept and marks what it affects for the debounced remap; a new Procore company
marks every entry; a change of the enabled modules recomputes the account at once, under its exclusive lock; the
same setup sent again changes nothing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from services.aggregator import domain, handlers
from services.aggregator.adapters.remap_marks import Mark
from services.aggregator.adapters.replica import AccountMappings
from services.aggregator.adapters.timelogs import Group
from services.aggregator.handlers.remap import RemapTables
from shared.events import MappingChanged, Module, ProcoreEntity, SetupChanged


@dataclass
class FakeTables:
    """Only what `record_mapping_change` may touch; every call is recorded in order."""

    setups: dict[str, AccountMappings] = field(default_factory=dict)
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)

    async def load_setups(self, account_ids: Sequence[str]) -> dict[str, AccountMappings]:
        return {a: self.setups.get(a, AccountMappings()) for a in account_ids}

    async def save_setup(
        self,
        account_id: str,
        company_id: int | None,
        modules: Sequence[Module],
        two_way: bool,
        auto_publish: dict[Module, int] | None = None,
    ) -> None:
        self.calls.append(("save_setup", account_id, company_id, frozenset(modules)))
        self.setups[account_id] = AccountMappings(company_id, frozenset(modules), two_way)

    async def save_mapping(self, account_id: str, entity: ProcoreEntity, mobiclocks_id: str, *rest: Any) -> None:
        self.calls.append(("save_mapping", account_id, entity, mobiclocks_id))

    async def mark_for_remap(self, account_id: str, marks: Sequence[Mark]) -> None:
        self.calls.append(("mark", account_id))
        self.marks += marks

    async def lock_account(self, account_id: str) -> None:
        self.calls.append(("lock_account", account_id))

    async def groups_of_account(self, account_id: str) -> list[Group]:
        self.calls.append(("groups_of_account", account_id))
        return []  # no timelogs yet: nothing to recompute


def tables(**setups: AccountMappings) -> FakeTables:
    return FakeTables(setups=dict(setups))


async def record(fake: FakeTables, change: SetupChanged | MappingChanged) -> None:
    await handlers.record_mapping_change(cast(RemapTables, fake), change)


async def test_a_mapping_is_kept_and_marks_what_it_names_for_the_debounced_remap() -> None:
    fake = tables()
    await record(fake, MappingChanged(account_id="a", entity=ProcoreEntity.VENDOR, mobiclocks_id="co-1", procore_id=5))
    assert fake.calls == [("save_mapping", "a", ProcoreEntity.VENDOR, "co-1"), ("mark", "a")]
    assert fake.marks == [domain.remap_mark(ProcoreEntity.VENDOR, "co-1")]
    assert fake.marks == [("company_id", "co-1")]


async def test_a_new_procore_company_marks_every_entry_and_recomputes_nothing_now() -> None:
    fake = tables(a=AccountMappings(7, frozenset({Module.MANPOWER})))
    await record(
        fake, SetupChanged(account_id="a", procore_company_id=8, enabled_modules=[Module.MANPOWER], two_way=False)
    )
    assert fake.marks == [domain.EVERY_ENTRY]
    assert not any(c[0] == "lock_account" for c in fake.calls)


async def test_a_change_of_modules_recomputes_the_account_at_once_under_its_lock() -> None:
    fake = tables(a=AccountMappings(7, frozenset({Module.MANPOWER})))
    modules = [Module.MANPOWER, Module.TIMECARD]
    await record(fake, SetupChanged(account_id="a", procore_company_id=7, enabled_modules=modules, two_way=False))
    assert fake.calls == [
        ("save_setup", "a", 7, frozenset(modules)),
        ("lock_account", "a"),  # locked before its groups are listed: no batch lands in between unseen
        ("groups_of_account", "a"),
    ]
    assert fake.marks == []


async def test_the_same_setup_again_or_two_way_only_changes_nothing_in_the_entries() -> None:
    fake = tables(a=AccountMappings(7, frozenset({Module.MANPOWER})))
    same = SetupChanged(account_id="a", procore_company_id=7, enabled_modules=[Module.MANPOWER], two_way=False)
    await record(fake, same)
    await record(fake, same.model_copy(update={"two_way": True}))
    assert [c[0] for c in fake.calls] == ["save_setup", "save_setup"]
    assert fake.marks == []
