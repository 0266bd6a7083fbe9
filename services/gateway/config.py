import ipaddress
from enum import StrEnum
from urllib.parse import urlsplit

from limits import parse_many
from pydantic import Field, SecretStr, ValidationInfo, field_validator

from services.gateway.rate_limits import CommandGroup
from services.gateway.tokens import DEV_AUDIENCE
from shared.settings import ServiceSettings

CALLBACK_PATH = "/oauth/procore/callback"
"""Where Procore sends the browser back; the redirect URI is PUBLIC_BASE_URL + this path, never the request's URL."""


class Environment(StrEnum):
    PRODUCTION = "production"
    """Only MobiClocks core's tokens (RS256/EdDSA, keys from JWKS_URL); no dev login, no HS256, no /docs."""
    DEVELOPMENT = "development"
    """Also HS256 tokens signed with JWT_SECRET for the development audience (dev login, tests)."""


def is_loopback(host: str) -> bool:
    """HTTP_HOST names only this machine (a wildcard such as 0.0.0.0 listens on every interface: not loopback)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _production(info: ValidationInfo) -> bool:
    # An invalid ENVIRONMENT is reported on its own line; the checks that depend on it then assume production.
    return info.data.get("environment", Environment.PRODUCTION) is Environment.PRODUCTION


def _rates(value: str) -> str:
    try:
        parse_many(value)
    except ValueError as error:
        raise ValueError(f"must look like 30/minute or 10/second;500/hour ({error})") from error
    return value


class GatewaySettings(ServiceSettings):
    http_port: int = Field(default=8000, ge=0, le=65535)
    http_workers: int = Field(default=1, ge=1, le=64)
    """Processes serving HTTP on HTTP_PORT, each on its own socket (`SO_REUSEPORT`, see workers.py): about one per
    core the gateway may use. 1: one process, no supervisor."""
    otel_service_name: str = "gateway"
    environment: Environment = Environment.PRODUCTION
    """production unless told otherwise: a forgotten setting never turns development conveniences on."""

    # --- tokens of MobiClocks core (production mode) ---------------------------------------------------------
    jwks_url: str = Field(default="", validate_default=True)
    """MobiClocks core's JSON Web Key Set: the public keys (RS256, EdDSA) its tokens are signed with."""
    jwt_issuer: str = Field(default="", validate_default=True)
    """The `iss` MobiClocks core puts in its tokens; any other issuer is refused."""
    jwt_audience: str = Field(default="", validate_default=True)
    """The `aud` MobiClocks core puts in tokens meant for this gateway; never the development audience."""
    jwks_cache_ttl_s: float = Field(default=300.0, gt=0)
    """The key set is fetched again after this long (keys published or withdrawn by rotation show up)."""
    jwks_refresh_cooldown_s: float = Field(default=30.0, ge=0)
    """A token with an unknown `kid` fetches the key set again at most this often (forged kids cannot hammer it)."""
    jwks_timeout_s: float = Field(default=5.0, gt=0)
    jwt_leeway_s: int = Field(default=30, ge=0, le=300)
    """Clock skew allowed on exp/nbf/iat."""

    # --- development ---------------------------------------------------------------------------------------
    jwt_secret: SecretStr | None = Field(default=None, validate_default=True)
    """Development only: the HS256 key of development tokens (dev login, tests); at least 32 characters."""
    jwt_ttl_s: int = Field(default=8 * 3600, ge=60)
    """Lifetime of development tokens."""
    dev_login: bool = Field(default=False, validate_default=True)
    """Enables /api/dev/login and /dev/login, which mint tokens for anyone: only with ENVIRONMENT=development and
    HTTP_HOST on loopback."""

    # --- week views ----------------------------------------------------------------------------------------
    week_cache_entries: int = Field(default=512, ge=0)
    """Week views kept per process until their entries change (0: none; see week_cache.py)."""
    week_cache_ttl_s: float = Field(default=300.0, gt=0)
    """At most this long (job site and cost code names change without an entries notification)."""

    # --- HTTP hardening ------------------------------------------------------------------------------------
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    """Largest request body accepted (Content-Length or streamed); larger ones get 413."""
    rate_limit_publish: str = "30/minute"
    """Per account: publish, republish, force publish."""
    rate_limit_setup: str = "20/minute"
    """Per account: save setup, disconnect, unbind a company."""
    rate_limit_connect: str = "10/minute"
    """Per account: start an OAuth authorization, connect a service account (both reach Procore's token endpoint)."""
    rate_limit_mapping: str = "300/minute"
    """Per account: manual mappings (a row at a time, so bursts are normal)."""
    rate_limit_sync: str = "10/minute"
    """Per account: sync and auto-map (each pulls whole Procore lists)."""
    rate_limit_webhook: str = "1200/minute"
    """Procore webhook deliveries per hook (a burst of edits in Procore; Procore retries what is refused)."""
    rate_limit_storage: str = "memory://"
    """Where the counters live (the `limits` library's storage URI: memory://, redis://host:6379, …). memory:// counts
    per gateway process (each of HTTP_WORKERS, each instance); several share limits through redis:// or
    memcached://."""

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
    trace_url_template: str = ""
    """The trace viewer's page of one trace, `{trace_id}` standing for its id (Jaeger:
    `http://localhost:16686/trace/{trace_id}`): entry history links each step to its trace. Empty: ids only."""

    @field_validator("jwks_url")
    @classmethod
    def _jwks_url(cls, url: str, info: ValidationInfo) -> str:
        if not url:
            if _production(info):
                raise ValueError("is required in production: the URL of MobiClocks core's JSON Web Key Set")
            return url
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute http(s) URL")
        if parts.scheme == "http" and not is_loopback(parts.hostname):
            raise ValueError("must be https (plain http only to a loopback address)")
        return url

    @field_validator("jwt_issuer", "jwt_audience")
    @classmethod
    def _core_claims(cls, value: str, info: ValidationInfo) -> str:
        if not value and (_production(info) or info.data.get("jwks_url")):
            raise ValueError("is required with JWKS_URL (and in production): tokens are checked against it")
        if info.field_name == "jwt_audience" and value == DEV_AUDIENCE:
            raise ValueError(f"{DEV_AUDIENCE!r} is the audience of development tokens: production never accepts it")
        return value

    @field_validator("jwt_secret")
    @classmethod
    def _dev_secret(cls, secret: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if _production(info):
            if secret is not None:
                raise ValueError(
                    "is for development only (HS256): production verifies MobiClocks core's tokens with JWKS_URL; "
                    "unset it, or set ENVIRONMENT=development"
                )
            return None
        if secret is None or len(secret.get_secret_value()) < 32:
            raise ValueError("is required in development, at least 32 characters")
        return secret

    @field_validator("dev_login")
    @classmethod
    def _dev_login_stays_home(cls, enabled: bool, info: ValidationInfo) -> bool:
        if not enabled:
            return enabled
        if _production(info):
            raise ValueError(
                "DEV_LOGIN=true mints tokens for anyone: it needs ENVIRONMENT=development (ENVIRONMENT is production)"
            )
        host = str(info.data.get("http_host", ""))
        if not is_loopback(host):
            raise ValueError(
                f"DEV_LOGIN=true mints tokens for anyone: it needs HTTP_HOST on loopback (127.0.0.1, ::1), not {host!r}"
            )
        return enabled

    @field_validator(
        "rate_limit_publish",
        "rate_limit_setup",
        "rate_limit_connect",
        "rate_limit_mapping",
        "rate_limit_sync",
        "rate_limit_webhook",
    )
    @classmethod
    def _rate(cls, value: str) -> str:
        return _rates(value)

    @field_validator("rate_limit_storage")
    @classmethod
    def _storage(cls, uri: str) -> str:
        if "://" not in uri or uri.startswith("async+"):
            raise ValueError("must be a storage URI such as memory:// or redis://host:6379 (without async+)")
        return uri

    @field_validator("public_base_url")
    @classmethod
    def _base_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if url and (parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment):
            raise ValueError("must be an absolute http(s) URL such as https://procore.example.com")
        return url.rstrip("/")

    @property
    def development(self) -> bool:
        return self.environment is Environment.DEVELOPMENT

    @property
    def rate_limits(self) -> dict[CommandGroup, str]:
        """Per-account limits of each group of commands."""
        return {
            CommandGroup.PUBLISH: self.rate_limit_publish,
            CommandGroup.SETUP: self.rate_limit_setup,
            CommandGroup.CONNECT: self.rate_limit_connect,
            CommandGroup.MAPPING: self.rate_limit_mapping,
            CommandGroup.SYNC: self.rate_limit_sync,
            CommandGroup.WEBHOOK: self.rate_limit_webhook,
        }

    @property
    def oauth_redirect_uri(self) -> str:
        """Fixed by settings: Procore compares it with the registered one, and a request cannot choose it."""
        host = "127.0.0.1" if self.http_host in ("", "0.0.0.0", "::") else self.http_host
        return f"{self.public_base_url or f'http://{host}:{self.http_port}'}{CALLBACK_PATH}"

    @property
    def oauth_cookie_secure(self) -> bool:
        """The nonce cookie is Secure when the callback is served over https."""
        return self.oauth_redirect_uri.startswith("https://")

    @property
    def https(self) -> bool:
        return self.public_base_url.startswith("https://")
