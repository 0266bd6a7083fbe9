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
    publish_redrive_after_s: float = Field(default=120.0, gt=0)
    """A publish request without a result after this long is sent again, unchanged (same request_id)."""
    publish_redrive_max_interval_s: float = Field(default=3600.0, gt=0)
    """Each further re-drive of one request waits twice as long as the one before, up to this."""
    publish_sweep_interval_s: float = Field(default=10.0, gt=0)
    """How often overdue publish requests are looked for."""
    remap_quiet_s: float = Field(default=1.0, ge=0)
    """Mapping and setup changes of an account are remapped once none came for this long…"""
    remap_max_delay_s: float = Field(default=10.0, ge=0)
    """…or once the oldest of them waited this long."""
    remap_chunk_entries: int = Field(default=2000, ge=1)
    """Entries re-checked per transaction of a remap at most (whole job site days)."""
    remap_poll_interval_s: float = Field(default=0.25, gt=0)
    """How often due remaps are looked for."""
    auto_publish_interval_s: float = Field(default=60.0, gt=0)
    """How often entries due under an account's auto-publish setting are looked for."""
