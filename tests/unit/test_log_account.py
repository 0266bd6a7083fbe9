"""Log lines written while a message is handled name the account of its Kafka key (shared.broker)."""

from __future__ import annotations

import logging

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker

from shared.consumer_middleware import AccountLogMiddleware
from shared.logs import ContextFilter


async def test_a_handlers_log_lines_carry_the_account_of_the_key(caplog: pytest.LogCaptureFixture) -> None:
    broker = KafkaBroker(middlewares=[AccountLogMiddleware])
    log = logging.getLogger("tests.handler")
    caplog.handler.addFilter(ContextFilter("test"))

    @broker.subscriber("in")
    async def on_message(body: str) -> None:
        log.warning("handled %s", body)

    with caplog.at_level(logging.WARNING, logger="tests.handler"):
        async with TestKafkaBroker(broker) as test_broker:
            await test_broker.publish("one", "in", key=b"acct-1:site-9")
            await test_broker.publish("two", "in", key=b"acct-2")
            await test_broker.publish("three", "in")
    handled = [r for r in caplog.records if r.name == "tests.handler"]
    accounts = [(r.getMessage(), getattr(r, "account_id", "unset")) for r in handled]
    assert accounts == [("handled one", "acct-1"), ("handled two", "acct-2"), ("handled three", None)]
