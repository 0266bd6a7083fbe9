from pydantic import Field, SecretStr

from shared.settings import ServiceSettings


class MappingSettings(ServiceSettings):
    db_schema: str = Field(default="mapping", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    http_port: int = Field(default=8083, ge=0, le=65535)
    otel_service_name: str = "mapping"
    procore_base_url: str = Field(min_length=1)
    procore_login_url: str = ""
    procore_client_id: str = Field(min_length=1)
    procore_client_secret: SecretStr
    token_encryption_key: SecretStr
