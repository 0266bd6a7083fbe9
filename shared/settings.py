"""Settings shared by every service; each service subclasses `ServiceSettings`.

Required values have no default: a service with a missing or invalid setting stops at
start with one line per problem, naming the environment variable.
"""

from __future__ import annotations

import sys
from typing import Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.kafka_security import KafkaConnectionSettings
from shared.logs import parse_levels
from shared.topics import Topics

INTERNAL_TOKEN_MIN_LENGTH = 32


class ConsumerSettings(BaseSettings):
    """How every consumer treats failures: wait out what is unavailable, dead-letter only what can never succeed."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    consumer_retry_base_s: float = Field(default=0.2, gt=0)
    """First wait before a failed message or batch is tried again; it doubles with each failure."""
    consumer_retry_cap_s: float = Field(default=30.0, gt=0)
    """Longest wait between two tries (a database outage of an hour is tried again at least this often)."""
    consumer_max_attempts: int = Field(default=5, ge=1)
    """Tries of one message whose handler fails deterministically (a bug, a DataError) before it is dead-lettered."""
    consumer_pause_log_interval_s: float = Field(default=30.0, gt=0)
    """While a consumer waits out an outage, how often it says so again."""
    max_message_bytes: int = Field(default=256 * 1024, ge=1024)
    """A consumed message larger than this is invalid (no timelog or command is ever that big)."""
    dead_letter_max_bytes: int = Field(default=900_000, ge=1024)
    """A dead letter larger than this (Apache Kafka's default limit is 1 MiB) is replaced by a small reference."""
    kafka_fetch_max_wait_ms: int = Field(default=50, ge=1, le=30_000)
    """How long the broker may hold a fetch waiting for data (bounds the latency a quiet partition adds). Tansu on
    s3:// storage answers a fetch it cannot finish within this time with no records, also below the high watermark
    (tests/chaos/RESULTS.md): there, give it longer (the chaos suite's broker scenario uses 2000)."""


class ServiceSettings(ConsumerSettings, KafkaConnectionSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    kafka_bootstrap_servers: str = Field(min_length=1)
    database_url: SecretStr
    """As the service's own role (its password included), which owns DB_SCHEMA and nothing else; never an
    administrator: a service refuses to migrate a schema its role does not own (deploy/README.md, "Database roles")."""
    topic_prefix: str = ""
    db_schema: str = Field(default="", pattern=r"^[a-z_][a-z0-9_]{0,62}$|^$")
    """The service's schema, created for its role by provisioning (`python -m shared.provision`)."""
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=0, ge=0, le=65535)
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    """text: one readable line per event; json: one JSON object per line (shared/logs.py)."""
    log_levels: str = ""
    """Per-logger levels, e.g. `aiokafka=INFO,uvicorn.access=INFO` (libraries log WARNING and up otherwise)."""
    otel_exporter_otlp_endpoint: str | None = None
    otel_service_name: str = ""
    kafka_session_timeout_ms: int = Field(default=10_000, ge=1000)
    kafka_topic_partitions: int = Field(default=4, ge=1)

    @field_validator("log_levels")
    @classmethod
    def _logger_levels(cls, value: str) -> str:
        parse_levels(value)
        return value

    @property
    def topics(self) -> Topics:
        return Topics(self.topic_prefix)


S = TypeVar("S", bound=BaseSettings)


def describe_errors(cls: type[BaseSettings], error: ValidationError) -> list[str]:
    lines = []
    for err in error.errors():
        field = ".".join(str(p) for p in err["loc"]) or "?"
        env = field.upper()
        problem = "is required but not set" if err["type"] == "missing" else f"is invalid: {err['msg']}"
        lines.append(f"{cls.__name__}: setting {env} {problem}")
    return lines


def load_settings(cls: type[S]) -> S:
    """Read settings from the environment or exit with a clear message naming each bad variable."""
    try:
        return cls()
    except ValidationError as error:
        for line in describe_errors(cls, error):
            print(line, file=sys.stderr)
        raise SystemExit(2) from None


class ProcoreSettings(ServiceSettings):
    """Settings of a service that talks to Procore (the mapping service and the publisher)."""

    procore_base_url: str = Field(min_length=1)
    environment: Literal["production", "development"] = "production"
    """`development` only for `make run`, the sandbox and tests: it lets PROCORE_LOGIN_URL default."""
    procore_login_url: str = Field(default="", validate_default=True)
    """Procore's OAuth host: its login host, which is not its API host (PROCORE_BASE_URL). Required, except in
    development (ENVIRONMENT=development), where it defaults to PROCORE_BASE_URL (the sandbox serves both)."""
    procore_client_id: str = Field(min_length=1)
    procore_client_secret: SecretStr
    procore_timeout_s: float = Field(default=30.0, gt=0)
    procore_max_attempts: int = Field(default=5, ge=1)
    """Tries of one Procore call on transient failures (rate limits do not count)."""
    internal_api_token: SecretStr = SecretStr("")
    """Shared secret between the publisher and the mapping service's internal token endpoint."""

    @field_validator("internal_api_token")
    @classmethod
    def _long_internal_token(cls, value: SecretStr) -> SecretStr:
        if 0 < len(value.get_secret_value()) < INTERNAL_TOKEN_MIN_LENGTH:
            raise ValueError(
                f"must be at least {INTERNAL_TOKEN_MIN_LENGTH} characters (a random secret: "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return value

    @field_validator("procore_login_url")
    @classmethod
    def _login_host_named(cls, url: str, info: ValidationInfo) -> str:
        if not url and info.data.get("environment", "production") != "development":
            raise ValueError(
                "required: Procore's login host (OAuth) is not its API host (PROCORE_BASE_URL); only "
                "ENVIRONMENT=development lets it default to PROCORE_BASE_URL"
            )
        return url

    @property
    def login_url(self) -> str:
        return self.procore_login_url or self.procore_base_url
