"""Launch a scenario as a Flower simulation (Ray backend) in this process."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from fedleak.federation.client import build_client_app
from fedleak.federation.server import build_server_app
from fedleak.progress import Progress
from fedleak.scenario import Scenario


def simulate(scenario: Scenario, run_dir: Path, progress: Progress | None = None,
             verbose: bool = False) -> Path:
    """Run ``scenario`` with one simulated SuperNode per client; returns ``run_dir``.

    Uses ``flwr.simulation.run_simulation`` (deprecated in favour of ``flwr run`` but
    the only in-process entry point in flwr 1.41): it lets the CLI hand the already
    validated scenario to both apps without a SuperLink.
    """
    from flwr.simulation import run_simulation

    if not verbose:
        logging.getLogger("flwr").setLevel(logging.WARNING)
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    server_app = build_server_app(lambda _: (scenario, run_dir), progress or Progress())
    client_app = build_client_app(lambda _: scenario)
    cpus = os.cpu_count() or 1
    run_simulation(
        server_app=server_app,
        client_app=client_app,
        num_supernodes=scenario.partition.num_clients,
        backend_config={
            "client_resources": {"num_cpus": min(scenario.federation.client_cpus, cpus), "num_gpus": 0.0},
            # Actors' output (SecAgg+ logs each stage at DEBUG) only when asked for.
            "init_args": {"num_cpus": cpus, "include_dashboard": False, "log_to_driver": verbose},
        },
        verbose_logging=verbose,
    )
    return run_dir
