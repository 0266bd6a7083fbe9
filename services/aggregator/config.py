from pydantic import Field

from shared.settings import ServiceSettings


class AggregatorSettings(ServiceSettings):
    db_schema: str = Field(default="aggregator", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    http_port: int = Field(default=8081, ge=0, le=65535)
    otel_service_name: str = "aggregator"
    outbox_poll_interval_s: float = Field(default=1.0, gt=0)
    outbox_batch_size: int = Field(default=500, ge=1)
    batch_max_records: int = Field(default=2000, ge=1)
    """Timelog events applied in one transaction at most; under light load batches are smaller."""
    batch_timeout_ms: int = Field(default=50, ge=0)
