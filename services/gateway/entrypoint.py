"""`python -m services.gateway`: read settings (fail fast), then serve the HTTP app."""

from services.gateway.bootstrap import build_app
from services.gateway.config import GatewaySettings
from shared.app import serve
from shared.settings import load_settings
from shared.telemetry import configure_logging


def main() -> None:
    settings = load_settings(GatewaySettings)
    configure_logging(settings.log_level)
    serve(build_app(settings), settings.http_host, settings.http_port, settings.log_level)
