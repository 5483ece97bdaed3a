"""Launch a scenario as a Flower simulation (Ray backend) in this process."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp

from fedleak.adversary.progress import Progress
from fedleak.federation.client import build_client_app
from fedleak.federation.server import build_server_app
from fedleak.runners.ray_config import start_local_ray
from fedleak.scenario import Scenario
from fedleak.scenario.preflight import check_runnable


def simulate(scenario: Scenario, run_dir: Path, progress: Progress | None = None,
             verbose: bool = False, cpus: int | None = None, resume: bool = False) -> Path:
    """Run ``scenario`` with one simulated SuperNode per client; returns ``run_dir``.

    ``cpus``: the CPUs Ray may use (default: all of this machine's); a sweep running arms
    side by side gives each its share. ``resume``: continue the stopped run in ``run_dir``
    after its last completed round (:meth:`~fedleak.federation.run.ServerRun.open`).

    Raises:
        FedleakError: the scenario cannot run on its data (:func:`~fedleak.scenario.preflight.check_runnable`),
            raised before Ray starts.
    """
    check_runnable(scenario)
    run_simulated(build_server_app(lambda _: (scenario, run_dir), progress or Progress(), resume), scenario,
                  verbose, cpus=cpus)
    return run_dir


def run_simulated(server_app: ServerApp, scenario: Scenario, verbose: bool = False,
                  client_app: ClientApp | None = None, cpus: int | None = None) -> None:
    """Run ``server_app`` against ``scenario``'s clients (fedleak's honest ClientApp unless
    ``client_app`` is given), one simulated SuperNode each.

    Uses ``flwr.simulation.run_simulation`` (deprecated in favour of ``flwr run`` but
    the only in-process entry point in flwr 1.41): it lets the CLI hand the already
    validated scenario to both apps without a SuperLink. Benchmarks pass their own
    server app (e.g. plain FedAvg) to compare against the same clients; tests pass
    misbehaving clients.
    """
    from flwr.simulation import run_simulation

    if not verbose:
        logging.getLogger("flwr").setLevel(logging.WARNING)
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    cpus = cpus or os.cpu_count() or 1
    # Started here, not by Flower's backend: on 127.0.0.1 only, its session folder private, and
    # the process's SIGTERM handler kept (fedleak.runners.ray_config.start_local_ray). Actors'
    # output (SecAgg+ logs each stage at DEBUG) only when asked for.
    start_local_ray(num_cpus=cpus, log_to_driver=verbose)
    run_simulation(
        server_app=server_app,
        client_app=client_app or build_client_app(lambda _: scenario),
        num_supernodes=scenario.partition.num_clients,
        backend_config={
            "client_resources": {"num_cpus": min(scenario.federation.client_cpus, cpus), "num_gpus": 0.0},
        },
        verbose_logging=verbose,
    )
