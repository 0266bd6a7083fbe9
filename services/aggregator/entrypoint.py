"""`python -m services.aggregator`: read settings (fail fast), then serve the app."""

from services.aggregator.bootstrap import build_app
from services.aggregator.config import AggregatorSettings
from shared.app import serve
from shared.settings import load_settings
from shared.telemetry import configure_logging


def main() -> None:
    settings = load_settings(AggregatorSettings)
    configure_logging(settings.log_level)
    serve(build_app(settings), settings.http_host, settings.http_port, settings.log_level)
