"""Reading a batch (size → JSON → validation) and applying it so one poison record never takes its neighbours."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import asyncpg
import pytest
from pydantic import BaseModel, TypeAdapter

from shared.records import apply_isolating_poison, message_limit, parse_records
from shared.transient import Transient


@dataclass(frozen=True)
class Record:
    value: bytes | None
    offset: int = 0
    topic: str = "t"
    partition: int = 0


class Item(BaseModel):
    id: int


ITEM = TypeAdapter(Item)


def test_parse_splits_valid_records_from_rejects_with_their_reasons_in_order() -> None:
    records = [
        Record(b'{"id": 1}', 0),
        Record(b"{not json", 1),
        Record(b"\xc3\x28 garbage", 2),
        Record(b'{"id": "x"}', 3),
        Record(None, 4),
        Record(b'{"id": 2, "pad": "' + b"x" * 2000 + b'"}', 5),
        Record(b'{"id": 3}', 6),
    ]
    valid, rejects = parse_records(records, ITEM, max_bytes=1024)
    assert [(r.offset, item.id) for r, item in valid] == [(0, 1), (6, 3)]
    reasons = {r.offset: why for r, why in rejects}
    assert reasons[1].startswith("message is not valid JSON: Expecting property name")
    assert reasons[2].startswith("message is not valid JSON: 'utf-8' codec can't decode")
    assert reasons[3] == "invalid message: id: Input should be a valid integer, unable to parse string as an integer"
    assert reasons[4].startswith("message is not valid JSON")
    assert reasons[5] == f"message is {len(records[5].value or b'')} bytes; the limit is 1024"


def test_parse_uses_the_limit_of_the_consumer_being_served() -> None:
    record = Record(b'{"id": 1, "note": "' + b"y" * 300_000 + b'"}')
    assert parse_records([record], ITEM)[1], "over the default 256 KiB"
    with message_limit(1 << 20):
        valid, rejects = parse_records([record], ITEM)
    assert [item.id for _, item in valid] == [1]
    assert not rejects


class Store:
    """Applies batches atomically, failing for the ids it is told to (a fake of a transactional handler)."""

    def __init__(self, poison: Iterable[int] = frozenset(), transient_on: int | None = None) -> None:
        self.poison = set(poison)
        self.transient_on = transient_on
        self.applied: list[int] = []
        self.calls = 0

    async def apply(self, items: Sequence[int]) -> None:
        self.calls += 1
        if self.transient_on is not None and self.transient_on in items:
            raise asyncpg.exceptions.DeadlockDetectedError("deadlock detected")
        if self.poison & set(items):
            raise asyncpg.exceptions.CheckViolationError("violates check constraint")
        self.applied.extend(items)


async def test_a_poison_item_is_isolated_and_rejected_after_its_attempts_every_other_item_applied() -> None:
    store = Store(poison={13})
    rejected: list[tuple[int, str]] = []

    async def reject(item: int, error: BaseException) -> None:
        rejected.append((item, type(error).__name__))

    count = await apply_isolating_poison(list(range(40)), store.apply, reject, attempts=3, retry_delay_s=0)
    assert count == 1
    assert rejected == [(13, "CheckViolationError")]
    assert store.applied == [i for i in range(40) if i != 13], "order kept"
    assert store.calls < 40, "bisection, not one transaction per item"


async def test_several_poison_items_are_each_rejected_alone() -> None:
    store = Store(poison={0, 7, 31})
    rejected: list[int] = []

    async def reject(item: int, error: BaseException) -> None:
        rejected.append(item)

    await apply_isolating_poison(list(range(32)), store.apply, reject, attempts=1, retry_delay_s=0)
    assert rejected == [0, 7, 31]
    assert sorted(store.applied) == [i for i in range(32) if i not in (0, 7, 31)]


async def test_a_transient_failure_rejects_nothing_and_propagates_so_the_batch_is_retried() -> None:
    store = Store(poison={3}, transient_on=20)

    async def reject(item: int, error: BaseException) -> None:
        pytest.fail("nothing may be rejected on a transient failure")

    with pytest.raises(asyncpg.exceptions.DeadlockDetectedError):
        await apply_isolating_poison(list(range(32)), store.apply, reject, attempts=2, retry_delay_s=0)


async def test_an_item_that_fails_only_at_first_is_applied_not_rejected() -> None:
    failures = iter([ValueError("flaky"), None])
    applied: list[int] = []

    async def apply(items: Sequence[int]) -> None:
        if (error := next(failures, None)) is not None:
            raise error
        applied.extend(items)

    async def reject(item: int, error: BaseException) -> None:
        pytest.fail("it succeeded on its second attempt")

    assert await apply_isolating_poison([5], apply, reject, attempts=3, retry_delay_s=0) == 0
    assert applied == [5]


async def test_a_lone_item_turning_transient_while_retried_propagates() -> None:
    errors = iter([ValueError("odd"), Transient("peer away")])

    async def apply(items: Sequence[int]) -> None:
        raise next(errors)

    async def reject(item: int, error: BaseException) -> None:
        pytest.fail("transient: not rejected")

    with pytest.raises(Transient):
        await asyncio.wait_for(apply_isolating_poison([1], apply, reject, attempts=3, retry_delay_s=0), 5)
