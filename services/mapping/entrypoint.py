"""`python -m services.mapping`: read settings (fail fast), then serve the app."""

from services.mapping.bootstrap import build_app
from services.mapping.config import MappingSettings
from shared.app import serve
from shared.settings import load_settings
from shared.telemetry import configure_logging


def main() -> None:
    settings = load_settings(MappingSettings)
    configure_logging(settings.log_level)
    serve(build_app(settings), settings.http_host, settings.http_port, settings.log_level)
