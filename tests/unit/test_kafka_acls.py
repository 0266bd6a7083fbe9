"""The broker boundary: one table (shared.topics.topic_access) says who produces and consumes which topic.

The services' own declarations (FastStream subscribers and publishers, consumer groups, dead letters, the gateway's
command bus) are held to it, and the files docker compose provisions (deploy/kafka/) must be exactly what it implies.
How the compose job applies them: tests/unit/test_compose.py.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
from faststream.asgi import AsgiFastStream
from faststream.kafka import KafkaBroker
from faststream.security import SASLScram256, SASLScram512
from pydantic import ValidationError

from services.aggregator.bootstrap import build_app as build_aggregator
from services.aggregator.config import AggregatorSettings
from services.gateway.adapters.commands import KafkaCommandBus
from services.mapping.bootstrap import build_app as build_mapping
from services.mapping.config import MappingSettings
from services.publisher.bootstrap import build_app as build_publisher
from services.publisher.config import PublisherSettings
from shared.broker import DeadLetters, consumer_options, make_broker
from shared.dead_letters import marker_topic
from shared.kafka_acls import Acl, acls, parse_acls, principals, provisioned_topics, render_acls, render_topics
from shared.kafka_security import KafkaConnectionSettings
from shared.topics import CONSUMING_SERVICES, Topics, topic_access

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "t1."
BASE: dict[str, Any] = {
    "kafka_bootstrap_servers": "kafka:9092",
    "database_url": "postgresql://postgres@postgres/procore",
    "topic_prefix": PREFIX,
}
PROCORE: dict[str, Any] = {
    "procore_base_url": "http://p",
    "procore_login_url": "http://login",
    "procore_client_id": "c",
    "procore_client_secret": "s",
}
KEY = "ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg="


def declared(broker: KafkaBroker) -> tuple[set[str], set[str], set[str]]:
    """(topics subscribed, topics declared as published, consumer groups) of a service's broker."""
    # FastStream types them as its generic subscriber and publisher; a Kafka broker's have topics and group ids.
    consumed = {topic.name for sub in broker.subscribers for topic in sub.topics}  # type: ignore[attr-defined]
    published = {pub.topic for pub in broker.publishers}  # type: ignore[attr-defined]
    groups = {sub.group_id for sub in broker.subscribers}  # type: ignore[attr-defined]
    return consumed, published, groups


def kafka_broker(app: AsgiFastStream) -> KafkaBroker:
    assert isinstance(app.broker, KafkaBroker)
    return app.broker


BROKERS = {
    "aggregator": lambda: kafka_broker(build_aggregator(AggregatorSettings(**BASE))),
    "publisher": lambda: kafka_broker(build_publisher(PublisherSettings(**BASE, **PROCORE))),
    "mapping": lambda: kafka_broker(build_mapping(MappingSettings(**BASE, **PROCORE, token_encryption_keys=KEY))),
}


@pytest.mark.parametrize("service", sorted(BROKERS))
def test_each_service_consumes_and_declares_exactly_what_the_table_gives_it(service: str) -> None:
    topics = Topics(PREFIX)
    access = topic_access(topics)[service]
    consumed, published, groups = declared(BROKERS[service]())
    assert consumed == set(access.consumes)
    # Its dead letters go to its own dead-letter topic (DeadLetters), the rest is declared for the AsyncAPI document.
    assert published | {DeadLetters(make_broker("k:1", service, topics), service, topics).topic} == set(access.produces)
    assert groups == set(access.groups)
    assert consumer_options(service, prefix=PREFIX)["group_id"] in groups


async def test_the_gateway_sends_only_the_commands_the_table_gives_it() -> None:
    sent: set[str] = set()

    class Recorder:
        async def publish(self, message: Any, *, topic: str, key: bytes) -> None:
            sent.add(topic)

    topics = Topics(PREFIX)
    # A recorder stands in for the broker, and no command is needed: only the topic each send picks is checked.
    bus = KafkaCommandBus(Recorder(), topics)  # type: ignore[arg-type]
    await bus.send_publish(None, "k")  # type: ignore[arg-type]
    await bus.send_mapping(None, "k")  # type: ignore[arg-type]
    access = topic_access(topics)["gateway"]
    assert sent == set(access.produces)
    assert not access.consumes
    assert not access.groups


def test_every_topic_has_its_producers_and_consumers() -> None:
    topics = Topics(PREFIX)
    table = topic_access(topics)
    services = ("aggregator", "publisher", "mapping", "gateway", "mobiclocks-core")
    for topic in topics.all():
        writers = {p for p in services if topic in table[p].produces}
        readers = {p for p in services if topic in table[p].consumes}
        if topic.endswith(".dead-letter"):
            assert writers == {topic[len(PREFIX) : -len(".dead-letter")]}, topic
            assert not readers, topic
            assert topic in table["operator"].consumes
            assert marker_topic(topic) in table["operator"].produces
        else:
            assert writers, f"{topic}: written by {writers}, read by {readers}"
            assert readers, f"{topic}: written by {writers}, read by {readers}"


