"""The OAuth callback's code and state are scrubbed from access-log lines and span attributes."""

from __future__ import annotations

import logging

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.gateway.oauth_privacy import QueryScrubber, scrub_query, scrub_server_span, scrub_target


def test_only_code_and_state_are_replaced() -> None:
    assert scrub_query("code=abc&state=x%2Fy&foo=1") == "code=REDACTED&state=REDACTED&foo=1"
    assert scrub_query("week=2026-11-16&status=failed") == "week=2026-11-16&status=failed"
    assert (
        scrub_target("/oauth/procore/callback?code=c1&state=s1")
        == "/oauth/procore/callback?code=REDACTED&state=REDACTED"
    )
    assert scrub_target("/api/me") == "/api/me"


def test_the_access_log_line_is_scrubbed() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        "",
        0,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/oauth/procore/callback?code=SECRET1&state=SECRET2", "1.1", 303),
        None,
    )
    assert QueryScrubber().filter(record)
    line = record.getMessage()
    assert "SECRET1" not in line
    assert "SECRET2" not in line
    assert "code=REDACTED" in line


def test_span_attributes_lose_the_code_and_state_decoded_or_not() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    query = "code=a%2Fb&state=s%3D1"
    with provider.get_tracer("t").start_as_current_span(
        "GET /oauth/procore/callback",
        attributes={"http.url": f"http://gw/oauth/procore/callback?{query}", "http.target": "/x?code=a/b", "n": 1},
    ) as span:
        scrub_server_span(span, {"query_string": query.encode()})
    (finished,) = exporter.get_finished_spans()
    recorded = str(dict(finished.attributes or {}))
    assert "a%2Fb" not in recorded
    assert "a/b" not in recorded
    assert "s%3D1" not in recorded
    assert "s=1" not in recorded
    assert finished.attributes is not None
    assert finished.attributes["n"] == 1
