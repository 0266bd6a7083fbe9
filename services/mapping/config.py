import os
import secrets
import socket

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from services.mapping.adapters.procore_links import fernet_key
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
    procore_browser_login_url: str = ""
    """The login host as users' browsers reach it, for the authorization page ("Connect with Procore"); defaults to
    PROCORE_LOGIN_URL. Differs only where the services reach it by another name (compose: the sandbox container)."""
    procore_oauth_pkce: bool = False
    """Send a PKCE challenge (RFC 7636, S256) with authorization requests. Off for Procore, whose documentation
    does not describe PKCE for its authorization endpoint; on for the sandbox, which implements it."""
    oauth_state_ttl_s: int = Field(default=600, ge=30, le=3600)
    """How long an authorization request (its state) can be completed; each state works once."""
    internal_http_host: str = "127.0.0.1"
    internal_http_port: int = Field(default=8093, ge=1, le=65535)
    """The internal API (token endpoint, OAuth completion) listens here, never on the public HTTP_PORT; it runs
    only when INTERNAL_API_TOKEN is set. Reachable by the publisher and the gateway only (not published)."""

    mapping_instance_id: str = Field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}", min_length=1
    )
    """Names this instance as the runner of the sync jobs it claimed (unique per process)."""
    sync_jobs_max_running: int = Field(default=4, ge=1)
    """Sync jobs this instance runs at the same time (one per account), beside the consumer."""
    sync_job_lease_s: float = Field(default=30.0, gt=0)
    """A running sync job is renewed (and its progress written) every fifth of this; a job whose instance
    vanished is taken up by another one after this long."""
    sync_job_retry_max_s: float = Field(default=60.0, gt=0)
    """A sync job that failed for something unavailable is tried again after 1, 2, 4 … s, at most this."""

    webhook_destination_url: str = ""
    """Where Procore delivers webhooks: the gateway's public `/webhooks/procore` URL, as Procore reaches it. Empty:
    no hooks are registered (the reconcile alone then catches edits made in Procore, every interval below)."""
    webhook_keeper_interval_s: float = Field(default=30.0, gt=0)
    """How often missing hooks are registered (also at once after a setup or connection change)."""
    webhook_reconcile_interval_s: float = Field(default=3600.0, gt=0)
    """How often each chosen company is reconciled: what changed in Procore since the last time. Each reconcile costs
    one list call per page of company timecards, and two per mapped project (manpower, quantity logs) — against
    the company's Procore rate budget, which publishing shares."""
    webhook_reconcile_days: int = Field(default=14, ge=1, le=366)
    """Manpower and quantity logs can only be listed by date: the reconcile re-reads this many past days."""

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
