"""`python -m services.mapping`: read settings (fail fast), then serve the app."""

import sys

from services.mapping.adapters.connections import TokenCipher
from services.mapping.bootstrap import build_app
from services.mapping.config import MappingSettings
from shared.app import serve
from shared.settings import load_settings
from shared.telemetry import configure_logging


def main() -> None:
    settings = load_settings(MappingSettings)
    try:
        TokenCipher(settings.token_encryption_key.get_secret_value())
    except ValueError as error:
        print(f"MappingSettings: setting TOKEN_ENCRYPTION_KEY is invalid: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log_level)
    serve(build_app(settings), settings.http_host, settings.http_port, settings.log_level)
