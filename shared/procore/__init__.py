"""The Procore REST client shared by the mapping service and the publisher."""

from shared.procore.client import ProcoreClient, TokenProvider, TokenSource
from shared.procore.connection_tokens import (
    CompanyNotBound,
    ConnectionToken,
    ConnectionTokens,
    NotConnected,
    TokensUnavailable,
)
from shared.procore.errors import ProcoreError
from shared.procore.oauth import OAuthApp, OAuthError, OAuthTokens
from shared.procore.ratelimit import RateLimiter, budget_key

__all__ = [
    "CompanyNotBound",
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
    "TokensUnavailable",
    "budget_key",
]
