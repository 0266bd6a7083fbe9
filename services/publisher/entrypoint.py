"""`python -m services.publisher`: read settings (fail fast), then serve the app."""

from services.publisher.bootstrap import build_app
from services.publisher.config import PublisherSettings
from shared.app import serve
from shared.settings import load_settings
from shared.telemetry import configure_logging


def main() -> None:
    settings = load_settings(PublisherSettings)
    configure_logging(settings.log_level)
    serve(build_app(settings), settings.http_host, settings.http_port, settings.log_level)
