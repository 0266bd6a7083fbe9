"""The Procore REST client shared by the mapping service and the publisher."""

from shared.procore.client import ProcoreClient, TokenProvider, TokenSource
from shared.procore.connection_tokens import ConnectionToken, ConnectionTokens, NotConnected
from shared.procore.errors import ProcoreError
from shared.procore.oauth import OAuthApp, OAuthError, OAuthTokens
from shared.procore.ratelimit import RateLimiter

__all__ = [
    "ConnectionToken",
    "ConnectionTokens",
    "NotConnected",
    "OAuthApp",
    "OAuthError",
    "OAuthTokens",
    "ProcoreClient",
    "ProcoreError",
    "RateLimiter",
    "TokenProvider",
    "TokenSource",
]
