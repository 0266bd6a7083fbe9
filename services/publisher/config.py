from pydantic import Field, SecretStr

from shared.settings import ServiceSettings


class PublisherSettings(ServiceSettings):
    db_schema: str = Field(default="publisher", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    http_port: int = Field(default=8082, ge=0, le=65535)
    otel_service_name: str = "publisher"
    procore_base_url: str = Field(min_length=1)
    procore_login_url: str = ""
    procore_client_id: str = Field(min_length=1)
    procore_client_secret: SecretStr
    procore_timeout_s: float = Field(default=30.0, gt=0)
    procore_max_attempts: int = Field(default=5, ge=1)

    @property
    def login_url(self) -> str:
        return self.procore_login_url or self.procore_base_url
