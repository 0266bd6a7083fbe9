from pydantic import Field

from shared.settings import ProcoreSettings


class PublisherSettings(ProcoreSettings):
    db_schema: str = Field(default="publisher", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    http_port: int = Field(default=8082, ge=0, le=65535)
    otel_service_name: str = "publisher"
    procore_tokens_url: str = ""
    """The mapping service's base URL: tokens of each account's own Procore connection come from it.
    Empty: every account uses the app's client-credentials token (a service account)."""
    procore_rate_limit_patience_s: float = Field(default=7200.0, gt=0)
    """How long one call may wait out Procore's rate limits before its entry fails."""
    publisher_max_active_companies: int = Field(default=64, ge=1)
    """Companies whose requests are sent at the same time (each company: one call at a time)."""
    batch_max_records: int = Field(default=500, ge=1)
    """Publish requests read from Kafka (and stored) per batch."""
    batch_timeout_ms: int = Field(default=100, ge=1)
    publisher_max_tries: int = Field(default=5, ge=1)
    """Restarts of one request (crashes, database errors) before it is failed."""
