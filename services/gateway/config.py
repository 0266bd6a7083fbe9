from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator

from shared.settings import ServiceSettings

CALLBACK_PATH = "/oauth/procore/callback"
"""Where Procore sends the browser back; the redirect URI is PUBLIC_BASE_URL + this path, never the request's URL."""


class GatewaySettings(ServiceSettings):
    http_port: int = Field(default=8000, ge=0, le=65535)
    otel_service_name: str = "gateway"
    jwt_secret: SecretStr
    """HS256 signing key shared with whatever issues user tokens; at least 32 characters."""
    jwt_ttl_s: int = Field(default=8 * 3600, ge=60)
    dev_login: bool = False
    """Enables /api/dev/login and /dev/login, which mint tokens for anyone: never in production."""
    aggregator_schema: str = Field(default="aggregator", pattern=r"^[a-z_][a-z0-9_]{0,57}$")
    """The aggregator's schema. The gateway reads only its read contract, the views in `<AGGREGATOR_SCHEMA>_read`
    (entries, history, names, mappings, setups), granted to the gateway's role (DATABASE_URL's user)."""
    mapping_schema: str = Field(default="mapping", pattern=r"^[a-z_][a-z0-9_]{0,57}$")
    """The mapping service's schema. The gateway reads only its read contract, the views in `<MAPPING_SCHEMA>_read`
    (setup, connection status, bound companies, Procore lists, mappings, reports, command outcomes)."""
    public_base_url: str = ""
    """The gateway's public URL, which fixes the OAuth redirect URI (registered with the Procore app). Default, for
    development only: http://HTTP_HOST:HTTP_PORT (127.0.0.1 for a wildcard host)."""
    mapping_url: str = ""
    """The mapping service's internal URL: the OAuth code and service-account secrets go there over HTTP, never
    through Kafka. Without it (and INTERNAL_API_TOKEN) connecting to Procore answers 503."""
    internal_api_token: SecretStr = SecretStr("")
    """Bearer token of the mapping service's internal API."""

    @field_validator("public_base_url")
    @classmethod
    def _base_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if url and (parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment):
            raise ValueError("must be an absolute http(s) URL such as https://procore.example.com")
        return url.rstrip("/")

    @property
    def oauth_redirect_uri(self) -> str:
        """Fixed by settings: Procore compares it with the registered one, and a request cannot choose it."""
        host = "127.0.0.1" if self.http_host in ("", "0.0.0.0", "::") else self.http_host
        return f"{self.public_base_url or f'http://{host}:{self.http_port}'}{CALLBACK_PATH}"

    @property
    def oauth_cookie_secure(self) -> bool:
        """The nonce cookie is Secure when the callback is served over https."""
        return self.oauth_redirect_uri.startswith("https://")

    @field_validator("jwt_secret")
    @classmethod
    def _long_enough(cls, secret: SecretStr) -> SecretStr:
        if len(secret.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters")
        return secret
