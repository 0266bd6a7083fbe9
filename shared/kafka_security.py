"""How a process authenticates to Kafka: PLAINTEXT locally and in tests (Tansu), SASL/SCRAM against Apache Kafka with
ACLs (docker-compose.yml, deploy/README.md "Broker").

Every Kafka client of the project takes its connection from here — the FastStream broker (`faststream_security`),
aiokafka's producers, consumers and admin client (`client_options`) — so one set of settings decides them all.
"""

from __future__ import annotations

import ssl
from typing import Any, Literal

from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SecurityProtocol = Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]

_FASTSTREAM_SASL: dict[str, type[SASLPlaintext | SASLScram256 | SASLScram512]] = {
    "SCRAM-SHA-512": SASLScram512,
    "SCRAM-SHA-256": SASLScram256,
    "PLAIN": SASLPlaintext,
}


class KafkaConnectionSettings(BaseSettings):
    """KAFKA_SECURITY_PROTOCOL and friends; each service's principal may touch only its own topics (ACLs)."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    kafka_sasl_username: str = Field(default="", validate_default=True)
    """The service's own principal (User:<name> in the broker's ACLs)."""
    kafka_sasl_password: SecretStr = Field(default=SecretStr(""), validate_default=True)
    kafka_ssl_cafile: str = ""
    """SASL_SSL: the CA that signed the broker's certificate (default: the system's CAs)."""
    kafka_create_topics: bool = True
    """Create missing topics at start (local runs, tests). False where topics are provisioned and services may not
    create them (compose: the kafka-setup job creates every topic; auto-creation is off)."""

    @field_validator("kafka_sasl_username", "kafka_sasl_password")
    @classmethod
    def _required_with_sasl(cls, value: str | SecretStr, info: ValidationInfo) -> str | SecretStr:
        protocol = info.data.get("kafka_security_protocol", "PLAINTEXT")
        given = value.get_secret_value() if isinstance(value, SecretStr) else value
        if protocol.startswith("SASL") and not given:
            raise ValueError(f"is required with KAFKA_SECURITY_PROTOCOL={protocol}")
        return value

    @property
    def sasl(self) -> bool:
        return self.kafka_security_protocol.startswith("SASL")

    def _ssl_context(self) -> ssl.SSLContext | None:
        if self.kafka_security_protocol != "SASL_SSL":
            return None
        return ssl.create_default_context(cafile=self.kafka_ssl_cafile or None)

    def faststream_security(self) -> BaseSecurity | None:
        """For `KafkaBroker(security=...)`; None for PLAINTEXT."""
        if not self.sasl:
            return None
        make = _FASTSTREAM_SASL[self.kafka_sasl_mechanism]
        context = self._ssl_context()
        return make(
            self.kafka_sasl_username,
            self.kafka_sasl_password.get_secret_value(),
            ssl_context=context,
            use_ssl=context is not None,
        )

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka's AIOKafkaProducer, AIOKafkaConsumer and AIOKafkaAdminClient."""
        if not self.sasl:
            return {}
        return {
            "security_protocol": self.kafka_security_protocol,
            "sasl_mechanism": self.kafka_sasl_mechanism,
            "sasl_plain_username": self.kafka_sasl_username,
            "sasl_plain_password": self.kafka_sasl_password.get_secret_value(),
            "ssl_context": self._ssl_context(),
        }


def connection_of(settings: object | None) -> KafkaConnectionSettings:
    """The connection settings carried by `settings` (any ServiceSettings), else those of the environment."""
    if isinstance(settings, KafkaConnectionSettings):
        return settings
    return KafkaConnectionSettings()
