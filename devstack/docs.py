"""Regenerate the published contracts: AsyncAPI per event-driven service, OpenAPI of the gateway."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent.parent / "docs" / "contracts"

_PLACEHOLDER_ENV: dict[str, Any] = {
    "kafka_bootstrap_servers": "kafka:9092",
    "database_url": "postgresql://postgres@postgres/procore",
    "procore_base_url": "http://procore-sandbox:8090",
    "procore_login_url": "http://procore-sandbox:8090",
    "procore_client_id": "client",
    "procore_client_secret": "secret",
    "token_encryption_keys": "A" * 43 + "=",  # a well-formed Fernet key (validated), used by nothing
    # The gateway as in production: MobiClocks core's tokens only (no dev login, no HS256).
    "jwks_url": "https://mobiclocks.example/.well-known/jwks.json",
    "jwt_issuer": "https://mobiclocks.example",
    "jwt_audience": "procore-publishing",
}


def _settings(cls: type[Any]) -> Any:
    fields = cls.model_fields
    return cls(**{k: v for k, v in _PLACEHOLDER_ENV.items() if k in fields})


def render() -> dict[str, str]:
    """File name → JSON text of every contract document."""
    from services.aggregator.bootstrap import build_app as aggregator
    from services.aggregator.config import AggregatorSettings
    from services.gateway.bootstrap import build_app as gateway
    from services.gateway.config import GatewaySettings
    from services.mapping.bootstrap import build_app as mapping
    from services.mapping.config import MappingSettings
    from services.publisher.bootstrap import build_app as publisher
    from services.publisher.config import PublisherSettings
    from shared.app import asyncapi_json

    out: dict[str, str] = {}
    for name, build, cls in (
        ("aggregator", aggregator, AggregatorSettings),
        ("publisher", publisher, PublisherSettings),
        ("mapping", mapping, MappingSettings),
    ):
        spec = json.loads(asyncapi_json(build(_settings(cls))))
        out[f"asyncapi-{name}.json"] = json.dumps(spec, indent=2, sort_keys=True) + "\n"
    openapi = gateway(_settings(GatewaySettings)).openapi()
    out["openapi-gateway.json"] = json.dumps(openapi, indent=2, sort_keys=True) + "\n"
    return out


def write(directory: Path = DOCS) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written
