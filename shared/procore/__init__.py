"""The Procore REST client shared by the mapping service and the publisher."""

from shared.procore.client import ProcoreClient, ProcoreError, TokenSource
from shared.procore.ratelimit import RateLimiter

__all__ = ["ProcoreClient", "ProcoreError", "RateLimiter", "TokenSource"]
