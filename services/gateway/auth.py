"""Who is calling: the bearer token checked against the settings' auth mode.

- MobiClocks core's tokens (production, and development when JWKS_URL is set): RS256 or EdDSA, verified with the
  public key its `kid` names in core's key set, `iss` = JWT_ISSUER, `aud` = JWT_AUDIENCE.
- Development tokens (ENVIRONMENT=development only): HS256 with JWT_SECRET, the development issuer and audience.

Anything else is 401: an HS256 token in production, a development token checked against core's rules (wrong
audience), an unknown algorithm. The token's header only picks which of the two checks runs; the check itself fixes
the algorithms it takes and the key.
"""

from __future__ import annotations

from services.gateway.adapters.signing_keys import SigningKeys
from services.gateway.config import GatewaySettings
from services.gateway.tokens import (
    CORE_ALGORITHMS,
    DEV_ALGORITHM,
    DEV_RULES,
    NotAuthenticated,
    Principal,
    TokenRules,
    read_token,
    token_header,
)


class TokenVerifier:
    def __init__(self, core_keys: SigningKeys | None, core_rules: TokenRules | None, dev_secret: str | None) -> None:
        self._core_keys = core_keys
        self._core_rules = core_rules
        self._dev_secret = dev_secret

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> TokenVerifier:
        keys = rules = None
        if settings.jwks_url:
            keys = SigningKeys(
                settings.jwks_url, settings.jwks_cache_ttl_s, settings.jwks_refresh_cooldown_s, settings.jwks_timeout_s
            )
            rules = TokenRules(settings.jwt_issuer, settings.jwt_audience, CORE_ALGORITHMS, settings.jwt_leeway_s)
        # The settings allow JWT_SECRET in development only; checked again here, where it would matter.
        dev_secret = settings.jwt_secret.get_secret_value() if settings.development and settings.jwt_secret else None
        return cls(keys, rules, dev_secret)

    async def principal(self, token: str) -> Principal:
        """The caller of a valid token; `NotAuthenticated` naming the problem otherwise."""
        header = token_header(token)
        if header.algorithm in CORE_ALGORITHMS and self._core_keys is not None and self._core_rules:
            if not header.key_id:
                raise NotAuthenticated("invalid token: no kid naming its signing key")
            key = await self._core_keys.key_for(header.key_id)
            return read_token(token, key, self._core_rules)
        if header.algorithm == DEV_ALGORITHM and self._dev_secret is not None:
            return read_token(token, self._dev_secret, DEV_RULES)
        accepted = [
            *(CORE_ALGORITHMS if self._core_keys is not None else ()),
            *((DEV_ALGORITHM,) if self._dev_secret is not None else ()),
        ]
        raise NotAuthenticated(
            f"token algorithm {header.algorithm!r} not accepted here (accepted: {', '.join(accepted) or 'none'})"
        )
