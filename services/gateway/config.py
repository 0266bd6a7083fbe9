from pydantic import Field, SecretStr, field_validator

from shared.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    http_port: int = Field(default=8000, ge=0, le=65535)
    otel_service_name: str = "gateway"
    jwt_secret: SecretStr
    """HS256 signing key shared with whatever issues user tokens; at least 32 characters."""
    jwt_ttl_s: int = Field(default=8 * 3600, ge=60)
    dev_login: bool = False
    """Enables /api/dev/login and /dev/login, which mint tokens for anyone: never in production."""
    aggregator_schema: str = Field(default="aggregator", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    """The schema holding the aggregator's read model (entries, names, mappings); only read here."""
    mapping_schema: str = Field(default="mapping", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    """The schema holding the mapping service's read model (setup, connection, Procore lists, mappings)."""
    public_base_url: str = ""
    """The gateway's public URL (for the OAuth redirect URI); default: the URL the request came in on."""
    oauth_state_ttl_s: int = Field(default=600, ge=60)

    @field_validator("jwt_secret")
    @classmethod
    def _long_enough(cls, secret: SecretStr) -> SecretStr:
        if len(secret.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters")
        return secret
