from tests.chaos.cli import app

app()
