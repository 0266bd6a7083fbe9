"""How `rebuild --processes N` shares the accounts out: whole accounts, every one exactly once, work balanced."""

from __future__ import annotations

import pytest

from services.aggregator.maintenance import RebuildFailed, RebuildJob, rebuild_in_processes, share_accounts


def test_every_account_once_and_the_biggest_apart() -> None:
    groups = {"a": 900, "b": 800, "c": 300, "d": 200, "e": 100}
    shares = share_accounts(groups, 2)
    assert sorted(a for share in shares for a in share) == sorted(groups)
    loads = sorted(sum(groups[a] for a in share) for share in shares)
    assert loads == [1100, 1200]  # a+d vs b+c+e: as even as whole accounts allow
    assert not any({"a", "b"} <= set(share) for share in shares)


@pytest.mark.parametrize(("accounts", "processes", "expected"), [(5, 8, 5), (1, 2, 1), (0, 2, 0), (7, 1, 1)])
def test_never_more_shares_than_accounts_or_processes(accounts: int, processes: int, expected: int) -> None:
    groups = {f"acc-{i}": 10 + i for i in range(accounts)}
    shares = share_accounts(groups, processes)
    assert len(shares) == expected
    assert all(shares)


def test_equal_accounts_split_evenly() -> None:
    groups = {f"acc-{i:02d}": 1500 for i in range(50)}
    assert sorted(len(share) for share in share_accounts(groups, 2)) == [25, 25]


def test_a_process_that_fails_fails_the_rebuild_and_says_which() -> None:
    # nothing listens on port 9: the child cannot open its pool, raises, and exits 1
    nowhere = RebuildJob("postgresql://nobody@127.0.0.1:9/none", "none", ["acc-a"], chunk=10, workers=1)
    advanced: list[int] = []
    with pytest.raises(RebuildFailed, match=r"rebuild-1 exited with 1 .*running rebuild again is safe"):
        rebuild_in_processes([nowhere], advanced.append)
    assert advanced == []
