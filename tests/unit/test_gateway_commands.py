"""The gateway's command use cases (services/gateway/handlers.py, mapping_handlers.py) on an in-memory command bus:
each checks the caller's permission and the request's sense before anything is sent, and sends one command, for
the caller's own account, keyed so that one account's commands stay in order, carrying who asked and with which
permissions (the mapping service and the aggregator check them again)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from services.gateway import handlers, mapping_handlers
from services.gateway.failures import InvalidInput
from services.gateway.mapping_rules import Conflict
from services.gateway.permissions import MissingPermission
from services.gateway.tokens import Principal
from shared.events import (
    AutoMap,
    ConfigureSetup,
    DisconnectProcore,
    MappingCommand,
    Module,
    Permission,
    ProcoreEntity,
    PublishEntries,
    SetMapping,
    SyncProcoreEntities,
    UnbindProcoreCompany,
)

EVERY = frozenset(p.value for p in Permission)


@dataclass
class FakeBus:
    sent: list[tuple[MappingCommand | PublishEntries, str]] = field(default_factory=list)

    async def send_publish(self, command: PublishEntries, key: str) -> None:
        self.sent.append((command, key))

    async def send_mapping(self, command: MappingCommand, key: str) -> None:
        self.sent.append((command, key))


def user(*permissions: Permission, account: str = "acc-1") -> Principal:
    return Principal("u-1", account, frozenset(p.value for p in permissions))


Use = Callable[[FakeBus, Principal], Awaitable[object]]

USES: dict[str, tuple[Permission, type, Use]] = {
    "configure setup": (
        Permission.SETUP,
        ConfigureSetup,
        lambda bus, who: handlers.configure_setup(bus, who, 7, [Module.MANPOWER, Module.MANPOWER], two_way=False),
    ),
    "set mapping": (
        Permission.MAPPING,
        SetMapping,
        lambda bus, who: handlers.set_mapping(bus, who, ProcoreEntity.VENDOR, "co-1", 55, None),
    ),
    "disconnect": (Permission.SETUP, DisconnectProcore, mapping_handlers.disconnect),
    "unbind": (Permission.SETUP, UnbindProcoreCompany, lambda bus, who: mapping_handlers.unbind(bus, who, 7)),
    "sync": (
        Permission.MAPPING,
        SyncProcoreEntities,
        lambda bus, who: mapping_handlers.sync(bus, who, ProcoreEntity.PROJECT),
    ),
    "auto-map": (
        Permission.MAPPING,
        AutoMap,
        lambda bus, who: mapping_handlers.auto_map(
            bus, who, ProcoreEntity.COST_CODE, overwrite_manual=False, two_way=False
        ),
    ),
}


@pytest.mark.parametrize("name", USES)
async def test_a_command_goes_out_once_for_the_callers_account_with_who_asked(name: str) -> None:
    permission, kind, use = USES[name]
    bus = FakeBus()
    accepted = await use(bus, user(permission, account="acc-9"))
    ((command, key),) = bus.sent
    assert isinstance(command, kind)
    assert command.account_id == "acc-9"
    assert key == "acc-9"  # one account's commands share a key: handled in the order they were sent
    assert command.requested_by == "u-1"
    assert command.permissions == [permission.value]
    assert getattr(accepted, "command_id", None) == command.event_id


@pytest.mark.parametrize("name", USES)
async def test_without_its_permission_nothing_is_sent(name: str) -> None:
    permission, _kind, use = USES[name]
    bus = FakeBus()
    with pytest.raises(MissingPermission) as refused:
        await use(bus, user(*(p for p in Permission if p is not permission)))
    assert refused.value.permission is permission
    assert bus.sent == []


async def test_setup_sends_each_module_once() -> None:
    bus = FakeBus()
    await handlers.configure_setup(
        bus, user(Permission.SETUP), 7, [Module.TIMECARD, Module.MANPOWER, Module.TIMECARD], False
    )
    ((command, _),) = bus.sent
    assert isinstance(command, ConfigureSetup)
    assert command.enabled_modules == [Module.TIMECARD, Module.MANPOWER]
    assert command.auto_publish is None  # unchanged unless asked


@pytest.mark.parametrize(
    ("entity", "project", "fix"),
    [
        (ProcoreEntity.COST_CODE, None, "procore_project_id is required"),
        (ProcoreEntity.VENDOR, 3, "leave procore_project_id out"),
    ],
)
async def test_a_mapping_in_the_wrong_scope_is_refused_naming_the_field(
    entity: ProcoreEntity, project: int | None, fix: str
) -> None:
    bus = FakeBus()
    with pytest.raises(InvalidInput, match=fix) as refused:
        await handlers.set_mapping(bus, user(Permission.MAPPING), entity, "x", 1, project)
    assert refused.value.field == ("body", "procore_project_id")
    assert bus.sent == []


async def test_two_way_accounts_map_nothing_by_hand_or_by_auto_map() -> None:
    bus = FakeBus()
    with pytest.raises(Conflict):
        await handlers.set_mapping(bus, user(Permission.MAPPING), ProcoreEntity.VENDOR, "co-1", 55, None, two_way=True)
    with pytest.raises(Conflict):
        await mapping_handlers.auto_map(bus, user(Permission.MAPPING), ProcoreEntity.PROJECT, False, two_way=True)
    assert bus.sent == []


@pytest.mark.parametrize("entity", [ProcoreEntity.VENDOR, ProcoreEntity.CLASSIFICATION])
async def test_auto_map_of_a_tab_without_a_number_says_to_map_by_hand(entity: ProcoreEntity) -> None:
    bus = FakeBus()
    with pytest.raises(InvalidInput, match="map them by hand"):
        await mapping_handlers.auto_map(bus, user(Permission.MAPPING), entity, False, two_way=False)
    assert bus.sent == []


async def test_every_permission_is_carried_for_the_next_service_to_check_again() -> None:
    bus = FakeBus()
    await mapping_handlers.sync(bus, Principal("u-2", "acc-1", EVERY), ProcoreEntity.VENDOR)
    ((command, _),) = bus.sent
    assert command.permissions == sorted(EVERY)
