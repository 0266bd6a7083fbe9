from pydantic import Field, SecretStr, ValidationInfo, field_validator

from services.mapping.adapters.connections import fernet_key
from shared.settings import ProcoreSettings


class MappingSettings(ProcoreSettings):
    db_schema: str = Field(default="mapping", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    http_port: int = Field(default=8083, ge=0, le=65535)
    otel_service_name: str = "mapping"
    token_encryption_keys: SecretStr = SecretStr("")
    """Fernet keys, comma-separated: the first encrypts, every one decrypts (rotation: put the new key first, run
    `python -m services.mapping rotate-keys`, then drop the old one)."""
    token_encryption_key: SecretStr = SecretStr("")
    """The older single-key setting, still accepted: alone it is the only key; beside TOKEN_ENCRYPTION_KEYS it is
    one more key that decrypts."""
    token_refresh_margin_s: float = Field(default=300.0, ge=0)
    """Tokens are refreshed this long before they expire; every token handed out lives at least this long."""
    outbox_poll_interval_s: float = Field(default=1.0, gt=0)
    """The relay wakes at once after a commit that queued changes; this poll catches the rest."""
    outbox_batch_size: int = Field(default=500, ge=1)
    procore_oauth_pkce: bool = False
    """Send a PKCE challenge (RFC 7636, S256) with authorization requests. Off for Procore, whose documentation
    does not describe PKCE for its authorization endpoint; on for the sandbox, which implements it."""
    oauth_state_ttl_s: int = Field(default=600, ge=30, le=3600)
    """How long an authorization request (its state) can be completed; each state works once."""
    internal_http_host: str = "127.0.0.1"
    internal_http_port: int = Field(default=8093, ge=1, le=65535)
    """The internal API (token endpoint, OAuth completion) listens here, never on the public HTTP_PORT; it runs
    only when INTERNAL_API_TOKEN is set. Reachable by the publisher and the gateway only (not published)."""

    @field_validator("token_encryption_keys", "token_encryption_key")
    @classmethod
    def _fernet_keys(cls, value: SecretStr) -> SecretStr:
        for key in _split(value):
            fernet_key(key)
        return value

    @field_validator("internal_http_port")
    @classmethod
    def _internal_port_apart(cls, port: int, info: ValidationInfo) -> int:
        if port == info.data.get("http_port"):
            raise ValueError("must differ from HTTP_PORT (the internal API is never on the public port)")
        return port

    @property
    def encryption_keys(self) -> list[str]:
        """Every key, the encrypting one first (empty when neither setting is set: the service refuses to start)."""
        keys = _split(self.token_encryption_keys) + _split(self.token_encryption_key)
        return list(dict.fromkeys(keys))


def _split(value: SecretStr) -> list[str]:
    return [key.strip() for key in value.get_secret_value().split(",") if key.strip()]
