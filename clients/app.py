"""The fedleak ClientApp for ``flwr run .`` (component ``clients.app:app``)."""

from pathlib import Path

from fedleak.federation import build_client_app
from fedleak.federation.run_config import scenario_from_run_config

APP_DIR = Path(__file__).resolve().parent.parent

app = build_client_app(lambda context: scenario_from_run_config(context, APP_DIR))
