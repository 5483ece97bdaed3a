"""The fedleak ServerApp for ``flwr run .`` (component ``server.app:app``)."""

from pathlib import Path

from fedleak.adversary.progress import ConsoleProgress
from fedleak.federation import build_server_app
from fedleak.federation.run_config import run_from_run_config

APP_DIR = Path(__file__).resolve().parent.parent

app = build_server_app(lambda context: run_from_run_config(context, APP_DIR), ConsoleProgress())
