"""Flower glue: the honest ClientApp, the adversarial ServerApp and strategy, simulation.

Names load on first use: a ClientApp process (``fedleak.federation.client_app``) does not pay
for the server side (the adversary and its scoring), nor the server for Ray.
"""

from fedleak.core.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(globals(), {
    "fedleak.federation.client_app": ["build_client_app"],
    "fedleak.federation.server": ["build_server_app", "run_server"],
    "fedleak.federation.simulation": ["run_simulated", "simulate"],
    "fedleak.federation.strategy": ["AdversarialStrategy"],
})
