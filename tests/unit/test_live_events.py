"""Live updates: notifications become server-sent events for their account only; a slow client resyncs."""

import asyncio
import json

from services.gateway.adapters.live import RESYNC, LiveEvent, LiveHub, event_of


def test_notifications_become_events_for_their_account():
    routed = event_of("entries", json.dumps({"account_id": "a", "module": "timecard", "dates": ["2026-11-24"]}))
    assert routed is not None
    account, event = routed
    assert account == "a"
    assert event == LiveEvent("entries", {"module": "timecard", "dates": ["2026-11-24"]})
    assert event.encode() == b'event: entries\ndata: {"module":"timecard","dates":["2026-11-24"]}\n\n'
    assert event_of("mapping", json.dumps({"account_id": "a", "what": "mappings"})) == (
        "a",
        LiveEvent("mapping", {"what": "mappings"}),
    )
    assert event_of("entries", "not json") is None
    assert event_of("entries", json.dumps({"module": "x"})) is None


async def test_each_client_hears_its_own_account_and_a_slow_one_is_told_to_resync():
    hub = LiveHub("postgresql://unused", "agg", "map", queue_size=2)
    async with hub.subscribe("a") as ours, hub.subscribe("b") as theirs:
        for day in range(3):
            hub._deliver("agg.entries", json.dumps({"account_id": "a", "module": "manpower", "dates": [str(day)]}))
        hub._deliver("elsewhere.entries", json.dumps({"account_id": "a", "module": "manpower"}))
        assert theirs.empty()
        assert ours.get_nowait() == RESYNC
        assert ours.empty()
        assert hub.clients() == 2
    assert hub.clients() == 0
    await asyncio.sleep(0)
