from pydantic import Field, SecretStr

from shared.settings import ServiceSettings


class MappingSettings(ServiceSettings):
    db_schema: str = Field(default="mapping", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    http_port: int = Field(default=8083, ge=0, le=65535)
    otel_service_name: str = "mapping"
    procore_base_url: str = Field(min_length=1)
    procore_login_url: str = ""
    """Procore's OAuth host (login.procore.com for production); defaults to PROCORE_BASE_URL."""
    procore_client_id: str = Field(min_length=1)
    procore_client_secret: SecretStr
    procore_timeout_s: float = Field(default=30.0, gt=0)
    procore_max_attempts: int = Field(default=5, ge=1)
    token_encryption_key: SecretStr
    """A Fernet key: Procore tokens are stored encrypted with it."""
    token_refresh_margin_s: float = Field(default=300.0, ge=0)
    """Tokens are refreshed this long before they expire; every token handed out lives at least this long."""
    internal_api_token: SecretStr = SecretStr("")
    """Shared secret other services (the publisher) send to POST /internal/procore-token; empty disables it."""

    @property
    def login_url(self) -> str:
        return self.procore_login_url or self.procore_base_url
