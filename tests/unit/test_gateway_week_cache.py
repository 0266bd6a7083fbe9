from datetime import date

from services.gateway.schemas import EntryStatus
from services.gateway.week_cache import WeekCache, WeekKey
from shared.events import Module

MONDAY = date(2026, 11, 23)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def key(account: str = "a", module: Module = Module.TIMECARD, week: date = MONDAY, **more) -> WeekKey:
    return WeekKey.of(account, module, week, more.get("statuses", []), more.get("q", ""), 0, more.get("limit"))


def cache(listening: list[bool] | None = None, **kwargs) -> WeekCache:
    up = listening if listening is not None else [True]
    return WeekCache(lambda: up[0], **kwargs)


def test_a_view_is_served_until_its_week_changes():
    c = cache()
    k = key()
    assert c.get(k) is None
    assert c.put(k, c.ticket(k), b"v1")
    assert c.get(k) == b"v1"
    c.changed("a", "timecard", ["2026-12-01"])  # next week: this one stays
    c.changed("b", "timecard", None)  # another account
    c.changed("a", "manpower", None)  # another module
    assert c.get(k) == b"v1"
    c.changed("a", "timecard", ["2026-11-29"])  # its Sunday
    assert c.get(k) is None


def test_a_change_with_no_dates_drops_every_week_of_the_module():
    c = cache()
    weeks = [key(week=MONDAY), key(week=date(2026, 11, 16)), key(statuses=[EntryStatus.FAILED])]
    for k in weeks:
        c.put(k, c.ticket(k), b"x")
    c.changed("a", "timecard", None)
    assert [c.get(k) for k in weeks] == [None, None, None]


def test_unreadable_dates_drop_every_week_of_the_module():
    c = cache()
    k = key()
    c.put(k, c.ticket(k), b"x")
    c.changed("a", "timecard", ["not a day"])
    assert c.get(k) is None


def test_an_answer_computed_while_a_change_arrived_is_not_kept():
    c = cache()
    k = key()
    ticket = c.ticket(k)
    c.changed("a", "timecard", ["2026-10-01"])  # any change of the account's module, even another week
    assert not c.put(k, ticket, b"maybe stale")
    assert c.get(k) is None
    assert c.put(k, c.ticket(k), b"fresh")


def test_nothing_is_served_or_kept_without_the_listen_connection_and_a_loss_forgets_everything():
    up = [True]
    c = cache(up)
    k = key()
    c.put(k, c.ticket(k), b"v1")
    in_flight = c.ticket(key(week=date(2026, 11, 16)))
    up[0] = False
    assert c.get(k) is None
    assert not c.put(k, c.ticket(k), b"v2")
    c.lost()
    up[0] = True
    assert c.get(k) is None
    assert not c.put(key(week=date(2026, 11, 16)), in_flight, b"from before the loss")


def test_views_expire_and_the_least_recently_used_go_first():
    clock = Clock()
    c = cache(max_entries=2, ttl_s=30, clock=clock)
    a, b, d = key(week=MONDAY), key(week=date(2026, 11, 16)), key(week=date(2026, 11, 9))
    for k in (a, b):
        c.put(k, c.ticket(k), b"x")
    assert c.get(a) == b"x"  # a is now the most recent
    c.put(d, c.ticket(d), b"x")
    assert (c.get(a), c.get(b), c.get(d)) == (b"x", None, b"x")
    clock.now = 31
    assert c.get(a) is None


def test_zero_entries_keeps_nothing():
    c = cache(max_entries=0)
    k = key()
    assert not c.put(k, c.ticket(k), b"x")
    assert c.get(k) is None