def test_no_principal_but_the_operator_writes_what_another_service_writes_to_itself() -> None:
    """Least privilege, the spot checks: the gateway only sends commands; nobody else fakes results or requests."""
    table = topic_access(Topics())
    assert set(table["gateway"].produces) == {"publish.commands", "mapping.commands"}
    writers = {t: {p for p, a in table.items() if t in a.produces and p != "operator"} for t in Topics().all()}
    assert writers["procore.publish-requests"] == {"aggregator"}
    assert writers["procore.publish-results"] == {"publisher"}
    assert writers["mapping.changes"] == {"mapping"}
    assert writers["mobiclocks.timelogs"] == {"mobiclocks-core"}
    assert not any(a.groups for p, a in table.items() if p not in CONSUMING_SERVICES)


def test_the_provisioned_files_are_what_the_code_implies() -> None:
    """Regenerate with `python -m shared.kafka_acls acls|topics` (deploy/README.md)."""
    acl_file = (ROOT / "deploy" / "kafka" / "acls.txt").read_text(encoding="utf-8")
    assert acl_file == render_acls(acls())
    assert parse_acls(acl_file) == acls()
    assert (ROOT / "deploy" / "kafka" / "topics.txt").read_text(encoding="utf-8") == render_topics(provisioned_topics())


def test_acls_grant_reads_writes_and_groups_only() -> None:
    table = acls(Topics(PREFIX))
    assert {a.operation for a in table} == {"Read", "Write"}
    groups = {f"{PREFIX}{s}" for s in CONSUMING_SERVICES} | {f"{PREFIX}aggregator.control"}
    assert {a.name for a in table if a.resource == "group"} == groups
    assert Acl("publisher", "topic", f"{PREFIX}procore.publish-requests", "Read") in table
    assert Acl("publisher", "topic", f"{PREFIX}procore.publish-requests", "Write") not in table
    assert principals() == sorted(["aggregator", "gateway", "mapping", "mobiclocks-core", "operator", "publisher"])


def test_a_hand_edited_acl_line_is_refused() -> None:
    with pytest.raises(ValueError, match="not an ACL line"):
        parse_acls("gateway cluster kafka-cluster Alter\n")


# --- connection settings --------------------------------------------------------------------------------------


def test_plaintext_by_default_for_local_runs_and_tests() -> None:
    settings = KafkaConnectionSettings()
    assert settings.faststream_security() is None
    assert settings.client_options() == {}
    assert settings.kafka_create_topics


def test_sasl_scram_for_faststream_and_aiokafka() -> None:
    settings = KafkaConnectionSettings(
        kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="publisher", kafka_sasl_password="pw-1234"
    )
    security = settings.faststream_security()
    assert isinstance(security, SASLScram512)
    assert not security.use_ssl
    assert (security.username, security.password) == ("publisher", "pw-1234")
    assert settings.client_options() == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "publisher",
        "sasl_plain_password": "pw-1234",
        "ssl_context": None,
    }
    broker = make_broker("kafka:9092", "publisher", Topics(), connection=settings)
    builder = broker.config.broker_config.builder
    assert isinstance(builder, functools.partial)  # typed as a plain callable; it binds the client's keywords
    built = builder.keywords
    assert (built["security_protocol"], built["sasl_mechanism"], built["sasl_plain_username"]) == (
        "SASL_PLAINTEXT",
        "SCRAM-SHA-512",
        "publisher",
    )


def test_sasl_ssl_uses_tls() -> None:
    settings = KafkaConnectionSettings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_sasl_username="u",
        kafka_sasl_password="p",
    )
    security = settings.faststream_security()
    assert isinstance(security, SASLScram256)
    assert security.use_ssl
    assert security.ssl_context is not None
    assert settings.client_options()["ssl_context"] is not None


def test_a_service_takes_its_kafka_login_from_its_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    password = "kafka-password-of-the-aggregator"
    env = {
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_USERNAME": "aggregator",
        "KAFKA_SASL_PASSWORD": password,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = AggregatorSettings(**BASE)
    builder = kafka_broker(build_aggregator(settings)).config.broker_config.builder
    assert isinstance(builder, functools.partial)  # typed as a plain callable; it binds the client's keywords
    assert builder.keywords["sasl_plain_username"] == "aggregator"
    assert password not in repr(settings), "the password stays out of reprs (and so out of logs)"


@pytest.mark.parametrize("missing", ["kafka_sasl_username", "kafka_sasl_password"])
def test_sasl_without_a_login_is_refused_naming_the_setting(missing: str) -> None:
    values = {"kafka_sasl_username": "u", "kafka_sasl_password": "p", missing: ""}
    with pytest.raises(ValidationError, match=missing):
        KafkaConnectionSettings.model_validate({"kafka_security_protocol": "SASL_PLAINTEXT", **values})
