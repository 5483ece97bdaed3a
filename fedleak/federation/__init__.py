"""Flower glue: the honest ClientApp, the adversarial ServerApp and strategy, simulation."""

from fedleak.federation.client import build_client_app
from fedleak.federation.server import build_server_app, run_server
from fedleak.federation.simulation import run_simulated, simulate
from fedleak.federation.strategy import AdversarialStrategy

__all__ = [
    "AdversarialStrategy",
    "build_client_app",
    "build_server_app",
    "run_server",
    "run_simulated",
    "simulate",
]
