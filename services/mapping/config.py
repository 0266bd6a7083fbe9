from pydantic import Field, SecretStr

from shared.settings import ProcoreSettings


class MappingSettings(ProcoreSettings):
    db_schema: str = Field(default="mapping", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    http_port: int = Field(default=8083, ge=0, le=65535)
    otel_service_name: str = "mapping"
    token_encryption_key: SecretStr
    """A Fernet key: Procore tokens are stored encrypted with it."""
    token_refresh_margin_s: float = Field(default=300.0, ge=0)
    """Tokens are refreshed this long before they expire; every token handed out lives at least this long."""
    outbox_poll_interval_s: float = Field(default=1.0, gt=0)
    """The relay wakes at once after a commit that queued changes; this poll catches the rest."""
    outbox_batch_size: int = Field(default=500, ge=1)
    # INTERNAL_API_TOKEN (ProcoreSettings) guards POST /internal/procore-token; empty disables it.
