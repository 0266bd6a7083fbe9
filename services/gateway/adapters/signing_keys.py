"""MobiClocks core's public signing keys, from its JWKS URL, through PyJWT's `PyJWKClient`.

The client caches the key set (fetched again after `ttl_s`, so rotation shows up) and, for a token whose `kid` is
not in the set, fetches it again at most once per `cooldown_s`: a key core just started signing with is found, and
tokens with made-up kids cannot turn into a flood of requests to core. The client is synchronous (urllib): it runs
in a worker thread so a slow key server never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import logging

from jwt import PyJWK, PyJWKClient
from jwt.exceptions import PyJWKClientConnectionError, PyJWKClientError, PyJWKError, PyJWKSetError

from services.gateway.tokens import NotAuthenticated

log = logging.getLogger(__name__)


class KeysUnavailable(Exception):
    """The key set could not be fetched (or is unusable): a token cannot be checked now. HTTP 503, not 401."""


class SigningKeys:
    def __init__(self, url: str, ttl_s: float, cooldown_s: float, timeout_s: float) -> None:
        self.url = url
        self._client = PyJWKClient(
            url, cache_jwk_set=True, lifespan=ttl_s, cooldown_duration=cooldown_s, timeout=timeout_s
        )

    async def key_for(self, key_id: str) -> PyJWK:
        """The public key named `key_id`; `NotAuthenticated` for a key the set does not have."""
        try:
            return await asyncio.to_thread(self._client.get_signing_key, key_id)
        except PyJWKClientConnectionError as error:
            log.warning("MobiClocks core's key set at %s cannot be fetched: %s", self.url, error)
            raise KeysUnavailable("the token signing keys cannot be fetched now; try again shortly") from error
        except (PyJWKSetError, PyJWKError) as error:
            log.error("MobiClocks core's key set at %s is unusable: %s", self.url, error)
            raise KeysUnavailable("the token signing keys are unusable; try again shortly") from error
        except PyJWKClientError as error:
            # The set was fetched (or is cooling down) and has no such key: a forged, stale or foreign token.
            raise NotAuthenticated(f"token signed with a key this service does not know (kid {key_id!r})") from error
