"""shared.logs: readable lines by default, one JSON object per line on request, libraries quiet unless asked."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider

from shared.logs import account_context, configure_logging, parse_levels


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    libraries = {name: logging.getLogger(name).level for name in ("aiokafka", "uvicorn.access", "faststream")}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, old in libraries.items():
        logging.getLogger(name).setLevel(old)


def test_json_lines_carry_service_level_trace_span_and_account() -> None:
    stream = io.StringIO()
    configure_logging("publisher", "INFO", "json", stream=stream)
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("publish") as span, account_context("acct-7"):
        logging.getLogger("services.publisher.workers").info("sent %d records", 3, extra={"company_id": 42})
        context = span.get_span_context()
    logging.getLogger("services.publisher.workers").warning("outside")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "sent 3 records"
    assert first["level"] == "INFO"
    assert first["service"] == "publisher"
    assert first["logger"] == "services.publisher.workers"
    assert first["trace_id"] == f"{context.trace_id:032x}"
    assert first["span_id"] == f"{context.span_id:016x}"
    assert first["account_id"] == "acct-7"
    assert first["company_id"] == 42
    assert first["time"].startswith("20")
    assert second["trace_id"] is None
    assert second["account_id"] is None
    assert second["level"] == "WARNING"


def test_text_lines_are_one_readable_line_and_libraries_say_only_warnings() -> None:
    stream = io.StringIO()
    configure_logging("aggregator", "INFO", "text", stream=stream)
    logging.getLogger("aiokafka.consumer.group_coordinator").info("joined group with partitions [0, 1, 2, 3]")
    logging.getLogger("uvicorn.access").info('127.0.0.1 - "GET /health HTTP/1.1" 200')
    logging.getLogger("aiokafka.conn").warning("connection lost")
    logging.getLogger("services.aggregator.sweeper").info("re-drove 2 publishes")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert "WARNING aiokafka.conn: connection lost" in lines[0]
    assert lines[1].endswith("INFO  services.aggregator.sweeper: re-drove 2 publishes")


def test_log_levels_turn_a_library_back_on() -> None:
    stream = io.StringIO()
    configure_logging("aggregator", "INFO", "text", levels="aiokafka=DEBUG", stream=stream)
    logging.getLogger("aiokafka.consumer").debug("fetching")
    assert "DEBUG aiokafka.consumer: fetching" in stream.getvalue()


@pytest.mark.parametrize("spec", ["aiokafka", "aiokafka=LOUD", "=INFO"])
def test_bad_log_levels_are_refused_naming_the_part(spec: str) -> None:
    with pytest.raises(ValueError, match="LOG_LEVELS"):
        parse_levels(spec)
