"""The settings the suite gives service processes per broker storage (pure)."""

from __future__ import annotations

from tests.chaos.cli import service_env_for, storage_for


def test_services_on_s3_storage_fetch_with_a_wait_tansu_can_serve() -> None:
    env = service_env_for(storage_for("auto", "broker"), {"PUBLISH_SWEEP_INTERVAL_S": "2"}, {})
    assert env["KAFKA_FETCH_MAX_WAIT_MS"] == "2000"
    assert env["KAFKA_SESSION_TIMEOUT_MS"] == "15000"
    assert env["PUBLISH_SWEEP_INTERVAL_S"] == "2"
    assert env["PROCORE_TIMEOUT_S"] == "5"


def test_memory_storage_keeps_the_services_default_and_the_command_line_wins() -> None:
    assert "KAFKA_FETCH_MAX_WAIT_MS" not in service_env_for(storage_for("auto", "kill"), {}, {})
    override = service_env_for("s3", {}, {"KAFKA_FETCH_MAX_WAIT_MS": "50"})
    assert override["KAFKA_FETCH_MAX_WAIT_MS"] == "50"
