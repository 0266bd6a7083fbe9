"""`python -m services.publisher`: read settings (fail fast), then serve the app."""

from services.publisher.bootstrap import build_app
from services.publisher.config import PublisherSettings
from shared.app import serve
from shared.logs import configure_logging
from shared.settings import load_settings


def main() -> None:
    settings = load_settings(PublisherSettings)
    configure_logging("publisher", settings.log_level, settings.log_format, settings.log_levels)
    serve(build_app(settings), settings.http_host, settings.http_port, settings.log_level)
