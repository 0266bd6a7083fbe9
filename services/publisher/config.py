import os
import secrets
import socket
from typing import Literal, Self

from pydantic import Field, model_validator

from shared.settings import ProcoreSettings


def _instance_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class PublisherSettings(ProcoreSettings):
    db_schema: str = Field(default="publisher", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    http_port: int = Field(default=8082, ge=0, le=65535)
    otel_service_name: str = "publisher"
    procore_tokens_url: str = ""
    """The mapping service's internal API (its INTERNAL_HTTP_PORT, never its public port): tokens of each account's
    own Procore connection come from it, one per company called.
    Empty: every account uses the app's client-credentials token (a service account)."""
    procore_rate_limit_scope: Literal["token", "company"] = "token"
    """Procore counts calls per token: every company reached with one connection (or the app's one token) shares its
    budget and is paced together. `company`: one budget per company (a Procore, or the sandbox, counting so)."""
    procore_rate_limit_patience_s: float = Field(default=7200.0, gt=0)
    """How long one call may wait out Procore's rate limits before its round counts as unavailable."""
    publisher_max_active_companies: int = Field(default=64, ge=1)
    """Companies whose requests are sent at the same time (each company: one call at a time)."""
    publisher_bulk_timecards: bool = True
    """New timecards go to Procore up to 25 per call (v1.1 bulk_create); a company where Procore refuses it (403, no
    beta access) is published one by one."""
    batch_max_records: int = Field(default=500, ge=1)
    """Publish requests read from Kafka (and stored) per batch."""
    batch_timeout_ms: int = Field(default=100, ge=1)
    publisher_max_tries: int = Field(default=8, ge=1)
    """Rounds of one request ending in a Procore 500 (or an unexpected error) before its entry fails.
    Unavailability (connection errors, timeouts, 502/503/504, token endpoint or database away) never counts."""
    publisher_retry_base_s: float = Field(default=0.5, gt=0)
    publisher_retry_max_s: float = Field(default=30.0, gt=0)
    """A company's worker backs off after a failed round: base * 2^(n-1), at most this."""
    publisher_instance_id: str = Field(default_factory=_instance_id, min_length=1)
    """Names this instance as a lease owner (unique per process)."""
    publisher_lease_ttl_s: float = Field(default=5.0, gt=0)
    """A company's lease lasts this long unless renewed (every third of it): how soon another instance
    continues the companies of one that died."""
    publisher_lease_margin_s: float = Field(default=1.0, ge=0)
    """No Procore write in the last this-many seconds of a lease as this instance last renewed it."""
    publisher_takeover_grace_s: float = Field(default=3.0, ge=0)
    """After taking over a company whose owner vanished mid-request, wait this long past the old lease's
    expiry before looking for what it may have written (a write sent just before may still be landing)."""
    outbox_poll_interval_s: float = Field(default=1.0, gt=0)
    outbox_batch_size: int = Field(default=500, ge=1)

    @model_validator(mode="after")
    def _margin_fits(self) -> Self:
        if self.publisher_lease_margin_s >= self.publisher_lease_ttl_s * 2 / 3:
            raise ValueError("PUBLISHER_LEASE_MARGIN_S must be under two thirds of PUBLISHER_LEASE_TTL_S")
        return self
